// End to end over the uwsgi protocol with real tsgi processes (no nginx or uWSGI needed):
// `tsgi serve --uwsgi-socket` under a supervisor, `tsgi front --backend uwsgi:unix:…` talking
// uwsgi to it (one connection per request), and a backend that goes away and comes back.
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request as undiciRequest } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { quiescent } from '../helpers/assert.js';
import { digestOf } from '../helpers/bodies.js';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { interopDigest } from '../helpers/interop.js';
import { fixture, spawnCli, startBackend, startFront, startUwsgiBackend, tempDir } from '../helpers/procs.js';
import { exchange, parseRaw, request } from '../helpers/uwsgi.js';

const APP = fixture('interop-app.js');
const MIB = 1024 * 1024;

const SEED_HEADERS = {
  'upgrade-insecure-requests': '1',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'user-agent': 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4',
  'accept-language': 'zh-cn',
  'accept-encoding': 'gzip,deflate',
  dnt: '1',
};

// --- tsgi serve --uwsgi-socket with --workers: the supervisor owns the uwsgi socket too ---------

const workers = suite<Ctx>('e2e/uwsgi-workers', newCtx());
setUp(workers, async (ctx) => {
  ctx.backend = await startUwsgiBackend(APP, ['--workers', '2']);
});

workers('every worker accepts on the supervisor\'s uwsgi socket: concurrent requests all answered', async ({ backend }) => {
  const vars = (i: number): [string, string][] => [
    ['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/environ'], ['QUERY_STRING', `i=${i}`], ['REQUEST_URI', `/environ?i=${i}`],
  ];
  const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => request(backend!.socket, vars(i))));
  for (const [i, r] of answers.entries()) {
    assert.is(r.status, 200);
    const e = JSON.parse(r.body.toString());
    assert.is(e.QUERY_STRING, `i=${i}`);
    assert.is(e.REQUEST_URI, `/environ?i=${i}`);
  }
  assert.equal([...await exchange(backend!.socket, Buffer.from([100, 0, 0, 0]))], [100, 0, 0, 1], 'pings too');
});

workers('an upload through a worker: the body arrives whole', async ({ backend }) => {
  const body = Buffer.alloc(3 * MIB, 7);
  const r = await request(backend!.socket, [['REQUEST_METHOD', 'POST'], ['PATH_INFO', '/upload'], ['CONTENT_LENGTH', String(body.length)]], body);
  assert.equal(JSON.parse(r.body.toString()), { size: body.length, sha256: createHash('sha256').update(body).digest('hex') });
});

workers('a malformed packet is refused by the worker, which keeps serving', async ({ backend }) => {
  assert.is(parseRaw(await exchange(backend!.socket, Buffer.from([0, 3, 0, 0, 9, 0, 65]))).status, 400);
  await backend!.waitForStderr(/refusing a malformed packet/);
  assert.is((await request(backend!.socket, [['PATH_INFO', '/environ']])).status, 200);
  assert.not.match(backend!.stderr(), /died/, 'no worker died');
});

workers('with no worker running, a connection waits in the socket\'s queue and the respawned worker answers it', async ({ backend }) => {
  // Every worker accepts on the socket the supervisor bound and keeps: it stays listening while none runs.
  const pids = [...backend!.stderr().matchAll(/worker \d+ \(pid (\d+), generation 1\) ready/g)].map((m) => Number(m[1]));
  assert.is(pids.length, 2, 'two workers were ready');
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  await poll(async () => (pids.every((pid) => { try { process.kill(pid, 0); return false; } catch { return true; } }) ? true : undefined),
    'both workers gone');
  const r = await request(backend!.socket, [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/environ'], ['QUERY_STRING', 'after=crash']]);
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body.toString()).QUERY_STRING, 'after=crash');
  assert.match(backend!.stderr(), /died \(SIGKILL\)/);
});

workers('graceful stop: exit code 0', async (ctx) => {
  const info = await ctx.backend!.stop();
  assert.is(info.code, 0);
  ctx.backend = undefined;
});

workers.run();

// --- tsgi front → uwsgi:unix: backend (a tsgi serve --uwsgi-socket here) ------------------------

const front = suite<Ctx>('e2e/front-to-uwsgi', newCtx());
setUp(front, async (ctx) => {
  ctx.backend = await startUwsgiBackend(APP);
  ctx.front = await startFront([`uwsgi:unix:${ctx.backend.socket}`], ['--queue-timeout', '1']);
  ctx.agent = newAgent();
});

front('the seed GET: the environ the app sees, built from uwsgi vars', async ({ front, agent }) => {
  const r = await call(`${front!.url}/environ/caf%C3%A9?x=1`, { dispatcher: agent, headers: SEED_HEADERS });
  assert.is(r.status, 200);
  const e = JSON.parse(r.text);
  assert.is(e.REQUEST_METHOD, 'GET');
  assert.is(e.PATH_INFO, '/environ/café');
  assert.is(e.QUERY_STRING, 'x=1');
  assert.is(e.REQUEST_URI, '/environ/caf%C3%A9?x=1');
  assert.is(e.REQUEST_SCHEME, 'http');
  assert.is(e.REMOTE_ADDR, '127.0.0.1');
  assert.is(e.SERVER_PORT, String(front!.port));
  for (const [name, value] of Object.entries(SEED_HEADERS)) {
    assert.is(e[`HTTP_${name.toUpperCase().replace(/-/g, '_')}`], value, name);
  }
  assert.is(e.HTTP_HOST, `127.0.0.1:${front!.port}`);
});

