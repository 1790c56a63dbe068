// The connection of an upgrade request, as the application sees it: a Duplex over one tsgi
// stream, close enough to a net.Socket for ws, socket.io and @hono/node-ws. The app writes a raw
// HTTP response head on it, as on node:http; the head becomes the RESPONSE frame (a 101 opens the
// tunnel, anything else is an ordinary response) and later bytes go as DATA, under the stream's
// windows both ways: a write waits for credit, and credit goes back as the app reads.
// A WebSocket tunnel is followed frame by frame (headers only) so that a backend that stops can
// close it cleanly: a close frame to the client at a frame boundary, and one to the app as the
// client would send it (goingAway).
import { Duplex } from 'node:stream';
import { WebSocketCloser } from '../common/ws-frames.js';
import type { Logger } from '../common/log.js';
import type { Stream } from '../protocol/connection.js';
import { ResetCode } from '../protocol/constants.js';
import { HOP_BY_HOP } from '../protocol/http-grammar.js';
import { packHeaders } from '../protocol/header-table.js';
import { HttpResponseParser, type ParsedResponseHead } from '../protocol/http-response.js';
import { setPeer } from './node-request.js';
import type { Environ } from './types.js';

/** What a tunnel tells the server that owns its stream. */
export interface TunnelOwner {
  readonly log: Logger;
  /** The application took the connection over: the gateway stands aside. */
  taken(socket: TunnelSocket): void;
  /** The head the application wrote went out (its status). */
  answered(socket: TunnelSocket, status: number): void;
  /** The socket closed: the tunnel is over. */
  closed(socket: TunnelSocket): void;
}

type Callback = (err?: Error | null) => void;

/**
 * The socket of one upgrade request. Until the app takes it (tsgi.upgrade(), or a write),
 * nothing is sent; what the front sends (it should send nothing before the 101) waits unread.
 */
export class TunnelSocket extends Duplex {
  readonly stream: Stream;
  remoteAddress!: string;
  remotePort: number | undefined;
  remoteFamily!: string;
  localAddress!: string;
  localPort: number | undefined;
  encrypted?: true;
  readonly connecting = false;
  /** The request asked for a WebSocket: a 101 makes the tunnel one, followed frame by frame. */
  readonly websocket: boolean;
  /** Bytes the application wrote (what the client will have been sent, head included). */
  bytesWritten = 0;
  readonly #owner: TunnelOwner;
  #taken = false;
  #phase: 'head' | 'response' | 'tunnel' | 'done' = 'head';
  #parser: HttpResponseParser | null;
  /** A write waiting for the stream's credit. */
  #waiting: Callback | null = null;
  /** Credit owed to the front for bytes pushed while the readable side was full. */
  #owed = 0;
  /** A WebSocket tunnel's frames both ways, and its close when the backend stops. */
  #ws: WebSocketCloser | null = null;

