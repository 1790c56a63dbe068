// The front's HTTP/1.1 server: client connections read with the strict parser of
// protocol/http-request.ts and answered by HttpResponse, without node:http. Node's server
// costs a Readable and a Writable per request and a writev per response; this one costs two
// small objects and, for the common small response, one write of one string. Measured on the
// hello app: ~5 µs less CPU per request at the front (see the README's performance section).
//
// One request at a time per connection: bytes after a request (pipelined ones) wait, unparsed,
// until its response is complete, so responses can only go out in order. Limits: --max-header-size
// (431), --headers-timeout (408), --keep-alive-timeout, --max-connections (503 + Retry-After);
// malformed heads get 400; every refusal is a log line and closes the connection.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../common/log.js';
import { TsgiError, rawErrorResponse } from '../../protocol/errors.js';
import type { TLSSocket } from 'node:tls';
import { Connection } from './connection.js';
import { Http2Edge } from './h2.js';
import type { HttpRequest } from './request.js';
import type { HttpResponse } from './response.js';
import { TlsEdge, type TlsMinVersion } from './tls.js';
import { LinkedSet } from '../../common/linked-set.js';

export { HttpRequest, type BodyReader } from './request.js';
export type { HttpResponse, ResponseHandler } from './response.js';

export interface HttpServerOptions {
  log: Logger;
  /** Called for each request head; the body (if any) flows once the handler asks for it. */
  onRequest: (req: HttpRequest, res: HttpResponse) => void;
  /** Seconds-as-ms an idle keep-alive connection stays open (0: no limit). */
  keepAliveTimeoutMs: number;
  /** Time a client has to complete a request head, in ms (0: no limit); 408 beyond. */
  headersTimeoutMs: number;
  /** Largest request head in bytes; 431 beyond. */
  maxHeaderSize: number;
  /** Client connections at once (0: no limit); one over it gets 503 and is closed. */
  maxConnections: number;
  /**
   * A request body still coming after its response ended (read and dropped) that stalls this
   * long, in ms, closes its connection (0: no limit); while a handler reads it, the handler's.
   */
  bodyTimeoutMs?: number;
  /**
   * Once the front is done with a connection (a close after its response, or a refusal), what
   * the client still sends is read and dropped for at most this long, in ms, from the moment the
   * last response byte was handed to the kernel; then it is destroyed whatever comes (nginx's
   * lingering_time). Also the most an unread request body is read and dropped for.
   */
  lingerTimeoutMs?: number;
  /** A response that cannot hand the kernel a byte for this long, in ms, is abandoned and its connection closed (0: no limit). */
  sendTimeoutMs?: number;
  /** An upgraded connection that passes no byte either way for this long, in ms, is closed (0: no limit; the tunnel applies it at each sweep). */
  tunnelIdleTimeoutMs?: number;
  /**
   * The most bytes a connection reads and drops once nothing will use them (the rest of an
   * unread request body, what comes after a close): beyond it the front stops reading and closes.
   */
  maxDropBytes?: number;
  /** Counts refusals (the metrics): called with the status of each. */
  onRefused?: (status: number) => void;
  /** False: no timer sweeps the connections; the owner calls sweep() (tests, with a clock of their own). */
  sweeper?: boolean;
  /** HTTP/2 (h2 by ALPN, h2c by the preface); absent: HTTP/1.1 alone. */
  http2?: {
    /** Streams a client may have open on one connection. */
    maxConcurrentStreams: number;
    /** Most header fields in a request. */
    maxHeaders: number;
  };
  /** TLS on the listener (every connection); absent: cleartext. */
  tls?: { certFile: string; keyFile: string; minVersion: TlsMinVersion };
}

/** Default of lingerTimeoutMs. */
export const LINGER_TIMEOUT_MS = 5000;
/** Default of maxDropBytes. */
export const MAX_DROP_BYTES = 1024 * 1024;
/**
 * Connections refused at --max-connections that may linger at once (reading what their client
 * sends, so that the close does not reset the 503 away); beyond it, the 503 is written and the
 * socket destroyed at once. Bounds the descriptors a flood of refused connections holds.
 */