front('a 5 MiB upload with Content-Length, and a 5 MiB download', async ({ front, agent }) => {
  const body = Buffer.alloc(5 * MIB);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
  const up = await call(`${front!.url}/upload`, { method: 'POST', body, dispatcher: agent });
  assert.equal(JSON.parse(up.text), { size: body.length, sha256: createHash('sha256').update(body).digest('hex') });
  const res = await undiciRequest(`${front!.url}/download?mb=5`, { dispatcher: agent });
  assert.is(res.statusCode, 200);
  assert.is(res.headers['content-length'], String(5 * MIB));
  assert.equal(await digestOf(res.body), { bytes: 5 * MIB, sha256: interopDigest(5) });
});

front('a chunked request body is buffered and sent with its length; over 1 MiB it is a 413', async ({ front, agent }) => {
  const small = Buffer.alloc(200_000, 1);
  const ok = await call(`${front!.url}/upload`, { method: 'POST', body: Readable.from([small.subarray(0, 1000), small.subarray(1000)]), dispatcher: agent });
  assert.equal(JSON.parse(ok.text), { size: small.length, sha256: createHash('sha256').update(small).digest('hex') });
  const big = Buffer.alloc(MIB + 1, 2);
  const tooBig = await call(`${front!.url}/upload`, { method: 'POST', body: Readable.from([big.subarray(0, MIB), big.subarray(MIB)]), dispatcher: agent });
  assert.is(tooBig.status, 413);
  assert.is(tooBig.text, '413 Content Too Large\n');
  assert.is(tooBig.headers.connection, 'close', 'refused like every 413: the rest of the upload is not read');
  await front!.waitForStderr(/413 POST \/upload: .*a request body without Content-Length is limited to 1048576 bytes for a uwsgi backend/);
  assert.is((await call(`${front!.url}/environ`, { dispatcher: agent })).status, 200, 'the connection still serves');
});

front('an app error is the app\'s 500; a streaming response streams', async ({ front, agent }) => {
  const err = await call(`${front!.url}/error`, { dispatcher: agent });
  assert.is(err.status, 500);
  const res = await undiciRequest(`${front!.url}/stream`, { dispatcher: agent });
  assert.is(res.headers['content-length'], undefined, 'streamed, not buffered');
  assert.is(await res.body.text(), 'line 1\nline 2\nline 3\n');
});

front('a client that does not read stops the uwsgi backend: the front pauses the connection', async ({ front, agent }) => {
  const produced = async () => (JSON.parse((await call(`${front!.url}/produced`, { dispatcher: agent })).text) as { produced: number }).produced;
  const before = await produced();
  const slow = newAgent(); // its own connection, left unread
  const res = await undiciRequest(`${front!.url}/download?mb=64`, { dispatcher: slow });
  assert.is(res.statusCode, 200);
  // A front without flow control would read on: wait until the count settles.
  const made = (await quiescent(produced, 'the chunks made')) - before;
  assert.ok(made < 64 * 16 / 2, `the app made ${made} of ${64 * 16} chunks of 64 KiB for a client that reads nothing`);
  await slow.destroy();
});

front('the uwsgi backend goes away: 503 after the queue timeout; back again: 200', async (ctx) => {
  const socket = ctx.backend!.socket;
  await ctx.backend!.kill9();
  const down = await call(`${ctx.front!.url}/environ`, { dispatcher: ctx.agent });
  assert.is(down.status, 503);
  await ctx.front!.waitForStderr(/backend uwsgi:unix:\S+ unreachable/);
  // The same socket path again (its stale file is replaced), as a restarted service would.
  const again = spawnCli(['serve', APP, '--uwsgi-socket', socket]);
  ctx.extra.push(again);
  await again.waitForStderr(/accepting uwsgi on/);
  const back = await poll(async () => {
    const r = await call(`${ctx.front!.url}/environ`, { dispatcher: ctx.agent });
    return r.status === 200 ? r : undefined;
  }, 'the front to use the backend again');
  assert.is(back.status, 200);
  await ctx.front!.waitForStderr(/backend uwsgi:unix:\S+ is back/);
});

front.run();

// --- a tsgi backend that serves both protocols on two sockets, single process ---------------

const both = suite<Ctx & { dir?: string }>('e2e/uwsgi-and-tsgi', newCtx());
setUp(both, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-both-');
  const uwsgiSocket = join(ctx.dir, 'u.sock');
  ctx.backend = await startBackend(APP, ['--uwsgi-socket', uwsgiSocket]);
  ctx.front = await startFront([ctx.backend.socket, `uwsgi:unix:${uwsgiSocket}`]);
  ctx.agent = newAgent();
});

both.after(({ dir }) => { if (dir) rmSync(dir, { recursive: true, force: true }); });

both('one process serves tsgi frames and uwsgi packets; a front may use both at once', async ({ front, agent, backend }) => {
  assert.match(backend!.stderr(), /serving on unix:/);
  assert.match(backend!.stderr(), /accepting uwsgi on unix:/);
  const seen = new Set<string>();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const e = JSON.parse((await call(`${front!.url}/environ`, { dispatcher: agent })).text);
    seen.add(e.REQUEST_SCHEME !== undefined ? 'uwsgi' : 'tsgi'); // only the front's uwsgi vars carry REQUEST_SCHEME
  }
  assert.equal([...seen].sort(), ['tsgi', 'uwsgi'], 'requests went over both');
});

both.run();
