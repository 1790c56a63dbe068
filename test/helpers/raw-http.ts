// Raw HTTP/1.1 over a TCP socket, for the requests a well-behaved client (undici) refuses to
// send: exact bytes in, everything the server sends until it closes, and a tiny response parser.
import { connect, type Socket } from 'node:net';
import * as assert from 'uvu/assert';

export interface RawResult {
  /** Everything received, as Latin-1 text. */
  text: string;
  /** True when the server closed the connection (false: our timeout ended it). */
  closedByServer: boolean;
}

/**
 * Writes `chunks` (an array: each after `gapMs`) and collects what comes back until the server
 * closes the connection, or `timeoutMs` passes (then closedByServer is false).
 */
export function rawExchange(port: number, chunks: (string | Buffer)[] | string | Buffer,
  opts: { timeoutMs?: number; gapMs?: number } = {}): Promise<RawResult> {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let byServer = true;
    let writer: NodeJS.Timeout | null = null;
    const timer = setTimeout(() => {
      byServer = false;
      socket.destroy();
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => got.push(chunk));
    socket.on('error', () => {}); // a reset is an answer too: what arrived before it is what counts
    socket.on('close', () => {
      clearTimeout(timer);
      if (writer !== null) clearTimeout(writer);
      resolve({ text: Buffer.concat(got).toString('latin1'), closedByServer: byServer });
    });
    let i = 0;
    const next = (): void => {
      writer = null;
      if (socket.destroyed || i >= list.length) return;
      socket.write(list[i++]!);
      if (i < list.length) writer = setTimeout(next, opts.gapMs ?? 0);
    };
    socket.once('connect', next);
  });
}

/** A connected socket that collects what it receives (for tests that hold connections open). */
export function openSocket(port: number): Promise<Socket & { received: () => string; gone: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
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
