// End to end: real `tsgi front` and `tsgi serve` processes, with undici as the client (and a
// raw socket where undici refuses to send what a test needs). Each suite starts its processes
// in before() and stops them in after(); no test asserts how long anything takes.
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, Pool, request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { pattern } from '../fixtures/download.js';
import {
  ROOT, fixture, runCli, spawnCli, startBackend, startFront, tempDir, type BackendProc, type FrontProc,
} from '../helpers/procs.js';
import { call, newAgent, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { digestOf } from '../helpers/bodies.js';
import { getRequest, openSocket, parseResponse, rawUntilClose } from '../helpers/raw-http.js';

/** Writes a raw HTTP request and collects everything the front sends until it closes the socket. */
async function rawText(port: number, text: string): Promise<string> {
  return (await rawUntilClose(port, text)).text;
}

/** Sockets the process holds open (Linux /proc), or undefined where that cannot be read. */
function socketCount(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    }).length;
  } catch {
    return undefined;
  }
}

const MIB = 1024 * 1024;
const BIG = 50 * MIB;
let bigDigest: string | null = null;

/** sha256 of the first 50 MiB of the fixtures' deterministic pattern. */
function patternDigest(): string {
  if (bigDigest === null) {
    const hash = createHash('sha256');
    for (const chunk of pattern(BIG)) hash.update(chunk);
    bigDigest = hash.digest('hex');
  }
  return bigDigest;
}

/** The seed's browser request (seeds/004: the environ a WSGI server hands the app). */
const SEED_HEADERS = {
  'accept-language': 'zh-cn',
  'user-agent': 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-encoding': 'gzip,deflate',
  dnt: '1',
  'upgrade-insecure-requests': '1',
};

// ---------------------------------------------------------------------------------------------
const hello = suite<Ctx>('e2e/hello', newCtx());
setUp(hello, async (ctx) => startPair(ctx, fixture('hello.js')));

hello('GET / answers the seed hello page', async ({ front, agent }) => {
  const res = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, '<h1>Hello, web</h1>');
  assert.is(res.headers['content-type'], 'text/html');
  assert.is(res.headers['content-length'], String('<h1>Hello, web</h1>'.length));
});

hello('HEAD has no body; requests in a row on a keep-alive agent all answer', async ({ front, agent }) => {
  const head = await call(`${front!.url}/`, { dispatcher: agent, method: 'HEAD' });
  assert.is(head.status, 200);
  assert.is(head.text, '');
  for (let i = 0; i < 5; i++) {
    const res = await call(`${front!.url}/again/${i}`, { dispatcher: agent });
    assert.is(res.status, 200);
    assert.is(res.text, '<h1>Hello, web</h1>');
  }
});

hello('SIGTERM stops the front and the backend with exit code 0', async (ctx) => {
  await ctx.agent!.close();
  const front = await ctx.front!.stop('SIGTERM');
  const backend = await ctx.backend!.stop('SIGTERM');
  assert.equal(front, { code: 0, signal: null }, `front exit; stderr:\n${ctx.front!.stderr()}`);
  assert.equal(backend, { code: 0, signal: null }, `backend exit; stderr:\n${ctx.backend!.stderr()}`);
});

hello.run();

// ---------------------------------------------------------------------------------------------
const environ = suite<Ctx & { backendSockets?: number }>('e2e/environ', newCtx());
setUp(environ, async (ctx) => {
  ctx.backend = await startBackend(fixture('environ.js'));
  ctx.backendSockets = socketCount(ctx.backend.pid); // before any front connects
  ctx.front = await startFront([ctx.backend.socket]);
  ctx.agent = newAgent();
});

