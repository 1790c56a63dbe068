// End to end: the Express example (examples/express/app.js, the real express package) served
// unchanged by a real `tsgi serve` behind a real `tsgi front`, with undici as the client: routes,
// body parsing, a large piped upload, streamed responses, Express's 404 and error handler, aborts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/procs.js';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { digestOf, streamReader, upload } from '../helpers/bodies.js';

const EXPRESS_APP = join(ROOT, 'examples/express/app.js');

const test = suite<Ctx>('e2e/express', newCtx());
setUp(test, async (ctx) => startPair(ctx, EXPRESS_APP));

interface Stats { open: number; streams: number; closedEarly: number; working: number }

async function stats(url: string, agent: Ctx['agent']): Promise<Stats> {
  const res = await call(`${url}/stats`, { dispatcher: agent });
  assert.is(res.status, 200);
  return JSON.parse(res.text) as Stats;
}

test('routes: text, JSON with params, query; req.ip, protocol and hostname from the front', async ({ front, agent }) => {
  const home = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(home.status, 200);
  assert.is(home.text, 'Hello from Express on tsgi\n');
  assert.is(home.headers['x-powered-by'], 'Express');
  assert.is(home.headers['content-length'], String(home.text.length));

  const user = await call(`${front!.url}/api/users/42?x=1`, { dispatcher: agent, headers: { host: 'example.test' } });
  assert.is(user.status, 200);
  assert.equal(JSON.parse(user.text), { id: '42', url: '/api/users/42?x=1', ip: '127.0.0.1', protocol: 'http', host: 'example.test' });

  const search = await call(`${front!.url}/api/search?q=gateway&page=3`, { dispatcher: agent });
  assert.equal(JSON.parse(search.text), { q: 'gateway', page: 3 });
});

test('express.json() parses a body, and answers 400 for malformed JSON', async ({ front, agent }) => {
  const ok = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: [1, 'b'] }),
  });
  assert.is(ok.status, 201);
  assert.equal(JSON.parse(ok.text), { json: { a: [1, 'b'] } });
  const bad = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: '{"a":',
  });
  assert.is(bad.status, 400);
});

test('a chunked JSON body (no Content-Length) is parsed too', async ({ front, agent }) => {
  const res = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' },
    body: Readable.from([Buffer.from('{"chunked":'), Buffer.from('true}')]),
  });
  assert.is(res.status, 201, res.text);
  assert.equal(JSON.parse(res.text), { json: { chunked: true } });
});

test('an 8 MiB upload read with req.on(\'data\'): byte count and sha256 match', async ({ front, agent }) => {
  const size = 8 * 1024 * 1024 + 77;
  const { body, sha256 } = upload(size);
  const res = await call(`${front!.url}/api/digest`, {
    method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/octet-stream' },
  });
  assert.is(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text), { bytes: size, sha256 });
});

test('req.pipe(res) of an 8 MiB body: it streams back whole (write() backpressure and drain)', async ({ front, agent }) => {
  const size = 8 * 1024 * 1024 + 9;
  const { body, sha256 } = upload(size);
  const res = await request(`${front!.url}/api/pipe`, {
    method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/octet-stream' },
  });
  assert.is(res.statusCode, 200);
  assert.equal(await digestOf(res.body), { bytes: size, sha256 });
});

test('res.cookie() twice: two Set-Cookie headers', async ({ front, agent }) => {
  const res = await request(`${front!.url}/api/login`, { method: 'POST', dispatcher: agent });
  await res.body.text();
  const cookies = res.headers['set-cookie'];
  assert.ok(Array.isArray(cookies), `two set-cookie headers, got ${JSON.stringify(cookies)}`);
  assert.equal((cookies as string[]).map((c) => c.split(';')[0]), ['session=abc123', 'theme=dark']);
});

