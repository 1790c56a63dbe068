// The supervisor of `tsgi serve --workers N` on fake workers (no processes, no sleeps): the
// test plays each worker's part ('ready', heartbeats, 'retire', exits) and checks what the
// supervisor spawns, stops and hands over: scaling, a rolling reload, crashes, an application
// that cannot load, --max-requests recycling, and connections to the least busy worker.
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Address } from '../../src/common/address.js';
import { EXIT } from '../../src/common/exit-codes.js';
import { Supervisor, type SupervisorOptions } from '../../src/backend/supervisor.js';
import type { WorkerConfig } from '../../src/backend/worker.js';
import { TsgiError } from '../../src/protocol/errors.js';
import { rejects } from '../helpers/assert.js';
import {
  connectTo, type FakeChild, type FakeSpawn, fakeClock, fakeSpawn, firstTo, recordingLogger, teardown, turn,
} from '../helpers/fake-children.js';

interface Harness extends FakeSpawn<WorkerConfig> {
  sup: Supervisor;
  log: ReturnType<typeof recordingLogger>;
  clock: ReturnType<typeof fakeClock>;
  fatal: TsgiError[];
}

interface Ctx {
  h: Harness | null;
  clients: Socket[];
}

const test = suite<Ctx>('backend/supervisor', { h: null, clients: [] });

const TCP: Address = { kind: 'tcp', host: '127.0.0.1', port: 0 };

function make(ctx: Ctx, over: Partial<SupervisorOptions> = {}): Harness {
  const fake = fakeSpawn<WorkerConfig>();
  const log = recordingLogger();
  const clock = fakeClock();
  const fatal: TsgiError[] = [];
  const sup = new Supervisor({
    address: null, workers: 2, log, gracefulTimeoutMs: 1000, requestTimeoutMs: 0, maxRequests: 0, maxRequestsJitter: 0,
    worker: { app: '/nowhere/app.js', scriptName: '', maxStreams: 16, window: 65536, maxFrameSize: 16384, gracefulTimeoutMs: 1000, logLevel: 'info' },
    onFatal: (err) => fatal.push(err),
    spawn: fake.spawn, now: clock.now,
    ...over,
  });
  ctx.h = { ...fake, sup, log, clock, fatal };
  return ctx.h;
}

/** Starts the supervisor and has its first `n` workers say they are ready. */
async function started(h: Harness, n: number): Promise<{ address: Address | null; uwsgiAddress: Address | null }> {
  const start = h.sup.start();
  for (const child of await h.made(n)) child.say({ type: 'ready' });
  return start;
}

const generations = (h: Harness) => h.sup.workers.map((w) => `${w.id}:${w.generation}:${w.state}`).sort();
const stopped = (c: FakeChild) => c.got('stop').length > 0;
const client = (ctx: Ctx, address: Address): Socket => connectTo(address, ctx.clients);

test.after.each(async (ctx) => {
  const h = ctx.h;
  ctx.h = null;
  if (h !== null) await teardown(ctx.clients, h.children, () => h.sup.stop({ graceful: false }));
});

test('start spawns the target and resolves once every worker is ready', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  let done = false;
  const start = h.sup.start().then(() => { done = true; });
  const [a, b] = await h.made(2);
  assert.equal((a!.config as WorkerConfig).workerId, 1);
  assert.equal((b!.config as WorkerConfig).workerId, 2);
  assert.equal((a!.config as WorkerConfig).connections, 2, 'the front is told to open one connection per worker');
  a!.say({ type: 'ready' });
  await turn();
  assert.not.ok(done, 'one of two ready: start() still waits');
  b!.say({ type: 'ready' });
  await start;
  assert.equal(h.children.length, 2);
  assert.match(h.log.lines.join('\n'), new RegExp(`worker 1 \\(pid ${a!.pid}, generation 1\\) ready`));
});

