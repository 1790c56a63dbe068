// What the backend's two socket servers share (the tsgi one and the uwsgi one): a listener,
// the sockets it accepted (or a supervisor handed over), the requests running, and a stop that
// lets them finish. Each server says how a connection is served (serve) and what a graceful
// stop tells its peers first (beforeDrain).
import { createServer, type Server, type Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Address } from '../common/address.js';
import { guardAccept, type AcceptGuard } from '../common/accept-guard.js';
import { rawAccept, type RawStream } from '../common/raw-stream.js';
import { closeListener, formatAddress, listenOn, listenOnDescriptor } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import { nodeTls, type TlsContext, tlsReason } from '../common/tls.js';
import type { Linked } from '../common/linked-set.js';
import { RequestTracker, type Tracked } from './tracker.js';

export interface ListenerOptions {
  /** Where to listen; null for a worker, whose connections come from its supervisor. */
  address: Address | null;
  log: Logger;
  socketMode?: number;
  /** Called after each completed request with the running total. */
  onServed?: (served: number) => void;
  /** --tls-cert/--tls-key/--tls-ca: connections are mutual TLS (the front's certificate is checked). */
  tls?: TlsContext | null;
  /** How long a TLS handshake may take (--ping-timeout). */
  handshakeTimeoutMs?: number;
}

export abstract class SocketListener<T extends Tracked & Linked<T>> {
  protected readonly log: Logger;
  protected readonly sockets = new Set<Socket>();
  protected readonly requests: RequestTracker<T>;
  protected closing = false;
  readonly #server: Server;
  /** With TLS: takes each accepted socket through the handshake, then hands it on. */
  readonly #tls: TlsServer | null = null;
  /** Each raw connection's peer, read before the handshake (a failed one leaves none to read). */
  readonly #peers = new WeakMap<Socket, string>();
  readonly #listen: ListenerOptions;
  #address: Address | null = null;
  /** A socket's 'close' listener: one function for every socket, not a closure per connection. */
  readonly #untrack: (this: Socket) => void;
  readonly #guard: AcceptGuard;

