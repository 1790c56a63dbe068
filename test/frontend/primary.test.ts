// The primary of `tsgi front --processes N` on fake front workers (no processes, no sleeps): the
// test plays each worker's part ('ready', 'failed', 'load', exits) and checks what the primary
// spawns, when it respawns (after a backoff, from reconcile()), and where accepted connections go.
import type { Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Address } from '../../src/common/address.js';
import { FrontPrimary, type FrontWorkerConfig } from '../../src/frontend/primary/primary.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { rejects } from '../helpers/assert.js';
import {
  connectTo, type FakeSpawn, fakeClock, fakeSpawn, firstTo, recordingLogger, teardown, turn,
} from '../helpers/fake-children.js';

interface Harness extends FakeSpawn<FrontWorkerConfig> {
  primary: FrontPrimary;
  log: ReturnType<typeof recordingLogger>;
  clock: ReturnType<typeof fakeClock>;
}

interface Ctx {
  h: Harness | null;
  clients: Socket[];
}

const test = suite<Ctx>('frontend/primary', { h: null, clients: [] });

const BACKEND: Address = { kind: 'tcp', host: '127.0.0.1', port: 9 };

function make(ctx: Ctx, processes: number): Harness {
  const fake = fakeSpawn<FrontWorkerConfig>();
  const log = recordingLogger();
  const clock = fakeClock();
  const primary = new FrontPrimary({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [BACKEND], processes },
    { spawn: fake.spawn, now: clock.now, log });
  ctx.h = { ...fake, primary, log, clock };
  return ctx.h;
}

/** Starts the primary and has its first `n` workers say they are ready. */
async function started(h: Harness, n: number): Promise<void> {
  const start = h.primary.start();
  for (const child of await h.made(n)) child.say({ type: 'ready' });
  await start;
}

const client = (ctx: Ctx): Socket => connectTo(ctx.h!.primary.address, ctx.clients);

test.after.each(async (ctx) => {
  const h = ctx.h;
  ctx.h = null;
  if (h !== null) await teardown(ctx.clients, h.children, () => h.primary.stop({ graceful: false }));
});

test('start forks N workers with the bound address and the backends, and resolves once all are ready', async (ctx) => {
  const h = make(ctx, 2);
  let done = false;
  const start = h.primary.start().then(() => { done = true; });
  const [a, b] = await h.made(2);
  const config = a!.config as FrontWorkerConfig;
  assert.equal(config.listen, h.primary.address, 'the address the primary bound');
  assert.equal(config.backends, [{ address: BACKEND, source: 'config' }]);
  a!.say({ type: 'ready' });
  await turn();
  assert.not.ok(done, 'one of two ready: start() still waits');
  b!.say({ type: 'ready' });
  await start;
  assert.equal(h.primary.pids(), [a!.pid, b!.pid]);
  assert.equal(a!.got('backends').length, 1, 'a ready worker catches up on the backends');
  assert.match(h.log.lines.join('\n'), new RegExp(`listening on http .* with 2 processes .*workers ${a!.pid}, ${b!.pid}`));
});

test('a worker that cannot start fails start() with its error (a ConfigError for a bad configuration); nothing respawns', async (ctx) => {
  const h = make(ctx, 2);
  const start = h.primary.start();
  const [a, b] = await h.made(2);
  b!.say({ type: 'ready' });
  a!.say({ type: 'failed', message: 'bad --static mount', config: true });
  a!.exit(2);
  const stopping = rejects(start, ConfigError, undefined, 'start()');
  await b!.when('stop');
  b!.exit(0);
  const err = await stopping;
  assert.is(err.message, 'bad --static mount');
  assert.equal(h.children.length, 2, 'no respawn');
});

test('a worker that exits while the first set starts fails start()', async (ctx) => {
  const h = make(ctx, 2);
  const start = h.primary.start();
  const [a, b] = await h.made(2);
  a!.exit(null, 'SIGKILL');
  const failed = rejects(start, Error, undefined, 'start()');
  await b!.when('stop');
  b!.exit(0);
  assert.match((await failed).message, /front worker 0 \(pid \d+\) exited \(SIGKILL\) while starting/);
  assert.equal(h.children.length, 2, 'no respawn');
});

