// fromFetch: a fetch-style handler (Request → Response) run as a gateway application, through
// runApplication: the Request built from the environ, the Response turned into head and body.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fromFetch } from '../../src/backend/fetch-adapter.js';
import { InputStream } from '../../src/backend/input.js';
import type { FetchHandler } from '../../src/backend/types.js';
import { eventually } from '../helpers/assert.js';
import { type EnvironOptions, RecordingResponder, assertComplete, run, turns } from './helpers/exchange.js';

const test = suite('backend/fetch-adapter');

/** Runs `fetch` as an app for one request; resolves with the responder once the exchange is done. */
async function serve(fetch: FetchHandler['fetch'], opts: EnvironOptions & { out?: RecordingResponder } = {}) {
  const x = run(fromFetch({ fetch }), opts);
  await x.done;
  return x;
}

/** Serves `fetch` and hands back the Request it saw (the handler answers 204). */
async function requestSeen(opts: EnvironOptions): Promise<Request> {
  let seen: Request | undefined;
  const x = await serve((req) => {
    seen = req;
    return new Response(null, { status: 204 });
  }, opts);
  assertComplete(x.out);
  assert.ok(seen, 'the handler ran');
  return seen!;
}

test('the Request: url, method and headers from the environ', async () => {
  const req = await requestSeen({
    head: { target: '/api/items?sort=asc&q=%E4%B8%AD' },
    headers: ['Host', 'example.test:8080', 'Accept', 'application/json', 'X-Custom', 'yes', 'User-Agent', 'ua/1'],
  });
  assert.is(req.url, 'http://example.test:8080/api/items?sort=asc&q=%E4%B8%AD');
  assert.is(req.method, 'GET');
  assert.is(req.headers.get('accept'), 'application/json');
  assert.is(req.headers.get('x-custom'), 'yes');
  assert.is(req.headers.get('user-agent'), 'ua/1');
  assert.is(req.body, null, 'no body for GET');
});

test('the Request: https scheme, the full path under --script-name, other methods', async () => {
  const req = await requestSeen({
    head: { target: '/app/users/7', scheme: 'https', method: 'DELETE' },
    headers: ['Host', 'secure.example'],
    scriptName: '/app',
  });
  assert.is(req.url, 'https://secure.example/app/users/7');
  assert.is(req.method, 'DELETE');
});

test('the Request: no Host header → SERVER_NAME and SERVER_PORT', async () => {
  const req = await requestSeen({ head: { target: '/x', serverAddr: '10.1.2.3', serverPort: 8000 }, headers: [] });
  assert.is(req.url, 'http://10.1.2.3:8000/x');
});

test('regression: an absolute-form target gives the handler its path, not "/http://…"', async () => {
  const req = await requestSeen({ head: { target: 'http://example.test/a/b?x=1' }, headers: ['Host', 'example.test'] });
  const url = new URL(req.url);
  assert.is(url.pathname, '/a/b');
  assert.is(url.search, '?x=1');
  assert.is(url.host, 'example.test');
  const bare = await requestSeen({ head: { target: 'http://example.test?x=1' }, headers: ['Host', 'example.test'] });
  assert.is(new URL(bare.url).pathname, '/');
  assert.is(new URL(bare.url).search, '?x=1');
});

test('regression: a request without Host to an IPv6 server address gets a valid URL', async () => {
  const req = await requestSeen({ head: { target: '/v6', serverAddr: '::1', serverPort: 8000 }, headers: [] });
  assert.is(req.url, 'http://[::1]:8000/v6');
});

test('tsgi.signal becomes the Request signal', async () => {
  const controller = new AbortController();
  let seen: Request | undefined;
  const out = new RecordingResponder();
  const x = run(fromFetch({
    fetch: async (req) => {
      seen = req;
      await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
      return new Response('late');
    },
  }), { out, signal: controller.signal });
  await eventually(() => seen !== undefined, 'the handler to run');
  assert.not.ok(seen!.signal.aborted);
  out.clientGone();
  controller.abort(new Error('client went away'));
  await x.done;
  assert.ok(seen!.signal.aborted);
  assert.equal(out.events, [], 'nothing sent to a client that is gone');
});

