// End to end: upgraded connections (WebSocket and any other Upgrade token) through the real
// `tsgi front`, against backends written here with the project's own Connection in the server
// role over Unix sockets: one of protocol version 2 that answers 101 and then echoes, floods,
// sinks or resets; one of version 1, which must only ever see plain requests. Clients are raw
// sockets and the `ws` client.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { socketWriter } from '../../src/common/socket-writer.js';
import { Connection, ResetCode, packHeaders, unpackHeaders, type Stream, type tsgi } from '../../src/protocol/index.js';
import { newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { startFront, tempDir, type FrontProc } from '../helpers/procs.js';

const MiB = 1024 * 1024;
const WINDOW = 256 * 1024;
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

interface Seen {
  target: string;
  upgrade: boolean;
  headers: string[];
}

interface TunnelCtx extends Ctx {
  dir: string;
  v2Path: string;
  v1Path: string;
  servers: Server[];
  sockets: Set<Socket>;
  /** Request heads each fake backend received. */
  seen: { v1: Seen[]; v2: Seen[] };
  /** /flood: bytes handed to the stream, and whether it waits for credit. */
  flood: { written: number; waiting: boolean; done: boolean };
  /** /sink: the bytes received so far, and the stream (to grant credit later). */
  sink: { received: number; stream: Stream | null };
  /** /ws-slow: the stream, half-way through a 256 KiB message, and what the app received. */
  slow: { stream: Stream | null; ws: WsEcho | null; ended: boolean };
  /** A front with both backends (--admin, --access-log), one with only the version-1 backend, one with tight limits. */
  both?: FrontProc;
  v1only?: FrontProc;
  tight?: FrontProc;
  admin: string;
  accessLog: string;
}

function header(flat: string[], name: string): string | undefined {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === name) return flat[i + 1];
  return undefined;
}

/** Server frames from masked client frames: a minimal WebSocket echo (enough for the ws client). */
class WsEcho {
  #buf = Buffer.alloc(0);
  /** The codes of the close frames received. */
  readonly closeCodes: number[] = [];
  /** Frames to send back for `chunk`; `close` once a close frame went by. */
  push(chunk: Buffer): { out: Buffer[]; close: boolean } {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    let close = false;
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) break;
      let len = b[1]! & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        pos = 10;
      }
      if (b.length < pos + 4 + len) break;
      const mask = b.subarray(pos, pos + 4);
      const payload = Buffer.from(b.subarray(pos + 4, pos + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      const opcode = b[0]! & 0x0f;
      const head = len < 126 ? Buffer.from([b[0]!, len])
        : len < 65536 ? Buffer.from([b[0]!, 126, len >> 8, len & 0xff])
          : Buffer.concat([Buffer.from([b[0]!, 127]), (() => { const x = Buffer.alloc(8); x.writeBigUInt64BE(BigInt(len)); return x; })()]);
      out.push(head, payload);
      if (opcode === 8) {
        close = true;
        this.closeCodes.push(payload.length >= 2 ? payload.readUInt16BE(0) : 1005);
      }
      this.#buf = b.subarray(pos + 4 + len);
    }
    return { out, close };
  }
}

/** Writes `total` bytes to `stream` in 64 KiB pieces, honouring its credit. */
function flood(ctx: TunnelCtx, stream: Stream, total: number): void {
  const piece = Buffer.alloc(64 * 1024, 0x61);
  const go = (): void => {
    ctx.flood.waiting = false;
    while (ctx.flood.written < total) {
      ctx.flood.written += piece.length;
      if (!stream.write(piece)) {
        ctx.flood.waiting = true;
        return;
      }
    }
    ctx.flood.done = true;
    stream.end();
  };
  stream.handler = { onDrain: go, onData: (c) => stream.consume(c.length) };
  go();
}

