// A gateway app runs on other servers unchanged: toNodeHandler(app) on a real node:http server
// (undici as the client), toFetch(app) as a fetch handler called with Requests, and through
// tsgi's own fetch adapter (fromFetch(toFetch(app)) behaves as app itself).
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent, request } from 'undici';
import type { Logger } from '../../src/common/log.js';
import { fromFetch, toFetch, toNodeHandler, type Application, type Environ } from '../../src/index.js';

let hello: Application;

/** What the adapters log (app errors), kept for the tests to read. */
const logged: string[] = [];
const log: Logger = {
  debug: () => {}, info: () => {},
  warn: (m) => { logged.push(`warn: ${m}`); },
  error: (m) => { logged.push(`error: ${m}`); },
  enabled: () => true,
};

/** Every string key of the environ, tsgi.headers, and what the app read of tsgi.input. */
const environApp: Application = async (environ, startResponse) => {
  let body = '';
  for await (const chunk of environ['tsgi.input']) body += chunk.toString('utf8');
  const out: Record<string, unknown> = { body, headers: environ['tsgi.headers'] };
  for (const [k, v] of Object.entries(environ)) if (typeof v === 'string') out[k] = v;
  startResponse('200 OK', [['Content-Type', 'application/json']]);
  return [JSON.stringify(out)];
};

/** A stream: the head alone, then one chunk each time the test releases one. */
let release: (() => void) | null = null;
let aborted: Promise<unknown> | null = null;
const streamApp: Application = async function* (environ: Environ, startResponse) {
  const signal = environ['tsgi.signal'];
  aborted = new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
  startResponse('200 OK', [['Content-Type', 'text/plain']])(''); // the head alone, before the first event
  for (let i = 0; ; i++) {
    await new Promise<void>((resolve) => { release = resolve; });
    yield `event ${i}\n`;
  }
};

const routes: Record<string, Application> = {
  '/hello': (e, s) => hello(e, s),
  '/environ': environApp,
  '/stream': streamApp,
  '/hop': (_e, startResponse) => { startResponse('200 OK', [['Connection', 'close']]); return ['no']; },
  '/throws': () => { throw new Error('boom'); },
  '/empty': (_e, startResponse) => { startResponse('204 No Content', []); return []; },
  '/extras': (environ, startResponse) => {
    (environ['tsgi.early_hints'] as (h: [string, string][]) => void)([['Link', '</app.css>; rel=preload']]);
    (environ['tsgi.trailers'] as (h: [string, string][]) => void)([['X-Checksum', 'abc']]);
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return ['body'];
  },
};
const router: Application = (environ, startResponse) => (routes[environ.PATH_INFO] ?? hello)(environ, startResponse);

interface Ctx {
  servers: Server[];
  urls: Record<string, string>;
  agent: Agent;
}

const test = suite<Ctx>('backend/portable', { servers: [], urls: {}, agent: new Agent() });

async function listen(ctx: Ctx, name: string, handler: Parameters<typeof createServer>[1]): Promise<void> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  ctx.servers.push(server);
  ctx.urls[name] = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

test.before(async (ctx) => {
  hello = (await import(new URL('../../../examples/hello.js', import.meta.url).href) as { application: Application }).application;
  ctx.agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 });
  await listen(ctx, 'node', toNodeHandler(router, { log }));
  // The round trip: the app as a fetch handler, brought back by tsgi's fetch adapter.
  await listen(ctx, 'roundTrip', toNodeHandler(fromFetch({ fetch: toFetch(router, { log }) }), { log }));
});

