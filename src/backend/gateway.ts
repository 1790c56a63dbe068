// Runs one application call under the gateway rules (PEP 3333 where they apply): startResponse
// once (again only with excInfo, before the head went out); the head goes out with the first
// non-empty chunk or the first call of write() (write('') sends it alone: the start of a stream
// of events); the result's close()/return() is always called; an error before the head
// becomes a 500, an error after it resets the stream (never a second head); an application
// that cuts its connection gets its stream reset, with no response if no head went out.
// Synchronous apps run to completion without a single promise; async work switches to the
// slow path only when it is needed (a promise, an async iterable, or backpressure).
import { channel } from 'node:diagnostics_channel';
import { STATUS_CODES } from 'node:http';
import { GatewayError, TsgiError, httpStatusFor, reasonPhrase, statusResponse } from '../protocol/errors.js';
import type { Logger } from '../common/log.js';
import { requestIdOf } from './request-id.js';
import type { AppResult, Application, Chunk, Environ, StartResponse, Write } from './types.js';
import { BAD_FIELD_VALUE, CONTENT_LENGTH, HOP_BY_HOP, NOT_TRAILERS, TOKEN } from '../protocol/http-grammar.js';

/** Where a response goes: a tsgi stream, a uwsgi socket, a test double. */
export interface Responder {
  /**
   * Sends the head; `end` when no body follows. Header names/values are already checked. Unless
   * `end`, write() of the first chunk follows at once, or (a head alone) headAlone(): a responder
   * may hold the head to send it with that chunk.
   */
  head(status: number, reason: string, headers: string[], end: boolean): void;
  /** The head just given goes out without a chunk (PEP 3333's write(b'') before a stream's first event). */
  headAlone?(): void;
  /** Sends body bytes; returns false when the producer should wait for `drain()`. */
  write(chunk: Uint8Array, end: boolean): boolean;
  /** Resolves when more may be written, or when the exchange was aborted. */
  drain(): Promise<void>;
  /**
   * Ends the exchange abnormally (reset / cut the connection): after the head, the response is
   * cut; before it, no response goes out at all (the application cut its connection).
   */
  abort(reason: string): void;
  /** True once the peer is gone: stop producing. */
  readonly aborted: boolean;
  /** Sends an interim response (103 Early Hints) before the head; a peer that cannot carry one drops it. */
  informational(status: number, headers: string[]): void;
  /** Ends the response with trailer fields (after the body sent so far); a peer that cannot carry them drops them. */
  trailers(headers: string[]): void;
}

/** Where an environ's tsgi.early_hints and tsgi.trailers find their exchange. */
const kExchange = Symbol('tsgi.exchange');

/**
 * environ['tsgi.early_hints'](headers): sends `103 Early Hints` with these headers (pairs or an
 * object, as startResponse takes) before the response head; ignored once the head went out.
 * Shared by every environ: it is called as a method of it (`this` is the environ).
 */
function earlyHints(this: Environ, headers: unknown): void {
  const ex = (this as unknown as Record<symbol, Exchange | undefined>)[kExchange];
  ex?.earlyHints(headers);
}

/**
 * environ['tsgi.trailers'](headers): the response ends with these trailer fields (pairs or an
 * object), sent after the last body chunk. Call it before the body ends.
 */
function setTrailers(this: Environ, headers: unknown): void {
  const ex = (this as unknown as Record<symbol, Exchange | undefined>)[kExchange];
  ex?.setTrailers(headers);
}

/**
 * The app call on node:diagnostics_channel: `tsgi:serve:app:start` ({ method, uri, environ }) and
 * `tsgi:serve:app:end` ({ method, uri, status, aborted, environ }; status 0 when no head went
 * out), for tracing without a log line. Messages are made only while someone subscribes.
 */
export const appChannels = {
  start: channel('tsgi:serve:app:start'),
  end: channel('tsgi:serve:app:end'),
};

/** Hop-by-hop response headers: refused from an application (the fetch adapter drops them). */
export { HOP_BY_HOP };

const STATUS_LINE = /^([1-9]\d\d)(?: ([^\r\n\0]*))?$/;
const EMPTY = new Uint8Array(0);

