// Faults, end to end, each under a continuous light load from undici: a backend killed with -9,
// a backend that hangs (SIGSTOP), an app that never reads its upload, a socket file deleted
// under load, and slow clients. Each failure must stay with the requests it touched, as a
// 502 / 503 / 504, and the front must recover. Memory bounds are generous; no time is asserted.
import { readFileSync, rmSync, existsSync } from 'node:fs';
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, runLoad, setUp, startPair, type Ctx, type LoadResult } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, type BackendProc } from '../helpers/procs.js';
import { getRequest, pausedRequest, rawUntilClose } from '../helpers/raw-http.js';

const MIB = 1024 * 1024;
const APP = fixture('faults.js');

/** VmRSS of a process in bytes (/proc), or NaN if it cannot be read. */
function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]) * 1024;
  } catch {
    return NaN;
  }
}

const pidOf = (body: string): number => Number(/pid=(\d+)/.exec(body)?.[1]);

function describe(r: LoadResult): string {
  return JSON.stringify(r.failures.slice(0, 6));
}

/** The failures are only 502s (or cuts: a client error), and at most `max` of them. */
function onlyBadGateways(r: LoadResult, max: number, statuses = [502]): void {
  assert.ok(r.failures.length <= max, `at most ${max} requests failed: ${r.failures.length} ${describe(r)}`);
  for (const f of r.failures) {
    if (f.status !== undefined) assert.ok(statuses.includes(f.status), `a failed request is ${statuses.join(' or ')}: ${JSON.stringify(f)}`);
  }
}

interface PairCtx extends Ctx {
  other?: BackendProc;
}

// 1. kill -9 of one of two single-process backends: only its in-flight requests fail (502);
// the other serves everything meanwhile; the killed one, started again on its socket path,
// is used again.
const kill9 = suite<PairCtx>('faults/kill-9', newCtx());
setUp(kill9, async (ctx) => {
  ctx.backend = await startBackend(APP);
  ctx.other = await startBackend(APP);
  ctx.extra.push(ctx.other);
  ctx.front = await startFront([ctx.backend.socket, ctx.other.socket]);
  ctx.agent = newAgent();
});

kill9('only the requests in flight on the killed backend fail; it is used again once restarted', async (ctx) => {
  const victim = ctx.backend!;
  const survivor = ctx.other!;
  const concurrency = 6;
  let stop = false;
  let down = false;
  let restartedPid = -1;
  const servedWhileDown = new Set<number>();
  let servedByRestarted = 0;
  const load = runLoad(ctx.front!.url, {
    concurrency, agent: ctx.agent, stop: () => stop,
    onBody: (body) => {
      const pid = pidOf(body);
      if (down) servedWhileDown.add(pid);
      if (pid === restartedPid) servedByRestarted++;
    },
  });
  try {
    await sleep(400);
    const socket = victim.socket;
    await victim.kill9();
    // Once the front has seen the connection go (it retries the address), no answer
    // may come from the dead process.
    await ctx.front!.waitForStderr(/backend unix:\S+ unreachable \(\w+\); retrying/);
    down = true;
    await sleep(500);
    down = false;
    const again = await startBackend(APP, [], { socket });
    ctx.extra.push(again);
    restartedPid = again.pid;
    await poll(async () => (servedByRestarted > 0 ? true : undefined), 'an answer from the restarted backend');
  } finally {
    stop = true;
  }
  const result = await load;
  onlyBadGateways(result, concurrency);
  assert.equal([...servedWhileDown], [survivor.pid], 'while the killed backend was down, the other served every request');
  assert.ok(result.ok > 50, `a real load went through (${result.ok})`);
  assert.match(ctx.front!.stderr(), /backend unix:\S+ is back/);
});

kill9.run();

// 2. A backend that hangs (SIGSTOP): no responses, no pongs. With --ping-interval 1
// --ping-timeout 2 --response-timeout 3, a request stuck on it gets:
//   504 if its response timeout (3 s after it was sent) passes first, or
//   502 if the link is dropped first: the front drops it 2-3 s after the first ping that got
//       no pong (pings go every second), that is 2-4 s after the stop.
// New requests go to the other backend (least loaded; the stuck one's load only grows), and
// once the link is dropped, reconnections to the stopped process are accepted by the kernel but
// never get a HELLO: each is given up after --ping-timeout. After SIGCONT one completes and the
// front routes to it again.
const hang = suite<PairCtx>('faults/hang', newCtx());
setUp(hang, async (ctx) => {
  ctx.backend = await startBackend(APP);
  ctx.other = await startBackend(APP);
  ctx.extra.push(ctx.other);
  ctx.front = await startFront([ctx.backend.socket, ctx.other.socket],
    ['--ping-interval', '1', '--ping-timeout', '2', '--response-timeout', '3']);
  ctx.agent = newAgent();
});

