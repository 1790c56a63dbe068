// Connections taken on their libuv handle (rawAccept / RawStream): on this Node the bindings
// are found (a Node where they are not would quietly fall back to net.Sockets, so this says
// so loudly); reads reach the owner, EOF and close are heard once each, a write larger than
// the socket's buffer waits for the peer and drains, end() sends the bytes then the FIN,
// pause() stops the reads, and reset() cuts a TCP connection.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rawAccept, type RawStream, type RawStreamOwner } from '../../src/common/raw-stream.js';

/** An owner that records what it hears. */
class Recorder implements RawStreamOwner {
  chunks: Buffer[] = [];
  ends = 0;
  closes = 0;
  errors: Error[] = [];
  #waiters: (() => void)[] = [];
  onData: ((chunk: Buffer) => void) | null = null;

  _onData(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk)); // lent: copied
    this.onData?.(chunk);
    this.#wake();
  }

  _onEnd(): void {
    this.ends++;
    this.#wake();
  }

  _onClose(): void {
    this.closes++;
    this.#wake();
  }

  _error(err: Error): void {
    this.errors.push(err);
    this.#wake();
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves once `cond()` holds (checked after each event). */
  async until(cond: () => boolean): Promise<void> {
    while (!cond()) await new Promise<void>((r) => this.#waiters.push(r));
  }
}

interface Ctx { dir: string; server: Server; streams: RawStream[]; clients: Socket[]; next: Promise<RawStream> }
const test = suite<Ctx>('common/raw-stream', {} as Ctx);

function arm(ctx: Ctx): void {
  ctx.next = new Promise((resolve) => {
    const taken = rawAccept(ctx.server, (stream) => {
      ctx.streams.push(stream);
      resolve(stream);
    }, (err) => assert.unreachable(`accept failed: ${err.message}`));
    assert.ok(taken, 'rawAccept found Node\'s stream bindings (else every uwsgi connection takes the net.Socket path)');
  });
}

async function listen(ctx: Ctx, where: string | { port: number; host: string }): Promise<void> {
  ctx.server = createServer(() => assert.unreachable('a connection reached the net.Server path'));
  await new Promise<void>((r) => ctx.server.listen(where, r));
  arm(ctx);
}

test.before.each((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-raw-'));
  ctx.streams = [];
  ctx.clients = [];
});

test.after.each(async (ctx) => {
  for (const c of ctx.clients) c.destroy();
  for (const s of ctx.streams) s.destroy();
  await new Promise((r) => ctx.server.close(r));
  rmSync(ctx.dir, { recursive: true, force: true });
});

function client(ctx: Ctx, to: string | number): Socket {
  const c = typeof to === 'string' ? connect(to) : connect(to, '127.0.0.1');
  c.on('error', () => {});
  ctx.clients.push(c);
  return c;
}

function received(c: Socket): { bytes: () => Buffer; ended: Promise<void>; closed: Promise<boolean> } {
  const parts: Buffer[] = [];
  c.on('data', (b: Buffer) => parts.push(b));
  return {
    bytes: () => Buffer.concat(parts),
    ended: new Promise((r) => c.once('end', () => r())),
    closed: new Promise((r) => c.once('close', (hadError: boolean) => r(hadError))),
  };
}

/** A client on a Unix socket and the RawStream of its connection, read by a Recorder. */
async function unixPair(ctx: Ctx) {
  const path = join(ctx.dir, 's.sock');
  await listen(ctx, path);
  const c = client(ctx, path);
  const got = received(c);
  const stream = await ctx.next;
  const owner = new Recorder();
  stream.start(owner);
  return { path, c, got, stream, owner };
}

test('reads reach the owner, a reply goes back, and EOF then close are heard once each', async (ctx) => {
  const { c, got, stream, owner } = await unixPair(ctx);
  c.write('ping');
  await owner.until(() => owner.bytes.length >= 4);
  assert.is(owner.bytes.toString(), 'ping');
  assert.ok(stream.write(Buffer.from('pong')), 'a small write is taken at once');
  assert.is(stream.writableLength, 0, 'and is in the kernel');
  c.end();
  await owner.until(() => owner.ends === 1);
  assert.is(owner.closes, 0, 'the EOF alone does not close (half-open until our end)');
  stream.end(Buffer.from('!'));
  await got.ended;
  assert.is(got.bytes().toString(), 'pong!');
  await owner.until(() => owner.closes === 1);
  assert.ok(stream.destroyed, 'both sides ended: closed');
  assert.is(owner.ends, 1);
  assert.equal(owner.errors, []);
});

test('a write larger than the socket buffer waits for the peer, then drains, in order', async (ctx) => {
  const path = join(ctx.dir, 's.sock');
  await listen(ctx, path);
  const c = client(ctx, path);
  c.pause(); // the peer reads nothing yet
  const stream = await ctx.next;
  const owner = new Recorder();
  stream.start(owner);
  const body = randomBytes(4 * 1024 * 1024);
  const first = stream.write(body.subarray(0, 3 * 1024 * 1024));
  assert.not.ok(first, 'write() asks to wait: the kernel did not take 3 MiB');
  assert.ok(stream.writableNeedDrain);
  assert.ok(stream.writableLength > 0);
  stream.write(body.subarray(3 * 1024 * 1024));
  let drained = false;
  stream.onDrain(() => { drained = true; });
  assert.not.ok(drained);
  const got = received(c);
  c.resume();
  stream.end();
  await got.ended;
  assert.ok(drained, 'drained once everything was written');
  assert.is(stream.writableLength, 0);
  assert.ok(got.bytes().equals(body), 'the bytes arrived whole and in order');
  let finished = false;
  stream.onFinish(() => { finished = true; });
  assert.ok(finished, 'the shutdown completed before the peer saw its end');
});

test('readIntoSlabs(): the reads after the one that asked land in slabs the owner keeps, intact, with no copy', async (ctx) => {
  const { c, got, stream, owner } = await unixPair(ctx);
  const body = randomBytes(2 * 1024 * 1024);
  const kept: Buffer[] = [];
  let first = true;
  let lentAfterSwitch: boolean | null = null;
  owner.onData = (chunk) => {
    if (first) {
      first = false;
      assert.ok(stream.lent, 'reads go into the shared buffer at first');
      stream.readIntoSlabs();
      lentAfterSwitch = stream.lent;
      return;
    }
    assert.not.ok(stream.lent);
    kept.push(chunk); // no copy: a slab's bytes are never written twice
  };
  c.write('head');
  await owner.until(() => !first);
  assert.is(lentAfterSwitch, true, 'the read that switched is still lent');
  c.end(body);
  await owner.until(() => owner.ends === 1);
  assert.ok(kept.length > 1, `the body came in several reads (${kept.length})`);
  assert.ok(kept.every((k) => k.buffer.byteLength === 256 * 1024), 'each read is a view of a 256 KiB slab');
  assert.ok(Buffer.concat(kept).equals(body), 'the kept views hold the body, none overwritten by a later read');
  stream.end();
  await got.ended;
});

test('pause() stops the reads; resume() gets the bytes that waited', async (ctx) => {
  const { path, c, stream, owner } = await unixPair(ctx);
  owner.onData = () => stream.pause();
  c.write('one');
  await owner.until(() => owner.chunks.length === 1);
  // A second write and a round trip through the socket: had reads not stopped, it would be read.
  c.write('two');
  await new Promise<void>((r) => c.write('', () => r()));
  const echo = client(ctx, path);
  await new Promise<void>((r) => echo.once('connect', () => r()));
  assert.is(owner.chunks.length, 1, 'nothing read while paused');
  owner.onData = null;
  stream.resume();
  await owner.until(() => owner.bytes.length === 6);
  assert.is(owner.bytes.toString(), 'onetwo');
});

test('destroy() closes at once and the peer sees the end; a read after it is not delivered', async (ctx) => {
  const { got, stream, owner } = await unixPair(ctx);
  stream.write(Buffer.from('bye'));
  stream.destroy();
  stream.destroy(); // a second call does nothing
  await owner.until(() => owner.closes === 1);
  await got.ended;
  assert.is(got.bytes().toString(), 'bye');
  assert.not.ok(stream.write(Buffer.from('late')), 'a write after destroy is refused');
  assert.is(owner.closes, 1);
  assert.is(owner.chunks.length, 0);
});

test('over TCP: peer() names the client, and reset() cuts the connection', async (ctx) => {
  await listen(ctx, { port: 0, host: '127.0.0.1' });
  const port = (ctx.server.address() as { port: number }).port;
  const c = client(ctx, port);
  let error: NodeJS.ErrnoException | null = null;
  c.on('error', (err) => { error = err; });
  const got = received(c);
  const stream = await ctx.next;
  const owner = new Recorder();
  stream.start(owner);
  await new Promise<void>((r) => (c.localPort !== undefined ? r() : c.once('connect', () => r())));
  assert.is(stream.peer(), `127.0.0.1:${c.localPort}`);
  stream.reset();
  await got.closed;
  assert.is((error as NodeJS.ErrnoException | null)?.code, 'ECONNRESET', 'the client saw a reset, not an end');
  await owner.until(() => owner.closes === 1);
});

test('a Unix socket has no peer address and no reset: reset() closes it', async (ctx) => {
  const { got, stream, owner } = await unixPair(ctx);
  assert.is(stream.peer(), null);
  stream.reset();
  await got.ended;
  await owner.until(() => owner.closes === 1);
});

test.run();