  constructor(opts: ListenerOptions, serverOptions: { noDelay?: boolean; allowHalfOpen?: boolean }) {
    this.#listen = opts;
    this.log = opts.log;
    this.requests = new RequestTracker(opts.onServed);
    const sockets = this.sockets;
    this.#untrack = function untrack(this: Socket) {
      sockets.delete(this);
    };
    this.#server = createServer(serverOptions, (socket) => this.#accept(socket));
    const tls = opts.tls ?? null;
    if (tls !== null) {
      // The front's certificate is checked here, not by node:tls's rejectUnauthorized (which closes
      // without saying why), so that the log says which front was refused and for what.
      const server = nodeTls().createServer({
        ...tls.options, requestCert: true, rejectUnauthorized: false, handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      }, (socket) => {
        if (socket.authorized) {
          this.#secured(socket, serverOptions.noDelay === true);
          return;
        }
        const why = socket.authorizationError === undefined ? 'it showed none' : `not accepted: ${socket.authorizationError}`;
        this.log.warn(`TLS: refused front ${socket.remoteAddress}:${socket.remotePort}: certificate ${why} `
          + `(the front's --backend-tls-cert must be signed by --tls-ca ${tls.files.ca})`);
        socket.destroy();
      });
      // The handshake itself failed: most often the front does not trust our certificate.
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        const raw = (socket as TLSSocket & { _parent?: Socket })._parent;
        const peer = raw !== undefined ? this.#peers.get(raw) : undefined;
        this.log.warn(`TLS handshake with front ${peer ?? '(address unknown)'} failed: ${tlsReason(err)}; `
          + 'connection closed (does the front trust the CA of --tls-cert, and ask for a name it carries?)');
      });
      tls.onReload = (options) => server.setSecureContext(options);
      this.#tls = server;
    }
    this.#guard = guardAccept(this.#server, { log: this.log, name: () => (this.words.request === 'request' ? 'backend' : 'uwsgi') });
  }

  /** Serves one accepted connection. */
  protected abstract serve(socket: Socket): void;
  /**
   * A server that defines this takes its connections without a net.Socket (src/common/raw-stream.ts)
   * where it can: no TLS, and Node's stream bindings as expected.
   */
  protected serveRaw?(stream: RawStream): void;
  /** How the log names this server and its requests ('serving on' / 'request'; 'accepting uwsgi on' / 'uwsgi request'). */
  protected abstract readonly words: { readonly listening: string; readonly request: string };
  /** Graceful stop, before waiting for the requests: tell the peers (GOAWAY). */
  protected beforeDrain(): void {}
  /** A request ran past --timeout: end it at once (the peer gets 504, or a cut after the head). */
  protected timeOut(_request: T, _limitMs: number): void {}
  /** Graceful stop, after the requests: hand the peers what is still buffered for them. */
  protected afterDrain(): void {}
  /**
   * Graceful stop, while the requests finish: connections the application took over (upgrades)
   * end, or are closed, within `timeoutMs`. `closeCode` is the WebSocket close code to use.
   */
  protected async drainTunnels(_timeoutMs: number, _closeCode: number): Promise<void> {}

  get address(): Address | null {
    return this.#address;
  }

  async listen(): Promise<Address> {
    if (this.#listen.address === null) throw new Error('this server takes connections from a supervisor');
    this.#address = await listenOn(this.#server, this.#listen.address, this.#listen.socketMode);
    this.#listening();
    this.log.info(`${this.words.listening} ${formatAddress(this.#address)}`);
    return this.#address;
  }

  /**
   * Listens and accepts on a socket its supervisor bound, inherited as descriptor `fd` (every
   * worker accepts on it: each connection comes straight from the kernel to one of them).
   */
  async listenOnDescriptor(fd: number): Promise<void> {
    await listenOnDescriptor(this.#server, fd);
    this.#listening();
  }

  #listening(): void {
    if (this.serveRaw !== undefined && this.#tls === null) {
      rawAccept(this.#server, (stream) => this.#acceptRaw(stream), (err) => this.#guard.failed(err));
    }
  }

  /** Serves a connection accepted elsewhere (a supervisor hands workers their sockets). */
  accept(socket: Socket): void {
    this.#accept(socket);
    socket.resume();
  }

  #accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.#tls !== null) {
      this.#peers.set(socket, `${socket.remoteAddress}:${socket.remotePort}`);
      this.#tls.emit('connection', socket);
      return;
    }
    this.#serveSocket(socket);
  }

  #acceptRaw(stream: RawStream): void {
    if (this.closing || !this.#guard.admit(stream.fd)) {
      stream.destroy();
      return;
    }
    this.serveRaw!(stream);
  }

  /** A TLS connection whose handshake succeeded. */
  #secured(socket: TLSSocket, noDelay: boolean): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (noDelay) socket.setNoDelay(true);
    this.#serveSocket(socket);
  }

  #serveSocket(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', this.#untrack);
    this.serve(socket);
  }

  /** Requests running now. */
  get inFlight(): number {
    return this.requests.inFlight;
  }

  /** Requests served since start. */
  get served(): number {
    return this.requests.served;
  }

  /** The longest-running request now, for heartbeats and timeout logs. */
  /** At most `limit` requests running now, the longest-running first. */
  requestsInFlight(limit = 50): { method: string; uri: string; ms: number }[] {
    return this.requests.list(limit);
  }

  oldestRequest(): { method: string; uri: string; ms: number } | null {
    return this.requests.oldest();
  }

  /**
   * Ends each request running for `limitMs` or longer (once), and says which: the hard
   * --timeout, checked by the worker while its event loop is free.
   */
  expire(limitMs: number): { method: string; uri: string; ms: number }[] {
    const now = performance.now();
    return this.requests.overdue(limitMs).map((r) => {
      this.timeOut(r, limitMs);
      return { method: r.method, uri: r.uri, ms: Math.round(now - r.started) };
    });
  }

  /**
   * Stops accepting connections. Graceful: the peers are told (beforeDrain), and the requests
   * running get up to `timeoutMs` to finish before the sockets are closed.
   */
  async stop({ graceful = true, timeoutMs = 30_000, closeCode = 1001 }: {
    graceful?: boolean; timeoutMs?: number;
    /** The WebSocket close code for open WebSockets: 1001 Going Away (a stop), 1012 Service Restart (a reload). */
    closeCode?: number;
  } = {}): Promise<void> {
    this.closing = true;
    const closed = closeListener(this.#server);
    if (graceful) {
      this.beforeDrain();
      await Promise.all([
        this.requests.idle(timeoutMs).then((idle) => {
          if (!idle) this.log.warn(`graceful timeout: ${this.inFlight} ${this.words.request}(s) still running are cut`);
        }),
        this.drainTunnels(timeoutMs, closeCode),
      ]);
    }
    this.afterDrain();
    // Give the final bytes a moment to flush before forcing the sockets closed. Not unref'd: with
    // nothing else left the process would exit inside stop(), before its caller goes on (a failed
    // start exited 0 without a word).
    await new Promise((r) => setTimeout(r, graceful ? 50 : 0));
    this.closeConnections();
    await closed;
  }

  /** The end of a stop: every connection still open is closed. */
  protected closeConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}