hang('a stopped backend: its requests get 504 or 502, the other keeps serving, SIGCONT brings it back', async (ctx) => {
  const stopped = ctx.backend!;
  const concurrency = 6;
  let stop = false;
  let resumed = false;
  let servedByStoppedAfter = 0;
  let servedByOtherWhileStopped = 0;
  let paused = false;
  const load = runLoad(ctx.front!.url, {
    concurrency, agent: ctx.agent, stop: () => stop,
    onBody: (body) => {
      const pid = pidOf(body);
      if (resumed && pid === stopped.pid) servedByStoppedAfter++;
      if (paused && pid === ctx.other!.pid) servedByOtherWhileStopped++;
    },
  });
  try {
    await sleep(400);
    process.kill(stopped.pid, 'SIGSTOP');
    paused = true;
    await ctx.front!.waitForStderr(/backend unix:\S+ did not answer a ping within 2 s; closing the connection/);
    await ctx.front!.waitForStderr(/did not complete the handshake within 2 s; reconnecting/);
    process.kill(stopped.pid, 'SIGCONT');
    paused = false;
    resumed = true;
    await poll(async () => (servedByStoppedAfter > 0 ? true : undefined), 'an answer from the resumed backend');
  } finally {
    stop = true;
    try {
      process.kill(stopped.pid, 'SIGCONT');
    } catch {
      // gone
    }
  }
  const result = await load;
  // At most the requests in flight on it when it stopped, plus the few sent to it before its
  // load made it the busier of the two.
  onlyBadGateways(result, 2 * concurrency, [502, 504]);
  assert.ok(servedByOtherWhileStopped > 20, `the other backend kept serving (${servedByOtherWhileStopped})`);
  const log = ctx.front!.stderr();
  for (const f of result.failures) {
    if (f.status === 504) assert.is(f.body, '504 Gateway Timeout\n');
  }
  if (result.failures.some((f) => f.status === 504)) assert.match(log, /504 \w+ \/load\?\S+: no response from unix:\S+ within --response-timeout 3 s/);
  if (result.failures.some((f) => f.status === 502)) assert.match(log, /502 \w+ \/load\?\S+: connection to backend unix:\S+ lost \(ping timeout\)/);
});

hang.run();

// 3. An app that never reads its request body, while 20 clients upload 8 MiB each: the front
// stops reading each upload at the stream's window, so its memory stays bounded; other
// requests are served meanwhile; the uploads end when the clients give up.
const UPLOADS = 20;
const UPLOAD_BYTES = 8 * MIB;
const slowReader = suite<Ctx>('faults/slow-reader', newCtx());
setUp(slowReader, async (ctx) => {
  ctx.backend = await startBackend(APP);
  // A client that gives up while its upload is held back is not noticed by the front (it does
  // not read that socket then): the response timeout is what ends such a request.
  ctx.front = await startFront([ctx.backend.socket], ['--response-timeout', '5']);
  ctx.agent = newAgent();
});

async function stats(url: string): Promise<{ pid: number; begun: number; closed: number; stalled: number }> {
  return JSON.parse((await call(`${url}/stats`)).text) as { pid: number; begun: number; closed: number; stalled: number };
}

