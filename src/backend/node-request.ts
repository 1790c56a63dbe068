// The request side of the (req, res) adapter: a real http.IncomingMessage whose body streams
// from tsgi.input as it is read, and the connection it appears to arrive on (req.socket).
import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import type { Environ } from './types.js';

/** scheme://authority of an absolute-form request-target. */
const ABSOLUTE_FORM = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?]*/;

/** Where req and its socket hang their exchange (objects we do not own). */
export const kState = Symbol('tsgi.node');

/** What the request side needs from the exchange that owns it. */
export interface RequestOwner {
  /** req.socket: a PeerSocket, or the TunnelSocket of an upgrade request. */
  readonly socket: { readonly destroyed: boolean; destroy(err?: Error | null): unknown };
  /** req._read: take the next chunk of tsgi.input and push it. */
  read(): void;
  /** The app destroyed the connection: no response (or no more of it) goes out, the stream resets. */
  cut(): void;
}

export type Req = IncomingMessage & { [kState]: RequestOwner; _consuming: boolean; _addHeaderLines(h: string[], n: number): void };

/** The addresses a net.Socket carries (and `encrypted` over https). */
export interface PeerAddresses {
  remoteAddress: string;
  remotePort: number | undefined;
  remoteFamily: string;
  localAddress: string;
  localPort: number | undefined;
  encrypted?: true;
}

/** Sets a socket's addresses from the environ, as node:http's socket would have them. */
export function setPeer(socket: PeerAddresses, environ: Environ): void {
  socket.remoteAddress = environ.REMOTE_ADDR;
  socket.remotePort = environ.REMOTE_PORT ? Number(environ.REMOTE_PORT) : undefined;
  socket.remoteFamily = environ.REMOTE_ADDR.includes(':') ? 'IPv6' : 'IPv4';
  socket.localAddress = environ.SERVER_NAME;
  socket.localPort = environ.SERVER_PORT ? Number(environ.SERVER_PORT) : undefined;
  if (environ['tsgi.url_scheme'] === 'https') socket.encrypted = true;
}

/**
 * The connection as the handler sees it (req.socket, res.socket): the peer's addresses, and
 * `encrypted` over https. destroy() cuts it as on node:http: the stream resets with no response
 * (or no more of it), the client's connection is cut, and 'error' (given one) then 'close' follow.
 */
export class PeerSocket extends EventEmitter {
  remoteAddress!: string;
  remotePort: number | undefined;
  remoteFamily!: string;
  localAddress!: string;
  localPort: number | undefined;
  encrypted?: true;
  readable = true;
  writable = true;
  destroyed = false;
  readonly writableLength = 0;
  readonly bytesWritten = 0;
  readonly #exchange: Pick<RequestOwner, 'cut'>;

  constructor(environ: Environ, exchange: Pick<RequestOwner, 'cut'>) {
    super();
    this.#exchange = exchange;
    setPeer(this, environ);
  }

  address(): { address: string; port: number | undefined; family: string } {
    return { address: this.localAddress, port: this.localPort, family: this.remoteFamily };
  }

  setTimeout(): this { return this; }
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  ref(): this { return this; }
  unref(): this { return this; }
  cork(): void {}
  uncork(): void {}

  destroy(err?: Error | null): this {
    if (this.destroyed) return this;
    this.#down();
    this.#exchange.cut();
    process.nextTick(emitDestroyed, this, err ?? null);
    return this;
  }

  end(): this {
    return this.destroy();
  }

  /** The exchange is over (done or gone): the connection closes, as far as the handler knows. */
  close(hadError: boolean): void {
    if (this.destroyed) return;
    this.#down();
    this.emit('close', hadError);
  }

  #down(): void {
    this.destroyed = true;
    this.readable = false;
    this.writable = false;
  }
}

/**
 * After destroy(err): 'error', then 'close', as a net.Socket emits them (Koa's on-finished hears
 * the error this way). node:http always listens for a socket's errors, so one nobody else listens
 * for is dropped, never thrown.
 */
function emitDestroyed(socket: PeerSocket, err: Error | null): void {
  if (err !== null && socket.listenerCount('error') > 0) socket.emit('error', err);
  socket.emit('close', err !== null);
}

function reqRead(this: Req): void {
  if (!this._consuming) {
    // IncomingMessage starts with readingMore set, so nothing is read before a consumer comes;
    // its own _read clears it on the first call, and so must this one.
    this._consuming = true;
    (this as unknown as { _readableState: { readingMore: boolean } })._readableState.readingMore = false;
  }
  this[kState].read();
}

/**
 * req.destroy(), as node:http's: a request destroyed before its body was read to the end takes
 * its connection with it (the stream resets); listeners hear the error if they listen.
 */
function reqDestroy(this: Req, err: Error | null, cb: (err?: Error | null) => void): void {
  if (!this.readableEnded || !this.complete) {
    this.aborted = true;
    this.emit('aborted');
  }
  const socket = this[kState].socket;
  if (this.aborted && !socket.destroyed) socket.destroy(err);
  process.nextTick(destroyed, this, err, cb);
}

/** As node:http does: the error reaches 'error' listeners only if there are any (no crash). */
function destroyed(req: Req, err: Error | null, cb: (err?: Error | null) => void): void {
  cb(req.listenerCount('error') > 0 ? err : null);
}

export function makeRequest(environ: Environ, exchange: RequestOwner): Req {
  const req = new IncomingMessage(exchange.socket as never) as Req;
  req[kState] = exchange;
  req.method = environ.REQUEST_METHOD;
  let url = environ.REQUEST_URI.replace(ABSOLUTE_FORM, '');
  if (!url.startsWith('/') && url !== '*') url = `/${url}`;
  req.url = url;
  const version = /^HTTP\/(\d)\.(\d)$/.exec(environ.SERVER_PROTOCOL);
  req.httpVersionMajor = version === null ? 1 : Number(version[1]);
  req.httpVersionMinor = version === null ? 1 : Number(version[2]);
  req.httpVersion = `${req.httpVersionMajor}.${req.httpVersionMinor}`;
  let flat = environ['tsgi.headers'] as string[];
  const input = environ['tsgi.input'];
  const bodyless = input.complete && input.received === 0;
  if (!bodyless && environ.CONTENT_LENGTH === undefined) {
    // The front took the chunked framing off; body parsers (type-is hasBody) look for it.
    flat = [...flat, 'Transfer-Encoding', 'chunked'];
  }
  req._addHeaderLines(flat, flat.length); // rawHeaders; req.headers joined by Node's own rules, lazily
  req._read = reqRead;
  req._destroy = reqDestroy;
  if (bodyless) {
    req.complete = true;
    req.push(null);
  }
  return req;
}
