// The front, `tsgi front`: an HTTP/1.1 listener that carries each request to a backend over
// persistent multiplexed tsgi connections. start(config) and stop({ graceful }) are its verbs;
// startWorker(config) runs the same front in a worker of `--processes N` (see primary/primary.ts).
import { setRequestIdHeader as setUwsgiRequestIdHeader } from './upstream/uwsgi-vars.js';
import type { Socket } from 'node:net';
import { type Address, formatAddress } from '../common/address.js';
import { handleControl } from './control.js';
import { openControl } from './control-listen.js';
import { closeListener, listenOn } from '../common/listen.js';
import { guardAccept, refuse503 } from '../common/accept-guard.js';
import { type AdminServer, recordErrors, startAdmin } from '../common/admin-server.js';
import { createLogger } from '../common/log.js';
import { RecentErrors } from '../common/metrics.js';
import { type Options, resolveOptions } from '../common/options.js';
import { ProxyTrust } from '../common/trust-proxy.js';
import { shutdownDelayOf } from '../common/shutdown.js';
import { FRONT_TLS_FLAGS, TlsContext, tlsFiles } from '../common/tls.js';
import { ConfigError } from '../protocol/errors.js';
import { AccessLog } from './observe/access-log.js';
import { applyForwarded } from './http/forwarded.js';
import { HttpServer, MAX_DROP_BYTES, type HttpRequest, type HttpResponse } from './http/server.js';
import type { TlsMinVersion } from './http/tls.js';
import { FrontMetrics } from './observe/metrics.js';
import { presentStatus } from '../common/rolling.js';
import { combineObservers } from './observe/observe.js';
import { Pool } from './upstream/pool.js';
import { admissionError, requestHead } from './http/request-head.js';
import { Exchange, type ProxyOptions } from './exchange.js';
import { RequestIds } from './observe/request-id.js';
import { FrontTracing } from './observe/tracing.js';
import { StaticFiles } from './static/files.js';
import { Tunnels } from './tunnel.js';

/**
 * A front's configuration: the options of `tsgi front` (the table in common/options.ts, by key),
 * all optional but `listen`; what is left out takes the table's default.
 */
export type FrontConfig = Partial<Options<'front'>> & {
  listen: Address;
  /**
   * Only 1 here: start() runs the front in this process. `tsgi front --processes N` runs N of
   * them under a primary process (src/frontend/primary/primary.ts), which embedding does not offer.
   */
  processes?: number;
};