environ('the seed request arrives as CGI keys, HTTP_* keys and tsgi.* keys', async ({ front, agent }) => {
  const res = await call(`${front!.url}/index.html?a=1&b=two`, { dispatcher: agent, headers: SEED_HEADERS });
  assert.is(res.status, 200);
  const env = JSON.parse(res.text) as Record<string, unknown>;
  assert.is(env.REQUEST_METHOD, 'GET');
  assert.is(env.SCRIPT_NAME, '');
  assert.is(env.PATH_INFO, '/index.html');
  assert.is(env.QUERY_STRING, 'a=1&b=two');
  assert.is(env.REQUEST_URI, '/index.html?a=1&b=two');
  assert.is(env.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.is(env.REMOTE_ADDR, '127.0.0.1');
  assert.match(String(env.REMOTE_PORT), /^\d+$/);
  assert.is(env.SERVER_NAME, '127.0.0.1');
  assert.is(env.SERVER_PORT, String(front!.port));
  assert.is(env.HTTP_HOST, `127.0.0.1:${front!.port}`);
  assert.is(env.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
  assert.is(env.HTTP_USER_AGENT, SEED_HEADERS['user-agent']);
  assert.is(env.HTTP_ACCEPT, SEED_HEADERS.accept);
  assert.is(env.HTTP_ACCEPT_ENCODING, 'gzip,deflate');
  assert.is(env.HTTP_DNT, '1');
  assert.is(env.HTTP_UPGRADE_INSECURE_REQUESTS, '1');
  assert.is(env['tsgi.url_scheme'], 'http');
  assert.is(env.HTTP_CONNECTION, undefined, 'Connection is hop-by-hop');
  assert.is(env.CONTENT_LENGTH, undefined);
  assert.is(env.CONTENT_TYPE, undefined);
});

environ('a POST carries CONTENT_TYPE, CONTENT_LENGTH and repeated headers joined', async ({ front, agent }) => {
  const res = await call(`${front!.url}/form`, {
    dispatcher: agent, method: 'POST', body: 'a=1&b=2',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-multi': ['one', 'two'] },
  });
  assert.is(res.status, 200);
  const env = JSON.parse(res.text) as Record<string, unknown>;
  assert.is(env.REQUEST_METHOD, 'POST');
  assert.is(env.CONTENT_TYPE, 'application/x-www-form-urlencoded');
  assert.is(env.CONTENT_LENGTH, '7');
  assert.is(env.HTTP_X_MULTI, 'one, two');
  assert.is(env.HTTP_CONTENT_TYPE, undefined);
});

environ('percent-encoded paths are decoded, the query is not; cookies join with "; "', async ({ front, agent }) => {
  const res = await call(`${front!.url}/caf%C3%A9/a%20b?x=%20&y=1`, {
    dispatcher: agent, headers: { cookie: ['a=1', 'b=2'], 'x_under': 'hidden' },
  });
  const env = JSON.parse(res.text) as Record<string, unknown>;
  assert.is(env.PATH_INFO, '/café/a b');
  assert.is(env.QUERY_STRING, 'x=%20&y=1');
  assert.is(env.REQUEST_URI, '/caf%C3%A9/a%20b?x=%20&y=1');
  assert.is(env.HTTP_COOKIE, 'a=1; b=2');
  assert.is(env.HTTP_X_UNDER, undefined, 'a name with "_" stays out of the CGI view');
  assert.ok((env['tsgi.headers'] as string[]).includes('x_under'), 'but is in tsgi.headers');
});

environ('hop-by-hop request headers (and those named in Connection) do not reach the environ', async ({ front }) => {
  const raw = await rawText(front!.port, [
    'GET /hop HTTP/1.1',
    `Host: 127.0.0.1:${front!.port}`,
    'Connection: close, X-Foo',
    'X-Foo: named-in-connection',
    'Keep-Alive: timeout=5',
    'TE: trailers',
    'Upgrade: example/1',
    'Proxy-Connection: keep-alive',
    'X-Bar: kept',
    '', '',
  ].join('\r\n'));
  const res = parseResponse(raw);
  assert.is(res.status, 200, raw);
  const env = JSON.parse(res.body) as Record<string, unknown>;
  for (const key of ['HTTP_CONNECTION', 'HTTP_X_FOO', 'HTTP_KEEP_ALIVE', 'HTTP_TE', 'HTTP_UPGRADE', 'HTTP_PROXY_CONNECTION']) {
    assert.is(env[key], undefined, `${key} must not reach the app`);
  }
  const names = (env['tsgi.headers'] as string[]).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const name of ['connection', 'x-foo', 'keep-alive', 'te', 'upgrade', 'proxy-connection']) {
    assert.not.ok(names.includes(name), `${name} must not be in tsgi.headers (${names.join(', ')})`);
  }
  assert.is(env.HTTP_X_BAR, 'kept');
  assert.is(env.PATH_INFO, '/hop');
});

environ('500 concurrent requests share the one backend connection, each with its own answer', async ({ front, backend, backendSockets }) => {
  const N = 500;
  // 500 client connections, so all 500 requests are in flight at once; the app holds each one
  // until it sees all 500 at the same time (its wait gives up after 15 s, so a failure cannot hang).
  const pool = new Pool(front!.url, { connections: N, headersTimeout: 30_000, bodyTimeout: 30_000 });
  try {
    const answers = await Promise.all(Array.from({ length: N }, (_, i) =>
      call(`${front!.url}/item/${i}?id=${i}&wait=${N}&delay=15000`, { dispatcher: pool })));
    answers.forEach((res, i) => {
      assert.is(res.status, 200, `request ${i}`);
      const env = JSON.parse(res.text) as Record<string, unknown>;
      assert.is(env.PATH_INFO, `/item/${i}`);
      assert.is(env.QUERY_STRING, `id=${i}&wait=${N}&delay=15000`);
      assert.is(env.peak, N, `the app saw all ${N} requests in flight at once`);
    });
  } finally {
    await pool.destroy();
  }
  // One --backend, one multiplexed connection: the backend holds exactly one more socket.
  if (backendSockets !== undefined) assert.is(socketCount(backend!.pid)! - backendSockets, 1, 'front connections at the backend');
  assert.not.match(front!.stderr(), /unreachable|lost/);
});

environ.run();

// ---------------------------------------------------------------------------------------------
const bodies = suite<Ctx & { download?: BackendProc; downloadFront?: FrontProc }>('e2e/bodies', newCtx());
setUp(bodies, async (ctx) => {
  patternDigest(); // computed once, outside the transfers
  await startPair(ctx, fixture('echo.js'));
  ctx.download = await startBackend(fixture('download.js'));
  ctx.extra.push(ctx.download);
  ctx.downloadFront = await startFront([ctx.download.socket]);
  ctx.extra.unshift(ctx.downloadFront);
});

bodies('a 50 MiB upload streams through and echoes back with the same sha256', async ({ front, agent }) => {
  const sent = createHash('sha256');
  let sentBytes = 0;
  async function* upload() {
    for (const chunk of pattern(BIG)) {
      sent.update(chunk);
      sentBytes += chunk.length;
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    }
  }
  const res = await request(`${front!.url}/echo`, {
    dispatcher: agent, method: 'POST', body: Readable.from(upload()), headers: { 'content-length': String(BIG) },
  });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-length'], String(BIG));
  const got = await digestOf(res.body);
  assert.is(sentBytes, BIG);
  assert.is(got.bytes, BIG);
  assert.is(got.sha256, sent.digest('hex'));
  assert.is(got.sha256, patternDigest());
});

bodies('a 50 MiB streamed download arrives whole, with the expected sha256', async ({ downloadFront, agent }) => {
  const res = await request(`${downloadFront!.url}/big?mb=50`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-length'], String(BIG));
  assert.equal(await digestOf(res.body), { bytes: BIG, sha256: patternDigest() });
});

// The front reads every backend connection into slabs it reuses once their bytes have gone to
// the clients (read-buffers.ts). Many downloads interleaved on one link, each with its own
// bytes and length; half the clients stall, so that their data waits in the front while the
// link reads on for the others. The front listens on a Unix socket, whose small buffers (unlike
// loopback TCP's megabytes) make the data wait in the front. A slab reused too early shows as
// a wrong sha256 here.
bodies('interleaved downloads with different bytes, half of them stalled, each arrive exactly', async (ctx) => {
  const dir = tempDir('tsgi-e2e-slabs-');
  const front = spawnCli(['front', '--listen', `unix:${join(dir, 'front.sock')}`, '--backend', `unix:${ctx.download!.socket}`,
    '--graceful-timeout', '5'], () => rmSync(dir, { recursive: true, force: true }));
  ctx.extra.unshift(front);
  await front.waitForStderr(/listening on http unix:/);
  const agent = new Agent({ connect: { socketPath: join(dir, 'front.sock') }, connections: 16, headersTimeout: 20_000, bodyTimeout: 20_000 });
  try {
    const results = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
      const bytes = (2 + (i % 3)) * MIB + i * 4099 + 1;
      const seed = i + 1;
      const res = await request(`http://front/d?bytes=${bytes}&seed=${seed}`, { dispatcher: agent });
      assert.is(res.statusCode, 200);
      const hash = createHash('sha256');
      let n = 0;
      let stalls = 0;
      for await (const chunk of res.body) {
        hash.update(chunk as Buffer);
        n += (chunk as Buffer).length;
        if (i % 2 === 1 && stalls < 3 && n > (stalls + 1) * 300_000) { // odd clients stall mid-body
          stalls++;
          await sleep(150);
        }
      }
      return { i, n, bytes, seed, sha256: hash.digest('hex') };
    }));
    for (const r of results) {
      const expected = createHash('sha256');
      for (const chunk of pattern(r.bytes, r.seed)) expected.update(chunk);
      assert.is(r.n, r.bytes, `download ${r.i}: byte count`);
      assert.is(r.sha256, expected.digest('hex'), `download ${r.i}: bytes`);
    }
  } finally {
    await agent.destroy();
  }
});

