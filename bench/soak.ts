// `npm run soak`: a bounded soak. A front with --control, two registered backends (A with
// --workers 2, B a single process), a mixed load (GET, POST with bodies, streamed and slow
// responses, 1-4 MiB downloads, client aborts at random points, app errors before and after the
// head) and, meanwhile, random kill -9 of A's workers and of B (started again) and SIGHUP
// reloads of A. Every request is accounted for: completed with the expected bytes, or failed
// with a status (500 from an app error, 502/503/504), or cut after its head (an app error after
// the head, or a backend killed meanwhile), or aborted by us. Anything else (a wrong status or
// body, a request that hangs, a cut with no cause) fails the run, as does a stream left open in
// the front (`tsgi ctl list`) or in a backend (the app's begun - closed counts), or memory that
// does not come back (RSS after the load and a GC above MEMORY_FACTOR x the warmed-up baseline).
// Env: SOAK_SECONDS (180), SOAK_CONCURRENCY (12).
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { fill } from './apps/soak-app.js';
import { machineLines } from './machine.js';
import { APPS, CLI, alive, childPids, freePort, installCleanup, rssMiB, run, start, stopAll, tempDir, type Proc } from './proc.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 12);
const WARMUP_MS = Math.min(10_000, SECONDS * 100);
/** No faults in the last part of the run, so that everything has come back when the load stops. */
const QUIET_MS = Math.min(10_000, SECONDS * 100);
const MEMORY_FACTOR = 1.5;
const CLIENT_TIMEOUT_MS = 30_000;
const APP = join(APPS, 'soak-app.js');
const MIB = 1 << 20;

let dir: string | null = null;
installCleanup(() => dir);

// ---------------------------------------------------------------------------------------------
// Processes

interface World {
  front: Proc;
  url: string;
  control: string;
  a: Proc;
  b: Proc;
  bSocket: string;
}

async function serve(name: string, socket: string, control: string, extra: string[] = []): Promise<Proc> {
  const proc = start(name, process.execPath, ['--expose-gc', CLI, 'serve', APP, '--socket', socket, '--register', control,
    '--graceful-timeout', '10', ...extra], { SOAK_DIR: dir! });
  await proc.waitFor(/registered \S+ with the front/, 20_000);
  return proc;
}

async function startWorld(): Promise<World> {
  const control = join(dir!, 'front.ctl');
  const port = await freePort();
  const front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${port}`, '--control', control,
    '--ping-interval', '1', '--ping-timeout', '3', '--response-timeout', '15', '--queue-timeout', '10', '--graceful-timeout', '5']);
  await front.waitFor(/listening on http /);
  const a = await serve('backend A (--workers 2)', join(dir!, 'a.sock'), control, ['--workers', '2']);
  const bSocket = join(dir!, 'b.sock');
  const b = await serve('backend B', bSocket, control);
  return { front, url: `http://127.0.0.1:${port}`, control, a, b, bSocket };
}

// ---------------------------------------------------------------------------------------------
// Faults

interface FaultEvent { kind: string; at: number }
const events: FaultEvent[] = [];
let t0 = Date.now();

/** Whether a kill happened while a request ran (from `start` to `end`, with a little slack). */
function killDuring(start: number, end: number): boolean {
  return events.some((e) => e.kind !== 'SIGHUP A' && e.at >= start - 100 && e.at <= end + 100);
}

/** For a failure's detail: when it started, and the fault nearest to it. */
function nearestFault(at: number): string {
  let best: FaultEvent | null = null;
  for (const e of events) if (best === null || Math.abs(e.at - at) < Math.abs(best.at - at)) best = e;
  return ` (at ${((at - t0) / 1000).toFixed(1)} s${best === null ? '' : `; nearest fault: ${best.kind}, ${best.at - at} ms after the start`})`;
}