test('a POST body streamed from tsgi.input reaches await request.text()', async () => {
  const credited: number[] = [];
  const input = new InputStream((n) => credited.push(n));
  let started = false;
  const out = new RecordingResponder();
  const x = run(fromFetch({
    fetch: async (req) => {
      started = true;
      const body = await req.text();
      return new Response(`${req.method} ${req.headers.get('content-type')} got: ${body}`);
    },
  }), {
    out, input,
    head: { method: 'POST', target: '/echo' },
    headers: ['Host', 'h', 'Content-Type', 'text/plain', 'Content-Length', '13'],
  });
  await eventually(() => started, 'the handler to start');
  input.push(Buffer.from('hello '));
  await turns();
  assert.equal(out.events, [], 'no response before the body ended');
  input.push(Buffer.from('w'));
  input.push(Buffer.from('orld!!'));
  input.end();
  await x.done;
  assertComplete(out);
  assert.is(out.body, 'POST text/plain got: hello world!!');
  assert.is(credited.reduce((a, b) => a + b, 0), 13, 'every body byte was taken (and credited)');
});

test('a POST with an empty body that already ended: request.text() is ""', async () => {
  let text: string | undefined;
  const x = await serve(async (req) => {
    text = await req.text();
    return new Response('ok');
  }, { head: { method: 'POST' } });
  assertComplete(x.out);
  assert.is(text, '');
});

test('the Response: status, statusText, headers and every set-cookie', async () => {
  const x = await serve(() => new Response('made', {
    status: 201,
    statusText: 'Made It',
    headers: [
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'a=1; Path=/'],
      ['X-One', '1'],
      ['Set-Cookie', 'b=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT'],
    ],
  }));
  assertComplete(x.out);
  assert.is(x.out.head0.status, 201);
  assert.is(x.out.head0.reason, 'Made It');
  assert.equal(x.out.header('content-type'), ['text/plain']);
  assert.equal(x.out.header('x-one'), ['1']);
  assert.equal(x.out.header('set-cookie'), ['a=1; Path=/', 'b=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT'],
    'each cookie its own field, not joined');
  assert.is(x.out.body, 'made');
});

test('the Response: a standard or empty statusText leaves the phrase to the front', async () => {
  for (const init of [{ status: 404, statusText: 'Not Found' }, { status: 404 }]) {
    const x = await serve(() => new Response('nope', init));
    assert.is(x.out.head0.status, 404);
    assert.is(x.out.head0.reason, '');
  }
});

test('the Response: a null body (204) ends with the head', async () => {
  const x = await serve(() => new Response(null, { status: 204, headers: { ETag: '"v1"' } }));
  assertComplete(x.out);
  assert.is(x.out.head0.status, 204);
  assert.ok(x.out.head0.end);
  assert.equal(x.out.header('etag'), ['"v1"']);
  assert.equal(x.out.header('content-length'), []);
});

test('a streaming Response body: chunks arrive in order, as they are produced', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const enc = new TextEncoder();
  const out = new RecordingResponder();
  const x = run(fromFetch({
    fetch: () => new Response(new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(enc.encode('one '));
        await gate;
        controller.enqueue(enc.encode('two '));
        await turns(1);
        controller.enqueue(enc.encode('three'));
        controller.close();
      },
    }), { headers: { 'Content-Type': 'text/event-stream' } }),
  }), { out });
  await eventually(() => out.chunks.length === 1, 'the first chunk before the rest exists');
  assert.equal(out.chunks, ['one ']);
  release();
  await x.done;
  assertComplete(out);
  assert.equal(out.chunks, ['one ', 'two ', 'three']);
  assert.equal(out.header('content-type'), ['text/event-stream']);
});

test('a streamed body whose first chunk is not ready: the head goes out alone, before it', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const out = new RecordingResponder();
  const x = run(fromFetch({
    fetch: () => new Response(new ReadableStream<Uint8Array>({
      async start(controller) {
        await gate;
        controller.enqueue(new TextEncoder().encode('data: 1\n\n'));
        controller.close();
      },
    }), { headers: { 'Content-Type': 'text/event-stream' } }),
  }), { out });
  await eventually(() => out.heads.length === 1, 'the head, while the body waits for its first event');
  assert.is(out.writes.length, 0);
  assert.is(out.head0.status, 200);
  release();
  await x.done;
  assertComplete(out);
  assert.equal(out.chunks, ['data: 1\n\n']);
});

test('a body at hand: the head goes out with its first chunk, never alone', async () => {
  const out = new RecordingResponder();
  const x = run(fromFetch({ fetch: () => new Response('hello') }), { out });
  await x.done;
  await turns();
  assertComplete(out);
  assert.is(out.events[0]!.type, 'head');
  assert.is(out.events[1]!.type, 'write', 'the first chunk right after the head');
  assert.equal(out.chunks, ['hello']);
});