  constructor(stream: Stream, environ: Environ, owner: TunnelOwner, websocket: boolean) {
    super({ allowHalfOpen: true, decodeStrings: true });
    this.stream = stream;
    this.#owner = owner;
    this.websocket = websocket;
    setPeer(this, environ);
    this.#parser = new HttpResponseParser({
      onHead: (head) => this.#head(head),
      onBody: (chunk) => this.#body(chunk),
      onEnd: () => this.#bodyEnded(),
    }, { upgrade: true, headRequest: environ.REQUEST_METHOD === 'HEAD' });
  }

  /** Whether the application took the connection (tsgi.upgrade() was called). */
  get taken(): boolean {
    return this.#taken;
  }

  /** A 101 went out: the stream carries the upgraded protocol. */
  get open(): boolean {
    return this.#phase === 'tunnel';
  }

  /** tsgi.upgrade(): the application takes the connection; the gateway stands aside. */
  takeOver(): this {
    if (!this.#taken) {
      this.#taken = true;
      this.#owner.taken(this);
    }
    return this;
  }

  get readyState(): string {
    return this.destroyed ? 'closed' : 'open';
  }

  address(): { address: string; port: number | undefined; family: string } {
    return { address: this.localAddress, port: this.localPort, family: this.remoteFamily };
  }

  setTimeout(_ms?: number, cb?: () => void): this {
    if (cb !== undefined) this.removeListener('timeout', cb);
    return this;
  }

  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  ref(): this { return this; }
  unref(): this { return this; }

  // --- from the front ------------------------------------------------------------------------

  /** DATA from the front (the client's bytes), and its END_STREAM. */
  fromFront(chunk: Buffer, end: boolean): void {
    if (chunk.length > 0) {
      if (this.#ws === null) {
        this.#deliver(chunk);
      } else {
        const dropped = this.#ws.fromClient(chunk); // after our close to the app: the client's reply
        if (dropped > 0) this.stream.consume(dropped);
      }
    }
    if (end && !this.destroyed) this.push(null);
  }

  #deliver(chunk: Buffer): void {
    if (this.destroyed) return;
    if (this.push(chunk)) this.stream.consume(chunk.length);
    else this.#owed += chunk.length;
  }

  override _read(): void {
    const owed = this.#owed;
    if (owed > 0) {
      this.#owed = 0;
      this.stream.consume(owed);
    }
  }

  /** The stream has credit again: a waiting write completes. */
  drained(): void {
    const cb = this.#waiting;
    if (cb !== null && !this.stream.blocked) {
      this.#waiting = null;
      cb();
    }
  }

  /** The front reset the stream, or the connection is gone: the socket closes, as on a reset. */
  reset(): void {
    this.#phase = 'done';
    const cb = this.#waiting;
    this.#waiting = null;
    cb?.();
    this.destroy();
  }

  // --- from the application ------------------------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: Callback): void {
    this.takeOver();
    this.bytesWritten += chunk.length;
    if (this.#phase === 'tunnel') {
      this.#toClient(chunk);
    } else if (this.#phase === 'done') {
      // after the response ended: nothing more goes out
    } else {
      try {
        this.#parser!.push(chunk);
      } catch (err) {
        this.#refuse((err as Error).message);
        cb();
        return;
      }
    }
    if (this.stream.blocked && !this.stream.closed && this.#phase !== 'done') this.#waiting = cb;
    else cb();
  }

  override _final(cb: Callback): void {
    if (this.#phase === 'tunnel') {
      this.stream.end();
    } else if (this.#phase === 'head') {
      if (this.#taken) this.#cut('the application closed the connection without a response');
    } else if (this.#phase === 'response') {
      try {
        this.#parser!.finish(); // a body that runs to the close ends here
      } catch (err) {
        this.#cut((err as Error).message, ResetCode.INTERNAL_ERROR);
      }
    }
    cb();
  }

  override _destroy(err: Error | null, cb: Callback): void {
    const stream = this.stream;
    // Untaken, the stream is the gateway's (an ordinary response to an upgrade request).
    if (this.#taken && !stream.closed) {
      if (this.#phase === 'head') {
        stream.reset(ResetCode.CANCEL, 'the application closed the connection without a response');
      } else if (stream.localEnded) {
        stream.reset(ResetCode.NO_ERROR, 'the application closed the connection');
      } else {
        stream.reset(ResetCode.CANCEL, 'the application cut the connection');
      }
    }
    this.#phase = 'done';
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.();
    this.#owner.closed(this);
    // node:http's sockets always have an 'error' listener; here only the app's own hear errors.
    cb(err !== null && this.listenerCount('error') > 0 ? err : null);
  }

  #head(head: ParsedResponseHead): void {
    const stream = this.stream;
    if (head.status === 101) {
      // Forwarded verbatim (Upgrade, Connection, Sec-WebSocket-Accept…): the front writes them on.
      stream.sendResponse({ status: 101, reason: '', headers: packHeaders(head.headers) }, false);
      this.#phase = 'tunnel';
      if (this.websocket) this.#ws = new WebSocketCloser((b) => this.stream.write(b), (b) => this.#deliver(b));
    } else {
      const flat: string[] = [];
      const h = head.headers;
      for (let i = 0; i < h.length; i += 2) {
        const name = h[i]!.toLowerCase();
        // The body reaches the front unframed; the front frames it for its client.
        if (HOP_BY_HOP.has(name) || (name === 'content-length' && head.framing !== 'length' && head.framing !== 'none')) continue;
        flat.push(h[i]!, h[i + 1]!);
      }
      stream.sendResponse({ status: head.status, reason: '', headers: packHeaders(flat) }, head.framing === 'none');
      this.#phase = head.framing === 'none' ? 'done' : 'response';
    }
    this.#owner.answered(this, head.status);
  }

  #body(chunk: Buffer): void {
    if (this.#phase === 'tunnel') this.#toClient(chunk);
    else if (this.#phase === 'response') this.stream.write(chunk);
  }

  #bodyEnded(): void {
    if (this.#phase !== 'response') return;
    this.#phase = 'done';
    this.stream.end();
    // A refused upgrade: the client's connection is not wanted.
    if (!this.stream.remoteEnded && !this.stream.closed) this.stream.reset(ResetCode.NO_ERROR, 'response complete');
  }

  /** Tunnel bytes from the application to the client. */
  #toClient(chunk: Buffer): void {
    if (this.#ws === null) this.stream.write(chunk);
    else this.#ws.fromServer(chunk); // after our close to the client: the app's reply, dropped
  }

  /**
   * The backend is stopping (1001) or restarting (1012): the client gets a close frame at the
   * next frame boundary of what the app sends, and the app one as the client would send it at
   * the next boundary of what the client sends. Later bytes either way are dropped (each side's
   * close reply). Nothing is done for a WebSocket either side already closed, or a tunnel that
   * is not a WebSocket (it is cut at the end of the graceful stop).
   */
  goingAway(code: number): boolean {
    if (this.#phase !== 'tunnel' || this.#ws === null || this.destroyed) return false;
    return this.#ws.close(code);
  }

  /** The app wrote a response head that cannot go out: the client gets a 502 from the front. */
  #refuse(why: string): void {
    this.#owner.log.error(`the application wrote a malformed response on an upgrade request: ${why}`);
    this.#cut(why, ResetCode.INTERNAL_ERROR);
  }

  #cut(why: string, code: number = ResetCode.CANCEL): void {
    this.#phase = 'done';
    this.stream.reset(code, why);
  }
}