async function faults(world: World, until: number): Promise<void> {
  while (Date.now() < until) {
    await sleep(randomInt(3000, 7000));
    if (Date.now() >= until) break;
    const roll = Math.random();
    if (roll < 0.4) {
      const workers = childPids(world.a.pid);
      if (workers.length === 0) continue;
      const pid = workers[randomInt(workers.length)]!;
      events.push({ kind: 'kill -9 worker of A', at: Date.now() });
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    } else if (roll < 0.7) {
      events.push({ kind: 'kill -9 B, restart', at: Date.now() });
      try {
        process.kill(world.b.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await world.b.exited;
      await sleep(randomInt(0, 1500));
      world.b = await serve('backend B', world.bSocket, world.control);
    } else {
      events.push({ kind: 'SIGHUP A', at: Date.now() });
      process.kill(world.a.pid, 'SIGHUP');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Load

type Kind = 'get' | 'post' | 'stream' | 'slow' | 'big' | 'abort' | 'error-before' | 'error-after';
const MIX: [Kind, number][] = [
  ['get', 30], ['post', 20], ['stream', 15], ['slow', 8], ['big', 5], ['abort', 12], ['error-before', 5], ['error-after', 5],
];
const MIX_TOTAL = MIX.reduce((n, [, w]) => n + w, 0);

function pickKind(): Kind {
  let r = Math.random() * MIX_TOTAL;
  for (const [kind, w] of MIX) {
    if ((r -= w) < 0) return kind;
  }
  return 'get';
}

const BIG_DIGESTS = new Map<number, string>();
function bigDigest(mb: number): string {
  let d = BIG_DIGESTS.get(mb);
  if (d === undefined) {
    const block = fill(MIB, 7);
    const h = createHash('sha256');
    for (let i = 0; i < mb; i++) h.update(block);
    d = h.digest('hex');
    BIG_DIGESTS.set(mb, d);
  }
  return d;
}

/** Outcomes that account for a request; anything else is BAD. */
const GOOD = new Set(['ok', '500 (app error, expected)', 'cut after the head (app error, expected)', 'aborted by us',
  '502', '503', '504', 'cut after the head (a backend was killed)']);

interface Plan {
  path: string;
  method: 'GET' | 'POST';
  body?: Buffer;
  abortAfterMs?: number;
  /** Checks a complete 2xx body; returns null when right, else what is wrong. */
  check(body: Buffer): string | null;
}

function plan(kind: Kind): Plan {
  const seed = randomInt(256);
  switch (kind) {
    case 'get': {
      const n = randomInt(0, 65536);
      return { path: `/get?n=${n}&seed=${seed}`, method: 'GET', check: (b) => (b.equals(fill(n, seed)) ? null : `wrong body (${b.length} of ${n} bytes)`) };
    }
    case 'post': {
      const body = randomBytes(randomInt(0, 262144));
      const want = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
      return { path: '/post', method: 'POST', body, check: (b) => (b.toString() === want ? null : `wrong echo digest: ${b.toString().slice(0, 80)}`) };
    }
    case 'stream':
    case 'abort': {
      const chunks = randomInt(1, 21);
      const size = randomInt(1, 16385);
      const delay = kind === 'abort' ? 20 : randomInt(0, 21);
      const want = Buffer.concat(Array.from({ length: chunks }, () => fill(size, seed)));
      return {
        path: `/stream?chunks=${chunks}&size=${size}&delay=${delay}&seed=${seed}`, method: 'GET',
        abortAfterMs: kind === 'abort' ? randomInt(0, 250) : undefined,
        check: (b) => (b.equals(want) ? null : `wrong stream (${b.length} of ${want.length} bytes)`),
      };
    }
    case 'slow': {
      const ms = randomInt(0, 1500);
      return { path: `/slow?ms=${ms}`, method: 'GET', check: (b) => (b.toString() === 'slow ok' ? null : `wrong body: ${b.toString().slice(0, 40)}`) };
    }
    case 'big': {
      const mb = randomInt(1, 5);
      return { path: `/big?mb=${mb}`, method: 'GET', check: (b) => (b.length === mb * MIB && createHash('sha256').update(b).digest('hex') === bigDigest(mb) ? null : `wrong big body (${b.length} bytes)`) };
    }
    case 'error-before':
      return { path: '/error-before', method: 'GET', check: () => 'a 2xx for an app that throws before the head' };
    case 'error-after':
      return { path: '/error-after', method: 'GET', check: () => 'a complete body from an app that throws after the head' };
  }
}

interface Outcome { kind: Kind; outcome: string; detail?: string }

async function one(url: string, agent: Agent, kind: Kind): Promise<Outcome> {
  const p = plan(kind);
  const started = Date.now();
  const abort = new AbortController();
  let aborted = false;
  const timer = p.abortAfterMs === undefined ? null : setTimeout(() => { aborted = true; abort.abort(); }, p.abortAfterMs);
  let status: number | null = null;
  try {
    const res = await request(`${url}${p.path}`, {
      method: p.method, body: p.body, dispatcher: agent, signal: abort.signal,
      headersTimeout: CLIENT_TIMEOUT_MS, bodyTimeout: CLIENT_TIMEOUT_MS,
    });
    status = res.statusCode;
    const body = Buffer.from(await res.body.arrayBuffer());
    if (status >= 200 && status < 300) {
      const wrong = p.check(body);
      return wrong === null ? { kind, outcome: 'ok' } : { kind, outcome: 'BAD: wrong body', detail: `${p.path}: ${wrong}` };
    }
    if (status === 500 && kind === 'error-before') return { kind, outcome: '500 (app error, expected)' };
    if (status === 502 || status === 503 || status === 504) return { kind, outcome: String(status) };
    return { kind, outcome: `BAD: status ${status}`, detail: `${p.path}: ${body.toString().slice(0, 80)}` };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (aborted) return { kind, outcome: 'aborted by us' };
    if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
      return { kind, outcome: 'BAD: hung', detail: `${p.path}: ${e.code}` };
    }
    if (status !== null) {
      if (kind === 'error-after') return { kind, outcome: 'cut after the head (app error, expected)' };
      if (killDuring(started, Date.now())) return { kind, outcome: 'cut after the head (a backend was killed)' };
      return { kind, outcome: 'BAD: cut after the head, nothing killed', detail: `${p.path}: ${e.code ?? e.message}${nearestFault(started)}` };
    }
    return { kind, outcome: 'BAD: error before the head', detail: `${p.path}: ${e.code ?? ''} ${e.message}${nearestFault(started)}` };
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks at the end

/** Sum of IN-FLIGHT over the front's backends, and its queue, from `tsgi ctl list`. */
async function frontInFlight(control: string): Promise<{ inFlight: number; queued: number; text: string }> {
  const { output } = await run('tsgi ctl list', process.execPath, [CLI, 'ctl', '--control', control, 'list']);
  let inFlight = 0;
  const lines = output.trim().split('\n');
  const header = lines[0]?.split(/\s{2,}/) ?? [];
  const col = header.indexOf('IN-FLIGHT');
  for (const line of lines.slice(1)) {
    const cells = line.split(/\s{2,}/);
    if (col >= 0 && cells.length === header.length) inFlight += Number(cells[col]);
  }
  const queued = Number(/queued requests: (\d+)/.exec(output)?.[1] ?? 0);
  return { inFlight, queued, text: output };
}

interface AppStats { pid: number; begun: number; closed: number; rss: number; gcSeen: number }

/** The app processes alive now: A's workers and B. */
function appPids(world: World): number[] {
  return [...childPids(world.a.pid), world.b.pid].filter(alive);
}

function appStats(pid: number): AppStats | null {
  try {
    return JSON.parse(readFileSync(join(dir!, `stats-${pid}.json`), 'utf8')) as AppStats;
  } catch {
    return null;
  }
}

interface Memory { front: number; a: number; b: number }

function memory(world: World): Memory {
  const sum = (pids: number[]) => pids.reduce((n, pid) => n + (rssMiB(pid) ?? 0), 0);
  return { front: rssMiB(world.front.pid) ?? NaN, a: sum([world.a.pid, ...childPids(world.a.pid)]), b: rssMiB(world.b.pid) ?? NaN };
}

async function waitFor<T>(what: string, ms: number, attempt: () => Promise<T | null>): Promise<T | null> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await attempt();
    if (v !== null || Date.now() > until) {
      if (v === null) console.log(`  still waiting for ${what} after ${ms / 1000} s`);
      return v;
    }
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  dir = tempDir('tsgi-soak-');
  for (const line of machineLines()) console.log(line);
  console.log(`soak: ${SECONDS} s, ${CONCURRENCY} concurrent clients; faults from ${WARMUP_MS / 1000} s to ${(SECONDS * 1000 - QUIET_MS) / 1000} s\n`);
  const world = await startWorld();
  const agent = new Agent({ connections: CONCURRENCY, headersTimeout: CLIENT_TIMEOUT_MS, bodyTimeout: CLIENT_TIMEOUT_MS });
  t0 = Date.now();
  const end = t0 + SECONDS * 1000;
  const outcomes: Outcome[] = [];
  const loops = Array.from({ length: CONCURRENCY }, async () => {
    while (Date.now() < end) outcomes.push(await one(world.url, agent, pickKind()));
  });
  await sleep(WARMUP_MS);
  const baseline = memory(world);
  console.log(`baseline after warm-up (RSS MiB): front ${baseline.front.toFixed(1)}, A (supervisor + workers) ${baseline.a.toFixed(1)}, B ${baseline.b.toFixed(1)}`);
  const faulting = faults(world, end - QUIET_MS);
  let lastReport = Date.now();
  while (Date.now() < end) {
    await sleep(1000);
    if (Date.now() - lastReport >= 30_000) {
      lastReport = Date.now();
      console.log(`  ${Math.round((Date.now() - t0) / 1000)} s: ${outcomes.length} requests, ${events.length} faults`);
    }
  }
  await faulting;
  await Promise.all(loops);
  await agent.close();
  const failures: string[] = [];

  // Outcomes.
  const table = new Map<string, Map<Kind, number>>();
  for (const o of outcomes) {
    const row = table.get(o.outcome) ?? new Map<Kind, number>();
    row.set(o.kind, (row.get(o.kind) ?? 0) + 1);
    table.set(o.outcome, row);
  }
  const kinds = MIX.map(([k]) => k);
  console.log(`\n${outcomes.length} requests in ${SECONDS} s; faults: ${events.length} `
    + `(${['kill -9 worker of A', 'kill -9 B, restart', 'SIGHUP A'].map((k) => `${events.filter((e) => e.kind === k).length} ${k}`).join(', ')})\n`);
  console.log(`| outcome | ${kinds.join(' | ')} | total |`);
  console.log(`| --- | ${kinds.map(() => '---:').join(' | ')} | ---: |`);
  for (const [outcome, row] of [...table].sort((x, y) => x[0].localeCompare(y[0]))) {
    const total = [...row.values()].reduce((a, b) => a + b, 0);
    console.log(`| ${outcome} | ${kinds.map((k) => row.get(k) ?? 0).join(' | ')} | ${total} |`);
    if (!GOOD.has(outcome)) failures.push(`${total} request(s): ${outcome}`);
  }
  for (const o of outcomes.filter((x) => x.detail !== undefined).slice(0, 10)) console.log(`  ${o.outcome}: ${o.detail}`);

  // Streams left open.
  const front = await waitFor('the front to have nothing in flight', 15_000, async () => {
    const f = await frontInFlight(world.control);
    return f.inFlight === 0 && f.queued === 0 ? f : null;
  });
  const f = front ?? await frontInFlight(world.control);
  console.log(`\nfront after the load: ${f.inFlight} in flight, ${f.queued} queued (tsgi ctl list):\n${f.text.trimEnd().split('\n').map((l) => `  ${l}`).join('\n')}`);
  if (front === null) failures.push(`the front still has ${f.inFlight} request(s) in flight and ${f.queued} queued`);
  const open = await waitFor('the backends to close every request', 15_000, async () => {
    await sleep(300); // the stats files are written every 200 ms
    const all = appPids(world).map((pid) => appStats(pid) ?? { pid, begun: -1, closed: 0, rss: 0, gcSeen: 0 });
    return all.every((s) => s.begun === s.closed) ? all : null;
  });
  const stats = open ?? appPids(world).map((pid) => appStats(pid));
  console.log(`backends after the load (begun - closed per process): ${stats.map((s) => (s === null ? '?' : `pid ${s.pid}: ${s.begun} - ${s.closed} = ${s.begun - s.closed}`)).join('; ')}`);
  if (open === null) failures.push('a backend process still has requests open');

  // Memory, after a GC in the backends (the front gets a moment).
  writeFileSync(join(dir, 'gc'), String(Date.now()));
  await sleep(3000);
  const after = memory(world);
  console.log(`\nRSS (MiB)      baseline   after   ratio (limit ${MEMORY_FACTOR})`);
  for (const key of ['front', 'a', 'b'] as const) {
    const ratio = after[key] / baseline[key];
    const label = { front: 'front', a: 'A (sup+workers)', b: 'B' }[key];
    console.log(`${label.padEnd(15)}${baseline[key].toFixed(1).padStart(8)}${after[key].toFixed(1).padStart(8)}${ratio.toFixed(2).padStart(8)}`);
    if (!(ratio <= MEMORY_FACTOR)) failures.push(`${label}: RSS ${after[key].toFixed(1)} MiB is more than ${MEMORY_FACTOR} x the baseline ${baseline[key].toFixed(1)} MiB`);
  }

  await world.front.stop();
  await world.b.stop();
  await world.a.stop();
  if (failures.length > 0) {
    console.log(`\nSOAK FAILED:\n${failures.map((x) => `  - ${x}`).join('\n')}`);
    console.log(`\nfront log (tail):\n${world.front.output().split('\n').slice(-15).join('\n')}`);
    return 1;
  }
  console.log('\nsoak passed: every request accounted for, nothing left open, memory back to its baseline');
  return 0;
}

main().then(async (code) => {
  await stopAll();
  process.exitCode = code;
}, async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exitCode = 1;
});
