// The backend's tsgi socket server: accepts front connections, demultiplexes their streams,
// and runs the application for each request stream.
import type { Socket } from 'node:net';
import type { Address } from '../common/address.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import { closeAfterError, endSocket, socketWriter } from '../common/socket-writer.js';
import { Connection, LOCAL_CONNECTION_LOST, type HeaderFields, type Stream, type StreamHandler } from '../protocol/connection.js';
import { ResetCode, RESET_CODE_NAMES } from '../protocol/constants.js';
import { TsgiError } from '../protocol/errors.js';
import { packHeaders, unpackHeaders } from '../protocol/header-table.js';
import type { tsgi } from '../protocol/generated/tsgi.js';
import { LazySignal, buildEnviron } from './environ.js';
import { runApplication, type Responder } from './gateway.js';
import { InputStream } from './input.js';
import type { ServeMetrics } from './metrics.js';
import { SocketListener } from './listener.js';
import type { Application } from './types.js';

export interface BackendServerOptions {
  /** Where to listen; null for a worker, whose connections come from its supervisor. */
  address: Address | null;
  app: Application;
  log: Logger;
  scriptName?: string;
  multiprocess?: boolean;
  maxStreams?: number;
  window?: number;
  maxFrameSize?: number;
  socketMode?: number;
  software?: string;
  /** Connections the front should open to us (the supervisor's worker count). */
  connectionsHint?: number;
  /** Called after each completed request with the running total. */
  onServed?: (served: number) => void;
  /** --admin: count each request's status and latency. */
  metrics?: ServeMetrics;
  /** --ping-interval: a PING on each front connection this often (0: none). */
  pingIntervalMs?: number;
  /** --ping-timeout: a front connection without HELLO, or not answering a PING, this long is closed. */
  pingTimeoutMs?: number;
  /** --max-request-header-size: the largest request head taken from a front, decoded. */
  maxHeadSize?: number;
  /** --timeout, in ms: told to fronts in HELLO, which enforce it too (0: none). */
  requestTimeoutMs?: number;
  /** --tls-cert/--tls-key/--tls-ca: fronts connect with mutual TLS. */
  tls?: TlsContext | null;
}

/** A request stream's side of the gateway: the Responder that writes to the tsgi stream. */
class StreamResponder implements Responder {
  readonly stream: Stream;
  aborted = false;
  /** The status sent (0 until the head went out). */
  status = 0;
  #drainWaiter: (() => void) | null = null;

  constructor(stream: Stream) {
    this.stream = stream;
  }

  head(status: number, reason: string, headers: string[], end: boolean): void {
    this.status = status;
    this.stream.sendResponse({ status, reason, headers: packHeaders(headers) }, end);
  }

  write(chunk: Uint8Array, end: boolean): boolean {
    return this.stream.write(chunk, end);
  }

  informational(status: number, headers: string[]): void {
    if (this.status === 0 && !this.aborted) this.stream.sendResponse({ status, reason: '', headers: packHeaders(headers) }, false);
  }

  trailers(headers: string[]): void {
    if (!this.aborted) this.stream.sendTrailers(packHeaders(headers));
  }

  drain(): Promise<void> {
    if (this.aborted || !this.stream.blocked) return Promise.resolve();
    return new Promise((resolve) => { this.#drainWaiter = resolve; });
  }

  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    // Before the head, CANCEL: the front answers nothing and cuts its client's connection too.
    this.stream.reset(this.status === 0 ? ResetCode.CANCEL : ResetCode.INTERNAL_ERROR, reason);
    this._wake();
  }

  _wake(): void {
    const w = this.#drainWaiter;
    this.#drainWaiter = null;
    w?.();
  }
}

/** One request on a stream: what the app reads and writes, and what the stream's events reach. */
class RequestState implements StreamHandler {
  readonly responder: StreamResponder;
  readonly input: InputStream;
  readonly controller = new LazySignal();
  timer: NodeJS.Timeout | null = null;
  readonly started = performance.now();
  readonly method: string;
  readonly uri: string;
  done = false;