test('scaling up spawns one more and tells every worker the new target; scaling down retires the newest', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  const [a, b] = h.children;
  h.sup.scale(+1);
  assert.equal(h.children.length, 3);
  const c = h.children[2]!;
  assert.equal((c.config as WorkerConfig).connections, 3);
  assert.equal(a!.got('target').map((s) => s.message.workers), [3]);
  assert.equal(b!.got('target').map((s) => s.message.workers), [3]);
  c.say({ type: 'ready' });
  assert.equal(generations(h), ['1:1:ready', '2:1:ready', '3:1:ready']);

  h.sup.scale(-1);
  assert.ok(stopped(c), 'the newest worker is told to stop');
  assert.not.ok(stopped(a!) || stopped(b!));
  c.exit(0);
  assert.equal(h.children.length, 3, 'a worker retired by scaling is not replaced');
  assert.equal(generations(h), ['1:1:ready', '2:1:ready']);
  assert.equal(h.sup.restarts, 0);
});

test('the target never drops below one worker', async (ctx) => {
  const h = make(ctx, { workers: 1 });
  await started(h, 1);
  h.sup.scale(-1);
  assert.is(h.sup.target, 1);
  assert.not.ok(stopped(h.children[0]!));
});

test('a reload starts the new generation and drains the old one only once the new one is all ready', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  const [a, b] = h.children;
  h.sup.reload();
  assert.is(h.sup.generation, 2);
  assert.equal(h.children.length, 4);
  const [c, d] = h.children.slice(2);
  c!.say({ type: 'ready' });
  assert.not.ok(stopped(a!) || stopped(b!), 'half the new generation ready: the old one still serves');
  d!.say({ type: 'ready' });
  assert.ok(stopped(a!) && stopped(b!), 'the new generation is ready: the old one drains');
  assert.not.ok(stopped(c!) || stopped(d!));
  a!.exit(0);
  b!.exit(0);
  assert.equal(h.children.length, 4, 'drained workers are not replaced');
  assert.equal(generations(h), ['3:2:ready', '4:2:ready']);
  assert.match(h.log.lines.join('\n'), /worker 1 \(pid \d+\) retiring: replaced by generation 2/);
});

test('a worker that crashes is replaced at once and counted as a restart', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  h.children[0]!.exit(null, 'SIGKILL');
  assert.equal(h.children.length, 3, 'a replacement is spawned');
  assert.equal(h.sup.restartsByReason.get('crash'), 1);
  assert.match(h.log.lines.join('\n'), new RegExp(`warn: worker 1 \\(pid ${h.children[0]!.pid}\\) died \\(SIGKILL\\); respawning`));
  h.children[2]!.say({ type: 'ready' });
  assert.equal(generations(h), ['2:1:ready', '3:1:ready']);
});

test('a worker that keeps dying young is respawned after a wait that doubles; a long life starts it over', async (ctx) => {
  const h = make(ctx, { workers: 1 });
  await started(h, 1);
  h.children[0]!.exit(null, 'SIGSEGV'); // the first crash: at once
  assert.equal(h.children.length, 2);
  h.children[1]!.exit(1); // its replacement dies at once: 0.1 s
  assert.equal(h.children.length, 2, 'no respawn in a loop');
  assert.match(h.log.lines.join('\n'), /died \(code 1\); respawning in 0\.1 s \(it keeps dying\)/);
  h.clock.advance(99);
  h.sup.reconcile();
  assert.equal(h.children.length, 2);
  h.clock.advance(2);
  h.sup.reconcile();
  assert.equal(h.children.length, 3, 'respawned once the wait is over');
  h.children[2]!.exit(1); // and again: 0.2 s
  h.clock.advance(150);
  h.sup.reconcile();
  assert.equal(h.children.length, 3);
  h.clock.advance(60);
  h.sup.reconcile();
  assert.equal(h.children.length, 4);
  h.children[3]!.say({ type: 'ready' });
  h.clock.advance(31_000); // a long life: the next crash is respawned at once again
  h.children[3]!.exit(null, 'SIGKILL');
  assert.equal(h.children.length, 5);
});

test('an application that cannot load at start: start() fails with TSGI_ERR_APP_LOAD and nothing respawns', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  const start = h.sup.start();
  const [a, b] = await h.made(2);
  a!.exit(EXIT.APP_LOAD);
  await rejects(start, TsgiError, 'TSGI_ERR_APP_LOAD', 'start()');
  assert.equal(b!.signals, ['SIGKILL'], 'the other worker is stopped');
  await turn();
  assert.equal(h.children.length, 2, 'no respawn loop');
  assert.equal(h.fatal.length, 0, 'start() reports it, not onFatal');
});