test.after(async (ctx) => {
  await ctx.agent.close();
  for (const s of ctx.servers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

for (const name of ['node', 'roundTrip']) {
  test(`${name}: the seed's hello app answers its page`, async ({ urls, agent }) => {
    const r = await request(`${urls[name]}/hello`, { dispatcher: agent });
    assert.is(r.statusCode, 200);
    assert.is(r.statusText, 'OK', 'the standard reason phrase');
    assert.is(r.headers['content-type'], 'text/html');
    assert.is(await r.body.text(), '<h1>Hello, web</h1>');
  });

  test(`${name}: the environ carries the CGI keys, the headers and the body`, async ({ urls, agent }) => {
    const port = new URL(urls[name]!).port;
    const r = await request(`${urls[name]}/environ?x=1&y=%20`, {
      dispatcher: agent, method: 'POST', body: 'a'.repeat(200_000),
      headers: { 'content-type': 'text/plain', 'x-custom': 'v', 'accept-language': 'zh-cn' },
    });
    assert.is(r.statusCode, 200);
    const e = await r.body.json() as Record<string, string | string[]>;
    assert.is(e.REQUEST_METHOD, 'POST');
    assert.is(e.PATH_INFO, '/environ');
    assert.is(e.QUERY_STRING, 'x=1&y=%20');
    assert.is(e.REQUEST_URI, '/environ?x=1&y=%20');
    assert.is(e.SCRIPT_NAME, '');
    assert.is(e.SERVER_NAME, '127.0.0.1');
    assert.is(e.SERVER_PORT, port);
    assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
    assert.is(e['tsgi.url_scheme'], 'http');
    assert.is(e.CONTENT_TYPE, 'text/plain');
    assert.is(e.CONTENT_LENGTH, '200000');
    assert.is(e.HTTP_X_CUSTOM, 'v');
    assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
    assert.is(e.HTTP_CONNECTION, undefined, 'hop-by-hop');
    assert.is((e.body as string).length, 200_000, 'the whole body through tsgi.input');
    if (name === 'node') {
      assert.is(e.REMOTE_ADDR, '127.0.0.1');
      assert.ok(/^\d+$/.test(e.REMOTE_PORT as string));
    }
  });

  test(`${name}: a stream goes out chunk by chunk, and tsgi.signal aborts when the client leaves`, async ({ urls, agent }) => {
    const r = await request(`${urls[name]}/stream`, { dispatcher: agent });
    assert.is(r.statusCode, 200);
    const it = r.body[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) {
      for (let n = 0; release === null && n < 200; n++) await new Promise((resolve) => setImmediate(resolve));
      const go = release!;
      release = null;
      go();
      const { value } = await it.next();
      assert.is(Buffer.from(value as Uint8Array).toString(), `event ${i}\n`, 'each chunk as the app yields it');
    }
    const gone = aborted!;
    r.body.destroy();
    assert.ok(await gone, 'tsgi.signal aborted, with a reason');
    release?.();
  });

  test(`${name}: the gateway rules hold: an app error is a 500, a hop-by-hop header a 500, a 204 has no body`, async ({ urls, agent }) => {
    for (const path of ['/throws', '/hop']) {
      const r = await request(`${urls[name]}${path}`, { dispatcher: agent });
      assert.is(r.statusCode, 500, path);
      assert.is(await r.body.text(), '500 Internal Server Error\n');
    }
    assert.ok(logged.some((l) => l.startsWith('error: GET /hop: application error before the response head; answered 500')), logged.join('\n'));
    const r = await request(`${urls[name]}/empty`, { dispatcher: agent });
    assert.is(r.statusCode, 204);
    assert.is(await r.body.text(), '');
  });
}

test('node: 103 Early Hints go out before the head, trailers after a chunked body', async ({ urls }) => {
  const { port } = new URL(urls.node!);
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.end('GET /extras HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n'));
    let text = '';
    socket.setEncoding('latin1').on('data', (d: string) => { text += d; });
    socket.on('close', () => resolve(text));
    socket.on('end', () => {});
    socket.on('error', reject);
  });
  assert.ok(raw.length > 0, 'an answer');
  assert.match(raw, /^HTTP\/1\.1 103 Early Hints\r\n[Ll]ink: <\/app\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/, JSON.stringify(raw));
  assert.match(raw, /\r\n\r\n4\r\nbody\r\n0\r\n[Xx]-[Cc]hecksum: abc\r\n\r\n$/);
});

test('toFetch: a Request in, a Response out, as Bun, Deno and Workers call it', async () => {
  const fetch = toFetch(router, { log });
  let res = await fetch(new Request('https://example.test:8443/environ?q=1',
    { method: 'PUT', body: 'hi', headers: { 'x-a': 'b', connection: 'x-hop', 'x-hop': 'h', 'transfer-encoding': 'chunked' } }));
  assert.is(res.status, 200);
  assert.is(res.statusText, 'OK');
  assert.is(res.headers.get('content-type'), 'application/json');
  const e = await res.json() as Record<string, string>;
  assert.is(e.REQUEST_METHOD, 'PUT');
  assert.is(e['tsgi.url_scheme'], 'https');
  assert.is(e.HTTPS, 'on');
  assert.is(e.SERVER_NAME, 'example.test');
  assert.is(e.SERVER_PORT, '8443');
  assert.is(e.HTTP_HOST, 'example.test:8443', 'the URL\'s host when the Request has no Host header');
  assert.is(e.HTTP_X_A, 'b');
  assert.is(e.HTTP_X_HOP, undefined, 'a header Connection names stays with the server');
  assert.is(e.HTTP_TRANSFER_ENCODING, undefined, 'hop-by-hop');
  assert.is(e.body, 'hi');
  res = await fetch(new Request('http://example.test/hello', { method: 'HEAD' }));
  assert.is(res.status, 200);
  assert.is(res.body, null, 'HEAD: no body');
  res = await fetch(new Request('http://example.test/throws'));
  assert.is(res.status, 500);
  assert.is(await res.text(), '500 Internal Server Error\n');
});

test('toFetch: tsgi.signal is the request\'s: aborting it aborts the app', async () => {
  const controller = new AbortController();
  const res = await toFetch(router, { log })(new Request('http://example.test/stream', { signal: controller.signal }));
  assert.is(res.status, 200);
  const gone = aborted!;
  controller.abort(new Error('client left'));
  assert.is(((await gone) as Error).message, 'client left');
  release?.();
});

test.run();
