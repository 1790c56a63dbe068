// The front's backend pool under pressure, with real `tsgi front` and `tsgi serve` processes
// and fake backends speaking the project's own protocol code: slow clients holding every
// stream of a backend's connection make the front open more (bounded); a refusal says what ran
// out; a backend that says HELLO then GOAWAY is reconnected to with a growing backoff; a request
// lost with a link that never acknowledged it is answered by another backend.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent, request } from 'undici';
import { controlRequest } from '../../src/common/control.js';
import { Connection, FrameType, ResetCode, Window, type Stream } from '../../src/protocol/index.js';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';
import { rmSync } from 'node:fs';

const SLOW = fixture('slow.js');
const HELLO = fixture('hello.js');

/**
 * A fake backend on a Unix socket: a real server Connection per accepted socket, whose
 * behaviour `onConnection` decides. Counts the connections it accepted.
 */
class FakeBackend {
  readonly path: string;
  accepted = 0;
  requests = 0;
  #dir: string;
  #server: Server;
  #sockets = new Set<Socket>();

  constructor(behave: (conn: Connection, socket: Socket, fake: FakeBackend) => void, onRequest?: (socket: Socket, conn: Connection, stream: Stream) => void) {
    this.#dir = tempDir('tsgi-e2e-fake-');
    this.path = join(this.#dir, 'fake.sock');
    this.#server = createServer((socket) => {
      this.accepted++;
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      const conn = new Connection({
        role: 'server', write: (c) => { if (!socket.destroyed) socket.write(c); },
        onRequest: (stream) => {
          this.requests++;
          onRequest?.(socket, conn, stream);
        },
      });
      socket.on('data', (chunk: Buffer) => conn.receive(chunk));
      behave(conn, socket, this);
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.#server.listen(this.path, resolve));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

interface PoolCtx extends Ctx {
  fake?: FakeBackend;
  holders?: Agent;
}

const poolCtx = (): PoolCtx => ({ ...newCtx() });

async function stopPool(ctx: PoolCtx): Promise<void> {
  await ctx.holders?.destroy().catch(() => {});
  await ctx.fake?.close();
}

/** Requests in flight to the backends, and requests waiting for one (the front's control socket). */
async function load(control: string): Promise<{ inFlight: number; queued: number }> {
  const answer = await controlRequest(control, { op: 'list' });
  return { inFlight: (answer.backends ?? []).reduce((n, b) => n + b.inFlight, 0), queued: answer.queued ?? 0 };
}

/**
 * Sends requests that the slow app holds until the client goes away (never awaited), one at a
 * time (the queue holds one), until `total` are in flight at the backend.
 */
async function hold(url: string, agent: Agent, control: string, total: number): Promise<void> {
  for (let held = (await load(control)).inFlight; held < total; held++) {
    request(`${url}/?ms=600000&hold=${held}`, { dispatcher: agent }).catch(() => {});
    await poll(async () => ((await load(control)).inFlight === held + 1 ? true : undefined), `${held + 1} streams held`);
  }
}

// 1. Slow clients holding every stream of the backend's one connection (--max-streams 4): the
// front opens more connections, up to 8 beyond the one it was asked for; beyond that a
// request waits, and its 503 says which streams ran out and names the flag.
const slow = suite<PoolCtx & { control: string }>('pool/streams-exhausted', { ...poolCtx(), control: '' });
setUp(slow, async (ctx) => {
  ctx.backend = await startBackend(SLOW, ['--workers', '1', '--max-streams', '4']);
  const dir = tempDir('tsgi-e2e-pool-');
  ctx.control = join(dir, 'front.ctl');
  ctx.front = await startFront([ctx.backend.socket], ['--control', ctx.control, '--queue-timeout', '1', '--queue-size', '1']);
  ctx.agent = newAgent();
  ctx.holders = new Agent({ connections: 64 });
});
slow.after(stopPool);

slow('held streams make the front open more connections; past 8 more, a 503 names what ran out', async (ctx) => {
  const url = ctx.front!.url;
  await hold(url, ctx.holders!, ctx.control, 4);
  const other = await call(`${url}/?ms=0`, { dispatcher: ctx.agent });
  assert.is(other.status, 200, 'a request while every stream of the first connection is held is served on another');
  assert.match(ctx.front!.stderr(), /backend unix:\S+: every stream of its 1 connection in use; opening one more/);
  // 4 streams on each of 1 + 8 connections.
  await hold(url, ctx.holders!, ctx.control, 36);
  assert.match(ctx.front!.stderr(), /every stream of its 8 connections in use; opening one more/);
  assert.not.match(ctx.front!.stderr(), /every stream of its 9 connections in use/);
  const [waited, refused] = await Promise.all([
    call(`${url}/?ms=0&waits=1`, { dispatcher: ctx.agent }),
    (async () => {
      // Sent once the first one waits in the queue (--queue-size 1).
      await poll(async () => ((await load(ctx.control)).queued === 1 ? true : undefined), 'one request queued');
      return call(`${url}/?ms=0&full=1`, { dispatcher: ctx.agent });
    })(),
  ]);
  assert.is(refused.status, 503);
  assert.match(ctx.front!.stderr(),
    /503 GET \/\?ms=0&full=1: streams of unix:\S+ exhausted: 36 in use on 9 connections; the wait queue is full \(--queue-size 1\)/);
  assert.is(waited.status, 503);
  assert.match(ctx.front!.stderr(),
    /503 GET \/\?ms=0&waits=1: streams of unix:\S+ exhausted: 36 in use on 9 connections; waited --queue-timeout 1 s/);
  assert.match(ctx.front!.stderr(), /warn: streams of unix:\S+ exhausted: 36 in use on 9 connections \(8 beyond the 1 it asks for\); requests wait/);
  assert.not.match(ctx.front!.stderr(), /no backend became ready/);
});

slow.run();

// 2. A backend that answers HELLO and then GOAWAY at once, on every connection: each
// reconnection waits for the backoff, which doubles. Before the front logs its 5th backoff (0.8 s),
// the fake has accepted no more than 5 connections (plus the one that may be opening).
const flap = suite<PoolCtx>('pool/hello-then-goaway', poolCtx());
setUp(flap, async (ctx) => {
  ctx.fake = new FakeBackend((conn) => {
    conn.start();
    conn.goAway(ResetCode.NO_ERROR, 'going away at once');
  });
  await ctx.fake.listen();
  ctx.front = await startFront([ctx.fake.path]);
});
flap.after(stopPool);

flap('reconnections to a backend that sends GOAWAY right after HELLO back off', async (ctx) => {
  await ctx.front!.waitForStderr(/failure 5\); next connection in 0\.8 s \(backoff\)/);
  const accepted = ctx.fake!.accepted;
  assert.ok(accepted >= 5 && accepted <= 6, `${accepted} connections accepted by the 5th backoff`);
  const delays = [...ctx.front!.stderr().matchAll(/failure (\d+)\); next connection in ([\d.]+) s/g)]
    .map((m) => [Number(m[1]), Number(m[2])]);
  assert.ok(delays.length >= 5, ctx.front!.stderr());
  assert.equal(delays.slice(0, 5), [[1, 0.05], [2, 0.1], [3, 0.2], [4, 0.4], [5, 0.8]], 'the backoff doubles');
});

flap.run();

// 3. A backend that drops its connection as soon as it receives a request head, and a healthy
// one: the request, never acknowledged by the first, is answered by the second. A request with
// a body whose stream the first backend acknowledged (WINDOW credit) is not sent again: 502.
const lost = suite<PoolCtx>('pool/lost-before-acknowledged', poolCtx());
let creditFirst = false;
setUp(lost, async (ctx) => {
  ctx.fake = new FakeBackend((conn) => conn.start(), (socket, conn, stream) => {
    if (creditFirst) {
      // Acknowledge the stream with credit for its body, then die.
      conn.writeFrame(FrameType.WINDOW, 0, stream.id, Window.encode({ increment: 64 * 1024 }).finish());
      setImmediate(() => socket.destroy());
      return;
    }
    socket.destroy();
  });
  await ctx.fake.listen();
  ctx.backend = await startBackend(HELLO);
  ctx.front = await startFront([ctx.fake.path, ctx.backend.socket]);
  ctx.agent = newAgent();
});
lost.after(stopPool);

lost('a request lost with a link that never acknowledged it goes to the other backend', async (ctx) => {
  await ctx.front!.waitForStderr(new RegExp(`backend unix:${ctx.fake!.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is ready`));
  const statuses: number[] = [];
  // Until the fake saw some of them: every one still gets 200 (the fake reconnects with backoff).
  for (let i = 0; i < 2000 && ctx.fake!.requests < 2; i++) {
    statuses.push((await call(`${ctx.front!.url}/?i=${i}`, { dispatcher: ctx.agent })).status);
  }
  assert.ok(ctx.fake!.requests >= 2, `the fake backend received ${ctx.fake!.requests} request heads`);
  assert.ok(statuses.length > 0);
  assert.equal([...new Set(statuses)], [200], `statuses: ${statuses.join(' ')}`);
  assert.not.match(ctx.front!.stderr(), /502 GET/);
});

/** Sends `method` requests with a body until one reaches the fake backend; the statuses. */
async function untilFake(ctx: PoolCtx, method: 'POST' | 'PUT', what: string): Promise<number[]> {
  const before = ctx.fake!.requests;
  const statuses: number[] = [];
  for (let i = 0; i < 2000 && ctx.fake!.requests === before; i++) {
    const body = Buffer.alloc(1000, 'x');
    statuses.push((await call(`${ctx.front!.url}/?${what}=${i}`, { method, body, dispatcher: ctx.agent })).status);
  }
  assert.ok(ctx.fake!.requests > before, `the fake backend received a ${method}`);
  assert.ok(statuses.slice(0, -1).every((s) => s === 200), `statuses: ${statuses.join(' ')}`);
  return statuses;
}

lost('a POST lost before any acknowledgement is not sent again (it may have run): 502', async (ctx) => {
  creditFirst = false;
  const statuses = await untilFake(ctx, 'POST', 'post');
  assert.is(statuses.at(-1), 502, `statuses: ${statuses.join(' ')}`);
  assert.match(ctx.front!.stderr(), /502 POST \/\?post=\d+: connection to backend unix:\S+ lost/);
});

lost('a PUT whose body the lost backend acknowledged (credit) is not sent again: 502', async (ctx) => {
  creditFirst = true;
  const statuses = await untilFake(ctx, 'PUT', 'put');
  assert.is(statuses.at(-1), 502, `statuses: ${statuses.join(' ')}`);
  assert.match(ctx.front!.stderr(), /502 PUT \/\?put=\d+: connection to backend unix:\S+ lost/);
});

lost('a PUT lost before any acknowledgement is sent again: 200 from the other backend', async (ctx) => {
  creditFirst = false;
  const statuses = await untilFake(ctx, 'PUT', 'put-again');
  assert.is(statuses.at(-1), 200, `statuses: ${statuses.join(' ')}`);
});

lost.run();
