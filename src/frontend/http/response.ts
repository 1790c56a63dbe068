// A response on a client connection: the head held until the first body bytes (or the end) and
// written with them, its framing decided then (Content-Length when the whole body is known,
// chunked for a streamed HTTP/1.1 body, the close for HTTP/1.0; no body for HEAD, 204, 304).
// A 101 is written at once, and the socket handed to the tunnel that takes over.
import type { Socket } from 'node:net';
import { TsgiError, reasonPhrase } from '../../protocol/errors.js';
import { BAD_FIELD_VALUE, isContentLength } from '../../protocol/http-grammar.js';
import type { HttpRequest } from './request.js';

/** Bodies up to this size are written together with the head, as one string. */
const SMALL_BODY = 2048;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

let dateMs = 0;
let date = '';
let dateLine = '';
/** The Date value (IMF-fixdate, RFC 9110 5.6.7), made at most once a second. */
export function dateValue(): string {
  const now = Date.now();
  if (now - dateMs >= 1000 || now < dateMs) {
    dateMs = now - (now % 1000);
    date = new Date(dateMs).toUTCString();
    dateLine = `Date: ${date}\r\n`;
  }
  return date;
}

/** The Date header line of an HTTP/1.1 head. */
function dateHeader(): string {
  dateValue();
  return dateLine;
}

/**
 * Who owns a connection's socket after a 101 (frontend/tunnel.ts's Tunnel is one): the
 * connection hands it the socket's events, and the sweeper asks it for its own timeout.
 */
export interface SocketTaker {
  onSocketData(chunk: Buffer): void;
  /** The client's FIN. */
  onSocketEnd(): void;
  onSocketDrain(): void;
  /** The sweep, at `now` (Date.now()). */
  checkIdle(now: number): void;
}

/** What a response needs of its connection (connection.ts's Connection is one). */
export interface ResponseConnection {
  readonly socket: Socket;
  /** False once the connection is to close after this response. */
  keepAlive: boolean;
  /** The response waiting for 'drain'. */
  drainWaiter: Http1Response | null;
  readonly server: { readonly closing: boolean; readonly keepAliveHeader: string };
  responseEnded(res: Http1Response): void;
  takeOver(taker: SocketTaker): Buffer | null;
}

/** Who hears a response's events: methods on the handler's prototype (no closures per request). */
export interface ResponseHandler {
  /** Once, when the response closes: ended, or its connection went away first. */
  onResponseClose(): void;
  /** The socket can take more, after onceDrain(). */
  onResponseDrain?(): void;
}

/**
 * A response as the front's handlers (the exchange, static files) write it, whatever the
 * client's protocol: HTTP/1.1 (Http1Response, below) or HTTP/2 (h2.ts's Http2Response).
 */
export interface HttpResponse {
  readonly req: HttpRequest;
  /** The client connection's socket (its addresses; TLS). */
  readonly socket: Socket;
  statusCode: number;
  readonly headersSent: boolean;
  /** end() was called. */
  readonly ended: boolean;
  readonly destroyed: boolean;
  handler: ResponseHandler | null;
  /**
   * Sets the status and headers (flat: [name, value, …], checked by the caller for tokens and
   * control characters). Throws, writing nothing, on a Content-Length that is not one number.
   * A head not sent yet (no body bytes written) may be replaced.
   */
  writeHead(status: number, reason: string | undefined, headers: readonly string[]): void;
  /** Writes `100 Continue`: the client may send the body it announced with Expect. */
  writeContinue(): void;
  /** Writes an interim response (103 Early Hints) before the head; dropped for a client that cannot take one. */
  writeInformational(status: number, headers: readonly string[]): void;
  /**
   * The response ends with these trailer fields (flat). HTTP/1.1 sends them in the chunked
   * framing's last chunk when the client said `TE: trailers`; HTTP/2 always.
   */
  addTrailers(headers: readonly string[]): void;
  /** Holds writes until uncork() (the end of this tick): one write for what a backend read brought. */
  cork(): void;
  uncork(): void;
  /** Calls the handler's onResponseDrain once when the client can take more (after a write returned false). */
  onceDrain(): void;
  /**
   * Writes body bytes; false when the client's buffer is full (wait for onceDrain). Throws,
   * writing nothing, when they would run past the Content-Length. `done` is called once the
   * bytes are handed on.
   */
  write(chunk: Buffer, done?: () => void): boolean;
  /** Ends the response, with `last` as its final body bytes. Throws, writing nothing of the end, on a length mismatch. */
  end(last?: Buffer, done?: () => void): void;
  /** Cuts the response (and, on HTTP/1.1, its connection): it cannot be completed. */
  destroy(): void;
  /**
   * HTTP/1.1 only (an upgrade request is never anything else): writes a 101 and hands the
   * connection's socket to `taker`; returns the client's bytes read after the request head.
   */
  switchProtocols?(reason: string | undefined, headers: readonly string[], taker: SocketTaker): Buffer | null;
  /** What a tunnel writes to and reads from, when it is not `socket` (an HTTP/2 stream). */
  readonly tunnelSocket?: Socket;
}