bodies('a chunked request body (no Content-Length) arrives whole', async ({ front, agent }) => {
  const parts = ['first part|', 'x'.repeat(300_000), '|', Buffer.alloc(70_000, 0xab).toString('latin1'), '|last'];
  async function* chunked() {
    for (const p of parts) {
      yield Buffer.from(p, 'latin1');
      await sleep(5);
    }
  }
  const res = await request(`${front!.url}/echo`, { dispatcher: agent, method: 'POST', body: Readable.from(chunked()) });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-length'], undefined, 'the echo of a chunked body is chunked too');
  const body = Buffer.from(await res.body.arrayBuffer()).toString('latin1');
  assert.is(body.length, parts.join('').length);
  assert.ok(body === parts.join(''), 'the echoed body equals the sent one');
});

bodies('an empty POST body echoes an empty response', async ({ front, agent }) => {
  const res = await call(`${front!.url}/echo`, { dispatcher: agent, method: 'POST', body: '' });
  assert.is(res.status, 200);
  assert.is(res.text, '');
});

bodies.run();

// ---------------------------------------------------------------------------------------------
const abort = suite<Ctx>('e2e/client-abort', newCtx());
setUp(abort, async (ctx) => startPair(ctx, fixture('abort.js')));

interface AbortStatus { started: boolean; aborted: boolean; reason: string | null }

