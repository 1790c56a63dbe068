// The front's side of upgrade requests, for backend tests: a real tsgi client connection over a
// Unix socket, streams opened with `upgrade`, a Duplex over a tunnel stream (credit returned as
// it is read), and a real `ws` client WebSocket (masking, fragments, pings: ws's own codec) on it.
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { Connection, packHeaders, unpackHeaders, type Stream, type StreamHandler, type tsgi } from '../../../src/protocol/index.js';

export interface Answer {
  head: tsgi.Response;
  headers: string[];
  stream: Stream;
  /** The stream's bytes after the head (the tunnel, or the body of another status). */
  socket: StreamSocket;
}

/** A Duplex over a client stream: writes wait for credit, credit goes back as bytes are read. */
export class StreamSocket extends Duplex implements StreamHandler {
  readonly stream: Stream;
  #waiting: (() => void) | null = null;
  #owed = 0;
  #ended = false;
  resetCode: number | null = null;
  /** The response head (set once it came). */
  onHeadSeen: ((head: tsgi.Response, end: boolean) => void) | null = null;
  onResetSeen: ((code: number, message: string) => void) | null = null;

  constructor(stream: Stream) {
    super({ allowHalfOpen: true });
    this.stream = stream;
    stream.handler = this;
  }

  onHead(head: tsgi.Response, end: boolean): void {
    if (end) this.onData(Buffer.alloc(0), true);
    this.onHeadSeen?.(head, end);
  }

  onData(chunk: Buffer, end: boolean): void {
    if (chunk.length > 0) {
      if (this.push(chunk)) this.stream.consume(chunk.length);
      else this.#owed += chunk.length;
    }
    if (end) {
      this.#ended = true;
      this.push(null);
    }
  }

  onDrain(): void {
    const w = this.#waiting;
    this.#waiting = null;
    w?.();
  }

  onReset(code: number, message: string): void {
    this.resetCode = code;
    this.onResetSeen?.(code, message);
    // A RESET after the end (the backend wants no more of the request): what came stays readable.
    if (this.#ended) this.end();
    else this.destroy();
  }

  override _read(): void {
    if (this.#owed > 0) {
      this.stream.consume(this.#owed);
      this.#owed = 0;
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.stream.write(chunk) || this.stream.closed) cb();
    else this.#waiting = () => cb();
  }

  override _final(cb: () => void): void {
    this.stream.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    if (!this.stream.closed) this.stream.reset(5, 'client gone');
    cb(err);
  }
}

/** One tsgi client connection to a backend's socket. */
export class TunnelClient {
  readonly conn: Connection;
  readonly socket: Socket;
  readonly ready: Promise<void>;

  constructor(path: string, versions?: number[]) {
    this.socket = connect(path);
    let ready!: () => void;
    this.ready = new Promise((r) => { ready = r; });
    this.conn = new Connection({ role: 'client', write: (c) => this.socket.write(c), onReady: () => ready(), versions });
    this.socket.on('data', (c: Buffer) => this.conn.receive(c));
    this.socket.on('close', () => this.conn.destroy('closed'));
    this.socket.on('error', () => {});
    this.socket.on('connect', () => this.conn.start());
  }

  /** Sends a request (an upgrade unless `upgrade` is false) and resolves with its response head. */
  async request(target: string, headers: string[], opts: { upgrade?: boolean; method?: string; body?: string } = {}): Promise<Answer> {
    await this.ready;
    const upgrade = opts.upgrade ?? true;
    const body = opts.body === undefined ? [] : ['Content-Length', String(Buffer.byteLength(opts.body))];
    const stream = this.conn.open({
      method: opts.method ?? 'GET', target, headers: packHeaders(['Host', 'backend.test', ...headers, ...body]),
      remoteAddr: '127.0.0.1', remotePort: 40000, serverAddr: '127.0.0.1', serverPort: 8080, upgrade,
    }, !upgrade && opts.body === undefined);
    if (opts.body !== undefined) stream.write(Buffer.from(opts.body), true);
    const socket = new StreamSocket(stream);
    const head = await new Promise<tsgi.Response>((resolve, reject) => {
      socket.onHeadSeen = (h) => {
        socket.onResetSeen = null;
        resolve(h);
      };
      socket.onResetSeen = (code, message) => {
        reject(Object.assign(new Error(`stream reset before the head: code ${code} ${message}`), { resetCode: code }));
      };
    });
    return { head, headers: unpackHeaders(head.headers), stream, socket };
  }

  /** A WebSocket handshake; resolves with the 101 and a ws client WebSocket on the tunnel. */
  async websocket(target: string, extra: string[] = []): Promise<Answer & { ws: WebSocket; key: string }> {
    const key = randomBytes(16).toString('base64');
    const answer = await this.request(target, [
      'Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', key, 'Sec-WebSocket-Version', '13', ...extra,
    ]);
    if (answer.head.status !== 101) throw new Error(`expected 101, got ${answer.head.status}`);
    const accept = header(answer.headers, 'sec-websocket-accept');
    const want = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    if (accept !== want) throw new Error(`Sec-WebSocket-Accept ${accept}, expected ${want}`);
    return { ...answer, ws: clientWebSocket(answer.socket), key };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A ws WebSocket in the client role (it masks what it sends) over an already upgraded Duplex. */
export function clientWebSocket(socket: Duplex): WebSocket {
  const ws = new WebSocket(null as never, undefined, { autoPong: true, closeTimeout: 30_000 } as never) as WebSocket & {
    _isServer: boolean; setSocket(s: Duplex, head: Buffer, o: object): void;
  };
  ws._isServer = false;
  ws.setSocket(socket, Buffer.alloc(0), { maxPayload: 0 });
  return ws;
}

export function header(flat: string[], name: string): string | undefined {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === name) return flat[i + 1];
  return undefined;
}

/** Resolves with the next message (text as string, binary as Buffer). */
export function nextMessage(ws: WebSocket): Promise<string | Buffer> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve(isBinary ? data : data.toString())));
}

/** Resolves with the close code and reason the WebSocket closed with. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}