/**
 * An HTTP/1.1 response: the head is held until the first body bytes (or the end), then written
 * with them; write() of no bytes sends it alone.
 */
export class Http1Response implements HttpResponse {
  statusCode = 200;
  headersSent = false;
  /** end() was called. */
  ended = false;
  destroyed = false;
  /** Who hears the response close and the socket drain (set once, by whoever answers). */
  handler: ResponseHandler | null = null;
  readonly req: HttpRequest;
  readonly #conn: ResponseConnection;
  /** The head, written by writeHead and not yet sent. */
  #head: string | null = null;
  #hasLength = false;
  #remaining = 0;
  #chunked = false;
  #noBody: boolean;
  #awaitingDrain = false;
  /** The trailer section to end a chunked body with (`name: value` lines), or null. */
  #trailers: string | null = null;

  constructor(conn: ResponseConnection, req: HttpRequest) {
    this.#conn = conn;
    this.req = req;
    this.#noBody = req.method === 'HEAD';
  }

  get socket(): Socket {
    return this.#conn.socket;
  }

  /**
   * Sets the status and headers (flat: [name, value, …], checked by the caller for tokens and
   * control characters). Throws, writing nothing, on a Content-Length that is not one number.
   * A head not sent yet (no body bytes written) may be replaced: an error found after the
   * backend's head still becomes a clean 502 rather than a cut.
   */
  writeHead(status: number, reason: string | undefined, headers: readonly string[]): void {
    if (this.headersSent) throw new Error('writeHead: the head was already sent');
    checkStatus(status, reason);
    let head = `HTTP/1.1 ${status} ${reason || reasonPhrase(status) || 'Unknown'}\r\n`;
    let length: string | null = null;
    let hasDate = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        if (length !== null && length !== value) throw new TsgiError('TSGI_ERR_PROTOCOL', 'two different Content-Lengths');
        if (length !== null) continue;
        length = value;
      } else if (name.length === 4 && name.toLowerCase() === 'date') {
        hasDate = true;
      } else if (name.length === 10 && name.toLowerCase() === 'connection') {
        // Only the front's own refusals say this (hop-by-hop fields from backends are dropped).
        if (value.toLowerCase() === 'close') this.#conn.keepAlive = false;
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (length !== null) checkContentLength(length);
    this.#hasLength = length !== null;
    this.#remaining = length !== null ? Number(length) : 0;
    if (!hasDate) head += dateHeader();
    this.#noBody = status === 204 || status === 304 || this.req.method === 'HEAD';
    this.statusCode = status;
    this.#head = head;
  }