test('the last serving worker replaced by one that cannot load: the supervisor halts and reports it', async (ctx) => {
  const h = make(ctx, { workers: 1 });
  await started(h, 1);
  h.children[0]!.exit(1);
  const replacement = h.children[1]!;
  replacement.exit(EXIT.APP_LOAD);
  assert.equal(h.fatal.map((e) => e.code), ['TSGI_ERR_APP_LOAD']);
  await rejects(h.sup.stop(), TsgiError, 'TSGI_ERR_APP_LOAD', 'stop()');
  assert.equal(h.children.length, 2, 'no respawn loop');
});

test('a replacement that cannot load while others serve is retried after the load delay, not in a loop', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  h.children[0]!.exit(1);
  h.children[2]!.exit(EXIT.APP_LOAD);
  assert.match(h.log.lines.join('\n'), /error: worker 3 could not load the application; retrying in 5 s/);
  assert.equal(h.children.length, 3);
  h.clock.advance(4999);
  h.sup.reconcile();
  assert.equal(h.children.length, 3, 'not before the delay');
  h.clock.advance(1);
  h.sup.reconcile();
  assert.equal(h.children.length, 4, 'retried once the delay is over');
  assert.equal(h.fatal.length, 0);
});

test('a reload whose generation cannot load falls back to the generation that works', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  h.sup.reload();
  const [c, d] = h.children.slice(2);
  c!.exit(EXIT.APP_LOAD);
  assert.is(h.sup.generation, 1);
  assert.ok(stopped(d!), 'the rest of the failed generation is stopped');
  assert.not.ok(stopped(h.children[0]!) || stopped(h.children[1]!), 'generation 1 keeps serving');
  assert.match(h.log.lines.join('\n'), /reload failed: generation 2 cannot load the application; generation 1 keeps serving/);
  d!.exit(0);
  h.sup.reconcile();
  assert.equal(h.children.length, 4, 'nothing more is spawned');
  assert.equal(h.fatal.length, 0);
});

test('--max-requests: a worker past its limit serves until its replacement is ready, then drains', async (ctx) => {
  const h = make(ctx, { workers: 2, maxRequests: 100 });
  await started(h, 2);
  const [a, b] = h.children;
  assert.is((a!.config as WorkerConfig).maxRequests, 100);
  a!.say({ type: 'retire', served: 100 });
  assert.equal(h.children.length, 3, 'a replacement is spawned');
  assert.equal(generations(h), ['1:1:retiring', '2:1:ready', '3:1:starting']);
  assert.not.ok(stopped(a!), 'not drained while its replacement starts');
  a!.say({ type: 'retire', served: 101 });
  assert.equal(h.children.length, 3, 'a second retire message changes nothing');
  h.children[2]!.say({ type: 'ready' });
  assert.ok(stopped(a!), 'its replacement is ready: it drains');
  assert.not.ok(stopped(b!));
  a!.exit(0);
  assert.equal(h.children.length, 3, 'a recycled worker is not replaced twice');
  assert.equal(h.sup.restartsByReason.get('max-requests'), 1);
  assert.equal(h.sup.restartsByReason.get('crash'), 0);
  assert.match(h.log.lines.join('\n'), /worker 1 served 100 requests \(max-requests\); recycling it/);
});

test('--max-requests-jitter adds up to that many requests to each worker\'s limit', async (ctx) => {
  const h = make(ctx, { workers: 4, maxRequests: 100, maxRequestsJitter: 10 });
  await started(h, 4);
  for (const c of h.children) {
    const limit = (c.config as WorkerConfig).maxRequests;
    assert.ok(limit >= 100 && limit <= 110, `limit ${limit}`);
  }
});