function toBytes(chunk: Chunk): Uint8Array {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return chunk;
  throw new GatewayError('TSGI_ERR_START_RESPONSE',
    `the application yielded a ${chunk === null ? 'null' : typeof chunk}; chunks must be strings or Uint8Arrays`);
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return x !== null && typeof x === 'object' && typeof (x as { then?: unknown }).then === 'function';
}

/** Status lines already parsed ('200 OK' → 200 and ''): an app answers with the same few. */
const STATUSES = new Map<string, { code: number; reason: string }>();
const STATUSES_MAX = 64;

function parseStatus(status: string | number): { code: number; reason: string } {
  if (typeof status === 'string') {
    const known = STATUSES.get(status);
    if (known !== undefined) return known;
  }
  let code: number;
  let reason = '';
  if (typeof status === 'number') {
    code = status;
  } else {
    const m = typeof status === 'string' ? STATUS_LINE.exec(status) : null;
    if (m === null) {
      throw new GatewayError('TSGI_ERR_START_RESPONSE',
        `status must look like '200 OK' (three digits, a space, a reason without CR/LF), got ${JSON.stringify(status)}`);
    }
    code = Number(m[1]);
    reason = m[2] ?? '';
    // Node (the front) refuses these in a reason phrase: the app hears of it, not the client.
    if (BAD_FIELD_VALUE.test(reason)) {
      throw new GatewayError('TSGI_ERR_START_RESPONSE', `status ${JSON.stringify(status)} has a control character or a character above U+00FF in its reason`);
    }
  }
  if (!Number.isInteger(code) || code < 200 || code > 999) {
    throw new GatewayError('TSGI_ERR_START_RESPONSE', `status code ${code} is not a final status (200-999)`);
  }
  if (reason === STATUS_CODES[code] || reason === reasonPhrase(code)) reason = ''; // the front supplies the standard phrase
  const parsed = { code, reason };
  if (typeof status === 'string' && STATUSES.size < STATUSES_MAX) STATUSES.set(status, parsed);
  return parsed;
}

/** Header names already found a token and not hop-by-hop: checked once, not on every response. */
const NAMES_OK = new Set<string>();
const NAMES_OK_MAX = 512;

/** Checks one field and adds it to `flat`; returns the Content-Length so far (-1: none). */
function addField(flat: string[], name: string, value: unknown, length: number): number {
  if (!NAMES_OK.has(name)) {
    if (typeof name !== 'string' || !TOKEN.test(name)) {
      throw new GatewayError('TSGI_ERR_HEADER', `invalid header name ${JSON.stringify(name)}`);
    }
    if (HOP_BY_HOP.has(name.toLowerCase())) {
      throw new GatewayError('TSGI_ERR_HEADER', `hop-by-hop header ${name} is not allowed from an application`);
    }
    if (NAMES_OK.size < NAMES_OK_MAX) NAMES_OK.add(name);
  }
  const v = typeof value === 'string' ? value : String(value);
  if (BAD_FIELD_VALUE.test(v)) {
    throw new GatewayError('TSGI_ERR_HEADER', `header ${name} has a value with CR, LF or another control character`);
  }
  if (name.length === 14 && name.toLowerCase() === 'content-length') {
    // One decimal number, once: anything else is a framing the client cannot trust.
    if (!CONTENT_LENGTH.test(v) || (length !== -1 && Number(v) !== length)) {
      throw new GatewayError('TSGI_ERR_HEADER', `Content-Length ${JSON.stringify(v)} is not one number of bytes${length !== -1 ? ` (already ${length})` : ''}`);
    }
    length = Number(v);
  }
  flat.push(name, v);
  return length;
}

/**
 * Checks and flattens startResponse arguments; throws GatewayError with the reason. `length` is
 * the Content-Length the app declared (-1: none).
 */
export function checkHead(
  status: string | number, headers: Parameters<StartResponse>[1],
): { code: number; reason: string; flat: string[]; length: number } {
  const { code, reason } = parseStatus(status);
  const flat: string[] = [];
  let length = -1;
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i++) {
      const pair: unknown = headers[i];
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new GatewayError('TSGI_ERR_HEADER', 'headers must be [name, value] pairs');
      }
      length = addField(flat, pair[0], pair[1], length);
    }
  } else if (headers !== null && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers)) {
      if (Array.isArray(value)) for (const v of value) length = addField(flat, name, v, length);
      else length = addField(flat, name, value, length);
    }
  } else {
    throw new GatewayError('TSGI_ERR_HEADER', 'headers must be an array of [name, value] pairs or an object');
  }
  return { code, reason, flat, length };
}

