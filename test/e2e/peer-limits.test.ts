// What a tsgi peer that does not play fair can make the real processes do: fake peers written
// with the project's own Connection drive the real `tsgi front` (a fake backend) and the real
// `tsgi serve` (a fake front) over Unix sockets. A PING flood whose PONGs are never read, a
// connection that never says HELLO or stops answering pings, HELLO values past every sane bound,
// heads that decode to megabytes, and megabytes of peer text for the log: each is refused or
// cut, with a log line, and neither process grows without bound.
import { readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Connection, FrameDecoder, FrameType, Hello, Ping, ResetCode, encodeFrame, type Stream,
} from '../../src/protocol/index.js';
import { newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';
import { getRequest, rawUntilClose } from '../helpers/raw-http.js';

const MiB = 1024 * 1024;
/** The most PINGs a flooding peer writes (unanswered, the PONGs grew a process by gigabytes). */
const FLOOD_LIMIT = 64 * MiB;
/** The static-table index of 'x-cache': a header name that costs one byte. */
const X_CACHE = 98;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Resident memory of a process, in bytes (Linux). */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m !== null, `VmRSS of ${pid}`);
  return Number(m![1]) * 1024;
}

/** PINGs, `count` of them in one buffer. */
function pings(count: number): Buffer {
  const one = encodeFrame(FrameType.PING, 0, 0, Ping.encode({ id: 7 }).finish());
  return Buffer.concat(Array.from({ length: count }, () => one));
}

/**
 * Writes PINGs at `socket` in 256 KiB batches, honouring its backpressure, until `limit` bytes
 * went or the peer closed; reads nothing meanwhile. Then reads (and drops) what came, so that
 * a close is seen. Resolves with the bytes written.
 */
async function flood(socket: Socket, limit: number): Promise<number> {
  const batch = pings(Math.floor(256 * 1024 / 12));
  let sent = 0;
  while (sent < limit && !socket.destroyed && socket.writable) {
    sent += batch.length;
    if (!socket.write(batch)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
  socket.resume();
  return sent;
}

/** Resolves once `socket` closed (the test's bounded wait turns a socket kept open into a failure). */
function closed(socket: Socket, what: string, ms = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what}: the connection was not closed within ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The longest line a process logged. */
const longestLine = (stderr: string): number => Math.max(...stderr.split('\n').map((l) => l.length));

// ---- the front, against a fake backend ----------------------------------------------------------

interface FrontCtx extends Ctx {
  dir?: string;
  fake?: Server;
  fakePath?: string;
  /** Fake-backend connections accepted so far. */
  accepted: number;
  /** The first (flooding) connection. */
  flooder?: Socket;
  sockets: Set<Socket>;
}

/**
 * The fake backend. Its first connection floods the front with PINGs and never reads. Every
 * later one is a server Connection whose HELLO declares initial_window and connections of
 * 2^32-1 and a software name of 900,000 characters, and which answers requests by path:
 * /seed puts a 4 KiB value in the table, /refs sends a head of 300,000 references to it,
 * /plain a head of 250,000 literal fields, anything else a small 200.
 */
function fakeBackend(ctx: FrontCtx): Promise<Server> {
  const sockets = ctx.sockets;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    if (ctx.accepted++ === 0) {
      // Our HELLO, so that the front takes the connection, then nothing but PINGs.
      socket.write(encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({ versions: [1], maxFrameSize: MiB, initialWindow: 65536, software: 'flood' }).finish()));
      ctx.flooder = socket;
      void flood(socket, FLOOD_LIMIT);
      return;
    }
    const v4k = 'v'.repeat(4096);
    const conn: Connection = new Connection({
      role: 'server', write: (c) => socket.write(c), software: 's'.repeat(900_000), initialWindow: 0xffffffff, connectionsHint: 0,
      onRequest: (stream: Stream, head) => {
        const path = head.target;
        let names: number[] = [X_CACHE];
        let values: string[] = ['small'];
        if (path === '/seed') values = [v4k];
        else if (path === '/refs') {
          names = new Array(300_000).fill(X_CACHE);
          values = new Array(300_000).fill(v4k); // all in the table: 300,000 references
        } else if (path === '/plain') {
          names = new Array(250_000).fill(X_CACHE);
          values = new Array(250_000).fill('a');
        }
        stream.sendResponse({ status: 200, headers: { names, values } }, false);
        stream.write(Buffer.from(`fake ${path}`), true);
      },
      onError: () => socket.destroy(),
    });
    socket.on('data', (chunk: Buffer) => conn.receive(chunk));
    conn.start();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(ctx.fakePath!, () => resolve(server));
  });
}

