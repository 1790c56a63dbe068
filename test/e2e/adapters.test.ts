// End to end, one contract over every kind of application tsgi runs: the same routes written as
// a gateway application, an Express app, a Hono app and a Koa app (test/fixtures/conformance/),
// each served by a real `tsgi serve` behind a real `tsgi front`, with undici as the client. Each
// behaviour is written once, in BEHAVIOURS, and runs as one test of every adapter's suite.
import { Client, request } from 'undici';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture } from '../helpers/procs.js';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { digestOf, streamReader, upload } from '../helpers/bodies.js';

interface Adapter {
  name: string;
  app: string;
  /** The body of the answer to GET /nope: the app's own, or its framework's. */
  notFound: RegExp;
  /** The answer to a route that throws: the framework's error hook, or the gateway's own 500. */
  failed: { type: RegExp; text: string };
}

const FAILED_JSON = { type: /^application\/json/, text: JSON.stringify({ error: 'something broke' }) };

const ADAPTERS: Adapter[] = [
  {
    name: 'gateway', app: fixture('conformance/gateway.js'),
    notFound: /^no route for GET \/nope\n$/, failed: { type: /^text\/plain/, text: '500 Internal Server Error\n' },
  },
  { name: 'express', app: fixture('conformance/express.js'), notFound: /Cannot GET \/nope/, failed: FAILED_JSON },
  { name: 'hono', app: fixture('conformance/hono.js'), notFound: /^no route for GET \/nope\n$/, failed: FAILED_JSON },
  { name: 'koa', app: fixture('conformance/koa.js'), notFound: /^Not Found$/, failed: FAILED_JSON },
];

const HELLO = 'hello from the conformance app\n';
const MIB = 1024 * 1024;

interface Stats { open: number; left: number; working: number; cancelled: number }

async function stats({ front, agent }: Ctx): Promise<Stats> {
  const res = await call(`${front!.url}/stats`, { dispatcher: agent });
  assert.is(res.status, 200, res.text);
  return JSON.parse(res.text) as Stats;
}

/** A Content-Length, when there is one, that counts the body's bytes. */
function assertLength(headers: Record<string, unknown>, body: string): void {
  const length = headers['content-length'];
  if (length !== undefined) assert.is(length, String(Buffer.byteLength(body)), 'Content-Length counts the body');
}

/** A one-connection client that counts its connections and says when the first one is gone. */
function countingClient(url: string): { client: Client; connects: () => number; disconnected: Promise<void> } {
  const client = new Client(url, { headersTimeout: 20_000, bodyTimeout: 20_000 });
  let connects = 0;
  client.on('connect', () => { connects++; });
  const disconnected = new Promise<void>((resolve) => client.once('disconnect', () => resolve()));
  return { client, connects: () => connects, disconnected };
}

type Behaviour = [name: string, run: (ctx: Ctx, adapter: Adapter) => Promise<void>];