function answer(ctx: TunnelCtx, stream: Stream, head: tsgi.Request): void {
  const flat = unpackHeaders(head.headers);
  ctx.seen.v2.push({ target: head.target, upgrade: head.upgrade === true, headers: flat });
  const target = head.target;
  if (!stream.upgrade || target === '/no') {
    const body = Buffer.from(JSON.stringify({ upgrade: head.upgrade === true, headers: flat }));
    stream.sendResponse({ status: 200, headers: packHeaders(['Content-Type', 'application/json', 'Content-Length', String(body.length)]) }, false);
    stream.write(body, true);
    return;
  }
  const reply = ['Upgrade', header(flat, 'upgrade') ?? '', 'Connection', 'Upgrade', 'X-Tunnel', target];
  const key = header(flat, 'sec-websocket-key');
  if (key !== undefined) reply.push('Sec-WebSocket-Accept', createHash('sha1').update(key + WS_GUID).digest('base64'));
  stream.sendResponse({ status: 101, headers: packHeaders(reply) }, false);
  if (target === '/echo') {
    // Credit goes back only as the echo is sent: a client that does not read holds the upload too.
    let owed = 0;
    stream.handler = {
      onData: (chunk, end) => {
        if (chunk.length > 0) {
          if (owed === 0 && stream.write(Buffer.from(chunk))) stream.consume(chunk.length);
          else {
            if (owed > 0) stream.write(Buffer.from(chunk));
            owed += chunk.length;
          }
        }
        if (end) stream.end();
      },
      onDrain: () => {
        const n = owed;
        owed = 0;
        stream.consume(n);
      },
    };
  } else if (target === '/fin') {
    let n = 0;
    stream.handler = {
      onData: (chunk, end) => {
        n += chunk.length;
        stream.consume(chunk.length);
        if (end) stream.write(Buffer.from(`got ${n} bytes, then FIN`), true);
      },
    };
  } else if (target === '/reset') {
    stream.handler = { onData: () => stream.reset(ResetCode.INTERNAL_ERROR, 'the app failed') };
  } else if (target === '/flood') {
    flood(ctx, stream, 16 * MiB);
  } else if (target === '/sink') {
    ctx.sink.stream = stream;
    stream.handler = { onData: (chunk) => { ctx.sink.received += chunk.length; } };
  } else if (target === '/ws-slow') {
    // A binary message of 256 KiB whose second half waits for the test: a stop in between must
    // not cut the frame.
    const ws = new WsEcho();
    ctx.slow = { stream, ws, ended: false };
    stream.write(Buffer.concat([Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 4, 0, 0]), Buffer.alloc(128 * 1024, 0x31)]));
    stream.handler = {
      onData: (chunk, end) => {
        stream.consume(chunk.length);
        ws.push(chunk);
        if (end) {
          ctx.slow.ended = true;
          stream.end();
        }
      },
    };
  } else if (target === '/ws') {
    const ws = new WsEcho();
    stream.handler = {
      onData: (chunk, end) => {
        stream.consume(chunk.length);
        const { out, close } = ws.push(chunk);
        for (const b of out) stream.write(b);
        if (close || end) stream.end();
      },
    };
  }
}

function fakeBackend(ctx: TunnelCtx, path: string, version: 1 | 2): Promise<Server> {
  const server = createServer((socket) => {
    ctx.sockets.add(socket);
    socket.on('close', () => ctx.sockets.delete(socket));
    socket.on('error', () => {});
    const conn: Connection = new Connection({
      role: 'server', write: socketWriter(socket, () => conn.drained()), software: `fake-v${version}`,
      versions: [version], connectionsHint: 1,
      onRequest: (stream, head) => {
        if (version === 2) {
          answer(ctx, stream, head);
          return;
        }
        const flat = unpackHeaders(head.headers);
        ctx.seen.v1.push({ target: head.target, upgrade: head.upgrade === true, headers: flat });
        const body = Buffer.from(JSON.stringify({ upgrade: head.upgrade === true, headers: flat }));
        stream.sendResponse({ status: 200, headers: packHeaders(['Content-Length', String(body.length)]) }, false);
        stream.write(body, true);
      },
      onError: () => socket.destroy(),
    });
    socket.on('data', (chunk: Buffer) => conn.receive(chunk));
    conn.start();
  });
  ctx.servers.push(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

const upgradeRequest = (target: string, token = 'echo', extra = ''): string =>
  `GET ${target} HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\nUpgrade: ${token}\r\n${extra}\r\n`;

interface Client {
  socket: Socket;
  /** Everything received after the response head. */
  body(): Buffer;
  head: string;
  ended: Promise<void>;
  closed: Promise<void>;
}

/** Sends `request` (and `early` right behind it), resolves with the response head once it came. */
function openTunnel(port: number, request: string, early?: Buffer): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    let head: string | null = null;
    const chunks: Buffer[] = [];
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => {});
    socket.on('data', (c: Buffer) => {
      if (head !== null) {
        chunks.push(c);
        return;
      }
      buf = Buffer.concat([buf, c]);
      const at = buf.indexOf('\r\n\r\n');
      if (at === -1) return;
      head = buf.subarray(0, at).toString('latin1');
      if (buf.length > at + 4) chunks.push(buf.subarray(at + 4));
      resolve({ socket, head, body: () => Buffer.concat(chunks), ended, closed });
    });
    socket.once('close', () => { if (head === null) reject(new Error(`closed before a response head: ${buf.toString('latin1')}`)); });
    socket.once('connect', () => socket.write(early === undefined ? request : Buffer.concat([Buffer.from(request), early])));
  });
}