const front = suite<FrontCtx>('e2e/peer-limits: the front against a backend that does not play fair', { ...newCtx(), accepted: 0, sockets: new Set() });
setUp(front, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-peer-');
  ctx.fakePath = join(ctx.dir, 'fake.sock');
  ctx.fake = await fakeBackend(ctx);
  ctx.front = await startFront([ctx.fakePath]);
});
front.after(async (ctx) => {
  if (process.env.TSGI_DEBUG_STDERR) console.error(ctx.front?.stderr());
  for (const s of ctx.sockets) s.destroy();
  await new Promise<void>((resolve) => (ctx.fake ? ctx.fake.close(() => resolve()) : resolve()));
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

front('a backend that floods PINGs and never reads is closed as a flood, and the front stays small (PONGs were queued: 1.47 GiB)', async (ctx) => {
  const f = ctx.front!;
  const flooder = await poll(async () => ctx.flooder, 'the fake backend\'s first connection');
  const before = rss(f.pid);
  await closed(flooder, 'the flooding backend');
  await f.waitForStderr(new RegExp(`backend ${escape(`unix:${ctx.fakePath}`)}: PING flood: more than 256 PINGs while the peer did not read the PONGs \\[TSGI_ERR_PROTOCOL\\]`));
  const grown = rss(f.pid) - before;
  console.log(`  PING flood: front RSS ${(before / MiB).toFixed(1)} -> ${((before + grown) / MiB).toFixed(1)} MiB`);
  assert.ok(grown < 128 * MiB, `front RSS grew ${(grown / MiB).toFixed(1)} MiB`);
});

front('HELLO values past the bounds are clamped with one warning, and a 900,000-character software name never reaches a log line whole', async (ctx) => {
  const f = ctx.front!;
  await f.waitForStderr(/backend \S+: peer HELLO \(s{255}…\) clamped: initial_window 4294967295 to 16777216\n/);
  assert.ok(longestLine(f.stderr()) < 1024, `every log line is short (longest: ${longestLine(f.stderr())})`);
});

front('a response head of 300,000 references to a 4 KiB value, or of 250,000 fields, gets 502: the connection is closed before the head is decoded, with a log line naming the backend and --max-response-header-size', async (ctx) => {
  const f = ctx.front!;
  const get = async (target: string) => (await rawUntilClose(f.port, getRequest(target, { host: 'peer' }))).bytes.toString('latin1');
  const seed = await get('/seed');
  assert.match(seed, /^HTTP\/1\.1 200 /);
  assert.ok(seed.includes('v'.repeat(4096)), 'a 4 KiB value within the limit goes through');
  for (const target of ['/refs', '/plain']) {
    const raw = await get(target);
    assert.match(raw, /^HTTP\/1\.1 502 Bad Gateway\r\n/, `${target}: ${raw.slice(0, 200)}`);
    assert.ok(raw.length < 1024, `${target}: the client gets a short 502, not the head`);
    await f.waitForStderr(new RegExp(`backend unix:${escape(ctx.fakePath!)}: a head frame of \\d+ bytes: its fields cannot fit --max-response-header-size \\(65536 bytes\\)`));
    await f.waitForStderr(new RegExp(`502 GET ${target}: `));
  }
  assert.match(await get('/after'), /^HTTP\/1\.1 200 /, 'the connection serves on');
});

front.run();

// ---- tsgi serve, against a fake front ---------------------------------------------------------

/** A fake front's connection to `tsgi serve`: a client Connection on a raw Unix socket. */
class FakeFront {
  readonly socket: Socket;
  readonly conn: Connection;
  readonly ready: Promise<void>;
  /** DATA bytes received per stream. */
  readonly data = new Map<number, number>();
  readonly resets = new Map<number, [number, string]>();
  readonly heads = new Map<number, number>();
  readonly pongs: number[] = [];
  /** PINGs received. */
  pings = 0;

  constructor(path: string, hello: { initialWindow?: number; software?: string } = {}) {
    this.socket = connect(path);
    let ready!: () => void;
    this.ready = new Promise((r) => { ready = r; });
    this.conn = new Connection({
      role: 'client', write: (c) => this.socket.write(c), initialWindow: hello.initialWindow, software: hello.software,
      onReady: () => ready(), onPong: (id) => this.pongs.push(id),
    });
    this.socket.on('connect', () => this.conn.start());
    const tap = new FrameDecoder(16 * MiB, { fragmentData: true });
    this.socket.on('data', (c: Buffer) => {
      tap.push(c, (type) => { if (type === FrameType.PING) this.pings++; });
      this.conn.receive(c);
    });
    this.socket.on('close', () => this.conn.destroy('closed'));
    this.socket.on('error', () => {});
  }

  /** Opens a GET; its body is counted and never consumed (no WINDOW goes back). */
  get(target: string, headers = { names: [] as number[], values: [] as string[] }): Stream {
    const stream = this.conn.open({ method: 'GET', target, headers }, true);
    (stream.handler ??= {}).onHead = (head) => this.heads.set(stream.id, head.status);
    (stream.handler ??= {}).onData = (chunk) => this.data.set(stream.id, (this.data.get(stream.id) ?? 0) + chunk.length);
    (stream.handler ??= {}).onReset = (code, message) => this.resets.set(stream.id, [code, message]);
    return stream;
  }

  close(): void {
    this.socket.destroy();
  }
}

const serve = suite<Ctx & { fakes: Socket[] }>('e2e/peer-limits: tsgi serve against a front that does not play fair', { ...newCtx(), fakes: [] });
setUp(serve, async (ctx) => {
  ctx.backend = await startBackend(fixture('download.js'), ['--ping-interval', '0.2', '--ping-timeout', '1']);
});
serve.after.each((ctx) => {
  for (const s of ctx.fakes.splice(0)) s.destroy();
});

serve('a front that floods PINGs and never reads is closed as a flood; tsgi serve stays small (PONGs were queued: 1.52 GiB) and serves on', async (ctx) => {
  const b = ctx.backend!;
  const socket = connect(b.socket);
  ctx.fakes.push(socket);
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  socket.write(encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({ versions: [1], maxFrameSize: MiB, initialWindow: 65536, software: 'flood' }).finish()));
  const before = rss(b.pid);
  void flood(socket, FLOOD_LIMIT);
  await closed(socket, 'the flooding front');
  await b.waitForStderr(/closing front connection: PING flood: more than 256 PINGs while the peer did not read the PONGs \[TSGI_ERR_PROTOCOL\]/);
  const grown = rss(b.pid) - before;
  console.log(`  PING flood: serve RSS ${(before / MiB).toFixed(1)} -> ${((before + grown) / MiB).toFixed(1)} MiB`);
  assert.ok(grown < 128 * MiB, `serve RSS grew ${(grown / MiB).toFixed(1)} MiB`);
  const healthy = new FakeFront(b.socket);
  ctx.fakes.push(healthy.socket);
  await healthy.ready;
  const s = healthy.get('/?bytes=1000');
  await poll(async () => (healthy.data.get(s.id) === 1000 ? true : undefined), 'a healthy request after the flood');
  assert.is(healthy.heads.get(s.id), 200);
});

serve('connections that never say HELLO are closed after --ping-timeout (500 were kept for good)', async (ctx) => {
  const b = ctx.backend!;
  const sockets = Array.from({ length: 50 }, () => connect(b.socket));
  ctx.fakes.push(...sockets);
  for (const s of sockets) {
    s.on('error', () => {});
    s.resume(); // (reads the HELLO; says nothing)
  }
  await Promise.all(sockets.map((s, i) => closed(s, `silent connection ${i}`)));
  // (Repeated lines are collapsed by the logger: one line, then a count.)
  await b.waitForStderr(/closing a front connection that sent no HELLO within 1 s \(--ping-timeout\)/);
});

serve('a front that stops answering pings is closed after --ping-timeout', async (ctx) => {
  const b = ctx.backend!;
  // A HELLO, then reads everything and answers nothing.
  const socket = connect(b.socket);
  ctx.fakes.push(socket);
  socket.on('error', () => {});
  const frames: number[] = [];
  const decoder = new FrameDecoder(16 * MiB);
  socket.on('data', (c: Buffer) => decoder.push(c, (type) => frames.push(type)));
  socket.on('connect', () => socket.write(encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({ versions: [1], maxFrameSize: MiB, initialWindow: 65536 }).finish())));
  await closed(socket, 'the silent front');
  assert.ok(frames.includes(FrameType.PING), 'tsgi serve pinged it');
  await b.waitForStderr(/closing a front connection that did not answer a ping within 1 s \(--ping-timeout\)/);
});