const MAX_REFUSED_LINGERING = 64;
const OVER_MAX_CONNECTIONS = rawErrorResponse(new TsgiError('TSGI_ERR_OVERLOADED', 'over --max-connections'));
const ignore = (): void => {};


export class HttpServer {
  /** The listener; a worker of --processes N never listens, it is handed connections (accept). */
  readonly listener: Server;
  readonly opts: HttpServerOptions;
  /** A LinkedSet, not a Set: a connection per request is a common pattern (no keep-alive). */
  readonly connections = new LinkedSet<Connection>();
  /** After close(): responses say Connection: close and their connections end when done. */
  closing = false;
  #sweeper: NodeJS.Timeout | null = null;
  #refused = 0;
  /** Connections the front is done with, lingering until their client closes or the deadline: oldest first. */
  readonly #ended = new Set<Connection>();
  /** Sockets refused at --max-connections, lingering: when each was refused. */
  readonly #lingering = new Map<Socket, number>();
  readonly lingerTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly maxDropBytes: number;
  /** The Connection (and Keep-Alive) lines of a response that keeps its connection open. */
  readonly keepAliveHeader: string;
  /** HTTP/2 sessions, when enabled. */
  readonly http2: Http2Edge | null;
  readonly #tls: TlsEdge | null;

