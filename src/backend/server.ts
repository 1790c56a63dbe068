// The backend's tsgi socket server: accepts front connections, demultiplexes their streams,
// and runs the application for each request stream.
import type { Socket } from 'node:net';
import type { Address } from '../common/address.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import { closeAfterError, endSocket, socketWriter } from '../common/socket-writer.js';
import { ReadSlabs, readInto } from '../common/socket-reads.js';
import { Connection, LOCAL_CONNECTION_LOST, type HeaderFields, type Stream, type StreamHandler } from '../protocol/connection.js';
import { ResetCode, RESET_CODE_NAMES } from '../protocol/constants.js';
import { TsgiError } from '../protocol/errors.js';
import { packHeaders, unpackHeaders } from '../protocol/header-table.js';
import type { tsgi } from '../protocol/generated/tsgi.js';
import { asksForWebSocket } from '../common/ws-frames.js';
import { notifyDrain } from './draining.js';
import { LazySignal, buildEnviron } from './environ.js';
import { runApplication, type Responder } from './gateway.js';
import { InputStream } from './input.js';
import type { ServeMetrics } from './metrics.js';
import { SocketListener } from './listener.js';
import { TunnelSocket, type TunnelOwner } from './tunnel.js';
import type { LinkedSet } from '../common/linked-set.js';
import type { Application } from './types.js';
import { type TsgiWebSocket, acceptWebSocket, type WebSocketOptions } from './websocket.js';

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
  /** An upgrade request's connection (null for any other request). */
  socket: TunnelSocket | null = null;
  linkedIn: LinkedSet<RequestState> | null = null;
  linkedPrev: RequestState | null = null;
  linkedNext: RequestState | null = null;

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

/** An upgrade request: its DATA and credit go to the tunnel socket, and a reset closes that too. */
class UpgradeState extends RequestState {
  override onData(chunk: Buffer, end: boolean): void {
    this.socket!.fromFront(chunk, end);
  }

  override onDrain(): void {
    super.onDrain();
    this.socket!.drained();
  }

  override onReset(code: number, message: string): void {
    super.onReset(code, message);
    this.socket!.reset();
  }
}

/**
 * How long the end of a graceful stop gives open WebSockets: their close frames go out spread
 * over `spread` (so that clients do not all reconnect at once), then `handshake` for the close
 * replies. Each is at most a quarter of the graceful timeout.
 */
