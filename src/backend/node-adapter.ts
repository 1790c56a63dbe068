// Runs a Node `(req, res)` handler (node:http style: Express, Connect, Koa's callback()) as a
// gateway application. req is a real http.IncomingMessage whose body streams from tsgi.input;
// res is a real http.ServerResponse whose output methods, replaced on the instance (so they
// survive Express swapping the prototype), feed the gateway an async iterator: no HTTP bytes
// are written or parsed, the head goes to startResponse, and write() reports backpressure.
import { type IncomingMessage, STATUS_CODES, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { onFirstUse } from '../common/load-on-use.js';
import { GatewayError, TsgiError } from '../protocol/errors.js';
import { HOP_BY_HOP } from './gateway.js';
import { PeerSocket, type Req, kState, makeRequest } from './node-request.js';
import type { Application, Environ, ErrorStream, StartResponse, Write } from './types.js';
import type { InputStream } from './input.js';

const nodeHttps = onFirstUse<typeof import('node:https')>('node:https');

/** A (req, res) handler, as node:http's createServer takes. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

/**
 * An 'upgrade' listener, as node:http's Server calls it: the request, the connection (a Duplex
 * over the tsgi stream, close enough to a net.Socket for ws and socket.io), and the bytes that
 * came after the head (always empty here: the front sends the client's bytes after the 101).
 */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => unknown;

export interface NodeHandlerOptions {
  /** Runs upgrade requests (Connection: upgrade); without it they go to the handler as any request. */
  upgrade?: UpgradeHandler;
}

/** res.write() answers false once this many bytes wait for the gateway to take them. */
const HIGH_WATER_MARK = 64 * 1024;
const EMPTY = Buffer.alloc(0);

type Callback = (err?: Error | null) => void;
type Res = ServerResponse & { [kState]: Exchange; _header: string | null; _implicitHeader(): void };

/** Node's error for a call that needs the head unsent. */
function headersSent(what: string): Error {
  return Object.assign(new Error(`Cannot ${what} headers after they are sent to the client`), { code: 'ERR_HTTP_HEADERS_SENT' });
}

/**
 * One request: the response bytes queued for the gateway, which pulls them through the async
 * iterator (next() is called only when the stream has room: that is the backpressure).
 */
class Exchange implements AsyncIterator<Buffer>, AsyncIterable<Buffer> {
  readonly req: Req;
  readonly res: Res;
  readonly socket: PeerSocket;
  readonly #startResponse: StartResponse;
  readonly #input: InputStream;
  readonly #signal: AbortSignal;
  readonly #errors: ErrorStream;
  #queue: Buffer[] = [];
  #callbacks: (Callback | null)[] = [];
  #queued = 0;
  #written = 0;
  #needDrain = false;
  #ended = false;
  #closed = false;
  #error: unknown = null;
  #noBody = false;
  #reading = false;
  /** startResponse's write(): write('') sends the head now (res.flushHeaders()). */
  #write: Write | null = null;
  #waiter: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void } | null = null;

  readonly environ: Environ;

  constructor(environ: Environ, startResponse: StartResponse) {
    this.environ = environ;
    this.#startResponse = startResponse;
    this.#input = environ['tsgi.input'];
    this.#signal = environ['tsgi.signal'];
    this.#errors = environ['tsgi.errors'];
    this.socket = new PeerSocket(environ, this);
    this.req = makeRequest(environ, this);
    this.res = makeResponse(this.req, this);
    this.#noBody = environ.REQUEST_METHOD === 'HEAD';
    this.#signal.addEventListener('abort', this, { once: true });
  }

  // --- the request body ----------------------------------------------------------------------

  /** req._read: takes the next chunk of tsgi.input (its credit goes back to the front). */
  read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#input.next().then((r) => {
      this.#reading = false;
      const req = this.req;
      if (req.destroyed) return;
      if (r.done) {
        req.complete = true;
        const trailers = this.#input.trailers;
        if (trailers !== null) {
          // As node:http gives them: rawTrailers as received, trailers by lowercase name.
          req.rawTrailers = trailers;
          const byName: Record<string, string> = {};
          for (let i = 0; i < trailers.length; i += 2) {
            const name = trailers[i]!.toLowerCase();
            byName[name] = byName[name] === undefined ? trailers[i + 1]! : `${byName[name]}, ${trailers[i + 1]!}`;
          }
          req.trailers = byName;
        }
        req.push(null);
      } else {
        req.push(r.value);
      }
    }, (err: unknown) => {
      this.#reading = false;
      this.req.destroy(err as Error);
    });
  }

  // --- the response --------------------------------------------------------------------------

  /** res.writeHead(status[, message][, headers]): commits the head (it goes out with the first byte). */
  writeHead(status: number, message?: unknown, headers?: unknown): void {
    const res = this.res;
    if (res._header) throw headersSent('write');
    if (typeof message !== 'string') {
      headers = message;
      message = undefined;
    }
    const code = Number(status) | 0;
    if (code < 100 || code > 999) {
      throw Object.assign(new RangeError(`Invalid status code: ${status}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
    }
    if (code < 200) return; // 1xx (103 Early Hints…): not relayed, and its headers not kept; the final head follows
    if (headers !== undefined && headers !== null) mergeHeaders(res, headers);
    // A transfer coding other than chunked (gzip, deflate) cannot be relayed: the front frames
    // the response, and transfer codings are hop-by-hop (RFC 9112 7). node:http passes it on
    // unframed; here the body would reach the client still coded, as if it were the content.
    const te = res.getHeader('transfer-encoding');
    if (te !== undefined && !/^[\t ]*chunked[\t ]*$/i.test(String(te))) {
      this.#reset(new GatewayError('TSGI_ERR_HEADER', `Transfer-Encoding ${JSON.stringify(String(te))} from the application: `
        + 'the front frames the response and cannot relay a transfer coding; send Content-Encoding for compressed content'));
      return;
    }
    res.statusCode = code;
    if (message !== undefined) res.statusMessage = message as string;
    const pairs: [string, string][] = [];
    for (const name of res.getHeaderNames()) {
      if (HOP_BY_HOP.has(name)) continue; // Node apps set Connection / Transfer-Encoding freely
      const value = res.getHeader(name)!;
      if (Array.isArray(value)) for (const v of value) pairs.push([name, String(v)]);
      else pairs.push([name, String(value)]);
    }
    const reason = res.statusMessage || STATUS_CODES[code] || '';
    this.#write = this.#startResponse(reason === '' ? String(code) : `${code} ${reason}`, pairs);
    if (code === 204 || code === 304) this.#noBody = true;
    res._header = `HTTP/1.1 ${code} ${reason}\r\n`; // Node's own headersSent / setHeader checks read this
  }

  write(chunk: unknown, encoding: unknown, cb: Callback | undefined): boolean {
    const res = this.res;
    if (res.finished) {
      const err = Object.assign(new Error('write after end'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
      process.nextTick(() => {
        cb?.(err);
        if (res.listenerCount('error') > 0) res.emit('error', err);
      });
      return false;
    }
    if (res.destroyed) { // the client is gone (or the app destroyed res)
      const err = Object.assign(new Error('Cannot call write after a stream was destroyed'), { code: 'ERR_STREAM_DESTROYED' });
      if (cb !== undefined) process.nextTick(cb, err);
      return false;
    }
    if (chunk === null || chunk === undefined) {
      throw Object.assign(new TypeError('May not write null values to stream'), { code: 'ERR_STREAM_NULL_VALUES' });
    }
    if (!res._header) res._implicitHeader();
    return this.#push(toBuffer(chunk, encoding), cb);
  }

  end(chunk: unknown, encoding: unknown, cb: Callback | undefined): void {
    const res = this.res;
    if (res.finished) {
      if (cb !== undefined) process.nextTick(cb);
      return;
    }
    const bytes = chunk === null || chunk === undefined ? null : toBuffer(chunk, encoding);
    if (!res._header) {
      // The whole body is known: a Content-Length, as Node sends for res.end(body).
      // Not when the app removed it (res.removeHeader('content-length')): node:http then sends none.
      if (this.#written === 0 && !res.hasHeader('content-length') && !res.hasHeader('transfer-encoding')
        && !(res as { _removedContLen?: boolean })._removedContLen && res.statusCode !== 204 && res.statusCode !== 304) {
        res.setHeader('Content-Length', bytes === null ? 0 : bytes.length);
      }
      res._implicitHeader();
    }
    if (bytes !== null) this.#push(bytes, undefined);
    res.finished = true;
    this.#ended = true;
    if (cb !== undefined) res.once('finish', cb);
    this.#wake();
  }

  /** res.flushHeaders(): the head goes out now, before any body (a stream of events starts). */
  flushHead(): void {
    if (!this.res._header) this.res._implicitHeader();
    if (!this.#closed) this.#write?.(EMPTY);
  }

  #push(bytes: Buffer, cb: Callback | undefined): boolean {
    if (this.#noBody || bytes.length === 0 || this.#closed) {
      if (cb !== undefined) process.nextTick(cb, null);
      return true;
    }
    this.#written += bytes.length;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      if (cb !== undefined) process.nextTick(cb, null);
      w.resolve({ value: bytes, done: false });
      return true;
    }
    this.#queue.push(bytes);
    this.#callbacks.push(cb ?? null);
    this.#queued += bytes.length;
    if (this.#queued < HIGH_WATER_MARK) return true;
    this.#needDrain = true;
    return false;
  }

  /** The response can never complete: the gateway answers 500 or resets the stream. */
  #reset(err: unknown): void {
    if (this.#closed || this.#error !== null) return;
    this.#error = err;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.reject(err);
    }
  }

  /**
   * The app destroyed the connection (req.socket.destroy(), res.destroy(), req.destroy() before
   * the end of the body): the gateway resets the stream, with no response if no head went out,
   * and req and res close as when the client goes away.
   */
  cut(): void {
    const req = this.req;
    this.#reset(new TsgiError('TSGI_ERR_CONNECTION_CUT', `the application destroyed the connection of ${req.method} ${req.url}`));
    process.nextTick(() => this.#close(false)); // a cut is rare: a closure is fine here
  }

  /** The handler's promise rejected: a failed response, unless it was already complete. */
  rejected(err: unknown): void {
    if (!this.#ended) return this.#reset(err);
    const req = this.req;
    this.#errors.write(`tsgi: the (req, res) handler for ${req.method} ${req.url} failed after it ended the response: `
      + `${(err as Error)?.stack ?? String(err)}\n`);
  }

  // --- the gateway's side: an async iterator of body chunks ----------------------------------

  /**
   * What the application returns: when the handler already ended the response (a synchronous
   * res.end / res.send, the common case), the whole body as an array, which the gateway sends
   * at once without a promise; otherwise this iterator.
   */
  result(): Buffer[] | this {
    // (An array gets a Content-Length from the gateway: not when the app removed it.)
    if (!this.#ended || this.#closed || this.#noBody || this.#error !== null
      || (this.res as { _removedContLen?: boolean })._removedContLen) return this;
    const body = this.#queue.splice(0);
    for (const cb of this.#callbacks.splice(0)) if (cb !== null) process.nextTick(cb, null);
    this.#queued = 0;
    this.#finish();
    return body;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.#error !== null) return Promise.reject(this.#error);
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      const cb = this.#callbacks.shift();
      if (cb) process.nextTick(cb, null);
      this.#queued -= chunk.length;
      if (this.#needDrain && this.#queued === 0) {
        this.#needDrain = false;
        process.nextTick(emitDrain, this.res);
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.#ended || this.#closed) {
      this.#finish();
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter !== null) return Promise.reject(new Error('next() while a next() is pending'));
    return new Promise((resolve, reject) => { this.#waiter = { resolve, reject }; });
  }

  /** The gateway stops early (the client left, or an error): the response closes. */
  async return(): Promise<IteratorResult<Buffer>> {
    this.#close(false);
    return { value: undefined, done: true };
  }

  #wake(): void {
    const w = this.#waiter;
    if (w !== null && this.#ended) {
      this.#waiter = null;
      this.#finish();
      w.resolve({ value: undefined, done: true });
    }
  }

  /** Every byte went to the gateway: 'finish', then 'close', as node:http emits them. */
  #finish(): void {
    if (this.#closed) return;
    this.#close(true);
    process.nextTick(emitFinishAndClose, this.res, this.req);
  }

  /**
   * tsgi.signal's 'abort' (this object is the listener: no closure per request): the client went
   * away, so req 'aborted' and 'close', res 'close' without 'finish' (as node:http).
   */
  handleEvent(): void {
    if (this.#closed) return;
    this.#close(false);
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }

  /** The exchange is over: no more writes, the abort listener goes; if it failed, everything closes. */
  #close(finished: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#callbacks.length = 0;
    this.#signal.removeEventListener('abort', this);
    if (!finished) {
      this.socket.close(true);
      const req = this.req;
      if (!req.destroyed) req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
      (this.res as { destroyed: boolean }).destroyed = true;
      process.nextTick(emitClose, this.res);
    }
  }
}

function emitDrain(res: ServerResponse): void {
  res.emit('drain');
}

function emitFinishAndClose(res: ServerResponse, req: Req): void {
  res.emit('finish');
  res.emit('close');
  (req[kState].socket as PeerSocket).close(false); // one request per "connection": it closes after the response
  // As node:http does: a request body nobody read is drained, so req ends and closes too.
  if (!req._consuming && !req.destroyed && !req.readableEnded) {
    req.removeAllListeners('data');
    req.resume();
  }
}

function emitClose(res: ServerResponse): void {
  res.emit('close');
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw Object.assign(new TypeError(`The "chunk" argument must be of type string or an instance of Buffer or Uint8Array; received ${typeof chunk}`),
    { code: 'ERR_INVALID_ARG_TYPE' });
}

/** writeHead's headers: an object, [[name, value], …] or a flat [name, value, …] list. */
function mergeHeaders(res: ServerResponse, headers: unknown): void {
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [name, value] of headers as [string, string][]) if (name) res.setHeader(name, value);
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2) res.removeHeader(headers[i] as string);
      for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i]) res.appendHeader(headers[i] as string, headers[i + 1] as string);
    }
  } else if (typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers as Record<string, string | number | readonly string[]>)) {
      if (value !== undefined) res.setHeader(name, value);
    }
  }
}

// The methods that replace res's output path: own properties of each response, so they stay
// when a framework swaps the prototype (Express does), and can be wrapped (on-headers does).
function resWriteHead(this: Res, status: number, message?: unknown, headers?: unknown): Res {
  this[kState].writeHead(status, message, headers);
  return this;
}

function resWrite(this: Res, chunk: unknown, encoding?: unknown, cb?: Callback): boolean {
  if (typeof encoding === 'function') {
    cb = encoding as Callback;
    encoding = undefined;
  }
  return this[kState].write(chunk, encoding, cb);
}

function resEnd(this: Res, chunk?: unknown, encoding?: unknown, cb?: Callback): Res {
  if (typeof chunk === 'function') {
    cb = chunk as Callback;
    chunk = undefined;
  } else if (typeof encoding === 'function') {
    cb = encoding as Callback;
    encoding = undefined;
  }
  this[kState].end(chunk, encoding, cb);
  return this;
}

function resFlushHeaders(this: Res): void {
  this[kState].flushHead();
}

/** res.addTrailers(): the response ends with these fields (environ['tsgi.trailers']). */
function resAddTrailers(this: Res, headers: Record<string, string> | [string, string][]): void {
  const environ = this[kState].environ;
  (environ['tsgi.trailers'] as (h: unknown) => void).call(environ, headers);
}

/** res.writeEarlyHints(): a 103 before the head (environ['tsgi.early_hints']); `cb` once it is handed on. */
function resWriteEarlyHints(this: Res, hints: Record<string, string | string[]>, cb?: () => void): void {
  const environ = this[kState].environ;
  const pairs: [string, string][] = [];
  for (const [name, value] of Object.entries(hints)) {
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, String(v)]);
  }
  (environ['tsgi.early_hints'] as (h: unknown) => void).call(environ, pairs);
  if (cb !== undefined) process.nextTick(cb);
}


function makeResponse(req: Req, exchange: Exchange): Res {
  const res = new ServerResponse(req) as unknown as Res;
  res[kState] = exchange;
  (res as { socket: unknown }).socket = exchange.socket;
  res.writeHead = resWriteHead as never;
  res.write = resWrite as never;
  res.end = resEnd as never;
  res.flushHeaders = resFlushHeaders;
  res.addTrailers = resAddTrailers as never;
  res.writeEarlyHints = resWriteEarlyHints as never;
  return res;
}

/**
 * Wraps a Node `(req, res)` handler as a gateway Application. A promise the handler returns is
 * watched: a rejection becomes a 500 (or a reset stream, once the head went out).
 */
export function fromNodeHandler(handler: NodeHandler, options: NodeHandlerOptions = {}): Application {
  if (typeof handler !== 'function') throw new TypeError('fromNodeHandler needs a function (req, res)');
  const upgrade = options.upgrade;
  if (upgrade !== undefined && typeof upgrade !== 'function') throw new TypeError('fromNodeHandler: options.upgrade must be a function (req, socket, head)');
  return (environ, startResponse) => {
    if (upgrade !== undefined && environ['tsgi.upgrade'] !== undefined) return runUpgrade(environ, upgrade);
    const exchange = new Exchange(environ, startResponse);
    const result = handler(exchange.req, exchange.res);
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      (result as Promise<unknown>).then(undefined, (err: unknown) => exchange.rejected(err));
    }
    return exchange.result();
  };
}

/**
 * An upgrade request given to an 'upgrade' listener: it takes the connection (the gateway sends
 * nothing) and answers on the socket with a raw HTTP response (a 101, or a refusal).
 */
function runUpgrade(environ: Environ, upgrade: UpgradeHandler): null {
  const socket = (environ['tsgi.upgrade'] as () => Duplex)();
  const req = makeRequest(environ, { socket, read() {}, cut() { socket.destroy(); } });
  (req as { upgrade?: boolean }).upgrade = true;
  const failed = (err: unknown) => {
    environ['tsgi.errors'].write(`tsgi: the 'upgrade' listener for ${req.method} ${req.url} failed: ${(err as Error)?.stack ?? String(err)}\n`);
    socket.destroy();
  };
  try {
    const result = upgrade(req, socket, Buffer.alloc(0));
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      (result as Promise<unknown>).then(undefined, failed);
    }
  } catch (err) {
    failed(err);
  }
  return null;
}

/**
 * Runs an http.Server (or https.Server) that was made and never listened on, as node:http would:
 * each request is its 'request' event (req, res), and an upgrade request its 'upgrade' event
 * (req, socket, head) when it has 'upgrade' listeners (ws's WebSocketServer({ server }),
 * socket.io's Server(httpServer), @hono/node-ws), else a 'request' too.
 */
export function fromHttpServer(server: HttpServer | HttpsServer): Application {
  const request = fromNodeHandler((req, res) => server.emit('request', req, res));
  const upgrade: UpgradeHandler = (req, socket, head) => server.emit('upgrade', req, socket, head);
  return (environ, startResponse) => {
    if (environ['tsgi.upgrade'] !== undefined && server.listenerCount('upgrade') > 0) return runUpgrade(environ, upgrade);
    return request(environ, startResponse);
  };
}

/** An http.Server or https.Server (made with createServer, never listened on). */
export function isHttpServer(x: unknown): x is HttpServer | HttpsServer {
  // node:https is asked for only when x is some other server: the app that made an https.Server
  // has loaded it already, and a process without one does not load it for this check.
  return x instanceof HttpServer
    || (x instanceof NetServer && x instanceof nodeHttps().Server);
}

/** An Express or Connect app: a function with handle(), use() and listen() (never guessed by arity). */
export function isNodeApp(x: unknown): x is NodeHandler {
  if (typeof x !== 'function') return false;
  const app = x as unknown as Record<string, unknown>;
  return typeof app.handle === 'function' && typeof app.use === 'function' && typeof app.listen === 'function';
}