  constructor(stream: Stream, head: tsgi.Request) {
    this.input = new InputStream((n) => stream.consume(n));
    this.responder = new StreamResponder(stream);
    this.method = head.method || 'GET';
    this.uri = head.target;
  }

  onData(chunk: Buffer, end: boolean): void {
    if (chunk.length > 0) this.input.push(chunk);
    if (end) this.input.end();
  }

  onDrain(): void {
    this.responder._wake();
  }

  /** The request ends with trailer fields: the app finds them on tsgi.input (onData's end follows). */
  onTrailers(headers: HeaderFields): void {
    this.input.trailers = unpackHeaders(headers);
  }

  onReset(code: number, message: string): void {
    if (this.done) return; // e.g. NO_ERROR after a complete response: nothing to abort
    this.responder.aborted = true;
    const why = code === LOCAL_CONNECTION_LOST ? `front connection lost (${message})`
      : `request cancelled by the front: ${RESET_CODE_NAMES[code] ?? code}${message ? ` (${message})` : ''}`;
    const err = new TsgiError('TSGI_ERR_CLIENT_GONE', why);
    this.input.fail(err);
    this.controller.abort(err);
    this.responder._wake();
  }
}

/** Pings one connection every interval; one without an answer for the timeout is given up. */
class Pinger {
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onTimeout: () => void;
  #timer: NodeJS.Timeout | null = null;
  #seq = 0;
  #awaiting = 0;
  #sentAt = 0;

  constructor(intervalMs: number, timeoutMs: number, onTimeout: () => void) {
    this.#intervalMs = intervalMs;
    this.#timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
  }