/** Runs the application for one request. Never throws; failures are answered and logged. */
export function runApplication(
  app: Application, environ: Environ, out: Responder, log: Logger, done?: () => void,
): void {
  new Exchange(app, environ, out, log, done).run();
}

class Exchange {
  #app: Application;
  #environ: Environ;
  #out: Responder;
  #log: Logger;
  #done: (() => void) | undefined;
  #pending: { code: number; reason: string; flat: string[]; length: number } | null = null;
  /** Body bytes the sent head promised (Content-Length), or -1 when the body is not checked. */
  #declared = -1;
  #sent = 0;
  #headSent = false;
  /** The end of the response went to the Responder (with the head or the last chunk). */
  #ended = false;
  #finished = false;
  /** The status sent (0 while no head went out). */
  #status = 0;
  #result: unknown = null;
  /** The iterator being drained; its return() runs if the exchange ends before it is done. */
  #iter: Iterator<Chunk> | AsyncIterator<Chunk> | null = null;
  /** Trailer fields the app gave (tsgi.trailers), sent at the end. */
  #trailers: string[] | null = null;
  readonly startResponse: StartResponse;
  readonly #write: Write;

  constructor(app: Application, environ: Environ, out: Responder, log: Logger, done?: () => void) {
    this.#app = app;
    this.#environ = environ;
    (environ as unknown as Record<symbol, Exchange>)[kExchange] = this;
    environ['tsgi.early_hints'] = earlyHints;
    environ['tsgi.trailers'] = setTrailers;
    this.#out = out;
    this.#log = log;
    this.#done = done;
    // PEP 3333: the head goes out upon the first call of write(), an empty chunk included (how
    // an app sends the head of a stream before its first event).
    this.#write = (chunk) => {
      const bytes = toBytes(chunk);
      if (bytes.length > 0) return this.#send(bytes, false);
      if (!this.#headSent && !this.#finished && !this.#out.aborted) {
        this.#sendHead(0, false);
        this.#out.headAlone?.();
      }
      return true;
    };
    this.startResponse = (status, headers, excInfo) => {
      if (excInfo !== undefined && excInfo !== null) {
        if (this.#headSent) throw excInfo; // too late to change the head: re-raise, as PEP 3333 says
      } else if (this.#pending !== null) {
        throw new GatewayError('TSGI_ERR_START_RESPONSE', 'startResponse called a second time without excInfo');
      }
      this.#pending = checkHead(status, headers);
      return this.#write;
    };
  }