slowReader('uploads to an app that does not read them stop at the window; the front stays small', async (ctx) => {
  const url = ctx.front!.url;
  for (let i = 0; i < 20; i++) assert.is((await call(`${url}/load?warm=${i}`, { method: 'POST', body: 'x'.repeat(10_000), dispatcher: ctx.agent })).status, 200);
  const before = rss(ctx.front!.pid);
  const pulled: number[] = new Array(UPLOADS).fill(0);
  const abort = new AbortController();
  setMaxListeners(UPLOADS + 5, abort.signal);
  const chunk = Buffer.alloc(64 * 1024, 'u');
  const uploads = pulled.map((_, i) => {
    async function* body() {
      while (pulled[i]! < UPLOAD_BYTES) {
        pulled[i]! += chunk.length;
        yield chunk;
      }
    }
    return request(`${url}/stall?i=${i}`, {
      method: 'POST', body: Readable.from(body()), signal: abort.signal,
      headers: { 'content-length': String(UPLOAD_BYTES) },
    }).then((r) => r.body.text().then(() => r.statusCode), (err: Error) => err.name);
  });
  let peak = before;
  try {
    await poll(async () => ((await stats(url)).stalled === UPLOADS ? true : undefined), 'every upload to reach the app');
    // Give the uploads time to fill every buffer they can, then look at the front.
    for (let i = 0; i < 10; i++) {
      await sleep(150);
      peak = Math.max(peak, rss(ctx.front!.pid));
    }
    const other = await call(`${url}/load?during=1`, { method: 'POST', body: 'y'.repeat(5000), dispatcher: ctx.agent });
    assert.is(other.status, 200, 'another request is served meanwhile');
    assert.match(other.text, /received 5000$/);
  } finally {
    abort.abort();
  }
  const outcomes = await Promise.all(uploads);
  const sent = pulled.reduce((a, b) => a + b, 0);
  const growth = peak - before;
  console.log(`  slow reader: front RSS ${(before / MIB).toFixed(1)} -> ${(peak / MIB).toFixed(1)} MiB (+${(growth / MIB).toFixed(1)}); `
    + `clients got ${(sent / MIB).toFixed(1)} of ${(UPLOADS * UPLOAD_BYTES / MIB).toFixed(0)} MiB out`);
  assert.ok(growth < 64 * MIB, `front RSS grew by ${(growth / MIB).toFixed(1)} MiB (< 64 MiB)`);
  // (What the clients let go of sits in their own stream buffers and in the kernel's socket
  // buffers, which on loopback may take a few MiB per connection: not a bound we can assert.)
  assert.ok(sent < UPLOADS * UPLOAD_BYTES, `the uploads did not all go out (${(sent / MIB).toFixed(1)} MiB pulled from the clients)`);
  for (const o of outcomes) assert.ok(o === 'AbortError' || o === 504, `the client gave up (or got 504): ${o}`);
  // Every stalled request is closed in the app once its client is gone.
  const end = await poll(async () => {
    const s = await stats(url);
    return s.stalled === 0 && s.begun === s.closed ? s : undefined;
  }, 'the app to close every stalled request');
  assert.is(end.begun, UPLOADS);
});

slowReader.run();

// 4. The backend's socket file deleted under load (a --workers 2 backend: two connections).
// What a user sees:
//   - established connections keep working: no request fails;
//   - a new connection cannot be made (ENOENT): a front that has none (here a second front
//     started after the rm) queues requests for --queue-timeout, then answers 503 with
//     Retry-After, never hangs; the first front, if it loses a connection, keeps serving on the
//     ones it has and retries the address with backoff;
//   - a backend started again on the path (a new socket) is found by both fronts; the old
//     one, stopped afterwards, must not delete the new one's socket file.
const deleted = suite<PairCtx>('faults/socket-deleted', newCtx());
setUp(deleted, async (ctx) => startPair(ctx, APP, ['--workers', '2'], ['--queue-timeout', '1']));