const BEHAVIOURS: Behaviour[] = [
  ['GET /: the text, with a Content-Length that counts it or none', async ({ front, agent }) => {
    const res = await call(`${front!.url}/`, { dispatcher: agent });
    assert.is(res.status, 200);
    assert.is(res.text, HELLO);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assertLength(res.headers, res.text);
  }],

  ['GET /json/:id?q=&tag=: the path parameter and the decoded query, a repeated key in full', async ({ front, agent }) => {
    const res = await call(`${front!.url}/json/42?q=gateway%20interface&tag=a&tag=b%2Fc`, { dispatcher: agent });
    assert.is(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(JSON.parse(res.text), { id: '42', q: 'gateway interface', tags: ['a', 'b/c'] });
    assertLength(res.headers, res.text);
    const one = await call(`${front!.url}/json/7?tag=x`, { dispatcher: agent });
    assert.equal(JSON.parse(one.text), { id: '7', q: '', tags: ['x'] });
    const bare = await call(`${front!.url}/json/7`, { dispatcher: agent });
    assert.equal(JSON.parse(bare.text), { id: '7', q: '', tags: [] });
  }],

  ['HEAD of a GET route: its head, the GET\'s Content-Length or none, and no body', async ({ front, agent }) => {
    const get = await call(`${front!.url}/json/7`, { dispatcher: agent });
    assert.is(get.status, 200);
    const head = await request(`${front!.url}/json/7`, { method: 'HEAD', dispatcher: agent });
    assert.is(head.statusCode, 200);
    assert.match(String(head.headers['content-type']), /^application\/json/);
    const length = head.headers['content-length'];
    if (length !== undefined) assert.is(length, get.headers['content-length'], 'HEAD announces the GET\'s length');
    assert.is(await head.body.text(), '');
    // The connection goes on: the next answer is whole (no body of the HEAD was left in it).
    const next = await call(`${front!.url}/`, { dispatcher: agent });
    assert.is(next.text, HELLO);
  }],

  ['POST /json: a JSON body is parsed (201), malformed JSON answered 400', async ({ front, agent }) => {
    const ok = await call(`${front!.url}/json`, {
      method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: [1, 'b'] }),
    });
    assert.is(ok.status, 201, ok.text);
    assert.equal(JSON.parse(ok.text), { json: { a: [1, 'b'] } });
    const bad = await call(`${front!.url}/json`, {
      method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: '{"a":',
    });
    assert.is(bad.status, 400, bad.text);
    assert.equal(JSON.parse(bad.text), { error: 'malformed JSON' });
  }],

  ['POST /json with a chunked body (no Content-Length): parsed too', async ({ front, agent }) => {
    const res = await call(`${front!.url}/json`, {
      method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' },
      body: Readable.from([Buffer.from('{"chunked":'), Buffer.from('true}')]),
    });
    assert.is(res.status, 201, res.text);
    assert.equal(JSON.parse(res.text), { json: { chunked: true } });
  }],

  ['POST /text: a UTF-8 body read as text, split inside a character', async ({ front, agent }) => {
    const bytes = Buffer.from('héllo wörld');
    const res = await call(`${front!.url}/text`, {
      method: 'POST', dispatcher: agent, headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: Readable.from([bytes.subarray(0, 2), bytes.subarray(2)]), // é split between its two bytes
    });
    assert.is(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text), { text: 'héllo wörld', length: 11 });
  }],

  ['POST /upload: an 8 MiB body streamed in, byte count and sha256 match', async ({ front, agent }) => {
    const size = 8 * MIB + 77;
    const { body, sha256 } = upload(size);
    const res = await call(`${front!.url}/upload`, {
      method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/octet-stream' },
    });
    assert.is(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text), { bytes: size, sha256 });
  }],

  ['POST /echo: an 8 MiB body piped straight back while it streams in, same sha256', async ({ front, agent }) => {
    const size = 8 * MIB + 9;
    const { body, sha256 } = upload(size, (i) => (i * 31 + 7) & 0xff);
    const res = await request(`${front!.url}/echo`, {
      method: 'POST', dispatcher: agent, body: body(), headers: { 'content-type': 'application/x-conformance' },
    });
    assert.is(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/x-conformance/);
    assert.equal(await digestOf(res.body), { bytes: size, sha256 });
  }],

  ['two Set-Cookie headers reach the client separately, and the Cookie header comes back', async ({ front, agent }) => {
    const res = await request(`${front!.url}/login`, { method: 'POST', dispatcher: agent });
    assert.is(res.statusCode, 200);
    assert.is(await res.body.text(), 'logged in\n');
    const cookies = res.headers['set-cookie'];
    assert.ok(Array.isArray(cookies), `two set-cookie headers, got ${JSON.stringify(cookies)}`);
    const [session, theme] = cookies as string[];
    assert.equal((cookies as string[]).map((c) => c.split(';')[0]), ['session=abc123', 'theme=dark']);
    assert.match(session!, /;\s*path=\/(;|$)/i);
    assert.match(session!, /;\s*httponly(;|$)/i);
    assert.match(theme!, /;\s*path=\/(;|$)/i);
    assert.not.match(theme!, /httponly/i);
    const who = await call(`${front!.url}/whoami`, { dispatcher: agent, headers: { cookie: 'session=abc123; theme=dark' } });
    assert.equal(JSON.parse(who.text), { cookies: { session: 'abc123', theme: 'dark' } });
  }],

  ['GET /ticks: a response a timer writes over time arrives whole, streamed', async ({ front, agent }) => {
    const res = await call(`${front!.url}/ticks?n=3`, { dispatcher: agent });
    assert.is(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.is(res.headers['content-length'], undefined);
    assert.is(res.text, 'tick 1\ntick 2\ntick 3\n');
  }],

  ['GET /events: each event reaches the client while the stream is still open', async (ctx) => {
    const { front, agent } = ctx;
    const before = await stats(ctx);
    const res = await request(`${front!.url}/events`, { dispatcher: agent });
    assert.is(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.is(res.headers['content-length'], undefined);
    const body = streamReader(res.body);
    await body.until('data: ready\n\n');
    // The app writes the next event only when this POST publishes it: had the first event been
    // held back until the end of the response, the read above would never have returned.
    const one = await call(`${front!.url}/events`, { method: 'POST', dispatcher: agent, body: 'one' });
    assert.is(one.status, 200);
    assert.equal(JSON.parse(one.text), { delivered: 1 });
    await body.until('data: one\n\n');
    await call(`${front!.url}/events`, { method: 'POST', dispatcher: agent, body: 'bye' });
    await body.until('data: bye\n\n');
    assert.ok((await body.next()).done, 'the stream ends after bye');
    assert.is(body.seen(), 'data: ready\n\ndata: one\n\ndata: bye\n\n');
    const after = await stats(ctx);
    assert.is(after.open, 0, 'the subscriber is gone');
    assert.is(after.left, before.left, 'a stream that ended is not one the client left');
  }],

  ['a client that leaves a stream: the app sees it leave', async (ctx) => {
    const before = await stats(ctx);
    const ac = new AbortController();
    const res = await request(`${ctx.front!.url}/events`, { dispatcher: ctx.agent, signal: ac.signal });
    const body = streamReader(res.body);
    await body.until('data: ready\n\n');
    assert.is((await stats(ctx)).open, before.open + 1, 'the app holds the stream');
    ac.abort();
    await body.next().catch(() => {});
    const after = await poll(async () => {
      const s = await stats(ctx);
      return s.left > before.left ? s : undefined;
    }, 'the app to see the client leave its stream');
    assert.is(after.left, before.left + 1);
    assert.is(after.open, before.open, 'the stream was forgotten');
  }],

  ['a client that leaves before the head: the app sees the abort', async (ctx) => {
    const before = await stats(ctx);
    const ac = new AbortController();
    const pending = request(`${ctx.front!.url}/slow?ms=30000`, { dispatcher: ctx.agent, signal: ac.signal })
      .then((r) => r.body.text(), (err: unknown) => err);
    await poll(async () => ((await stats(ctx)).working > before.working ? true : undefined), 'the app to get the request');
    ac.abort();
    assert.instance(await pending, Error, 'the aborted request rejects on the client');
    const after = await poll(async () => {
      const s = await stats(ctx);
      return s.cancelled > before.cancelled ? s : undefined;
    }, 'the app to see the abort');
    assert.is(after.cancelled, before.cancelled + 1);
  }],

  ['an unknown route: a 404, the app\'s or its framework\'s own', async ({ front, agent }, adapter) => {
    const res = await call(`${front!.url}/nope`, { dispatcher: agent });
    assert.is(res.status, 404);
    assert.match(res.text, adapter.notFound);
    assertLength(res.headers, res.text);
  }],

  ['a route that throws: a 500 from the framework\'s error hook (for the gateway, its own)', async ({ front, agent }, adapter) => {
    const res = await call(`${front!.url}/fail`, { dispatcher: agent });
    assert.is(res.status, 500);
    assert.match(String(res.headers['content-type']), adapter.failed.type);
    assert.is(res.text, adapter.failed.text);
    const next = await call(`${front!.url}/`, { dispatcher: agent });
    assert.is(next.text, HELLO, 'the app answers on');
  }],

  ['a POST body the route never reads (256 KiB): answered, and its connection reused', async ({ front }) => {
    const { client, connects } = countingClient(front!.url);
    try {
      const { body } = upload(256 * 1024);
      const res = await call(`${front!.url}/login`, { method: 'POST', dispatcher: client, body: body() });
      assert.is(res.status, 200);
      assert.is(res.text, 'logged in\n');
      const next = await call(`${front!.url}/`, { dispatcher: client });
      assert.is(next.text, HELLO);
      assert.is(connects(), 1, 'both requests went over one connection');
    } finally {
      await client.destroy();
    }
  }],

  ['a POST body the route never reads, over 1 MiB: answered whole, then that connection closes and a new one is served', async ({ front }) => {
    const { client, connects, disconnected } = countingClient(front!.url);
    try {
      const { body } = upload(2 * MIB);
      const res = await call(`${front!.url}/login`, { method: 'POST', dispatcher: client, body: body() });
      assert.is(res.status, 200);
      assert.is(res.text, 'logged in\n');
      await front!.waitForStderr(/warn: closing the connection of 127\.0\.0\.1: dropped \d+ bytes of the unread body of POST \/login, over 1048576/);
      await disconnected;
      const next = await call(`${front!.url}/`, { dispatcher: client });
      assert.is(next.text, HELLO);
      assert.is(connects(), 2, 'the next request went over a new connection');
    } finally {
      await client.destroy();
    }
  }],
];

function conformance(adapter: Adapter): void {
  const test = suite<Ctx>(`e2e/adapters/${adapter.name}`, newCtx());
  setUp(test, (ctx) => startPair(ctx, adapter.app));
  assert.ok(BEHAVIOURS.length > 0);
  for (const [name, run] of BEHAVIOURS) test(name, (ctx) => run(ctx, adapter));
  test.run();
}

for (const adapter of ADAPTERS) conformance(adapter);
