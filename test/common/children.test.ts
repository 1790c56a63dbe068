// ChildSet, the plumbing under both process managers, on fake children and real sockets: a
// socket held for a starting child lands on it, the waiting queue is capped, close() drops what
// waits, a child that does not stop is SIGKILLed, and an ask falls back when nobody answers.
import { createServer, type Server, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, ChildSet, type Delivery } from '../../src/common/children.js';
import { connectTo, fakeSpawn, recordingLogger, turn } from '../helpers/fake-children.js';

interface Worker extends Child {
  load: number;
}

interface Ctx {
  server: Server;
  /** Server-side sockets, in the order accepted. */
  accepted: Socket[];
  clients: Socket[];
}

const test = suite<Ctx>('common/children', { accepted: [], clients: [] } as unknown as Ctx);

const DELIVERY: Delivery<Worker> = {
  message: { type: 'connection' },
  load: (w) => w.load,
  charge: (w, n) => { w.load += n; },
};

function set(opts: { holdForStartingMs?: number; maxPending?: number } = {}) {
  const fake = fakeSpawn<{ n: number }>();
  const log = recordingLogger();
  const children = new ChildSet<{ n: number }, Worker>({
    spawn: fake.spawn, log, name: 'child', onMessage: () => {}, onExit: () => {}, ...opts,
  });
  const add = (id: number, state: Worker['state'] = 'ready') => {
    const w = children.spawn(id, { n: id }, { load: 0 });
    w.state = state;
    return { w, child: fake.children.at(-1)! };
  };
  return { children, add, log };
}

/** A real connection: the server's end of it, as a listener would hand it over. */
async function accept(ctx: Ctx): Promise<Socket> {
  const n = ctx.accepted.length;
  const address = ctx.server.address();
  if (address === null || typeof address === 'string') throw new Error('listening on tcp');
  const got = new Promise<void>((resolve) => ctx.server.once('connection', () => resolve()));
  connectTo({ kind: 'tcp', host: '127.0.0.1', port: address.port }, ctx.clients);
  await got;
  return ctx.accepted[n]!;
}

test.before(async (ctx) => {
  ctx.server = createServer({ pauseOnConnect: true }, (s) => ctx.accepted.push(s));
  await new Promise<void>((resolve) => ctx.server.listen(0, '127.0.0.1', resolve));
});

test.after.each((ctx) => {
  for (const s of ctx.clients.splice(0)) s.destroy();
  for (const s of ctx.accepted.splice(0)) s.destroy();
});

test.after(async (ctx) => {
  await new Promise((resolve) => ctx.server.close(resolve));
});

test('a socket waits for a starting child rather than going to a busier ready one', async (ctx) => {
  const { children, add } = set({ holdForStartingMs: 60_000 });
  const busy = add(1);
  busy.w.load = 5;
  const fresh = add(2, 'starting');
  children.route(await accept(ctx), DELIVERY);
  assert.equal(busy.child.got('connection').length, 0, 'held');
  fresh.w.state = 'ready';
  children.flush();
  assert.equal(fresh.child.got('connection').length, 1, 'the new child gets it');
  assert.is(fresh.w.load, 1);
  children.close();
});

test('a socket is held once: flushed while a child still starts, it goes to a ready one', async (ctx) => {
  const { children, add } = set({ holdForStartingMs: 60_000 });
  const ready = add(1);
  add(2, 'starting');
  children.route(await accept(ctx), DELIVERY);
  children.flush();
  assert.equal(ready.child.got('connection').length, 1);
  children.close();
});

test('with no ready child, sockets wait up to maxPending; more are closed, and close() closes those waiting', async (ctx) => {
  const { children, add } = set({ maxPending: 2 });
  const starting = add(1, 'starting');
  const sockets = [await accept(ctx), await accept(ctx), await accept(ctx)];
  for (const s of sockets) children.route(s, DELIVERY);
  assert.equal(sockets.map((s) => s.destroyed), [false, false, true]);
  assert.equal(starting.child.got('connection').length, 0);
  children.close();
  assert.equal(sockets.map((s) => s.destroyed), [true, true, true]);
  const late = await accept(ctx);
  children.route(late, DELIVERY);
  assert.ok(late.destroyed, 'after close() nothing is routed');
});

test('ties go round in turn', async (ctx) => {
  const { children, add } = set();
  const all = [add(1), add(2), add(3)];
  for (let i = 0; i < 3; i++) {
    children.route(await accept(ctx), DELIVERY);
    for (const { w } of all) w.load = 0;
  }
  assert.equal(all.map(({ child }) => child.got('connection').length), [1, 1, 1]);
  children.close();
});

test('stop() sends the message, and SIGKILLs a child that has not exited after the delay', async () => {
  const { children, add, log } = set();
  const { w, child } = add(1);
  children.stop(w, { type: 'stop' }, 0);
  assert.equal(child.got('stop').length, 1);
  assert.is(w.state, 'stopping');
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(child.signals, ['SIGKILL']);
  assert.match(log.lines.join('\n'), new RegExp(`warn: child 1 \\(pid ${child.pid}\\) did not stop within 0 s; killing it`));
  await children.whenEmpty();
});

test('stop() of a child that exits in time kills nothing; one that cannot hear gets SIGTERM', async () => {
  const { children, add } = set();
  const a = add(1);
  const b = add(2);
  children.stop(a.w, { type: 'stop' }, 60_000);
  a.child.exit(0);
  b.child.connected = false;
  children.stop(b.w, { type: 'stop' }, 60_000);
  assert.equal(b.child.signals, ['SIGTERM']);
  b.child.exit(null, 'SIGTERM');
  await children.whenEmpty();
  assert.equal(a.child.signals, []);
});

test('ask() resolves with the answer to its id, or the fallback when the message cannot be sent', async () => {
  const { children, add } = set();
  const { w, child } = add(1);
  const asked = children.ask(w, (id) => ({ type: 'q', id }), 60_000, () => 'fallback');
  const question = { id: child.got('q')[0]!.message.id as number };
  children.answer(question.id + 1, 'not mine');
  children.answer(question.id, 'answer');
  assert.is(await asked, 'answer');
  child.connected = false;
  assert.is(await children.ask(w, (id) => ({ type: 'q', id }), 60_000, () => 'fallback'), 'fallback');
  await turn();
});

test.run();