deleted('established connections keep serving; new ones get 503 after the queue timeout; a restart recovers', async (ctx) => {
  const old = ctx.backend!;
  const socket = old.socket;
  let stop = false;
  let newPid = -1;
  let servedByNew = 0;
  const load = runLoad(ctx.front!.url, {
    concurrency: 4, agent: ctx.agent, stop: () => stop,
    onBody: (body) => { if (pidOf(body) === newPid) servedByNew++; },
  });
  let second;
  try {
    await sleep(400);
    rmSync(socket);
    await sleep(500);
    second = await startFront([socket], ['--queue-timeout', '1']);
    ctx.extra.push(second);
    const refused = await call(`${second.url}/load?second=1`);
    assert.is(refused.status, 503, 'a front that cannot connect answers 503');
    assert.is(refused.headers['retry-after'], '1');
    assert.match(second.stderr(), /waiting for backend unix:\S+ \(ENOENT\)/);
    assert.match(second.stderr(), /503 GET \/load\?second=1: no connection to unix:\S+ is ready \(down: ENOENT\); waited --queue-timeout 1 s/);
    // A new backend on the path, then the old one stops (gracefully: GOAWAY, in-flight finish).
    const fresh = await startBackend(APP, [], { socket });
    ctx.extra.push(fresh);
    newPid = fresh.pid;
    // (Not old.stop(): the helper would remove the old one's temp directory, where the path is.)
    ctx.backend = undefined;
    ctx.extra.push(old); // stopped last: its directory goes after the new backend stopped
    process.kill(old.pid, 'SIGTERM');
    assert.is((await old.exited).code, 0);
    assert.ok(existsSync(socket), 'the old backend, stopping, left the new one\'s socket file alone');
    await poll(async () => (servedByNew > 0 ? true : undefined), 'the first front to use the new backend');
  } finally {
    stop = true;
  }
  const result = await load;
  assert.equal(result.failures, [], `no request failed: ${describe(result)}`);
  const recovered = await poll(async () => {
    const r = await call(`${second!.url}/load?second=2`);
    return r.status === 200 ? r : undefined;
  }, 'the second front to use the new backend');
  assert.is(pidOf(recovered.text), newPid);
});

deleted.run();

// 4b. The socket file deleted, then a worker dies: the front keeps the connection it has to the
// other worker (it cannot open a new one). The supervisor, seeing the new worker with no
// connection, must not ask the front to move that last connection (a GOAWAY it could not
// follow): only the requests in flight on the dead worker fail.
const deletedCrash = suite<Ctx>('faults/socket-deleted-worker-crash', newCtx());
setUp(deletedCrash, async (ctx) => startPair(ctx, APP, ['--workers', '2'], ['--queue-timeout', '1']));

deletedCrash('a worker killed after the rm: its requests get 502, the other connection keeps serving', async (ctx) => {
  const backend = ctx.backend!;
  const pids = [...backend.stderr().matchAll(/worker \d+ \(pid (\d+), generation 1\) ready/g)].map((m) => Number(m[1]));
  assert.is(pids.length, 2);
  const concurrency = 4;
  let stop = false;
  const load = runLoad(ctx.front!.url, { concurrency, agent: ctx.agent, stop: () => stop });
  try {
    await sleep(400);
    rmSync(backend.socket);
    process.kill(pids[0]!, 'SIGKILL');
    await backend.waitForStderr(/died \(SIGKILL\); respawning[\s\S]*worker \d+ \(pid \d+, generation 1\) ready/);
    await ctx.front!.waitForStderr(/backend unix:\S+ unreachable \(ENOENT\); retrying/);
    // The supervisor sees the imbalance (two heartbeats in a row) and says it cannot act on it.
    await backend.waitForStderr(/connections are unbalanced across workers \(\d+ vs 0\), but the listening socket is gone/);
  } finally {
    stop = true;
  }
  const result = await load;
  onlyBadGateways(result, concurrency);
  assert.ok(result.ok > 50, `a real load went through (${result.ok})`);
  assert.not.match(ctx.front!.stderr(), /rebalancing/, 'no GOAWAY moved the last connection');
});

deletedCrash.run();

// 5. Slow clients: 50 clients GET 4 MiB each and do not read; the front and the backend hold
// at most about a window per stream, not the bodies (their RSS growth per client is far under
// the response size); then the clients read everything, byte for byte.
const CLIENTS = 50;
const RESPONSE_MB = 4;
const slowClients = suite<Ctx>('faults/slow-clients', newCtx());
setUp(slowClients, async (ctx) => {
  ctx.backend = await startBackend(APP);
  ctx.front = await startFront([ctx.backend.socket]);
});

interface Held { perClient: { front: number; backend: number }; counts: number[] }

/**
 * Opens CLIENTS downloads of `mb` MiB that are not read, samples the RSS of the front and the
 * backend for a while, then reads them all ('read') or hangs up ('destroy'); waits until the
 * app has closed every download.
 */