test('a connection goes to the ready worker with the fewest; one that cannot take it is re-routed once', async (ctx) => {
  const h = make(ctx, { workers: 3, address: TCP });
  const { address } = await started(h, 3);
  const [a, b, c] = h.children;
  a!.say({ type: 'heartbeat', connections: 5, inFlight: 0, served: 0, oldest: null });
  b!.say({ type: 'heartbeat', connections: 1, inFlight: 0, served: 0, oldest: null });
  c!.say({ type: 'heartbeat', connections: 3, inFlight: 0, served: 0, oldest: null });
  let got = firstTo([a!, b!, c!], 'connection');
  client(ctx, address!);
  let { child, sent } = await got;
  assert.is(child, b, 'the worker with the fewest connections');
  assert.equal(sent.message, { type: 'connection' });
  assert.ok(sent.handle !== undefined, 'the socket goes with it');

  // b has 2 now, c 3: b again, but b's channel is closing: c takes it.
  b!.refuseSockets = new Error('write EPIPE');
  got = firstTo([a!, b!, c!], 'connection');
  client(ctx, address!);
  ({ child } = await got);
  assert.is(child, c, 're-routed to the next least busy');
  assert.match(h.log.lines.join('\n'), /worker 2 could not take a connection \(write EPIPE\); routing it elsewhere/);

  // b is out of the rotation from now on, though it has the fewest.
  b!.refuseSockets = null;
  got = firstTo([a!, b!, c!], 'connection');
  client(ctx, address!);
  ({ child } = await got);
  assert.is(child, c);
  assert.equal(b!.got('connection').length, 1);
});

test('a connection that two workers in a row cannot take is closed, not re-routed again', async (ctx) => {
  const h = make(ctx, { workers: 3, address: TCP });
  const { address } = await started(h, 3);
  const [a, b, c] = h.children;
  a!.refuseSockets = new Error('write EPIPE');
  b!.refuseSockets = new Error('write EPIPE');
  c!.say({ type: 'heartbeat', connections: 9, inFlight: 0, served: 0, oldest: null });
  const socket = client(ctx, address!);
  await new Promise((resolve) => socket.once('close', resolve));
  assert.equal(c!.got('connection').length, 0, 'not handed to a third worker');
  assert.equal(h.log.lines.filter((l) => l.includes('could not take a connection')).length, 2);
});

test('the uwsgi socket is bound, passed to every worker as descriptor 4, and accepts once a worker listens on it', async (ctx) => {
  const h = make(ctx, { workers: 2, address: null, uwsgiAddress: TCP });
  const start = h.sup.start();
  const [a, b] = await h.made(2);
  assert.equal((a!.config as WorkerConfig).uwsgiFd, 4);
  assert.is(a!.inherit.length, 1, 'one descriptor inherited');
  assert.equal(b!.inherit, a!.inherit, 'the same socket for both');
  a!.say({ type: 'ready' });
  b!.say({ type: 'ready' });
  const { uwsgiAddress } = await start;
  assert.is(uwsgiAddress!.kind, 'tcp');
  const port = (uwsgiAddress as { port: number }).port;
  assert.ok(port > 0, 'port 0 resolved');
  const refused = await new Promise<string>((resolve) => {
    const s = client(ctx, uwsgiAddress!);
    s.once('connect', () => resolve('connected'));
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  assert.is(refused, 'ECONNREFUSED', 'bound, not listened on: the supervisor accepts nothing itself');
  // Play a worker: a process that inherits the descriptor, listens on it and answers "hi".
  const worker = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    net.createServer((s) => s.end('hi')).listen({ fd: 3 }, () => process.stdout.write('listening'));
  `], { stdio: ['ignore', 'pipe', 'inherit', a!.inherit[0]!] });
  try {
    await new Promise((resolve) => worker.stdout!.once('data', resolve));
    const s = client(ctx, uwsgiAddress!);
    const got = await new Promise<string>((resolve) => {
      let text = '';
      s.on('data', (d: Buffer) => { text += d.toString(); });
      s.once('end', () => resolve(text));
    });
    assert.is(got, 'hi', 'the connection reached the process listening on the descriptor');
    for (const c of h.children) assert.equal(c.got('connection').length, 0, 'nothing handed over IPC');
  } finally {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill();
    await exited;
  }
});

test('stop() tells every worker to stop and resolves once all have exited', async (ctx) => {
  const h = make(ctx, { workers: 2 });
  await started(h, 2);
  let done = false;
  const stop = h.sup.stop().then(() => { done = true; });
  for (const c of h.children) assert.ok(stopped(c));
  h.children[0]!.exit(0);
  await turn();
  assert.not.ok(done, 'one worker still running');
  h.children[1]!.exit(0);
  await stop;
  assert.equal(h.children.length, 2, 'nothing respawned while stopping');
});

test.run();