/** `p`, or a failure naming `what` after `ms`: every wait of this suite is bounded. */
async function within<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  await poll(async () => (cond() ? true : undefined), what, ms);
}

async function status(ctx: TunnelCtx): Promise<{ tunnels: { open: number; opened: number; closed: Record<string, number>; bytesIn: number; bytesOut: number }; inFlight: number }> {
  const res = await fetch(`${ctx.admin}/status`);
  return await res.json() as never;
}

const test = suite<TunnelCtx>('e2e/tunnels', {
  ...newCtx(), dir: '', v2Path: '', v1Path: '', servers: [], sockets: new Set(), seen: { v1: [], v2: [] },
  flood: { written: 0, waiting: false, done: false }, sink: { received: 0, stream: null },
  slow: { stream: null, ws: null, ended: false }, admin: '', accessLog: '',
});

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-tunnels-');
  ctx.v2Path = join(ctx.dir, 'v2.sock');
  ctx.v1Path = join(ctx.dir, 'v1.sock');
  await fakeBackend(ctx, ctx.v2Path, 2);
  await fakeBackend(ctx, ctx.v1Path, 1);
  ctx.accessLog = join(ctx.dir, 'access.log');
  ctx.both = await startFront([ctx.v2Path, ctx.v1Path], ['--admin', '127.0.0.1:0', '--access-log', ctx.accessLog,
    '--log-format', 'json']);
  ctx.extra.push(ctx.both);
  ctx.admin = `http://${(await ctx.both.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
  ctx.v1only = await startFront([ctx.v1Path]);
  ctx.extra.push(ctx.v1only);
  ctx.tight = await startFront([ctx.v2Path], ['--max-tunnels', '1', '--tunnel-idle-timeout', '1', '--response-timeout', '1']);
  ctx.extra.push(ctx.tight);
  await poll(async () => {
    const s = await (await fetch(`${ctx.admin}/status`)).json() as { backends: { state: string }[] };
    return s.backends.length === 2 && s.backends.every((b) => b.state === 'up') ? true : undefined;
  }, 'both backends up');
});

test.after(async (ctx) => {
  for (const s of ctx.sockets) s.destroy();
  await Promise.all(ctx.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
});

test('the 101 and its headers reach the client; bytes sent before it follow it; bytes echo both ways', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo', 'echo'), Buffer.from('early bytes;'));
  assert.match(c.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(c.head, /\r\nUpgrade: echo\r\n/i);
  assert.match(c.head, /\r\nConnection: Upgrade\r\n/i);
  assert.match(c.head, /\r\nX-Tunnel: \/echo(\r\n|$)/);
  assert.not.match(c.head, /keep-alive|content-length|transfer-encoding/i, 'no framing of a response body');
  const seen = ctx.seen.v2.at(-1)!;
  assert.ok(seen.upgrade, 'the REQUEST frame is marked');
  assert.is(header(seen.headers, 'upgrade'), 'echo', 'the Upgrade header is forwarded');
  assert.is(header(seen.headers, 'connection'), 'upgrade');
  c.socket.write('and more');
  await until(() => c.body().length === 'early bytes;and more'.length, 'the echo');
  assert.is(c.body().toString(), 'early bytes;and more');
  c.socket.end();
  await within(c.ended, 'the client socket to end'); // the backend ends its half after the client's FIN
  await within(c.closed, 'the client socket to close');
});

test('16 MiB each way arrive intact', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
  const data = randomBytes(16 * MiB);
  c.socket.end(data);
  await within(c.ended, 'the client socket to end');
  const got = c.body();
  assert.is(got.length, data.length);
  assert.ok(got.equals(data), 'the same bytes, in order');
});

test('a half-close each way: the client\'s FIN reaches the app, which still answers, then ends', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/fin'));
  c.socket.write('12345');
  c.socket.end();
  await within(c.ended, 'the client socket to end');
  assert.is(c.body().toString(), 'got 5 bytes, then FIN');
  await within(c.closed, 'the client socket to close');
});

test('a RESET from the backend destroys the client\'s connection', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/reset'));
  c.socket.write('boom');
  await within(c.closed, 'the client socket to close').catch((e) => { console.log(ctx.both!.stderr()); throw e; });
  assert.is(c.body().length, 0);
  assert.not.ok(c.socket.writable, 'the socket is gone, not half-closed');
});

test('a client that stops reading holds the backend to a window: the front buffers no more', async (ctx) => {
  ctx.flood.written = 0;
  ctx.flood.done = false;
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/flood'));
  c.socket.pause();
  // Wait until the backend is held back (waiting for credit) and stays held.
  let last = -1;
  let steady = 0;
  await until(() => {
    if (ctx.flood.waiting && ctx.flood.written === last) steady++;
    else steady = 0;
    last = ctx.flood.written;
    return steady >= 10;
  }, 'the backend to wait for credit');
  const read = c.socket.bytesRead;
  // What the backend got out: the client's kernel buffers, the front's socket buffer and a window.
  assert.ok(ctx.flood.written < 8 * MiB, `the backend wrote ${ctx.flood.written} bytes of 16 MiB while the client read none`);
  assert.ok(read < 8 * MiB, `the client's socket took ${read}`);
  assert.not.ok(ctx.flood.done);
  c.socket.resume();
  await within(c.ended, 'the client socket to end');
  assert.is(c.body().length, 16 * MiB, 'all of it once the client reads');
  assert.ok(ctx.flood.done);
  c.socket.end();
  await within(c.closed, 'the client socket to close');
});