async function status(url: string, id: string, agent: Agent): Promise<AbortStatus> {
  const res = await call(`${url}/status?id=${id}`, { dispatcher: agent });
  assert.is(res.status, 200);
  return JSON.parse(res.text) as AbortStatus;
}

abort('a client that goes away after the head fires tsgi.signal in the app', async ({ front, agent }) => {
  const ac = new AbortController();
  const res = await request(`${front!.url}/wait?id=after-head&head=1`, { dispatcher: agent, signal: ac.signal });
  assert.is(res.statusCode, 200);
  const body = res.body[Symbol.asyncIterator]();
  const first = await body.next();
  assert.is(String(first.value), 'waiting\n');
  ac.abort();
  await body.next().catch(() => {});
  const seen = await poll(async () => {
    const s = await status(front!.url, 'after-head', agent!);
    return s.aborted ? s : undefined;
  }, 'the app to see tsgi.signal abort');
  assert.ok(seen.started);
  assert.match(seen.reason ?? '', /cancel/i);
});

abort('a client that goes away before the head fires tsgi.signal in the app', async ({ front, agent }) => {
  const ac = new AbortController();
  const pending = request(`${front!.url}/wait?id=before-head`, { dispatcher: agent, signal: ac.signal })
    .then((r) => r.body.text(), (err: unknown) => err);
  await poll(async () => ((await status(front!.url, 'before-head', agent!)).started ? true : undefined), 'the app to get the request');
  ac.abort();
  const outcome = await pending;
  assert.instance(outcome, Error, 'the aborted request rejects on the client');
  const seen = await poll(async () => {
    const s = await status(front!.url, 'before-head', agent!);
    return s.aborted ? s : undefined;
  }, 'the app to see tsgi.signal abort');
  assert.match(seen.reason ?? '', /cancel/i);
});