  constructor(opts: HttpServerOptions) {
    this.opts = opts;
    this.listener = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    this.keepAliveHeader = opts.keepAliveTimeoutMs > 0
      ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(opts.keepAliveTimeoutMs / 1000)}\r\n`
      : 'Connection: keep-alive\r\n';
    this.lingerTimeoutMs = opts.lingerTimeoutMs ?? LINGER_TIMEOUT_MS;
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 0;
    this.maxDropBytes = opts.maxDropBytes ?? MAX_DROP_BYTES;
    this.http2 = opts.http2 === undefined ? null : new Http2Edge({
      log: opts.log, onRequest: opts.onRequest, maxConcurrentStreams: opts.http2.maxConcurrentStreams,
      maxHeaderSize: opts.maxHeaderSize, maxHeaders: opts.http2.maxHeaders, idleTimeoutMs: opts.keepAliveTimeoutMs,
      onRefused: opts.onRefused,
    });
    this.#tls = opts.tls === undefined ? null : new TlsEdge({
      ...opts.tls, http2: this.http2 !== null, handshakeTimeoutMs: opts.headersTimeoutMs, log: opts.log,
    }, (socket) => this.#secure(socket));
    const timeouts = [opts.headersTimeoutMs, opts.keepAliveTimeoutMs, opts.bodyTimeoutMs ?? 0, this.lingerTimeoutMs,
      this.sendTimeoutMs, opts.tunnelIdleTimeoutMs ?? 0].filter((t) => t > 0);
    if (timeouts.length > 0 && opts.sweeper !== false) {
      // One timer looks at every connection (as Node's server does), not a timer per connection.
      const every = Math.min(1000, Math.max(100, Math.min(...timeouts) / 4));
      this.#sweeper = setInterval(() => this.sweep(), every);
      this.#sweeper.unref();
    }
  }

  /** Serves a client connection: the listener's, or one handed over by the primary of --processes N. */
  accept(socket: Socket): void {
    const max = this.opts.maxConnections;
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (max > 0 && this.#open >= max && !this.#evictLingering()) {
      this.#refuse(socket, max);
      return;
    }
    socket.setNoDelay(true);
    // A client may half-close after its request and still read the response (Node's http
    // server allows it too); sockets handed over by the primary are made this way here.
    socket.allowHalfOpen = true;
    if (this.#tls !== null) this.#tls.accept(socket);
    else new Connection(this, socket);
  }

  /** Client connections open: HTTP/1.1 ones and HTTP/2 sessions. */
  get #open(): number {
    return this.connections.size + (this.http2 === null ? 0 : this.http2.sessions.size);
  }

  /** A TLS handshake is done: HTTP/2 if the client chose it by ALPN, else HTTP/1.1. */
  #secure(socket: TLSSocket): void {
    if (this.closing) socket.destroy();
    else if (socket.alpnProtocol === 'h2' && this.http2 !== null) this.http2.accept(socket);
    else new Connection(this, socket);
  }

  /** The responses under way now: one per busy HTTP/1.1 connection, one per open HTTP/2 stream. */
  *responses(): Iterable<HttpResponse> {
    for (const c of this.connections) if (c.res !== null) yield c.res;
    if (this.http2 !== null) yield* this.http2.responses;
  }

  /** SIGHUP: the TLS certificate and key are read again (false when they could not be, or there is no TLS). */
  reloadTls(): boolean {
    return this.#tls?.reload() ?? false;
  }

  /** Closes the connections between requests; busy ones close when their response is done. */
  closeIdleConnections(): void {
    for (const c of this.connections) if (c.idle) c.socket.destroy();
  }

  closeAllConnections(): void {
    for (const c of this.connections) c.socket.destroy();
    this.http2?.destroyAll();
    for (const socket of this.#lingering.keys()) socket.destroy();
  }

  /** Sockets open: connections served, and refused ones still lingering. */
  get sockets(): number {
    return this.#open + this.#lingering.size;
  }

  /**
   * Marks the server closing (the listener is closed by the caller): idle connections close now,
   * busy ones after their response; the timeouts keep applying until the last one is gone.
   */
  close(): void {
    this.closing = true;
    this.closeIdleConnections();
    this.http2?.close();
    if (this.connections.size === 0) this.#stopSweeping();
  }

  #stopSweeping(): void {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  /** The front is done with `c`: it lingers, and gives way to a new connection at --max-connections. */
  ended(c: Connection): void {
    this.#ended.add(c);
  }

  /**
   * At --max-connections, a connection the front is done with (its response all out, only
   * lingering to read what the client still sends) is closed to make room: lingering sockets
   * cannot lock honest clients out. False when none can go.
   */
  #evictLingering(): boolean {
    let looked = 0;
    for (const c of this.#ended) {
      if (++looked > 16) break;
      if (c.socket.writableLength > 0) continue; // its response is still going out
      this.#ended.delete(c);
      c.socket.destroy();
      return true;
    }
    return false;
  }

  /** A connection closed: one fewer (and the end of a burst of refusals is logged). */
  closed(c: Connection): void {
    this.connections.delete(c);
    this.#ended.delete(c);
    if (this.closing && this.connections.size === 0) this.#stopSweeping();
    const max = this.opts.maxConnections;
    if (this.#refused > 0 && this.connections.size < max) {
      this.opts.log.warn(`accepting connections again; ${this.#refused} refused with 503 while at --max-connections ${max}`);
      this.#refused = 0;
    }
  }

  #refuse(socket: Socket, max: number): void {
    const who = socket.remoteAddress ?? 'unix client';
    if (this.#refused++ === 0) {
      this.opts.log.warn(`503 to ${who}: ${this.connections.size} connections open, at --max-connections ${max}; `
        + 'refusing new connections until one closes');
    } else {
      this.opts.log.debug(`503 to ${who}: at --max-connections ${max}`);
    }
    this.opts.onRefused?.(503);
    socket.on('error', ignore);
    socket.end(OVER_MAX_CONNECTIONS);
    if (this.#lingering.size >= MAX_REFUSED_LINGERING) {
      socket.destroySoon(); // too many lingering already: the descriptor goes once the 503 is out
      return;
    }
    // Read and drop the request, so that closing does not reset the 503 away; at the linger
    // deadline the socket goes whatever the client still sends.
    this.#lingering.set(socket, Date.now());
    socket.on('close', () => this.#lingering.delete(socket));
    socket.resume();
  }

  /** Applies every timeout as of `now` (the sweeper calls it; a test may, with a time of its own). */
  sweep(now = Date.now()): void {
    const { headersTimeoutMs, keepAliveTimeoutMs, bodyTimeoutMs = 0 } = this.opts;
    for (const c of this.connections) c.checkTimeouts(now, headersTimeoutMs, keepAliveTimeoutMs, bodyTimeoutMs);
    this.http2?.sweep(now);
    const linger = this.lingerTimeoutMs;
    if (linger > 0) {
      for (const [socket, since] of this.#lingering) if (now - since > linger) socket.destroy();
    }
  }
}

