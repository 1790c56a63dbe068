// End to end: the Hono example (examples/hono/app.js, the real hono package) served unchanged by a
// real `tsgi serve` behind a real `tsgi front`, with undici as the client: routes, bodies, a
// large streamed upload, a streamed response, several Set-Cookie headers, and client aborts.
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/procs.js';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { digestOf, streamReader, upload } from '../helpers/bodies.js';

const HONO_APP = join(ROOT, 'examples/hono/app.js');

const test = suite<Ctx>('e2e/hono', newCtx());
setUp(test, async (ctx) => startPair(ctx, HONO_APP));

interface Stats { subscribers: number; subscribed: number; left: number; working: number; cancelled: number }

async function stats(url: string, agent: Ctx['agent']): Promise<Stats> {
  const res = await call(`${url}/stats`, { dispatcher: agent });
  assert.is(res.status, 200);
  return JSON.parse(res.text) as Stats;
}

/** The uploads' byte pattern (its own, not the Express suite's). */
const FILL = (i: number): number => (i * 31 + 7) & 0xff;

test('text and JSON routes, path params, queries', async ({ front, agent }) => {
  const home = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(home.status, 200);
  assert.is(home.text, 'Hello from Hono on tsgi\n');
  assert.match(String(home.headers['content-type']), /^text\/plain/);

  const user = await call(`${front!.url}/api/users/42`, { dispatcher: agent });
  assert.is(user.status, 200);
  assert.match(String(user.headers['content-type']), /^application\/json/);
  assert.equal(JSON.parse(user.text), { id: '42', path: '/api/users/42' });

  const search = await call(`${front!.url}/api/search?q=gateway%20interface&tag=a&tag=b&page=3`, { dispatcher: agent });
  assert.equal(JSON.parse(search.text), { q: 'gateway interface', tags: ['a', 'b'], page: 3 });
});

test('HEAD runs the GET route and sends no body', async ({ front, agent }) => {
  const res = await request(`${front!.url}/api/users/7`, { method: 'HEAD', dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  assert.is(await res.body.text(), '');
});

test('a POST body: JSON parsed by c.req.json(), text by c.req.text()', async ({ front, agent }) => {
  const json = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent,
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'tsgi', list: [1, 2, 3] }),
  });
  assert.is(json.status, 201);
  assert.equal(JSON.parse(json.text), { json: { name: 'tsgi', list: [1, 2, 3] } });

  const text = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'text/plain' }, body: 'héllo',
  });
  assert.equal(JSON.parse(text.text), { text: 'héllo', length: 5 });
});

test('an 8 MiB upload streams through the app: byte count and sha256 match', async ({ front, agent }) => {
  const size = 8 * 1024 * 1024 + 123;
  const { body, sha256 } = upload(size, FILL);
  const res = await call(`${front!.url}/api/digest`, {
    method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/octet-stream' },
  });
  assert.is(res.status, 200, res.text);
  assert.equal(JSON.parse(res.text), { bytes: size, sha256 });
});

test('an 8 MiB body piped straight back (request and response streaming at once): same sha256', async ({ front, agent }) => {
  const size = 8 * 1024 * 1024 + 5;
  const { body, sha256 } = upload(size, FILL);
  const res = await request(`${front!.url}/api/pipe`, {
    method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/octet-stream' },
  });
  assert.is(res.statusCode, 200);
  assert.equal(await digestOf(res.body), { bytes: size, sha256 });
});

test('several Set-Cookie headers reach the client separately, and come back', async ({ front, agent }) => {
  const res = await request(`${front!.url}/api/login`, { method: 'POST', dispatcher: agent });
  assert.is(res.statusCode, 200);
  await res.body.text();
  const cookies = res.headers['set-cookie'];
  assert.ok(Array.isArray(cookies), `two set-cookie headers, got ${JSON.stringify(cookies)}`);
  assert.equal((cookies as string[]).map((c) => c.split(';')[0]), ['session=abc123', 'theme=dark']);
  assert.match((cookies as string[])[0]!, /HttpOnly/);
  const who = await call(`${front!.url}/api/whoami`, { dispatcher: agent, headers: { cookie: 'session=abc123; theme=dark' } });
  assert.equal(JSON.parse(who.text), { cookies: { session: 'abc123', theme: 'dark' } });
});

test('a streamed response: each event reaches the client while the stream is still open', async ({ front, agent }) => {
  const res = await request(`${front!.url}/events`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  const body = streamReader(res.body);
  // The app sends each awaited text only after the test asked for it.
  await body.until('event: ready');
  // The app writes the next event only when this POST publishes it: if the first chunk had been
  // held back until the end of the response, the reads above would never have returned.
  const first = await call(`${front!.url}/events`, { method: 'POST', body: 'one', dispatcher: agent });
  assert.ok(JSON.parse(first.text).delivered >= 1);
  await body.until('data: one');
  await call(`${front!.url}/events`, { method: 'POST', body: 'bye', dispatcher: agent });
  await body.until('data: bye');
  const rest = await body.next();
  assert.ok(rest.done, 'the stream ends after bye');
});

test('a response written over time by stream(): every tick arrives', async ({ front, agent }) => {
  const res = await call(`${front!.url}/ticks?n=3`, { dispatcher: agent });
  assert.is(res.status, 200);
  assert.is(res.text, 'tick 1\ntick 2\ntick 3\n');
});

test('a client that leaves a stream: the Hono stream sees onAbort', async ({ front, agent }) => {
  const before = await stats(front!.url, agent);
  const ac = new AbortController();
  const res = await request(`${front!.url}/events`, { dispatcher: agent, signal: ac.signal });
  const body = res.body[Symbol.asyncIterator]();
  const first = await body.next();
  assert.match(String(first.value), /event: ready/);
  ac.abort();
  await body.next().catch(() => {});
  const after = await poll(async () => {
    const s = await stats(front!.url, agent);
    return s.left > before.left ? s : undefined;
  }, 'the Hono stream to see the client leave');
  assert.is(after.subscribers, before.subscribers, 'the subscriber was removed');
});

test('a client that leaves before the head: c.req.raw.signal aborts in the handler', async ({ front, agent }) => {
  const before = await stats(front!.url, agent);
  const ac = new AbortController();
  const pending = request(`${front!.url}/api/slow?ms=30000`, { dispatcher: agent, signal: ac.signal })
    .then((r) => r.body.text(), (err: unknown) => err);
  await poll(async () => ((await stats(front!.url, agent)).working > before.working ? true : undefined),
    'the handler to get the request');
  ac.abort();
  assert.instance(await pending, Error, 'the aborted request rejects on the client');
  const after = await poll(async () => {
    const s = await stats(front!.url, agent);
    return s.cancelled > before.cancelled ? s : undefined;
  }, 'the handler to see its Request signal abort');
  assert.is(after.cancelled, before.cancelled + 1);
});

test('404 from notFound and 500 from onError are the app\'s own answers', async ({ front, agent }) => {
  const missing = await call(`${front!.url}/nope`, { dispatcher: agent });
  assert.is(missing.status, 404);
  assert.equal(JSON.parse(missing.text), { error: 'no route for GET /nope' });
  const failed = await call(`${front!.url}/api/fail`, { dispatcher: agent });
  assert.is(failed.status, 500);
  assert.equal(JSON.parse(failed.text), { error: 'something broke' });
});

test.run();