test('a backend that takes nothing holds the client to a window: the front stops reading', async (ctx) => {
  ctx.sink.received = 0;
  ctx.sink.stream = null;
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/sink'));
  const data = Buffer.alloc(16 * MiB, 0x62);
  c.socket.write(data);
  let last = -1;
  let steady = 0;
  await until(() => {
    const n = ctx.sink.received;
    if (n === last && n > 0) steady++;
    else steady = 0;
    last = n;
    return steady >= 10;
  }, 'the upload to stall');
  assert.ok(ctx.sink.received <= WINDOW, `the backend got ${ctx.sink.received} bytes without granting credit (window ${WINDOW})`);
  assert.ok(c.socket.writableLength > 0, 'the client could not write it all');
  const stream = ctx.sink.stream!;
  stream.handler = {
    onData: (chunk, end) => {
      ctx.sink.received += chunk.length;
      stream.consume(chunk.length);
      if (end) stream.end();
    },
  };
  stream.consume(ctx.sink.received);
  await until(() => ctx.sink.received === data.length, 'the rest of the upload');
  c.socket.end();
  await within(c.closed, 'the client socket to close');
});

test('an upgrade answered with 200 is an ordinary response, and the connection serves the next request', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, `${upgradeRequest('/no')}GET /after HTTP/1.1\r\nHost: front.test\r\n\r\n`);
  assert.match(c.head, /^HTTP\/1\.1 200 /);
  await until(() => (c.body().toString().match(/HTTP\/1\.1 200/g) ?? []).length === 1, 'the second response');
  assert.ok([...ctx.seen.v1, ...ctx.seen.v2].some((s) => s.target === '/after' && !s.upgrade), 'a plain request');
  c.socket.destroy();
});

test('upgrades only go to the backend that can tunnel; a version-1 backend gets them as plain requests, without Upgrade', async (ctx) => {
  const before = ctx.seen.v1.length;
  for (let i = 0; i < 6; i++) {
    const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    c.socket.destroy();
  }
  assert.is(ctx.seen.v1.length, before, 'the version-1 backend saw none of them');
  const c = await openTunnel(ctx.v1only!.port, upgradeRequest('/echo'));
  assert.match(c.head, /^HTTP\/1\.1 200 /);
  await until(() => c.body().length > 0 && c.body().toString().endsWith('}'), 'the body');
  const got = JSON.parse(c.body().toString()) as { upgrade: boolean; headers: string[] };
  assert.is(got.upgrade, false);
  assert.is(header(got.headers, 'upgrade'), undefined, 'no Upgrade header');
  assert.is(header(got.headers, 'connection'), undefined);
  c.socket.destroy();
});