test('regression: a client that leaves while a streamed body waits cancels the body at once', async () => {
  // The body waits for an event that never comes; before the fix the gateway sat in next()
  // forever, so the stream's cancel() (Hono's stream.onAbort) never ran.
  const controller = new AbortController();
  const out = new RecordingResponder();
  let cancelled: unknown = null;
  const x = run(fromFetch({
    fetch: () => new Response(new ReadableStream<Uint8Array>({
      start(c) { c.enqueue(new TextEncoder().encode('first')); },
      cancel(reason) { cancelled = reason ?? 'no reason'; },
    })),
  }), { out, signal: controller.signal });
  await eventually(() => out.chunks.length === 1, 'the first chunk');
  out.clientGone();
  controller.abort(new Error('client went away'));
  await x.done;
  assert.instance(cancelled, Error, 'the body was cancelled with the signal\'s reason');
  assert.equal(out.chunks, ['first'], 'nothing more was sent');
  assert.is(x.doneCalls(), 1);
});

test('a streamed body that ends normally: the abort listener is gone, a late abort cancels nothing', async () => {
  const controller = new AbortController();
  let cancels = 0;
  const x = await serve(() => new Response(new ReadableStream<Uint8Array>({
    start(c) { c.enqueue(new TextEncoder().encode('all')); c.close(); },
    cancel() { cancels++; },
  })), { signal: controller.signal });
  assertComplete(x.out);
  controller.abort();
  await turns();
  assert.is(cancels, 0);
  assert.is(x.out.body, 'all');
});

test('hop-by-hop headers in a Response are dropped', async () => {
  const x = await serve(() => new Response('ok', {
    status: 407,
    headers: [
      ['Connection', 'close'], ['Keep-Alive', 'timeout=5'], ['Transfer-Encoding', 'chunked'],
      ['Upgrade', 'h2c'], ['TE', 'trailers'], ['Trailer', 'X-Sum'], ['Proxy-Connection', 'keep-alive'],
      ['X-Kept', 'yes'],
    ],
  }));
  assertComplete(x.out);
  assert.is(x.out.head0.status, 407);
  const names = x.out.head0.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.equal(names.filter((n) => n !== 'content-type').sort(), ['x-kept']);
  assert.is(x.out.body, 'ok');
});

test('regression: a Proxy-Authenticate header in a Response is dropped, not a 500', async () => {
  // The gateway refuses every hop-by-hop header from an application; the adapter must drop
  // all of those, or a fetch app's 407 becomes a 500.
  const x = await serve(() => new Response('auth', {
    status: 407,
    headers: [['Proxy-Authenticate', 'Basic realm="p"'], ['Proxy-Authorization', 'x'], ['Trailers', 'x'], ['X-Kept', 'yes']],
  }));
  assertComplete(x.out);
  assert.is(x.out.head0.status, 407);
  assert.equal(x.out.header('x-kept'), ['yes']);
  assert.equal(x.out.header('proxy-authenticate'), []);
  assert.is(x.out.body, 'auth');
});

test('a handler returning a non-Response, or throwing, gets a 500', async () => {
  const bad: [string, FetchHandler['fetch']][] = [
    ['a string', () => 'hello' as unknown as Response],
    ['null', () => null as unknown as Response],
    ['a plain object', () => ({ status: 200, body: 'x' }) as unknown as Response],
    ['a promise of undefined', async () => undefined as unknown as Response],
    ['a throw', () => { throw new Error('handler failed'); }],
    ['a rejection', async () => { throw new Error('handler failed'); }],
  ];
  for (const [what, fetch] of bad) {
    const x = await serve(fetch);
    assertComplete(x.out);
    assert.is(x.out.head0.status, 500, what);
    assert.is(x.out.body, '500 Internal Server Error\n', what);
    assert.is(x.log.errors.length, 1, `${what}: logged`);
  }
});

test('the handler is called with the request, the environ and a ctx with waitUntil', async () => {
  let args: unknown[] = [];
  const x = await serve((...a: unknown[]) => {
    args = a;
    (a[2] as { waitUntil(p: Promise<unknown>): void }).waitUntil(Promise.reject(new Error('ignored')));
    return new Response('ok');
  });
  assertComplete(x.out);
  assert.instance(args[0], Request);
  assert.is(args[1], x.environ);
  assert.type((args[2] as { waitUntil: unknown }).waitUntil, 'function');
});

test.run();