/** A running front, as an embedder sees it. */
export interface Front {
  readonly address: Address;
  /**
   * Makes the configured backends these (SIGHUP with --config): new ones are added, ones no
   * longer listed are drained. Registered backends are left alone.
   */
  setBackends(addresses: Address[]): void;
  /** SIGUSR1: reopen the access log file (logrotate moved it). */
  reopenLogs(): void;
  /** SIGHUP: read the TLS certificate and key again (new connections get them; a bad file keeps the old pair), and the --backend-tls-* files (backends down for a failed handshake are retried). */
  reloadTls(): void;
  /** The admin server's address, if --admin was given. */
  readonly adminAddress: Address | null;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

/**
 * A front with its internals, for a worker of `--processes N` (the primary accepts its
 * connections and asks for its state) and for the code in this folder; not the public Front.
 */
export interface WorkerFront extends Front {
  readonly pool: Pool;
  /** The HTTP/1.1 server (its `listener` is the net.Server, which a worker of --processes N never opens). */
  readonly server: HttpServer;
  /** Serves a client connection the primary accepted. */
  accept(socket: Socket): void;
  /** Client connections open now. */
  readonly connections: number;
  /** With --admin: this process's counts, which the primary sums. */
  readonly metrics: FrontMetrics | null;
}

export async function start(config: FrontConfig): Promise<Front> {
  if (config.processes !== undefined && config.processes !== 1) {
    throw new ConfigError(`front(): processes ${config.processes} is not offered when embedding; `
      + 'run `tsgi front --processes N` for several front processes, or start one front per process yourself');
  }
  return launch(config, null);
}

/**
 * The front of one worker process of `--processes N`. `listen` is the address the primary
 * bound; the primary also owns the control socket and the admin server, so they are not opened here.
 */
export function startWorker(config: FrontConfig, listen: Address): Promise<WorkerFront> {
  return launch({ ...config, listen, control: undefined, controlListen: undefined, processes: undefined }, listen);
}

async function launch(given: FrontConfig, handedOver: Address | null): Promise<WorkerFront> {
  const config = resolveOptions('front', given); // each option checked, each default from the table
  const ids = new RequestIds(config.requestIdHeader); // a bad header name stops start-up here
  setUwsgiRequestIdHeader(ids.header);
  // With --admin, warnings and errors are also kept for /status and the status page.
  const recent = config.admin !== undefined ? new RecentErrors() : null;
  const log = recent !== null ? recordErrors(createLogger('front'), recent) : createLogger('front');
  if (config.listen === undefined) throw new ConfigError('tsgi front needs --listen HOST:PORT or unix:PATH');
  if (config.backends.length === 0 && config.control === undefined && config.controlListen === undefined && handedOver === null) {
    throw new ConfigError('tsgi front needs at least one --backend unix:PATH or tcp:HOST:PORT, or a --control socket for backends to register on');
  }
  // Opened before anything starts: a path that cannot be opened stops start-up.
  const accessLog = config.accessLog !== undefined && config.accessLog !== ''
    ? new AccessLog(config.accessLog, config.logFormat, log) : null;
  // Static mounts are checked before the proxy; with none, the proxy is the handler itself.
  const statics = StaticFiles.create(config.static, { log, dotfiles: config.staticDotfiles });
  const tls = tlsFiles({ cert: config.backendTlsCert, key: config.backendTlsKey, ca: config.backendTlsCa }, FRONT_TLS_FLAGS);
  const tlsContext = tls !== null ? new TlsContext(tls, FRONT_TLS_FLAGS) : null;
  const pool = new Pool({
    log,
    tls: tlsContext,
    tlsServername: config.backendTlsServername,
    dnsIntervalMs: config.dnsInterval * 1000,
    dnsServers: config.dnsServers,
    queueSize: config.queueSize,
    queueTimeoutMs: config.queueTimeout * 1000,
    maxInFlight: config.maxInFlight,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
    maxResponseHeaderSize: config.maxResponseHeaderSize,
    pingIntervalMs: config.pingInterval * 1000,
    pingTimeoutMs: config.pingTimeout * 1000,
  });
  try {
    for (const address of config.backends) pool.add(address, 'config');
  } catch (err) {
    pool.stop();
    throw err;
  }
  const control = await openControl(config, tlsContext, (req) => handleControl(pool, req, log), log).catch((err: unknown) => {
    pool.stop();
    throw err;
  });
  const tunnels = new Tunnels(config.maxTunnels, config.tunnelIdleTimeout * 1000, log);
  const metrics = recent !== null ? new FrontMetrics(pool, recent, formatAddress(config.listen), accessLog, {
    queueSize: config.queueSize, maxInFlight: config.maxInFlight, maxConnections: config.maxConnections,
  }, tunnels) : null;
  if (metrics !== null && handedOver !== null) metrics.role = 'front process';
  const tracing = config.otlpEndpoint !== undefined ? await FrontTracing.start(config.otlpEndpoint, log) : null;
  const maxHeaders = config.maxHeaders;
  const proxy: ProxyOptions = {
    pool, log, tunnels, responseTimeoutMs: config.responseTimeout * 1000,
    maxHeaders, maxBodySize: config.maxBodySize, bodyTimeoutMs: config.bodyTimeout * 1000,
    observe: combineObservers([accessLog?.observe, metrics?.observe, tracing?.observe]),
  };
  if (statics !== null && proxy.observe !== undefined) {
    // Static responses reach the access log and the metrics like proxied ones, as backend 'static'.
    const observe = proxy.observe;
    statics.onDone = (req, res, outcome) => observe({
      req, res, started: outcome.started, backendName: 'static', bytesIn: 0, bytesOut: outcome.bytes,
      remote: req.socket.remoteAddress ?? '',
    });
  }
  const headersTimeout = config.headersTimeout * 1000;
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new ConfigError(config.tlsCert === undefined ? '--tls-key needs --tls-cert' : '--tls-cert needs --tls-key');
  }
  const trust = new ProxyTrust(config.trustProxy);
  // Every peer of a Unix-socket listener is a Unix-socket peer (nginx's proxy_pass http://unix:…).
  const unixListener = config.listen.kind === 'unix';
  type Handler = (req: HttpRequest, res: HttpResponse) => void;
  const proxied: Handler = (req, res) => {
    const added = ids.assign(req); // before the exchange: its refusals name the id
    const exchange = new Exchange(req, res, proxy);
    if (!trust.empty) applyForwarded(exchange.head, req.rawHeaders, trust, unixListener);
    if (added) ids.addTo(exchange.head, req.requestId);
    if (tracing !== null) tracing.begin(exchange);
    exchange.start();
  };
  const server = new HttpServer({
    log,
    onRequest: statics === null ? proxied : (req, res) => {
      const mount = statics.match(req.url);
      if (mount === null) proxied(req, res);
      else {
        ids.assign(req);
        statics.serve(req, res, mount, admissionError(req, requestHead(req).problem, proxy));
      }
    },
    keepAliveTimeoutMs: config.keepAliveTimeout * 1000,
    headersTimeoutMs: headersTimeout,
    maxHeaderSize: config.maxHeaderSize,
    maxConnections: config.maxConnections,
    bodyTimeoutMs: proxy.bodyTimeoutMs,
    sendTimeoutMs: config.sendTimeout * 1000,
    tunnelIdleTimeoutMs: tunnels.idleMs,
    lingerTimeoutMs: config.lingerTimeout * 1000,
    maxDropBytes: Math.min(proxy.maxBodySize || MAX_DROP_BYTES, MAX_DROP_BYTES),
    onRefused: metrics?.refused,
    http2: config.http2 === 'on' ? { maxConcurrentStreams: config.maxConcurrentStreams, maxHeaders: config.maxHeaders } : undefined,
    tls: config.tlsCert === undefined ? undefined
      : { certFile: config.tlsCert, keyFile: config.tlsKey!, minVersion: config.tlsMinVersion as TlsMinVersion },
  });
  metrics?.attach(server);
  // A worker of --processes N does not listen: the primary hands it the connections it accepts.
  if (handedOver === null) guardAccept(server.listener, { log, name: 'HTTP', refuse: refuse503 });
  const bound = handedOver ?? await listenOn(server.listener, config.listen, config.socketMode);
  let admin: AdminServer | null = null;
  if (metrics !== null && handedOver === null) {
    try {
      admin = await startAdmin({
        address: config.admin!, log, socketMode: config.socketMode,
        metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
        status: () => presentStatus(metrics.status()),
        notReady: () => (stopping ? 'stopping' : null),
      });
    } catch (err) {
      server.close();
      await closeListener(server.listener);
      pool.stop();
      await control?.close();
      await tracing?.stop();
      throw err;
    }
  }
  const scheme = config.tlsCert === undefined ? 'http' : 'https';
  log.info(`${handedOver === null ? `listening on ${scheme}` : `serving connections accepted on ${scheme}`} ${formatAddress(bound)}; `
    + `backends: ${config.backends.map(formatAddress).join(', ') || 'none yet'}`
    + (trust.empty ? '' : `; trusting forwarded headers from ${trust.entries.join(', ')}`)
    + (statics === null ? '' : `; static files: ${statics.mounts.map((m) => `${m.prefix} -> ${m.root}`).join(', ')}`)
    + `; protocols: HTTP/1.1${config.http2 === 'on' ? (config.tlsCert === undefined ? ', h2c' : ', h2') : ''}`);
  const gracefulMs = config.gracefulTimeout * 1000;
  const shutdownDelayMs = shutdownDelayOf(config.shutdownDelay) * 1000;
  let stopping = false;
  return {
    address: bound,
    pool,
    server,
    metrics,
    adminAddress: admin?.address ?? null,
    get connections() {
      return server.connections.size;
    },
    accept(socket) {
      if (stopping) {
        socket.destroy();
        return;
      }
      server.accept(socket);
      socket.resume();
    },
    reopenLogs() {
      accessLog?.reopen();
    },
    reloadTls() {
      server.reloadTls();
      pool.reloadTls();
    },
    setBackends(addresses) {
      const names = new Set(addresses.map(formatAddress));
      for (const backend of [...pool.backends]) {
        if (backend.source === 'config' && !names.has(backend.name)) backend.drain();
      }
      for (const name of [...pool.discoveries.keys()]) if (!names.has(name)) pool.forget(name);
      for (const address of addresses) pool.add(address, 'config');
    },
    async stop({ graceful = true } = {}) {
      stopping = true; // /readyz answers 503 from now on
      if (graceful && shutdownDelayMs > 0 && handedOver === null) {
        // Until the orchestrator has taken this front out of its Service, clients still arrive: serve them.
        log.info(`stopping: /readyz answers 503; serving ${shutdownDelayMs / 1000} s more (--shutdown-delay), then draining`);
        await new Promise((r) => setTimeout(r, shutdownDelayMs));
      }
      await control?.close();
      // Not listener.close() itself: it would delete a newer front's socket file at the same path.
      // A worker's server never listened: its connections are the ones it was handed.
      const listenerClosed = handedOver === null ? closeListener(server.listener) : Promise.resolve();
      server.close(); // idle connections close now, busy ones once their response is done
      // Upgraded connections are closed politely (WebSocket close frames), spread over the first
      // half of --graceful-timeout (10 s at most) so that their clients do not reconnect at once.
      if (graceful) tunnels.shutdown(Math.min(gracefulMs / 2, TUNNEL_SHUTDOWN_SPREAD_MS));
      const closed = listenerClosed.then(() => allClosed(server));
      if (!graceful) server.closeAllConnections();
      else {
        const timer = setTimeout(() => server.closeAllConnections(), gracefulMs);
        timer.unref();
        await closed;
        clearTimeout(timer);
      }
      pool.stop();
      await closed;
      await admin?.close();
      await accessLog?.close();
      await tracing?.stop();
    },
  };
}

/** The longest a graceful stop spreads the closing of upgraded connections over. */
const TUNNEL_SHUTDOWN_SPREAD_MS = 10_000;

/** Resolves once every client connection has closed (a closing server ends each after its response). */
function allClosed(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      server.closeIdleConnections();
      if (server.connections.size === 0) resolve();
      else setTimeout(check, 50);
    };
    check();
  });
}

export { Pool } from './upstream/pool.js';
export { Backend } from './upstream/backend.js';
export { BackendLink } from './upstream/tsgi-link.js';
export { UwsgiLink } from './upstream/uwsgi-link.js';