test('a worker that dies is replaced in its slot by reconcile() once its backoff is over, and the backoff grows', async (ctx) => {
  const h = make(ctx, 2);
  await started(h, 2);
  const [a, b] = h.children;
  a!.exit(null, 'SIGKILL');
  assert.match(h.log.lines.join('\n'), new RegExp(`warn: front worker 0 \\(pid ${a!.pid}\\) died \\(SIGKILL\\); respawning in 100 ms`));
  assert.equal(h.children.length, 2, 'not at once');
  h.clock.advance(99);
  h.primary.reconcile();
  assert.equal(h.children.length, 2, 'not before the backoff');
  h.clock.advance(1);
  h.primary.reconcile();
  h.primary.reconcile();
  assert.equal(h.children.length, 3, 'one replacement, however often reconcile() runs');
  const c = h.children[2]!;
  c.say({ type: 'ready' });
  assert.equal(h.primary.pids(), [b!.pid, c.pid]);

  // Dying young again: twice the wait.
  h.clock.advance(50);
  c.exit(1);
  assert.match(h.log.lines.join('\n'), /front worker 0 \(pid \d+\) died \(code 1\); respawning in 200 ms/);
  h.clock.advance(199);
  h.primary.reconcile();
  assert.equal(h.children.length, 3);
  h.clock.advance(1);
  h.primary.reconcile();
  assert.equal(h.children.length, 4);

  // A worker that lived long died of something new: the wait starts over.
  h.children[3]!.say({ type: 'ready' });
  h.clock.advance(60_000);
  h.children[3]!.exit(1);
  assert.match(h.log.lines.at(-1)!, /respawning in 100 ms/);
});

test('a connection goes to the ready worker with the fewest; one that cannot take it is re-routed once', async (ctx) => {
  const h = make(ctx, 3);
  await started(h, 3);
  const [a, b, c] = h.children;
  a!.say({ type: 'load', connections: 4 });
  b!.say({ type: 'load', connections: 0 });
  c!.say({ type: 'load', connections: 2 });
  let got = firstTo([a!, b!, c!], 'connection');
  client(ctx);
  let { child, sent } = await got;
  assert.is(child, b);
  assert.equal(sent.message, { type: 'connection' });
  assert.ok(sent.handle !== undefined, 'the socket goes with it');

  b!.say({ type: 'load', connections: 0 });
  b!.refuseSockets = new Error('write EPIPE');
  got = firstTo([a!, b!, c!], 'connection');
  client(ctx);
  ({ child } = await got);
  assert.is(child, c, 're-routed to the next least busy');
  assert.match(h.log.lines.join('\n'), /front worker 1 could not take a connection \(write EPIPE\); routing it elsewhere/);

  // Both remaining refuse: closed after the second try.
  a!.refuseSockets = new Error('write EPIPE');
  c!.refuseSockets = new Error('write EPIPE');
  const socket = client(ctx);
  await new Promise((resolve) => socket.once('close', resolve));
  assert.equal(h.log.lines.filter((l) => l.includes('could not take a connection')).length, 3);
});

test('connections wait while no worker is ready, and go to the replacement once it is', async (ctx) => {
  const h = make(ctx, 1);
  await started(h, 1);
  h.children[0]!.exit(null, 'SIGKILL');
  const socket = client(ctx);
  await new Promise((resolve) => socket.once('connect', resolve));
  h.clock.advance(100);
  h.primary.reconcile();
  const replacement = h.children[1]!;
  const got = replacement.next('connection');
  replacement.say({ type: 'ready' });
  const sent = await got;
  assert.ok(sent.handle !== undefined);
  assert.not.ok(socket.destroyed, 'the client was kept waiting, not dropped');
});

test('stop() tells every worker to stop, resolves once all exited, and respawns nothing', async (ctx) => {
  const h = make(ctx, 2);
  await started(h, 2);
  const [a, b] = h.children;
  let done = false;
  const stop = h.primary.stop({ graceful: true }).then(() => { done = true; });
  await Promise.all([a!.when('stop'), b!.when('stop')]);
  assert.equal(a!.got('stop').map((s) => s.message), [{ type: 'stop', graceful: true }]);
  a!.exit(0);
  await turn();
  assert.not.ok(done);
  b!.exit(0);
  await stop;
  h.clock.advance(60_000);
  h.primary.reconcile();
  assert.equal(h.children.length, 2);
});

test.run();