const WEBSOCKET_CLOSE = { spread: 5000, handshake: 2000 } as const;

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
  /** Connections taken over by the application (upgrade requests), open now. */
  readonly #tunnels = new Set<TunnelSocket>();
  #tunnelWaiters: (() => void)[] = [];
  readonly #tunnelOwner: TunnelOwner;

  constructor(opts: BackendServerOptions) {
    super({ ...opts, handshakeTimeoutMs: opts.pingTimeoutMs }, { noDelay: true });
    this.#opts = opts;
    const tunnels = this.#tunnels;
    this.#tunnelOwner = {
      log: opts.log,
      taken: (socket) => {
        const state = socket.stream.handler as RequestState;
        // The application answers on the socket: the gateway sends nothing, and the deadline
        // (for the response head) no longer applies. The request is over as a request (in
        // flight, --timeout): what follows is a tunnel, however long the app's call runs.
        state.responder.aborted = true;
        if (state.timer !== null) clearTimeout(state.timer);
        state.timer = null;
        state.responder._wake();
        this.requests.finish(state);
        if (!socket.destroyed) tunnels.add(socket);
      },
      answered: (socket, status) => {
        const state = socket.stream.handler as RequestState;
        state.responder.status = status;
        this.#opts.metrics?.observe(status, state.started);
      },
      closed: (socket) => {
        const state = socket.stream.handler as RequestState;
        if (socket.taken && state.responder.status === 0) this.#opts.metrics?.observe(0, state.started); // no answer
        if (tunnels.delete(socket) && tunnels.size === 0) for (const w of this.#tunnelWaiters.splice(0)) w();
      },
    };
  }

  /** Connections the application took over (WebSockets and other upgrades) open now. */
  get tunnels(): number {
    return this.#tunnels.size;
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
      }, () => conn.streams.size <= 1),
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
    // Reads go into slabs of our own (socket-reads.ts), straight to the frame decoder: fewer,
    // larger reads than Node's 64 KiB ones. Returning false stops them, as pause() does.
    const slabs = new ReadSlabs();
    const onRead = (n: number, into: Buffer): boolean => {
      if (conn.receive(slabs.filled(n, into))) return true;
      paused = true;
      return false;
    };
    if (!readInto(socket, () => slabs.next(), onRead)) {
      socket.on('data', (chunk: Buffer) => {
        if (!conn.receive(chunk) && !paused) {
          paused = true;
          socket.pause();
        }
      });
    }
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
    const state = stream.upgrade ? new UpgradeState(stream, head) : new RequestState(stream, head);
    const { input, controller, responder } = state;
    stream.handler = state;
    if (end || stream.upgrade) input.end(); // an upgrade request has no body: what follows is the tunnel's
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
    if (stream.upgrade) this.#offerUpgrade(stream, environ, state);
    this.requests.start(state);
    runApplication(this.#opts.app, environ, responder, this.#opts.log, () => this.#finished(stream, state));
  }

  /**
   * An upgrade request: environ['tsgi.upgrade']() hands the application the connection, and,
   * when a WebSocket is asked for, environ['tsgi.websocket']() accepts it.
   */
  #offerUpgrade(stream: Stream, environ: Record<string, unknown>, state: RequestState): void {
    const socket = new TunnelSocket(stream, environ as never, this.#tunnelOwner, asksForWebSocket(environ['tsgi.headers'] as string[]));
    state.socket = socket;
    environ['tsgi.upgrade'] = () => socket.takeOver();
    if (socket.websocket) {
      environ['tsgi.websocket'] = (options?: WebSocketOptions, premade?: TsgiWebSocket) =>
        acceptWebSocket(environ as never, socket, options, premade ?? null);
    }
  }

  #finished(stream: Stream, state: RequestState): void {
    state.done = true;
    if (state.timer !== null) clearTimeout(state.timer);
    const socket = state.socket;
    if (socket !== null) {
      if (socket.taken) return; // counted when it was taken; the socket's owner from then on
      socket.destroy(); // answered as an ordinary request: the connection was not taken
    }
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

  /**
   * Graceful stop: tunnels keep running until they end or the end of the graceful timeout
   * nears; then each WebSocket still open is closed with `closeCode` (1001 on a stop, 1012 on a
   * reload), the close frames spread over a window, and whatever is left at the deadline is cut.
   */
  protected override async drainTunnels(timeoutMs: number, closeCode: number): Promise<void> {
    const started = Date.now();
    const spread = Math.min(WEBSOCKET_CLOSE.spread, timeoutMs / 4);
    const handshake = Math.min(WEBSOCKET_CLOSE.handshake, timeoutMs / 4);
    const closeAt = started + timeoutMs - spread - handshake;
    notifyDrain(closeCode, closeAt);
    if (this.#tunnels.size === 0) return;
    if (await this.#tunnelsEnd(closeAt - Date.now())) return;
    const open = [...this.#tunnels];
    let closing = 0;
    const timers = open.map((socket, i) => setTimeout(() => {
      if (socket.goingAway(closeCode)) closing++;
    }, (spread * i) / open.length));
    this.log.info(`graceful stop: closing ${open.length} open tunnel(s) (WebSockets with close code ${closeCode}) over ${Math.round(spread)} ms`);
    const ended = await this.#tunnelsEnd(started + timeoutMs - Date.now());
    for (const t of timers) clearTimeout(t);
    if (!ended) {
      this.log.warn(`graceful timeout: ${this.#tunnels.size} tunnel(s) still open are cut (${closing} WebSocket(s) were sent a close frame)`);
      for (const socket of [...this.#tunnels]) socket.destroy();
    }
  }

  /** Resolves true once no tunnel is open, false after `ms`. */
  async #tunnelsEnd(ms: number): Promise<boolean> {
    if (this.#tunnels.size === 0) return true;
    if (ms <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    let waiter!: () => void;
    await Promise.race([
      new Promise<void>((resolve) => { waiter = resolve; this.#tunnelWaiters.push(resolve); }),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); }),
    ]);
    clearTimeout(timer);
    const i = this.#tunnelWaiters.indexOf(waiter);
    if (i !== -1) this.#tunnelWaiters.splice(i, 1);
    return this.#tunnels.size === 0;
  }

  /** The last frames (responses, GOAWAY) still batched for each front go out before the close. */
  protected override afterDrain(): void {
    for (const socket of this.sockets) endSocket(socket);
  }
}