test('the ws client: messages echo through the front, and a close ends the tunnel', async (ctx) => {
  const ws = new WebSocket(`ws://127.0.0.1:${ctx.both!.port}/ws`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const big = randomBytes(3 * MiB);
  const got: Buffer[] = [];
  ws.on('message', (m: Buffer) => got.push(m));
  ws.send('hello');
  ws.send(big);
  await until(() => got.length === 2, 'two echoes');
  assert.is(got[0]!.toString(), 'hello');
  assert.ok(got[1]!.equals(big));
  const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
  ws.close(1000);
  assert.is(await within(closed, 'the ws close'), 1000);
});

test('metrics, /status and the access log count tunnels: open, opened, closed by reason, bytes each way', async (ctx) => {
  await poll(async () => ((await status(ctx)).tunnels.open === 0 ? true : undefined), 'every tunnel closed');
  const before = await status(ctx);
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
  c.socket.write('x'.repeat(1000));
  await until(() => c.body().length === 1000, 'the echo');
  const during = await status(ctx);
  assert.is(during.tunnels.open, 1);
  assert.is(during.tunnels.opened, before.tunnels.opened + 1);
  assert.is(during.inFlight, 0, 'a tunnel is not a request in flight');
  c.socket.end();
  await within(c.closed, 'the client socket to close');
  const after = await poll(async () => {
    const s = await status(ctx);
    return s.tunnels.open === 0 ? s : undefined;
  }, 'the tunnel closed');
  assert.is(after.tunnels.bytesIn - before.tunnels.bytesIn, 1000);
  assert.is(after.tunnels.bytesOut - before.tunnels.bytesOut, 1000);
  assert.is((after.tunnels.closed.closed ?? 0) - (before.tunnels.closed.closed ?? 0), 1);
  const metrics = await (await fetch(`${ctx.admin}/metrics`)).text();
  assert.match(metrics, /^tsgi_tunnels_open 0$/m);
  assert.match(metrics, /^tsgi_tunnels_opened_total \d+$/m);
  assert.match(metrics, /^tsgi_tunnels_closed_total\{reason="closed"\} \d+$/m);
  assert.match(metrics, /^tsgi_tunnels_closed_total\{reason="backend_reset"\} 1$/m);
  assert.match(metrics, /^tsgi_tunnel_bytes_total\{direction="in"\} \d+$/m);
  const line = await poll(async () => {
    const lines = readFileSync(ctx.accessLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    return lines.reverse().find((l) => l.status === 101 && l.bytes_received === 1000);
  }, 'the access log line of the tunnel');
  assert.is(line.bytes_sent, 1000);
  assert.is(line.target, '/echo');
  assert.is(line.backend, `unix:${ctx.v2Path}`);
  assert.type(line.duration_ms, 'number');
});

test('--max-tunnels: one over gets 503 with a log line; --response-timeout ends at the 101; --tunnel-idle-timeout closes an idle tunnel', async (ctx) => {
  const front = ctx.tight!;
  const c = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(c.head, /^HTTP\/1\.1 101 /);
  const refused = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(refused.head, /^HTTP\/1\.1 503 /);
  await front.waitForStderr(/503 GET \/echo: over --max-tunnels 1: 1 upgraded connections open/);
  refused.socket.destroy();
  // Bytes every 300 ms for 2.5 s: past --response-timeout 1 s, never idle for 1 s.
  for (let i = 1; i <= 8; i++) {
    c.socket.write('.');
    await until(() => c.body().length === i, `echo ${i}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.not.match(front.stderr(), /--response-timeout/);
  // Then nothing: the idle limit closes it.
  await within(c.closed, 'the client socket to close');
  await front.waitForStderr(/closed the upgraded connection of 127\.0\.0\.1 \(GET \/echo\): no byte either way for --tunnel-idle-timeout \(1 s\)/);
  const next = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(next.head, /^HTTP\/1\.1 101 /, 'the slot is free again');
  next.socket.destroy();
});

test('a graceful stop closes a WebSocket between two frames: 1001 to the client, a client close to the app', async (ctx) => {
  const front = await startFront([ctx.v2Path]);
  ctx.extra.push(front);
  const ws = new WebSocket(`ws://127.0.0.1:${front.port}/ws-slow`);
  const messages: Buffer[] = [];
  ws.on('message', (m: Buffer) => messages.push(m));
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code: number, reason: Buffer) => r({ code, reason: reason.toString() })));
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  }), 'the ws handshake');
  await until(() => ctx.slow.stream !== null, 'the app to start its message');
  const exited = front.stop('SIGTERM');
  await front.waitForStderr(/closing 1 upgraded connection/);
  // The app receives its close frame (the client's direction is between frames) …
  await until(() => ctx.slow.ws!.closeCodes.length === 1, 'a close frame at the app');
  assert.equal(ctx.slow.ws!.closeCodes, [1001]);
  // … and the client's waits for the end of the message in flight.
  assert.is(messages.length, 0);
  ctx.slow.stream!.write(Buffer.alloc(128 * 1024, 0x32));
  const { code } = await within(closed, 'the client\'s close');
  assert.is(code, 1001);
  assert.is(messages.length, 1, 'the message in flight arrived whole');
  assert.is(messages[0]!.length, 256 * 1024);
  assert.is(messages[0]![256 * 1024 - 1], 0x32);
  ctx.slow.stream!.end();
  const exit = await within(exited, 'the front to exit');
  assert.is(exit.code, 0);
  assert.not.match(front.stderr(), /graceful-timeout|closing .* connections? by force/i);
});

test.run();