async function holdDownloads(ctx: Ctx, mb: number, then: 'read' | 'destroy'): Promise<Held> {
  const front = ctx.front!;
  const backend = ctx.backend!;
  for (let i = 0; i < 3; i++) assert.is((await call(`${front.url}/download?mb=1`)).status, 200);
  await sleep(200);
  const before = await stats(front.url);
  const base = { front: rss(front.pid), backend: rss(backend.pid) };
  // Raw clients: each sends a GET and holds its socket paused until told to read.
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => pausedRequest(front.port, getRequest(`/download?mb=${mb}`))));
  const peak = { ...base };
  try {
    await poll(async () => ((await stats(front.url)).begun - before.begun >= CLIENTS ? true : undefined), 'every download to start');
    for (let i = 0; i < 10; i++) {
      await sleep(150);
      peak.front = Math.max(peak.front, rss(front.pid));
      peak.backend = Math.max(peak.backend, rss(backend.pid));
    }
  } catch (err) {
    for (const c of clients) c.destroy();
    throw err;
  }
  let counts: number[] = [];
  if (then === 'read') counts = await Promise.all(clients.map((c) => c.read()));
  else for (const c of clients) c.destroy();
  const perClient = { front: (peak.front - base.front) / CLIENTS, backend: (peak.backend - base.backend) / CLIENTS };
  console.log(`  slow clients, ${mb} MiB each: front ${(base.front / MIB).toFixed(1)} -> ${(peak.front / MIB).toFixed(1)} MiB, `
    + `backend ${(base.backend / MIB).toFixed(1)} -> ${(peak.backend / MIB).toFixed(1)} MiB; per client `
    + `${(perClient.front / 1024).toFixed(0)} / ${(perClient.backend / 1024).toFixed(0)} KiB`);
  const end = await poll(async () => {
    const s = await stats(front.url);
    return s.begun === s.closed ? s : undefined;
  }, 'every download closed in the app');
  assert.is(end.begun - before.begun, CLIENTS, 'every download reached the app once');
  return { perClient, counts };
}

slowClients(`${CLIENTS} clients x ${RESPONSE_MB} MiB not read: RSS growth per client far under the response size`, async (ctx) => {
  const { perClient, counts } = await holdDownloads(ctx, RESPONSE_MB, 'read');
  const bound = RESPONSE_MB * MIB / 4;
  assert.ok(perClient.front < bound, `front: ${(perClient.front / 1024).toFixed(0)} KiB per client (< ${bound / 1024} KiB)`);
  assert.ok(perClient.backend < bound, `backend: ${(perClient.backend / 1024).toFixed(0)} KiB per client (< ${bound / 1024} KiB)`);
  for (const n of counts) assert.ok(n > RESPONSE_MB * MIB, `every client got the whole body (${n} bytes)`);
});

// Loopback socket buffers can take most of a 4 MiB response per connection, so 4 MiB alone
// cannot tell a front that buffers bodies from one that does not: 32 MiB can (a buffering front
// would hold ~28 MiB per client). The clients then hang up, and every stream must close.
slowClients(`${CLIENTS} clients x 32 MiB not read, then gone: per client far under the body; every stream closed`, async (ctx) => {
  const { perClient } = await holdDownloads(ctx, 32, 'destroy');
  const bound = 4 * MIB;
  assert.ok(perClient.front < bound, `front: ${(perClient.front / 1024).toFixed(0)} KiB per client (< ${bound / 1024} KiB)`);
  assert.ok(perClient.backend < bound, `backend: ${(perClient.backend / 1024).toFixed(0)} KiB per client (< ${bound / 1024} KiB)`);
});

slowClients.run();

// 6. An app error right after the head (head, chunk and RESET reach the front in one read):
// the client still gets the head and the chunk before the cut, not a bare closed connection.
const cutAfterHead = suite<Ctx>('faults/cut-after-head', newCtx());
setUp(cutAfterHead, async (ctx) => startPair(ctx, APP));

cutAfterHead('regression: a reset arriving with the first chunk no longer swallows the head', async ({ front }) => {
  for (let i = 0; i < 5; i++) {
    // Keep-alive: it is the cut that must close the connection.
    const { text: raw } = await rawUntilClose(front!.port, getRequest(`/throw-now?i=${i}`, { close: false }));
    assert.ok(raw.startsWith('HTTP/1.1 200 OK\r\n'), `the head reached the client: ${JSON.stringify(raw.slice(0, 60))}`);
    assert.match(raw, /first chunk\n/);
    assert.not.ok(raw.endsWith('0\r\n\r\n'), 'the chunked body must not end cleanly');
  }
  await front!.waitForStderr(/GET \/throw-now\?i=\d: .*response cut after the head/);
});

cutAfterHead.run();