  run(): void {
    if (appChannels.start.hasSubscribers) {
      appChannels.start.publish({ method: this.#environ.REQUEST_METHOD, uri: this.#environ.REQUEST_URI, environ: this.#environ });
    }
    let result: AppResult | Promise<AppResult>;
    try {
      result = this.#app(this.#environ, this.startResponse);
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (isThenable(result)) {
      (result as Promise<AppResult>).then((r) => this.#consume(r), (err) => this.#fail(err));
    } else {
      this.#consume(result);
    }
  }

  #consume(result: AppResult): void {
    this.#result = result;
    try {
      if (result === null || result === undefined) {
        this.#finish();
      } else if (typeof result === 'string' || result instanceof Uint8Array) {
        const bytes = toBytes(result);
        this.#setLength(bytes.length);
        this.#send(bytes, true);
        this.#finish();
      } else if (Array.isArray(result)) {
        // The whole body is known: send it with a Content-Length rather than chunked.
        const chunks = result.map(toBytes);
        let total = 0;
        for (const c of chunks) total += c.length;
        this.#setLength(total);
        this.#consumeArray(chunks, 0);
      } else if (typeof (result as Iterable<Chunk>)[Symbol.iterator] === 'function') {
        const it = (result as Iterable<Chunk>)[Symbol.iterator]();
        this.#iter = it;
        this.#consumeIterator(it);
      } else if (typeof (result as AsyncIterable<Chunk>)[Symbol.asyncIterator] === 'function') {
        const it = (result as AsyncIterable<Chunk>)[Symbol.asyncIterator]();
        this.#iter = it;
        this.#consumeAsync(it).catch((err) => this.#fail(err));
      } else {
        throw new GatewayError('TSGI_ERR_START_RESPONSE',
          'the application must return an iterable or async iterable of chunks (or a string / Uint8Array)');
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  /**
   * Adds Content-Length to a pending head that has none (and may have a body); one the app gave
   * must match the body, known whole here, before the head goes out.
   */
  #setLength(total: number): void {
    const head = this.#pending;
    // Trailers need a body framed without a length (chunked), as node:http does.
    if (this.#headSent || head === null || head.code === 204 || head.code === 304 || this.#trailers !== null) return;
    if (head.length < 0) {
      // An empty body for HEAD says nothing of the GET's length (a fetch handler's HEAD has a
      // null body): no Content-Length then, as node:http sends none for a HEAD response.
      if (total === 0 && this.#environ.REQUEST_METHOD === 'HEAD') return;
      head.flat.push('content-length', String(total));
    } else if (head.length !== total && this.#environ.REQUEST_METHOD !== 'HEAD') {
      throw new GatewayError('TSGI_ERR_BODY_LENGTH', `the body is ${total} bytes but its Content-Length says ${head.length}`);
    }
  }

  /** Counts body bytes against the declared Content-Length; throws before a byte too many is sent. */
  #count(n: number, end: boolean): void {
    const sent = this.#sent + n;
    if (sent > this.#declared) {
      throw new GatewayError('TSGI_ERR_BODY_LENGTH', `the body grew to ${sent} bytes; its Content-Length says ${this.#declared}`);
    }
    if (end && sent < this.#declared) {
      throw new GatewayError('TSGI_ERR_BODY_LENGTH', `the body ended after ${sent} bytes; its Content-Length says ${this.#declared}`);
    }
    this.#sent = sent;
  }

  #consumeArray(chunks: readonly Uint8Array[], from: number): void {
    const last = chunks.length - 1;
    for (let i = from; i <= last; i++) {
      if (this.#out.aborted) return this.#cleanup();
      const more = this.#send(chunks[i]!, i === last);
      if (!more && i < last && this.#headSent) {
        this.#out.drain().then(() => this.#consumeArray(chunks, i + 1)).catch((err) => this.#fail(err));
        return;
      }
    }
    this.#finish();
  }

  #consumeIterator(it: Iterator<Chunk>): void {
    for (;;) {
      if (this.#out.aborted) return this.#cleanup();
      const r = it.next();
      if (r.done) break;
      if (!this.#send(toBytes(r.value), false) && this.#headSent) {
        this.#out.drain().then(() => this.#consumeIterator(it)).catch((err) => this.#fail(err));
        return;
      }
    }
    this.#iter = null;
    this.#finish();
  }

  async #consumeAsync(it: AsyncIterator<Chunk>): Promise<void> {
    for (;;) {
      if (this.#out.aborted) return this.#cleanup();
      const r = await it.next();
      if (r.done) break;
      if (!this.#send(toBytes(r.value), false) && this.#headSent) await this.#out.drain();
    }
    this.#iter = null;
    this.#finish();
  }

  earlyHints(headers: unknown): void {
    if (this.#headSent || this.#finished || this.#out.aborted) return;
    // The fields are checked as a head's are (the status there only stands in).
    this.#out.informational(103, checkHead(200, headers as never).flat);
  }

  setTrailers(headers: unknown): void {
    if (this.#ended || this.#finished) throw new GatewayError('TSGI_ERR_START_RESPONSE', 'tsgi.trailers called after the body ended');
    const { flat } = checkHead('200 OK', headers as never);
    for (let i = 0; i < flat.length; i += 2) {
      if (NOT_TRAILERS.has(flat[i]!.toLowerCase())) throw new GatewayError('TSGI_ERR_HEADER', `${flat[i]} may not be a trailer field`);
    }
    this.#trailers = flat;
  }

  /** Sends a chunk (and the head first, if it is still pending). Returns the Responder's verdict. */
  #send(bytes: Uint8Array, end: boolean): boolean {
    if (this.#finished || this.#ended || this.#out.aborted) return false;
    if (bytes.length === 0 && !end) return true;
    if (!this.#headSent) {
      this.#sendHead(bytes.length, end && this.#trailers === null);
      if (end && bytes.length === 0) {
        this.#ended = true;
        if (this.#trailers !== null) this.#out.trailers(this.#trailers);
        return false;
      }
    } else if (this.#declared >= 0) {
      this.#count(bytes.length, end);
    }
    if (end) this.#ended = true;
    if (end && this.#trailers !== null) {
      const more = this.#out.write(bytes, false);
      this.#out.trailers(this.#trailers);
      return more;
    }
    return this.#out.write(bytes, end);
  }

  /** Sends the pending head, `n` body bytes to follow (and no more when `end`). */
  #sendHead(n: number, end: boolean): void {
    const head = this.#pending;
    if (head === null) {
      throw new GatewayError('TSGI_ERR_START_RESPONSE', 'the application produced body bytes before calling startResponse');
    }
    // A declared length is held to (no body for HEAD, 204, 304: nothing to count there).
    if (head.length >= 0 && head.code !== 204 && head.code !== 304 && this.#environ.REQUEST_METHOD !== 'HEAD') {
      this.#declared = head.length;
      this.#count(n, end); // a mismatch known now is still a 500
    }
    this.#headSent = true;
    this.#status = head.code;
    this.#out.head(head.code, head.reason, head.flat, end && n === 0);
  }

  #finish(): void {
    if (this.#finished) return;
    if (!this.#out.aborted) {
      if (!this.#headSent) {
        if (this.#pending === null) {
          throw new GatewayError('TSGI_ERR_START_RESPONSE', 'the application returned without calling startResponse');
        }
        this.#send(EMPTY, true);
      } else if (!this.#ended) {
        this.#send(EMPTY, true);
      }
    }
    this.#cleanup();
  }

  #fail(err: unknown): void {
    if (this.#finished) return;
    const env = this.#environ;
    const what = `${env.REQUEST_METHOD} ${env.REQUEST_URI}`;
    const id = ` (request id ${requestIdOf(env)})`;
    if (this.#out.aborted) {
      this.#log.debug(`${what}: stopped after the client went away (${(err as Error)?.message ?? err})${id}`);
    } else if (err instanceof TsgiError && err.code === 'TSGI_ERR_CONNECTION_CUT') {
      // The app's own choice (node:http's socket.destroy()): not an application error.
      this.#log.info(`${what}: the application cut the connection${this.#headSent ? ' after the response head' : ', no response'}; stream reset${id}`);
      this.#out.abort(err.message);
    } else if (!this.#headSent) {
      const answer = statusResponse(httpStatusFor(err)); // the front decides about its connection
      this.#log.error(`${what}: application error before the response head; answered ${answer.status}${id}`, err);
      this.#headSent = true;
      this.#status = answer.status;
      this.#out.head(answer.status, '', answer.headers, false);
      this.#out.write(Buffer.from(answer.body), true);
    } else {
      this.#log.error(`${what}: application error after the response head was sent; stream reset${id}`, err);
      this.#out.abort('application error after the response head');
    }
    this.#cleanup();
  }

  #cleanup(): void {
    if (this.#finished) return;
    this.#finished = true;
    const it = this.#iter;
    if (it !== null) {
      this.#iter = null;
      try {
        const r = it.return?.();
        if (isThenable(r)) (r as Promise<unknown>).catch((err) => this.#log.error('iterator return() failed', err));
      } catch (err) {
        this.#log.error('iterator return() failed', err);
      }
    }
    const result = this.#result as { close?: () => unknown } | null;
    if (result !== null && typeof result === 'object' && typeof result.close === 'function') {
      try {
        const r = result.close();
        if (isThenable(r)) (r as Promise<unknown>).catch((err) => this.#log.error('result.close() failed', err));
      } catch (err) {
        this.#log.error(`${this.#environ.REQUEST_METHOD} ${this.#environ.REQUEST_URI}: result.close() failed`, err);
      }
    }
    if (appChannels.end.hasSubscribers) {
      appChannels.end.publish({ method: this.#environ.REQUEST_METHOD, uri: this.#environ.REQUEST_URI,
        status: this.#status, aborted: this.#out.aborted, environ: this.#environ });
    }
    this.#done?.();
  }
}