  /**
   * Writes a 101 head with `headers` (Upgrade and Connection among them; `Connection: upgrade`
   * is added when missing) and hands the socket to `taker`: the response then stays open until
   * the socket closes, and nothing else is written through it. Returns the client's bytes read
   * after the request head, for the taker to forward first.
   */
  switchProtocols(reason: string | undefined, headers: readonly string[], taker: SocketTaker): Buffer | null {
    if (this.headersSent) throw new Error('switchProtocols: the head was already sent');
    if (reason !== undefined && BAD_FIELD_VALUE.test(reason)) {
      throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid reason ${JSON.stringify(reason.slice(0, 40))}`);
    }
    let head = `HTTP/1.1 101 ${reason || 'Switching Protocols'}\r\n`;
    let hasConnection = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      if (name.length === 10 && name.toLowerCase() === 'connection') hasConnection = true;
      head += `${name}: ${headers[i + 1]!}\r\n`;
    }
    if (!hasConnection) head += 'Connection: upgrade\r\n';
    this.#head = null;
    this.headersSent = true;
    this.statusCode = 101;
    const conn = this.#conn;
    const held = conn.takeOver(taker);
    conn.socket.write(`${head}\r\n`, 'latin1');
    return held;
  }

  /** Writes `100 Continue`: the client may send the body it announced with Expect. */
  writeContinue(): void {
    if (!this.headersSent && !this.destroyed) this.#conn.socket.write(CONTINUE, 'latin1');
  }

  writeInformational(status: number, headers: readonly string[]): void {
    // HTTP/1.0 has no interim responses (RFC 9110 15.2): a 1.0 client would take it for the answer.
    if (this.headersSent || this.destroyed || this.req.httpVersion !== '1.1') return;
    let head = `HTTP/1.1 ${status} ${reasonPhrase(status) || 'Informational'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.#conn.socket.write(`${head}\r\n`, 'latin1');
  }

  addTrailers(headers: readonly string[]): void {
    if (headers.length === 0 || this.ended || !wantsTrailers(this.req)) return;
    let lines = '';
    for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.#trailers = lines;
  }

  cork(): void {
    this.#conn.socket.cork();
  }

  uncork(): void {
    this.#conn.socket.uncork();
  }

  /** Calls the handler's onResponseDrain once when the socket can take more (after a write returned false). */
  onceDrain(): void {
    this.#awaitingDrain = true;
    this.#conn.drainWaiter = this;
  }

  drained(): void {
    if (!this.#awaitingDrain) return;
    this.#awaitingDrain = false;
    this.handler?.onResponseDrain?.();
  }

  /** The response closed (ended, or its connection went away first): its handler hears it once. */
  closed(): void {
    const handler = this.handler;
    this.handler = null;
    handler?.onResponseClose();
  }

  /**
   * Writes body bytes; false when the socket's buffer is full (wait for onceDrain). Throws,
   * writing nothing, when they would run past the Content-Length (the client would read the
   * rest as the next response). `done` is called once the bytes are handed to the kernel.
   */
  write(chunk: Buffer, done?: () => void): boolean {
    if (this.ended || this.destroyed) {
      done?.();
      return false;
    }
    const socket = this.#conn.socket;
    if (this.#head !== null) this.#sendHead(false, 0);
    if (this.#noBody || chunk.length === 0) {
      done?.();
      return true;
    }
    if (this.#hasLength) {
      if (chunk.length > this.#remaining) throw lengthError(`${chunk.length} more bytes with ${this.#remaining} left`, done);
      this.#remaining -= chunk.length;
      return socket.write(chunk, done);
    }
    if (this.#chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      const more = socket.write('\r\n', 'latin1', done);
      socket.uncork();
      return more;
    }
    return socket.write(chunk, done); // HTTP/1.0 without a length: delimited by the close
  }

  /**
   * Ends the response, with `last` as its final body bytes. Throws, writing nothing of the
   * end, when the body falls short of (or runs past) its Content-Length.
   */
  end(last?: Buffer, done?: () => void): void {
    if (this.ended || this.destroyed) {
      done?.();
      return;
    }
    const socket = this.#conn.socket;
    const n = last === undefined || this.#noBody ? 0 : last.length;
    // Trailers need the chunked framing: a head not sent yet goes out without a length.
    if (this.#head !== null && this.#trailers !== null && !this.#hasLength && !this.#noBody) this.#sendHead(false, 0);
    if (this.#head !== null) {
      // The usual case: head and whole body together.
      if (this.#hasLength && !this.#noBody && n !== this.#remaining) throw lengthError(`${n} bytes for a Content-Length of ${this.#remaining}`, done);
      const head = this.#sendHead(true, n);
      if (n === 0) {
        socket.write(head, 'latin1', done);
      } else if (n <= SMALL_BODY) {
        socket.write(head + last!.toString('latin1', 0, n), 'latin1', done);
      } else {
        socket.cork();
        socket.write(head, 'latin1');
        socket.write(last!, done);
        socket.uncork();
      }
    } else if (this.#hasLength && !this.#noBody) {
      if (n !== this.#remaining) throw lengthError(`${n} bytes at the end with ${this.#remaining} left`, done);
      if (n > 0) socket.write(last!, done);
      else done?.();
    } else if (this.#chunked) {
      const lastChunk = this.#trailers === null ? '0\r\n\r\n' : `0\r\n${this.#trailers}\r\n`;
      if (n > 0) {
        socket.cork();
        socket.write(`${n.toString(16)}\r\n`, 'latin1');
        socket.write(last!);
        socket.write(`\r\n${lastChunk}`, 'latin1', done);
        socket.uncork();
      } else {
        socket.write(lastChunk, 'latin1', done);
      }
    } else if (n > 0) {
      socket.write(last!, done);
    } else {
      done?.();
    }
    this.ended = true;
    this.#conn.responseEnded(this);
  }

  /**
   * Cuts the connection (a response that cannot be completed). What was written and is still
   * corked goes out first (the head, say, so the client sees why), unless the body has reached
   * its Content-Length: the client would take that for a whole response.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const socket = this.#conn.socket;
    if (!(this.#hasLength && this.#remaining === 0 && !this.#noBody)) {
      while (socket.writableCorked > 0) socket.uncork();
    }
    socket.destroy();
  }

  /**
   * Sends the held head, with the framing now decided: Content-Length when the whole body is
   * known (`final`), chunked for HTTP/1.1, else the close. Returns it instead when `final`.
   */
  #sendHead(final: boolean, n: number): string {
    let head = this.#head!;
    this.#head = null;
    this.headersSent = true;
    const conn = this.#conn;
    if (!this.#hasLength && !this.#noBody) {
      if (final) head += `Content-Length: ${n}\r\n`;
      else if (this.req.httpVersion === '1.1') {
        this.#chunked = true;
        head += 'Transfer-Encoding: chunked\r\n';
      } else {
        conn.keepAlive = false;
      }
    }
    if (conn.server.closing) conn.keepAlive = false;
    head += conn.keepAlive ? conn.server.keepAliveHeader : 'Connection: close\r\n';
    head += '\r\n';
    if (final) return head;
    this.#conn.socket.write(head, 'latin1');
    return '';
  }
}

/** The client said it takes trailers (`TE: trailers`, RFC 9110 10.1.4). */
function wantsTrailers(req: HttpRequest): boolean {
  const te = req.headers.te;
  return te !== undefined && /(?:^|,)\s*trailers\s*(?:;|,|$)/i.test(te);
}

/** A final status, and a reason a head can carry (no control characters); throws otherwise. */
export function checkStatus(status: number, reason: string | undefined): void {
  if (!(status >= 200 && status <= 999) || (reason !== undefined && BAD_FIELD_VALUE.test(reason))) {
    throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid response status ${status} ${JSON.stringify((reason ?? '').slice(0, 40))}`);
  }
}

/** A Content-Length that is one number (RFC 9110 8.6); throws otherwise. */
export function checkContentLength(length: string): void {
  if (!isContentLength(length)) throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid Content-Length ${JSON.stringify(length.slice(0, 40))}`);
}

/** The error for a body that does not match its Content-Length (nothing of it was written: `done` is called now). */
export function lengthError(detail: string, done: (() => void) | undefined): TsgiError {
  done?.();
  return new TsgiError('TSGI_ERR_PROTOCOL', `body length does not match the Content-Length: ${detail}`);
}

