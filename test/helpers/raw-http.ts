// Raw HTTP/1.1 over a socket, for the requests a well-behaved client (undici) refuses to send:
// exact bytes in, everything the server sends until it closes, and a tiny response parser.
// Every test that talks raw HTTP goes through here, over TCP (a port on 127.0.0.1) or a Unix
// socket (a path).
import { connect, type Socket } from 'node:net';
import * as assert from 'uvu/assert';

/** Where to connect: a TCP port on 127.0.0.1, or the path of a Unix socket. */
export type RawTarget = number | string;

export interface RawResult {
  /** Everything received. */
  bytes: Buffer;
  /** Everything received, as Latin-1 text. */
  text: string;
  /** True when the server closed the connection (false: our timeout ended it). */
  closedByServer: boolean;
}

export interface RawOptions {
  /** How long to wait for the server to close (default 10 s). */
  timeoutMs?: number;
  /** The pause between two chunks (default 0). */
  gapMs?: number;
}

const where = (target: RawTarget): string => (typeof target === 'number' ? `127.0.0.1:${target}` : `unix:${target}`);

function connectTo(target: RawTarget): Socket {
  return typeof target === 'number' ? connect(target, '127.0.0.1') : connect(target);
}

/** Latin-1 text of what was sent or received, cut to `max` characters, quoted for a message. */
function excerpt(data: (string | Buffer)[] | Buffer, max = 400): string {
  const text = Buffer.isBuffer(data) ? data.toString('latin1')
    : data.map((c) => (typeof c === 'string' ? c : c.toString('latin1'))).join('');
  return JSON.stringify(text.length > max ? text.slice(0, max) : text) + (text.length > max ? ` (+${text.length - max} more)` : '');
}

/**
 * Writes `chunks` (an array: each after `gapMs`) and collects what comes back until the server
 * closes the connection, or `timeoutMs` passes (then closedByServer is false). A reset is an
 * answer too: what arrived before it is what counts. Rejects only when it cannot connect.
 */
export function rawExchange(target: RawTarget, chunks: (string | Buffer)[] | string | Buffer,
  opts: RawOptions = {}): Promise<RawResult> {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const socket = connectTo(target);
    const got: Buffer[] = [];
    let connected = false;
    let byServer = true;
    let writer: NodeJS.Timeout | null = null;
    const timer = setTimeout(() => {
      byServer = false;
      socket.destroy();
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => got.push(chunk));
    socket.on('error', (err) => {
      if (!connected) reject(new Error(`cannot connect to ${where(target)} to send ${excerpt(list)}: ${err.message}`));
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (writer !== null) clearTimeout(writer);
      const bytes = Buffer.concat(got);
      resolve({ bytes, text: bytes.toString('latin1'), closedByServer: byServer });
    });
    let i = 0;
    const next = (): void => {
      writer = null;
      if (socket.destroyed || i >= list.length) return;
      socket.write(list[i++]!);
      if (i < list.length) writer = setTimeout(next, opts.gapMs ?? 0);
    };
    socket.once('connect', () => {
      connected = true;
      next();
    });
  });
}

/**
 * rawExchange for a test that needs the server to close the connection: a timeout fails with
 * what was sent and what came back (and `note`, e.g. a seed that reproduces the case).
 */
export async function rawUntilClose(target: RawTarget, chunks: (string | Buffer)[] | string | Buffer,
  opts: RawOptions & { note?: string } = {}): Promise<RawResult> {
  const r = await rawExchange(target, chunks, opts);
  if (!r.closedByServer) {
    const list = Array.isArray(chunks) ? chunks : [chunks];
    throw new Error(`${where(target)} did not close the connection within ${opts.timeoutMs ?? 10_000} ms`
      + `${opts.note === undefined ? '' : ` (${opts.note})`}\nsent: ${excerpt(list)}\ngot: ${excerpt(r.bytes)}`);
  }
  return r;
}

/** Whether anything accepts connections at `target` now (connects, then hangs up at once). */
export function accepting(target: RawTarget): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connectTo(target);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** A GET request head for `target`; with Connection: close unless `close` is false. */
export function getRequest(target: string, opts: { host?: string; close?: boolean } = {}): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${opts.host ?? 'x'}\r\n${opts.close === false ? '' : 'Connection: close\r\n'}\r\n`;
}

/** The status code of the response `raw` starts with (0 when it does not start with a status line). */
export function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
}

/**
 * A client that sends `request` and does not read the answer (its socket paused) until read():
 * then it counts every byte until the server closes, or `timeoutMs` passes if given.
 */
export function pausedRequest(target: RawTarget, request: string, opts: { timeoutMs?: number } = {}): Promise<{ read(): Promise<number>; destroy(): void }> {
  return new Promise((resolve, reject) => {
    const socket = connectTo(target);
    socket.once('error', (err) => reject(new Error(`cannot connect to ${where(target)} to send ${excerpt([request])}: ${err.message}`)));
    socket.once('connect', () => {
      socket.on('error', () => {}); // a reset ends the count
      socket.pause();
      socket.write(request);
      resolve({
        read: () => new Promise((done) => {
          let n = 0;
          const limit = opts.timeoutMs === undefined ? null : setTimeout(() => socket.destroy(), opts.timeoutMs);
          socket.on('data', (c: Buffer) => { n += c.length; });
          socket.on('close', () => {
            if (limit !== null) clearTimeout(limit);
            done(n);
          });
          socket.resume();
        }),
        destroy: () => socket.destroy(),
      });
    });
  });
}

/** A connected socket that collects what it receives (for tests that hold connections open). */
export function openSocket(target: RawTarget): Promise<Socket & { received: () => string; gone: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connectTo(target);
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => {});
    const gone = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.once('connect', () => resolve(Object.assign(socket, {
      received: () => Buffer.concat(got).toString('latin1'), gone,
    })));
  });
}

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
  /** Bytes after this response (a second response, if the server sent one). */
  rest: string;
}

/** Parses the first response in `raw` (a Content-Length or chunked body). */
export function parseResponse(raw: string): RawResponse {
  const split = raw.indexOf('\r\n\r\n');
  assert.ok(split > 0, `a complete response head in: ${JSON.stringify(raw)}`);
  const [statusLine, ...lines] = raw.slice(0, split).split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1]);
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  let rest = raw.slice(split + 4);
  if (headers.get('transfer-encoding') === 'chunked') {
    let body = '';
    for (;;) {
      const eol = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, eol), 16);
      assert.ok(eol > 0 && size >= 0, `a chunk size line in: ${JSON.stringify(rest)}`);
      if (size === 0) {
        const end = rest.indexOf('\r\n\r\n', eol - 2);
        return { status, headers, body, rest: rest.slice(end + 4) };
      }
      body += rest.slice(eol + 2, eol + 2 + size);
      rest = rest.slice(eol + 4 + size);
    }
  }
  const length = Number(headers.get('content-length') ?? 0);
  return { status, headers, body: rest.slice(0, length), rest: rest.slice(length) };
}
