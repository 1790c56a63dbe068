// The front's limits, end to end with raw sockets: header count and size (431), body size (413,
// declared or grown), slow heads and stalled bodies (408), idle keep-alive connections, max
// connections (503 + Retry-After) and max in flight (503 + Retry-After, shed at once), while an
// ordinary client keeps being served. Timeouts are 1 s; no test asserts how long anything took.
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture, startBackend, startFront } from '../helpers/procs.js';
import { call, newAgent, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { openSocket, parseResponse, rawExchange, rawUntilClose } from '../helpers/raw-http.js';

interface Seen {
  uri: string;
  body: number;
  complete: boolean;
}

async function seen(url: string): Promise<Seen[]> {
  return JSON.parse((await call(`${url}/__seen`)).text) as Seen[];
}

const H = 'Host: tsgi.test\r\n';
const LIMITS = ['--max-headers', '20', '--max-header-size', '4096', '--max-body-size', '100000',
  '--headers-timeout', '1', '--body-timeout', '1', '--keep-alive-timeout', '1'];

/** Asserts a refusal: `status`, Connection: close, the connection closed by the front. */
function refused(r: { text: string; closedByServer: boolean }, status: number): void {
  assert.ok(r.closedByServer, `the front closes the connection; got ${JSON.stringify(r.text)}`);
  const res = parseResponse(r.text);
  assert.is(res.status, status, r.text);
  assert.is(res.headers.get('connection'), 'close');
  assert.is(res.rest, '');
}

const s = suite<Ctx>('e2e/limits', newCtx());
setUp(s, (ctx) => startPair(ctx, fixture('record.js'), ['--workers', '1'], LIMITS));

s('20 header fields pass; 21 get 431 and the app sees nothing', async (ctx) => {
  const fields = (n: number) => Array.from({ length: n - 2 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
  const ok = await rawExchange(ctx.front!.port, `GET /headers-20 HTTP/1.1\r\n${H}${fields(20)}Connection: close\r\n\r\n`);
  assert.is(parseResponse(ok.text).status, 200, ok.text);
  const before = (await seen(ctx.front!.url)).length;
  const r = await rawExchange(ctx.front!.port, `GET /headers-21 HTTP/1.1\r\n${H}${fields(21)}Connection: keep-alive\r\n\r\n`);
  refused(r, 431);
  assert.equal((await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen'), []);
  await ctx.front!.waitForStderr(/431 GET \/headers-21: more than --max-headers 20 header fields/);
});

s('a head over --max-header-size gets 431', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, `GET /big-head HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(5000)}\r\n\r\n`);
  refused(r, 431);
  await ctx.front!.waitForStderr(/431 to 127\.0\.0\.1: request head over --max-header-size/);
});

s('a Content-Length over --max-body-size gets 413 at once: no body sent, the app sees nothing', async (ctx) => {
  const before = (await seen(ctx.front!.url)).length;
  // Only the head: the answer comes without the client sending a byte of the body.
  const r = await rawExchange(ctx.front!.port, `POST /too-long HTTP/1.1\r\n${H}Content-Length: 100001\r\n\r\n`);
  refused(r, 413);
  assert.equal((await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen'), []);
  const ok = await call(`${ctx.front!.url}/at-limit`, { method: 'POST', body: 'x'.repeat(100_000), dispatcher: ctx.agent });
  assert.is(ok.status, 200);
  assert.is((JSON.parse(ok.text) as Seen).body, 100_000);
});

s('Expect: 100-continue: over --max-body-size, 413 without a 100 first; within it, 100 then the answer', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, `POST /expect-big HTTP/1.1\r\n${H}Content-Length: 500000\r\nExpect: 100-continue\r\n\r\n`);
  refused(r, 413);
  const sock = await openSocket(ctx.front!.port);
  sock.write(`POST /expect-ok HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
  await poll(async () => (sock.received().startsWith('HTTP/1.1 100 Continue\r\n\r\n') ? true : undefined), 'a 100 Continue');
  sock.write('hello');
  await sock.gone;
  const res = parseResponse(sock.received().slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
  assert.is(res.status, 200);
  assert.is((JSON.parse(res.body) as Seen).body, 5);
});

s('a chunked body growing over --max-body-size: 413, the backend stream reset, the connection closed', async (ctx) => {
  const before = (await seen(ctx.front!.url)).length;
  const chunk = `ea60\r\n${'y'.repeat(60_000)}\r\n`; // 60000 bytes: the second one crosses 100000
  const r = await rawExchange(ctx.front!.port,
    [`POST /chunked-big HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`, chunk, chunk], { gapMs: 50 });
  refused(r, 413);
  const entry = await poll(async () => (await seen(ctx.front!.url)).slice(before).find((e) => e.uri === '/chunked-big'),
    'the app to record /chunked-big');
  assert.is(entry.complete, false, 'the app never gets a complete body');
  assert.ok(entry.body <= 100_000, `the app read ${entry.body} bytes`);
  await ctx.front!.waitForStderr(/413 POST \/chunked-big: chunked body grew over --max-body-size 100000/);
});

s('a head dribbled a byte per 100 ms gets 408 after --headers-timeout 1, while others are served', async (ctx) => {
  const head = `GET /slowloris HTTP/1.1\r\n${H}X-Slow: ${'z'.repeat(100)}\r\n\r\n`;
  const dribble = rawExchange(ctx.front!.port, [...head].map((c) => c), { gapMs: 100, timeoutMs: 8000 });
  // An ordinary client meanwhile: served at once.
  const normal = await call(`${ctx.front!.url}/meanwhile`, { dispatcher: ctx.agent });
  assert.is(normal.status, 200);
  const r = await dribble;
  refused(r, 408);
  assert.not.ok((await seen(ctx.front!.url)).some((e) => e.uri === '/slowloris'));
  await ctx.front!.waitForStderr(/408 to 127\.0\.0\.1: request head not complete within --headers-timeout/);
});

s('a body that stalls gets 408 after --body-timeout 1: stream reset, connection closed', async (ctx) => {
  const r = rawExchange(ctx.front!.port, `POST /stall HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n${'s'.repeat(10)}`,
    { timeoutMs: 8000 });
  const normal = await call(`${ctx.front!.url}/meanwhile-body`, { method: 'POST', body: 'ok', dispatcher: ctx.agent });
  assert.is(normal.status, 200);
  refused(await r, 408);
  const entry = (await seen(ctx.front!.url)).find((e) => e.uri === '/stall');
  assert.ok(entry !== undefined && !entry.complete, JSON.stringify(entry));
  await ctx.front!.waitForStderr(/408 POST \/stall: request body stalled for --body-timeout 1 s after 10 bytes/);
});

s('a body that stalls after the app answered without reading it: the connection closes after --body-timeout 1', async (ctx) => {
  // /__held answers at once and never reads the body; the front reads the rest and drops it.
  const r = await rawUntilClose(ctx.front!.port, `POST /__held HTTP/1.1\r\n${H}Content-Length: 100000\r\n\r\n${'d'.repeat(10)}`);
  const res = parseResponse(r.text);
  assert.is(res.status, 200, r.text);
  assert.is(res.body, '0');
  assert.is(res.rest, '');
  await ctx.front!.waitForStderr(/the body of POST \/__held, answered already, stalled for --body-timeout \(1 s\)/);
});

s('a body that keeps trickling is not cut by --body-timeout', async (ctx) => {
  const head = `POST /trickle HTTP/1.1\r\n${H}Content-Length: 12\r\nConnection: close\r\n\r\n`;
  // 12 bytes over ~1.8 s: longer than the timeout in all, never stalled as long as it.
  const r = await rawExchange(ctx.front!.port, [head, ...'abcdefghijkl'], { gapMs: 150 });
  const res = parseResponse(r.text);
  assert.is(res.status, 200, r.text);
  assert.is((JSON.parse(res.body) as Seen).body, 12);
});

s('an idle keep-alive connection is closed after --keep-alive-timeout 1', async (ctx) => {
  const sock = await openSocket(ctx.front!.port);
  sock.write(`GET /keepalive HTTP/1.1\r\n${H}\r\n`);
  const closed = await Promise.race([sock.gone.then(() => true), sleep(4000).then(() => false)]);
  sock.destroy();
  assert.ok(closed, 'the front closed the idle connection');
  const res = parseResponse(sock.received());
  assert.is(res.status, 200, 'the response came first, whole');
  assert.is(res.headers.get('connection'), 'keep-alive');
  assert.is(res.rest, '');
});

s.run();

const f = suite<Ctx>('e2e/body-timeout-flow-control', newCtx());
// A small window: an app that does not read holds an upload back after 1 KiB.
setUp(f, (ctx) => startPair(ctx, fixture('record.js'), ['--workers', '1', '--window', '1024'],
  ['--body-timeout', '1', '--window', '1024']));

f('an upload held back by flow control (the app not reading) is not a stall: no 408', async (ctx) => {
  const body = Buffer.alloc(4 * 1024 * 1024, 'f'); // more than the socket buffers hold
  const res = await call(`${ctx.front!.url}/slow-read`, { method: 'POST', body, dispatcher: ctx.agent });
  assert.is(res.status, 200, res.text);
  assert.is((JSON.parse(res.text) as Seen).body, body.length);
});

f.run();

const c = suite<Ctx>('e2e/max-connections', newCtx());
setUp(c, (ctx) => startPair(ctx, fixture('record.js'), ['--workers', '1'],
  ['--max-connections', '2', '--keep-alive-timeout', '30']));

c('beyond --max-connections a new connection gets 503 + Retry-After and is closed; one warn line per burst', async (ctx) => {
  const port = ctx.front!.port;
  const held = [await openSocket(port), await openSocket(port)];
  for (const sock of held) {
    sock.write(`GET /held-conn HTTP/1.1\r\n${H}\r\n`);
  }
  await poll(async () => (held.every((sk) => /^HTTP\/1\.1 200/.test(sk.received())) ? true : undefined), 'both held connections served');
  try {
    for (let i = 0; i < 3; i++) {
      const r = await rawExchange(port, `GET /over-limit HTTP/1.1\r\n${H}\r\n`);
      refused(r, 503);
      assert.is(parseResponse(r.text).headers.get('retry-after'), '1');
    }
    const log = ctx.front!.stderr();
    assert.is(log.match(/at --max-connections 2; refusing new connections/g)?.length, 1, log);
  } finally {
    held[0]!.destroy();
  }
  await ctx.front!.waitForStderr(/accepting connections again; 3 refused with 503 while at --max-connections 2/);
  const r = await rawExchange(port, `GET /after HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.is(parseResponse(r.text).status, 200, 'served again once a connection closed');
  held[1]!.destroy();
  // The front frees a slot when it sees a socket close, a moment after the client closed it: until
  // it has seen both closes above, this request may be the one over the limit.
  const log = await poll(async () => {
    const r = await call(`${ctx.front!.url}/__seen`);
    return r.status === 200 ? JSON.parse(r.text) as Seen[] : undefined;
  }, 'a free connection slot');
  assert.not.ok(log.some((e) => e.uri === '/over-limit'));
});

c.run();

interface OverloadCtx extends Ctx {
  /** A second front on the same backend, without --max-in-flight: the test's side door. */
  side?: Awaited<ReturnType<typeof startFront>>;
}

const o = suite<OverloadCtx>('e2e/max-in-flight', { extra: [] });
setUp(o, async (ctx) => {
  ctx.backend = await startBackend(fixture('record.js'), ['--workers', '1']);
  ctx.front = await startFront([ctx.backend.socket], ['--max-in-flight', '4', '--response-timeout', '30']);
  ctx.side = await startFront([ctx.backend.socket]);
  ctx.extra.push(ctx.side);
  ctx.agent = newAgent();
});

o('over --max-in-flight 4, 20 concurrent requests: 16 get 503 + Retry-After while 4 are held, the 4 get 200 when released', async (ctx) => {
  const results: { status: number; retryAfter?: string; at: number }[] = [];
  let order = 0;
  const pending = Array.from({ length: 20 }, async (_, i) => {
    const res = await request(`${ctx.front!.url}/hold?i=${i}`, { dispatcher: ctx.agent, headersTimeout: 25_000, bodyTimeout: 25_000 });
    await res.body.text();
    results.push({ status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined, at: order++ });
  });
  // The 16 sheds arrive while the 4 admitted requests are still held by the app.
  await poll(async () => (results.length >= 16 ? true : undefined), '16 answers', 20_000);
  const held = await call(`${ctx.side!.url}/__held`);
  assert.is(held.text, '4', 'the 4 admitted requests are still held');
  assert.is(results.length, 16, 'only the excess has answered');
  for (const r of results) {
    assert.is(r.status, 503);
    assert.is(r.retryAfter, '1');
  }
  assert.is((await call(`${ctx.side!.url}/__release`, { method: 'POST' })).text, 'released 4');
  await Promise.all(pending);
  assert.is(results.filter((r) => r.status === 200).length, 4);
  assert.ok(results.slice(16).every((r) => r.status === 200));
  await ctx.front!.waitForStderr(/503 GET \/hold\?i=\d+: over --max-in-flight 4: request shed/);
  // Once the load is gone, requests are admitted again.
  assert.is((await call(`${ctx.front!.url}/after`, { dispatcher: ctx.agent })).status, 200);
});

o.run();