  start(conn: Connection): void {
    if (this.#intervalMs <= 0 || this.#timer !== null) return;
    this.#timer = setInterval(() => {
      if (this.#awaiting !== 0) {
        if (Date.now() - this.#sentAt >= this.#timeoutMs) {
          this.stop();
          this.#onTimeout();
        }
        return;
      }
      this.#seq = (this.#seq % 0xffffffff) + 1;
      this.#awaiting = this.#seq;
      this.#sentAt = Date.now();
      conn.ping(this.#seq);
    }, Math.min(this.#intervalMs, this.#timeoutMs));
    this.#timer.unref();
  }

  pong(id: number): void {
    if (id === this.#awaiting) this.#awaiting = 0;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

export class BackendServer extends SocketListener<RequestState> {
  protected readonly words = { listening: 'serving on', request: 'request' };
  readonly #opts: BackendServerOptions;
  readonly #connections = new Set<Connection>();

  constructor(opts: BackendServerOptions) {
    super({ ...opts, handshakeTimeoutMs: opts.pingTimeoutMs }, { noDelay: true });
    this.#opts = opts;
  }

  /** Front connections open now. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Connections the front should open; sent in the HELLO of later connections. */
  set connectionsHint(n: number) {
    this.#opts.connectionsHint = n;
  }

  /**
   * Asks the front to move one connection elsewhere (GOAWAY on it: the front finishes its
   * requests there and reconnects, and the supervisor routes the new one to a less busy worker).
   */
  shedConnection(): boolean {
    for (const conn of this.#connections) {
      if (!conn.goAwaySent && !conn.closed) {
        conn.goAway(ResetCode.NO_ERROR, 'rebalancing connections across workers');
        return true;
      }
    }
    return false;
  }

  protected serve(socket: Socket): void {
    const log = this.log;
    const pingTimeoutMs = this.#opts.pingTimeoutMs ?? 10_000;
    // A connection that never says HELLO is closed after --ping-timeout, as the front does.
    const handshake = setTimeout(() => {
      log.warn(`closing a front connection that sent no HELLO within ${pingTimeoutMs / 1000} s (--ping-timeout)`);
      socket.destroy();
    }, pingTimeoutMs);
    handshake.unref();
    const pinger = new Pinger(this.#opts.pingIntervalMs ?? 5000, pingTimeoutMs, () => {
      log.warn(`closing a front connection that did not answer a ping within ${pingTimeoutMs / 1000} s (--ping-timeout)`);
      socket.destroy();
    });
    // Reading stops while replies to the front pile up unread, and resumes once they are written.
    let paused = false;
    const conn: Connection = new Connection({
      role: 'server',
      write: socketWriter(socket, () => {
        conn.drained();
        if (paused) {
          paused = false;
          socket.resume();
        }
      }),
      maxFrameSize: this.#opts.maxFrameSize,
      initialWindow: this.#opts.window,
      maxStreams: this.#opts.maxStreams,
      maxHeadSize: this.#opts.maxHeadSize,
      maxHeadSizeName: '--max-request-header-size',
      software: this.#opts.software ?? 'tsgi-serve',
      connectionsHint: this.#opts.connectionsHint,
      requestTimeoutMs: this.#opts.requestTimeoutMs,
      onReady: () => {
        clearTimeout(handshake);
        pinger.start(conn);
      },
      onPong: (id) => pinger.pong(id),
      onRequest: (stream, head, end) => this.#handle(stream, head, end),
      onWarning: (message) => log.warn(`front connection: ${message}`),
      onError: (err) => {
        log.error(`closing front connection: ${err.message} [${err.code}]`);
        closeAfterError(socket);
      },
    });
    this.#connections.add(conn);
    socket.on('data', (chunk: Buffer) => {
      if (!conn.receive(chunk) && !paused) {
        paused = true;
        socket.pause();
      }
    });
    socket.on('error', (err) => log.debug(`front connection error: ${err.message}`));
    socket.on('close', () => {
      clearTimeout(handshake);
      pinger.stop();
      conn.destroy('front connection closed');
      this.#connections.delete(conn);
    });
    conn.start();
  }

  #handle(stream: Stream, head: tsgi.Request, end: boolean): void {
    const state = new RequestState(stream, head);
    const { input, controller, responder } = state;
    stream.handler = state;
    if (end) input.end();
    if (head.timeoutMs > 0) {
      state.timer = setTimeout(() => {
        controller.abort(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `request deadline of ${head.timeoutMs} ms passed`));
      }, head.timeoutMs);
      state.timer.unref();
    }
    let environ;
    try {
      environ = buildEnviron(head, {
        input, signal: controller, scriptName: this.#opts.scriptName ?? '',
        multiprocess: this.#opts.multiprocess ?? false,
      });
    } catch (err) {
      this.#opts.log.error(`refusing a malformed request head: ${(err as Error).message}`);
      stream.reset(ResetCode.PROTOCOL_ERROR, (err as Error).message);
      return;
    }
    this.requests.start(state);
    runApplication(this.#opts.app, environ, responder, this.#opts.log, () => this.#finished(stream, state));
  }

  #finished(stream: Stream, state: RequestState): void {
    state.done = true;
    if (state.timer !== null) clearTimeout(state.timer);
    // The response is complete but the body never was read to its end: stop the front sending it.
    if (!stream.closed && !stream.remoteEnded && stream.localEnded) stream.reset(ResetCode.NO_ERROR, 'response complete');
    this.requests.finish(state);
    this.#opts.metrics?.observe(state.responder.status, state.started, state);
  }

  /** Past --timeout: the front answers 504 for a TIMEOUT reset before the head (a cut after it). */
  protected override timeOut(state: RequestState, limitMs: number): void {
    if (state.done || state.responder.aborted) return;
    const err = new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `request ran past --timeout ${limitMs / 1000} s`);
    state.responder.aborted = true;
    state.responder.stream.reset(ResetCode.TIMEOUT, `request ran past the backend's --timeout ${limitMs / 1000} s`);
    state.input.fail(err);
    state.controller.abort(err);
    state.responder._wake();
  }

  /** Graceful stop: GOAWAY on every connection, so the fronts send nothing new. */
  protected override beforeDrain(): void {
    for (const conn of this.#connections) conn.goAway(ResetCode.NO_ERROR, 'backend shutting down');
  }

  /** The last frames (responses, GOAWAY) still batched for each front go out before the close. */
  protected override afterDrain(): void {
    for (const socket of this.sockets) endSocket(socket);
  }
}