test('res.write over time: each line reaches the client while the response is still open', async ({ front, agent }) => {
  const res = await request(`${front!.url}/stream`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  const body = streamReader(res.body);
  await body.until('started\n');
  // The app writes the next line only when this POST asks for it.
  const next = await call(`${front!.url}/stream/next`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'text/plain' }, body: 'line two',
  });
  assert.ok(JSON.parse(next.text).delivered >= 1);
  await body.until('line two\n');
  await call(`${front!.url}/stream/next`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'text/plain' }, body: 'end' });
  await body.until('ended\n');
  assert.ok((await body.next()).done, 'the response ends after res.end()');
  assert.is(body.seen(), 'started\nline two\nended\n');
});

test('a timer-driven res.write stream: every tick arrives', async ({ front, agent }) => {
  const res = await call(`${front!.url}/ticks?n=3`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, 'tick 1\ntick 2\ntick 3\n');
});

test('res.sendFile: a file piped into res, whole and by Range', async ({ front, agent }) => {
  const source = readFileSync(EXPRESS_APP, 'utf8');
  const whole = await call(`${front!.url}/source`, { dispatcher: agent });
  assert.is(whole.status, 200);
  assert.is(whole.text, source);
  assert.is(whole.headers['content-length'], String(Buffer.byteLength(source)));
  const part = await call(`${front!.url}/source`, { dispatcher: agent, headers: { range: 'bytes=3-12' } });
  assert.is(part.status, 206);
  assert.is(part.text, source.slice(3, 13));
});

test('a POST whose body the route never reads is answered, and the connection goes on', async ({ front, agent }) => {
  const { body } = upload(2 * 1024 * 1024);
  const res = await call(`${front!.url}/api/login`, { method: 'POST', dispatcher: agent, body: body() });
  assert.is(res.status, 200);
  const next = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(next.status, 200);
});

test('Express\'s own 404, and its error handler turning a throw into a 500', async ({ front, agent }) => {
  const missing = await call(`${front!.url}/nope`, { dispatcher: agent });
  assert.is(missing.status, 404);
  assert.match(missing.text, /Cannot GET \/nope/);
  const failed = await call(`${front!.url}/api/fail`, { dispatcher: agent });
  assert.is(failed.status, 500);
  assert.equal(JSON.parse(failed.text), { error: 'internal error', message: 'something broke' });
});

test('HEAD: the GET route\'s head, no body', async ({ front, agent }) => {
  const res = await request(`${front!.url}/api/users/7`, { method: 'HEAD', dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.is(await res.body.text(), '');
});

test('a client that leaves a stream: res \'close\' fires in the app', async ({ front, agent }) => {
  const before = await stats(front!.url, agent);
  const ac = new AbortController();
  const res = await request(`${front!.url}/stream`, { dispatcher: agent, signal: ac.signal });
  const body = res.body[Symbol.asyncIterator]();
  assert.is(String((await body.next()).value), 'started\n');
  ac.abort();
  await body.next().catch(() => {});
  const after = await poll(async () => {
    const s = await stats(front!.url, agent);
    return s.closedEarly > before.closedEarly ? s : undefined;
  }, 'res \'close\' in the app');
  assert.is(after.open, before.open, 'the stream was forgotten');
});

test('a client that leaves before the head: res \'close\' fires, the timer is cleared', async ({ front, agent }) => {
  const before = await stats(front!.url, agent);
  const ac = new AbortController();
  const pending = request(`${front!.url}/api/slow?ms=30000`, { dispatcher: agent, signal: ac.signal })
    .then((r) => r.body.text(), (err: unknown) => err);
  await poll(async () => ((await stats(front!.url, agent)).working > before.working ? true : undefined), 'the app to get the request');
  ac.abort();
  assert.instance(await pending, Error);
  await poll(async () => {
    const s = await stats(front!.url, agent);
    return s.closedEarly > before.closedEarly ? s : undefined;
  }, 'res \'close\' in the app');
});

test.run();