abort('a client that half-closes after its request still gets the answer, the app not aborted', async ({ front, agent }) => {
  const socket = await openSocket(Number(new URL(front!.url).port));
  socket.end(getRequest('/wait?id=half-closed', { close: false }));
  // The front probes a half-closed client waiting for its head with 100 Continue: the FIN was seen.
  await poll(async () => (socket.received().includes('100 Continue') ? true : undefined), 'the front to see the FIN before the head');
  await poll(async () => ((await status(front!.url, 'half-closed', agent!)).started ? true : undefined), 'the app to have the request');
  assert.is((await call(`${front!.url}/release?id=half-closed`, { dispatcher: agent })).text, 'released\n');
  await poll(async () => (socket.received().includes('never aborted\n') ? true : undefined), 'the half-closed client to get its answer');
  assert.match(socket.received(), /^HTTP\/1\.1 100 Continue\r\n\r\n(HTTP\/1\.1 100 Continue\r\n\r\n)?HTTP\/1\.1 200 /);
  const seen = await status(front!.url, 'half-closed', agent!);
  assert.ok(seen.started && !seen.aborted, 'a FIN is not a client gone');
  socket.destroy();
});

abort.run();

// ---------------------------------------------------------------------------------------------
const early = suite<Ctx>('e2e/app-error-before-head', newCtx());
setUp(early, async (ctx) => startPair(ctx, fixture('throw-early.js')));

early('an app that throws before startResponse answers 500, and the error names the path', async ({ front, backend, agent }) => {
  const res = await call(`${front!.url}/before-start`, { dispatcher: agent });
  assert.is(res.status, 500);
  assert.is(res.text, '500 Internal Server Error\n');
  assert.not.match(res.text, /boom/, 'the app\'s error stays out of the response');
  await backend!.waitForStderr(/error: GET \/before-start: application error before the response head; answered 500/);
  assert.match(backend!.stderr(), /boom before startResponse/);
});

early('an app that throws after startResponse but before a body chunk answers 500', async ({ front, backend, agent }) => {
  const res = await call(`${front!.url}/after-start`, { dispatcher: agent });
  assert.is(res.status, 500);
  await backend!.waitForStderr(/GET \/after-start: application error before the response head/);
  const ok = await call(`${front!.url}/fine`, { dispatcher: agent });
  assert.is(ok.status, 200);
  assert.is(ok.text, 'fine\n');
});

early.run();

// ---------------------------------------------------------------------------------------------
const late = suite<Ctx>('e2e/app-error-after-head', newCtx());
setUp(late, async (ctx) => startPair(ctx, fixture('throw-late.js')));

late('an app that throws after the head: the client sees the head, then a cut connection', async ({ front, backend, agent }) => {
  let status: number | null = null;
  let failure: unknown = null;
  try {
    const res = await request(`${front!.url}/late`, { dispatcher: agent });
    status = res.statusCode;
    await res.body.text();
  } catch (err) {
    failure = err;
  }
  assert.ok(failure !== null, 'the response must not complete normally');
  if (status !== null) assert.is(status, 200, 'the app\'s head, never a second (500) head');
  await backend!.waitForStderr(/GET \/late: application error after the response head was sent; stream reset/);
  await front!.waitForStderr(/GET \/late: .*response cut after the head/);
});