serve('a front that answers pings keeps its connection', async (ctx) => {
  const b = ctx.backend!;
  const fake = new FakeFront(b.socket);
  ctx.fakes.push(fake.socket);
  await fake.ready;
  await poll(async () => (fake.pings >= 3 ? true : undefined), 'three pings from tsgi serve (each answered)', 15_000);
  assert.not.ok(fake.socket.destroyed, 'still open');
  const s = fake.get('/?bytes=10');
  await poll(async () => (fake.data.get(s.id) === 10 ? true : undefined), 'a request on it');
});

serve('an initial_window of 2^32-1 is clamped to 16 MiB with a log line: a response never read costs no more (574 MiB for eight)', async (ctx) => {
  const b = ctx.backend!;
  const fake = new FakeFront(b.socket, { initialWindow: 0xffffffff, software: 'greedy' });
  ctx.fakes.push(fake.socket);
  await fake.ready;
  await b.waitForStderr(/front connection: peer HELLO \(greedy\) clamped: initial_window 4294967295 to 16777216/);
  const streams = [fake.get('/?mb=40'), fake.get('/?mb=40&seed=1')];
  // Each stream gets the clamped window and then waits for a WINDOW that never comes.
  await poll(async () => (streams.every((s) => (fake.data.get(s.id) ?? 0) >= 16 * MiB) ? true : undefined), 'a window of body on each stream', 30_000);
  // A PING answered after that: frames written before it have arrived.
  fake.conn.ping(42);
  await poll(async () => (fake.pongs.includes(42) ? true : undefined), 'the pong');
  for (const s of streams) assert.is(fake.data.get(s.id), 16 * MiB, `stream ${s.id}: exactly the clamped window`);
});

