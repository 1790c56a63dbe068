// Backends that speak tsgi written with the project's own Connection in the server role, for
// the tests of upgraded connections: version 2 answers an upgrade with 101 and then, by path,
// echoes (/echo), answers a half-close (/fin), resets (/reset), floods 16 MiB (/flood), takes
// nothing (/sink), holds a WebSocket message half-sent (/ws-slow) or echoes WebSocket frames
// (/ws); version 1 answers everything as a plain request. And the raw client for them.
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { socketWriter } from '../../src/common/socket-writer.js';
import { Connection, ResetCode, packHeaders, unpackHeaders, type Stream, type tsgi } from '../../src/protocol/index.js';
import { eventually } from './assert.js';

export const MiB = 1024 * 1024;
/** RFC 6455 1.3: what Sec-WebSocket-Accept hashes the key with. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface Seen {
  /** The fake backend's socket path. */
  backend: string;
  target: string;
  upgrade: boolean;
  headers: string[];
}

/** The fake backends' state: what they saw, and the streams a test drives. */
export interface TunnelBackends {
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
}

export const newBackends = (): TunnelBackends => ({
  servers: [], sockets: new Set(), seen: { v1: [], v2: [] }, flood: { written: 0, waiting: false, done: false },
  sink: { received: 0, stream: null }, slow: { stream: null, ws: null, ended: false },
});

/** Closes the fake backends and their connections. */
export async function closeBackends(ctx: TunnelBackends): Promise<void> {
  for (const s of ctx.sockets) s.destroy();
  await Promise.all(ctx.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
}

export function header(flat: string[], name: string): string | undefined {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === name) return flat[i + 1];
  return undefined;
}

/** Server frames from masked client frames: a minimal WebSocket echo (enough for the ws client). */
export class WsEcho {
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
export function flood(ctx: TunnelBackends, stream: Stream, total: number): void {
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

export function answer(ctx: TunnelBackends, stream: Stream, head: tsgi.Request, backend: string): void {
  const flat = unpackHeaders(head.headers);
  ctx.seen.v2.push({ backend, target: head.target, upgrade: head.upgrade === true, headers: flat });
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
  } else if (target === '/ws-reset') {
    // The app fails on the first message it gets.
    stream.handler = { onData: () => stream.reset(ResetCode.INTERNAL_ERROR, 'the app failed') };
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

export function fakeBackend(ctx: TunnelBackends, path: string, version: 1 | 2): Promise<Server> {
  const server = createServer((socket) => {
    ctx.sockets.add(socket);
    socket.on('close', () => ctx.sockets.delete(socket));
    socket.on('error', () => {});
    const conn: Connection = new Connection({
      role: 'server', write: socketWriter(socket, () => conn.drained()), software: `fake-v${version}`,
      versions: [version], connectionsHint: 1,
      onRequest: (stream, head) => {
        if (version === 2) {
          answer(ctx, stream, head, path);
          return;
        }
        const flat = unpackHeaders(head.headers);
        ctx.seen.v1.push({ backend: path, target: head.target, upgrade: head.upgrade === true, headers: flat });
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

export const upgradeRequest = (target: string, token = 'echo', extra = ''): string =>
  `GET ${target} HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\nUpgrade: ${token}\r\n${extra}\r\n`;

export interface Client {
  socket: Socket;
  /** Everything received after the response head. */
  body(): Buffer;
  head: string;
  ended: Promise<void>;
  closed: Promise<void>;
}

/** Sends `request` (and `early` right behind it), resolves with the response head once it came. */
export function openTunnel(port: number, request: string, early?: Buffer): Promise<Client> {
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
export async function within<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** assert.ts's eventually, with this suite's longer deadline (16 MiB echoes under load). */
export function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  return eventually(cond, what, ms);
}