late('on the wire: exactly one head, part of the body, and no chunked terminator', async ({ front }) => {
  const raw = await rawText(front!.port, `GET /late HTTP/1.1\r\nHost: 127.0.0.1:${front!.port}\r\n\r\n`);
  assert.is(raw.match(/HTTP\/1\.1 \d{3}/g)?.length, 1, `one status line in:\n${raw}`);
  assert.ok(raw.startsWith('HTTP/1.1 200 OK\r\n'), raw);
  assert.match(raw, /first chunk\n/);
  assert.not.ok(raw.endsWith('0\r\n\r\n'), 'the chunked body must not end cleanly');
});

late('a request on a fresh connection afterwards still works', async ({ front }) => {
  const agent = newAgent();
  try {
    const res = await call(`${front!.url}/ok`, { dispatcher: agent });
    assert.is(res.status, 200);
    assert.is(res.text, 'still fine\n');
  } finally {
    await agent.destroy();
  }
});

late.run();

// ---------------------------------------------------------------------------------------------
const length = suite<Ctx>('e2e/content-length-mismatch', newCtx());
setUp(length, async (ctx) => startPair(ctx, fixture('bad-length.js')));

const pipelined = (port: number, ...paths: string[]): Promise<string> =>
  rawText(port, paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`).join(''));

/**
 * What a cut must look like on the wire: at most the one head (the front may cut before it is
 * flushed), never a second response after it, and the connection closed (rawText returns).
 */
function assertCut(raw: string, body: RegExp): void {
  const heads = raw.match(/HTTP\/1\.1 \d{3}/g)?.length ?? 0;
  assert.ok(heads <= 1, `no response may follow a broken body on the same connection:\n${raw}`);
  if (heads === 1) {
    assert.ok(raw.startsWith('HTTP/1.1 200 OK\r\n'), raw);
    assert.match(raw.slice(raw.indexOf('\r\n\r\n') + 4), body);
  }
}

// The gateway holds the app to its Content-Length (the app hears of it; see backend/gateway);
// the front's own check for a backend that does not is in e2e/fuzz-front.
length('bytes beyond the declared Content-Length never reach the client as a forged response', async ({ front, backend }) => {
  const raw = await pipelined(front!.port, '/more', '/next');
  assert.not.match(raw, /forged/, `the extra bytes were sent:\n${raw}`);
  assertCut(raw, /^(hello)?$/);
  await backend!.waitForStderr(/GET \/more: application error after the response head was sent; stream reset[\s\S]*grew to \d+ bytes; its Content-Length says 5/);
  await front!.waitForStderr(/GET \/more: .*reset the stream.*; response cut after the head/);
});

length('a body shorter than its Content-Length cuts the connection, which is never reused', async ({ front, backend }) => {
  assertCut(await pipelined(front!.port, '/less', '/next'), /^(hello)?$/);
  await backend!.waitForStderr(/GET \/less: application error after the response head was sent; stream reset[\s\S]*ended after 5 bytes; its Content-Length says 10/);
});

length('a Content-Length with no body at all is known before the head: a 500, and the connection goes on', async ({ front, backend }) => {
  const raw = await pipelined(front!.port, '/none', '/next');
  assert.match(raw, /^HTTP\/1\.1 500 Internal Server Error\r\n[\s\S]*\r\n\r\n500 Internal Server Error\nHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok \/next\n$/);
  await backend!.waitForStderr(/GET \/none: application error before the response head; answered 500[\s\S]*the body is 0 bytes but its Content-Length says 10/);
});

length('a request on a fresh connection afterwards still works', async ({ front, agent }) => {
  const res = await call(`${front!.url}/fine`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, 'ok /fine\n');
});

length.run();

// ---------------------------------------------------------------------------------------------
const timeout = suite<Ctx>('e2e/response-timeout', newCtx());
setUp(timeout, async (ctx) => startPair(ctx, fixture('slow.js'), [], ['--response-timeout', '1']));

timeout('no response head within --response-timeout answers 504', async ({ front, agent }) => {
  const res = await call(`${front!.url}/slow?ms=4000`, { dispatcher: agent });
  assert.is(res.status, 504);
  assert.is(res.text, '504 Gateway Timeout\n');
  await front!.waitForStderr(/504 GET \/slow\?ms=4000: no response from unix:\S+ within --response-timeout 1 s/);
});

timeout('the backend cancels the timed-out request: the app sees tsgi.signal abort', async ({ front, agent }) => {
  const stats = await poll(async () => {
    const r = await call(`${front!.url}/stats`, { dispatcher: agent });
    const s = JSON.parse(r.text) as { aborted: number; lastReason: string | null };
    return s.aborted >= 1 ? s : undefined;
  }, 'the slow app to see its signal abort');
  assert.is(stats.aborted, 1);
  assert.match(stats.lastReason ?? '', /TIMEOUT/);
});

timeout('a quick response on the same front is unaffected', async ({ front, agent }) => {
  const res = await call(`${front!.url}/quick?ms=0`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, 'slept 0\n');
});

timeout.run();

// ---------------------------------------------------------------------------------------------
const crash = suite<Ctx>('e2e/backend-crash', newCtx());
setUp(crash, async (ctx) => startPair(ctx, fixture('abort.js')));

crash('a backend killed mid-request: 502 for the POST in flight', async ({ front, backend, agent }) => {
  // A POST: a GET lost before any answer would be sent again (here to no backend: 503).
  const pending = call(`${front!.url}/wait?id=doomed`, { method: 'POST', dispatcher: agent }).catch((err: unknown) => err);
  await poll(async () => ((await status(front!.url, 'doomed', agent!)).started ? true : undefined), 'the app to get the request');
  const exit = await backend!.kill9();
  assert.is(exit.signal, 'SIGKILL');
  const res = await pending;
  assert.not.instance(res, Error, `the client gets an answer, not ${String(res)}`);
  const answer = res as Awaited<ReturnType<typeof call>>;
  assert.is(answer.status, 502);
  assert.is(answer.text, '502 Bad Gateway\n');
  await front!.waitForStderr(/502 POST \/wait\?id=doomed: connection to backend unix:\S+ lost/);
});

crash('a new backend on the same socket path: the front reconnects by itself', async (ctx) => {
  const again = await startBackend(fixture('abort.js'), [], { socket: ctx.backend!.socket });
  ctx.extra.push(again);
  const res = await poll(async () => {
    const r = await call(`${ctx.front!.url}/status?id=doomed`, { dispatcher: ctx.agent });
    return r.status === 200 ? r : undefined;
  }, 'a 200 from the restarted backend');
  assert.equal(JSON.parse(res.text), { started: false, aborted: false }, 'a fresh process answered');
  for (let i = 0; i < 3; i++) {
    const r = await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent });
    assert.is(r.status, 200);
    assert.is(r.text, 'ok\n');
  }
  assert.is(ctx.front!.stderr().match(/listening on http/g)?.length, 1, 'the front kept running');
});

crash.run();

// ---------------------------------------------------------------------------------------------
const fetchStyle = suite<Ctx>('e2e/fetch-handler', newCtx());
setUp(fetchStyle, async (ctx) => startPair(ctx, fixture('fetch-app.js')));

fetchStyle('GET: a Response with headers and a cookie', async ({ front, agent }) => {
  const res = await call(`${front!.url}/hi?x=1`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, 'fetch says hi at /hi?x=1\n');
  assert.is(res.headers['content-type'], 'text/plain; charset=utf-8');
  assert.is(res.headers['set-cookie'], 'a=1');
});

fetchStyle('POST with a chunked body: the handler reads request.text()', async ({ front, agent }) => {
  async function* body() {
    yield Buffer.from('hello ');
    await sleep(5);
    yield Buffer.from('fetch');
  }
  const res = await call(`${front!.url}/post`, {
    dispatcher: agent, method: 'POST', body: Readable.from(body()), headers: { 'x-echo': 'back' },
  });
  assert.is(res.status, 201);
  assert.is(res.headers['x-fetch'], 'yes');
  assert.equal(JSON.parse(res.text), { path: '/post', length: 11, body: 'hello fetch', echo: 'back' });
});

fetchStyle.run();

// ---------------------------------------------------------------------------------------------
const events = suite<Ctx>('e2e/event-stream', newCtx());
setUp(events, async (ctx) => startPair(ctx, fixture('events.js'), ['--workers', '1']));

for (const kind of ['gateway', 'node', 'fetch']) {
  events(`${kind}: the head of a stream reaches the client before its first event exists`, async ({ front, agent }) => {
    // request() resolves on the head; the app sends the event only when /release is called.
    const res = await request(`${front!.url}/${kind}`, { dispatcher: agent, headersTimeout: 10_000 });
    assert.is(res.statusCode, 200);
    assert.is(res.headers['content-type'], 'text/event-stream');
    assert.is(res.headers['content-length'], undefined);
    assert.is((await call(`${front!.url}/release`, { method: 'POST', dispatcher: agent })).text, '1',
      'the stream was still waiting for its event');
    assert.is(await res.body.text(), `data: ${kind}\n\n`);
  });
}

events.run();

const sse = suite<Ctx>('e2e/examples-events', newCtx());
setUp(sse, async (ctx) => startPair(ctx, join(ROOT, 'examples/events.js')));

sse('examples/events.js: the head at once, then the events it was asked for', async ({ front, agent }) => {
  const ac = new AbortController();
  // The first event is a minute away: request() resolving shows the head came first.
  const waiting = await request(`${front!.url}/?every=60000`, { dispatcher: agent, signal: ac.signal, headersTimeout: 10_000 });
  assert.is(waiting.statusCode, 200);
  assert.is(waiting.headers['content-type'], 'text/event-stream');
  ac.abort();
  await waiting.body.text().catch(() => {});
  const res = await call(`${front!.url}/?every=10&count=2`, { dispatcher: agent });
  assert.match(res.text, /^id: 1\ndata: \d{4}-\d\d-\d\dT[\d:.]+Z\n\nid: 2\ndata: \d{4}-\d\d-\d\dT[\d:.]+Z\n\n$/);
});

sse.run();

// ---------------------------------------------------------------------------------------------
const demo = suite<Ctx>('e2e/demo', newCtx());
setUp(demo, async (ctx) => startPair(ctx, join(ROOT, 'examples/demo.js')));

demo('examples/demo.js: / is the hello page', async ({ front, agent }) => {
  const res = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, '<h1>Hello, web</h1>');
  assert.is(res.headers['content-type'], 'text/html');
});

demo('examples/demo.js: /environ dumps the environ', async ({ front, agent }) => {
  const res = await call(`${front!.url}/environ?q=1`, { dispatcher: agent, headers: { 'accept-language': 'zh-cn' } });
  assert.is(res.status, 200);
  assert.match(res.text, /^PATH_INFO: "\/environ"$/m);
  assert.match(res.text, /^QUERY_STRING: "q=1"$/m);
  assert.match(res.text, /^HTTP_ACCEPT_LANGUAGE: "zh-cn"$/m);
  assert.match(res.text, /Hello world from a simple tsgi application!/);
});

demo('examples/demo.js: anything else is 404', async ({ front, agent }) => {
  const res = await call(`${front!.url}/nope`, { dispatcher: agent });
  assert.is(res.status, 404);
});

demo.run();

// ---------------------------------------------------------------------------------------------
const cli = suite<{ dir: string }>('e2e/cli-errors', { dir: '' });
cli.before((ctx) => { ctx.dir = tempDir('tsgi-e2e-cli-'); });
cli.after((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

cli('tsgi front without --backend exits 2 and says what is missing', async () => {
  const r = await runCli(['front', '--listen', '127.0.0.1:0']);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /needs at least one --backend/);
});

cli('tsgi front without --listen exits 2', async ({ dir }) => {
  const r = await runCli(['front', '--backend', `unix:${join(dir, 'none.sock')}`]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /needs --listen/);
});

cli('tsgi serve with a module that does not exist exits 3', async ({ dir }) => {
  const r = await runCli(['serve', join(dir, 'missing.js'), '--socket', join(dir, 'missing.sock')]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /missing\.js does not exist/);
});

cli('an unknown option exits 2 and lists the options', async () => {
  const r = await runCli(['serve', fixture('hello.js'), '--sockett', '/tmp/x.sock']);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /unknown option --sockett/);
  assert.match(r.stderr, /--socket /);
});

cli.run();