serve('a request head that decodes past --max-request-header-size is refused with TOO_LARGE and a log line; the next request is served', async (ctx) => {
  const b = ctx.backend!;
  const fake = new FakeFront(b.socket);
  ctx.fakes.push(fake.socket);
  await fake.ready;
  const v4k = 'v'.repeat(4096);
  const seed = fake.get('/?bytes=5', { names: [X_CACHE], values: [v4k] });
  await poll(async () => (fake.data.get(seed.id) === 5 ? true : undefined), 'the seed request');
  // 20 references to the 4 KiB value: 80 KiB decoded, in a frame of a few dozen bytes.
  const big = fake.get('/?bytes=5', { names: new Array(20).fill(X_CACHE), values: new Array(20).fill(v4k) });
  await poll(async () => fake.resets.get(big.id), 'the refusal');
  assert.equal(fake.resets.get(big.id), [ResetCode.TOO_LARGE, 'request head over --max-request-header-size (65536 bytes of decoded header fields)']);
  await b.waitForStderr(new RegExp(`front connection: stream ${big.id} refused: request head over --max-request-header-size`));
  const after = fake.get('/?bytes=7');
  await poll(async () => (fake.data.get(after.id) === 7 ? true : undefined), 'the request after');
});

serve.run();

// ---------------------------------------------------------------------------------------------
const heads = suite<Ctx>('e2e/peer-limits: a head the backend refuses as too large', newCtx());
setUp(heads, async (ctx) => {
  ctx.backend = await startBackend(fixture('hello.js'), ['--max-request-header-size', '2k']);
  ctx.front = await startFront([ctx.backend.socket], ['--max-header-size', '64k']);
});

heads('a head the front takes but the backend refuses gets 431 (not 413: no body was sent), and the next request is served', async (ctx) => {
  const big = `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(8000)}\r\nConnection: close\r\n\r\n`;
  const refused = await rawUntilClose(ctx.front!.port, big);
  assert.match(refused.text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  await ctx.front!.waitForStderr(/431 GET \/: unix:\S+ refused the request head as too large/);
  const ok = await rawUntilClose(ctx.front!.port, getRequest('/'));
  assert.match(ok.text, /^HTTP\/1\.1 200 /);
});

heads.run();
