// The front, `tsgi front`: an HTTP/1.1 listener that carries each request to a backend over
// persistent multiplexed tsgi connections. start(config) and stop({ graceful }) are its verbs.
import { createServer, type Server } from 'node:http';
import { type Address, formatAddress } from '../common/address.js';
import { ControlServer } from './control.js';
import { listenOn } from '../common/listen.js';
import { createLogger } from '../common/log.js';
import type { StaticMount } from '../common/options.js';
import { ProxyTrust } from '../common/trust-proxy.js';
import { ConfigError } from '../protocol/errors.js';
import { clientErrorHandler, limitConnections } from './client-limits.js';
import { applyForwarded } from './forwarded.js';
import { Pool } from './pool.js';
import { Exchange, expectsContinue, handleRequest, type ProxyOptions } from './proxy.js';

export interface FrontConfig {
  listen: Address;
  backends: Address[];
  responseTimeout?: number;
  queueTimeout?: number;
  queueSize?: number;
  keepAliveTimeout?: number;
  headersTimeout?: number;
  maxHeaderSize?: number;
  window?: number;
  maxFrameSize?: number;
  socketMode?: number;
  gracefulTimeout?: number;
  /** Unix socket for registration and `tsgi ctl`. */
  control?: string;
  pingInterval?: number;
  pingTimeout?: number;
  /** Peers whose X-Forwarded-* / X-Real-IP headers are believed: 'loopback', 'unix', CIDRs. */
  trustProxy?: string[];
  /** Most header fields in a request head (431 beyond). */
  maxHeaders?: number;
  /** Largest request body in bytes, 0 for none (413 beyond). */
  maxBodySize?: number;
  /** Seconds a request body may stall (408 beyond), 0 for none. */
  bodyTimeout?: number;
  /** Client connections at once, 0 for no limit. */
  maxConnections?: number;
  /** Requests in flight to backends at once, 0 for no limit (503 beyond). */
  maxInFlight?: number;
  /** `--static /PREFIX=DIR` mounts. */
  static?: StaticMount[];
  staticDotfiles?: 'ignore' | 'deny' | 'allow';
  /** Access log: a file path, or '-' for stdout. */
  accessLog?: string;
  logFormat?: 'combined' | 'common' | 'json';
  /** Admin server address: /metrics, /status, /. */
  admin?: Address;
}

export interface Front {
  readonly address: Address;
  readonly pool: Pool;
  readonly server: Server;
  /**
   * Makes the configured backends these (SIGHUP with --config): new ones are added, ones no
   * longer listed are drained. Registered backends are left alone.
   */
  setBackends(addresses: Address[]): void;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export async function start(config: FrontConfig): Promise<Front> {
  const log = createLogger('front');
  if (config.listen === undefined) throw new ConfigError('tsgi front needs --listen HOST:PORT or unix:PATH');
  if (config.backends.length === 0 && config.control === undefined) {
    throw new ConfigError('tsgi front needs at least one --backend unix:PATH or tcp:HOST:PORT, or a --control socket for backends to register on');
  }
  const pool = new Pool({
    log,
    queueSize: config.queueSize ?? 1024,
    queueTimeoutMs: (config.queueTimeout ?? 5) * 1000,
    maxInFlight: config.maxInFlight ?? 0,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
    pingIntervalMs: (config.pingInterval ?? 5) * 1000,
    pingTimeoutMs: (config.pingTimeout ?? 10) * 1000,
  });
  for (const address of config.backends) pool.add(address, 'config');
  const control = config.control !== undefined ? new ControlServer(config.control, pool, log) : null;
  await control?.listen(config.socketMode);
  const maxHeaders = config.maxHeaders ?? 100;
  const proxy: ProxyOptions = {
    pool, log, responseTimeoutMs: (config.responseTimeout ?? 60) * 1000,
    maxHeaders, maxBodySize: config.maxBodySize ?? 100 * 1024 * 1024, bodyTimeoutMs: (config.bodyTimeout ?? 30) * 1000,
  };
  const headersTimeout = (config.headersTimeout ?? 30) * 1000;
  const trust = new ProxyTrust(config.trustProxy ?? []);
  // Every peer of a Unix-socket listener is a Unix-socket peer (nginx's proxy_pass http://unix:…).
  const unixListener = config.listen.kind === 'unix';
  const server = createServer({
    noDelay: true,
    requireHostHeader: false, // checked in requestHead, so that the 400 is logged like every refusal
    insecureHTTPParser: false, // even under NODE_OPTIONS=--insecure-http-parser: lenient parsing lets requests be smuggled
    keepAliveTimeout: (config.keepAliveTimeout ?? 5) * 1000,
    headersTimeout,
    requestTimeout: 0, // bodies may stream for as long as they need; heads are bounded above
    maxHeaderSize: config.maxHeaderSize ?? 16384,
    // How often Node looks for heads past headersTimeout (its default, 30 s, would let a 1 s limit run 30 s).
    connectionsCheckingInterval: headersTimeout > 0 ? Math.min(1000, Math.max(100, headersTimeout / 4)) : 30_000,
  }, trust.empty ? (req, res) => handleRequest(req, res, proxy) : (req, res) => {
    const exchange = new Exchange(req, res, proxy);
    applyForwarded(exchange.head, req.rawHeaders, trust, unixListener);
    exchange.start();
  });
  // Expect: 100-continue is answered by the exchange once the request is admitted, not by Node at once.
  server.on('checkContinue', (req, res) => {
    expectsContinue(req);
    server.emit('request', req, res);
  });
  // Node truncates rawHeaders at maxHeadersCount: one more than the limit shows a head over it.
  server.maxHeadersCount = maxHeaders + 1;
  if (config.maxConnections !== 0) limitConnections(server, config.maxConnections ?? 10000, log);
  server.on('clientError', clientErrorHandler(log));
  const bound = await listenOn(server, config.listen, config.socketMode);
  log.info(`listening on http ${formatAddress(bound)}; backends: ${config.backends.map(formatAddress).join(', ') || 'none yet'}`
    + (trust.empty ? '' : `; trusting forwarded headers from ${trust.entries.join(', ')}`));
  const gracefulMs = (config.gracefulTimeout ?? 30) * 1000;
  return {
    address: bound,
    pool,
    server,
    setBackends(addresses) {
      const names = new Set(addresses.map(formatAddress));
      for (const backend of [...pool.backends]) {
        if (backend.source === 'config' && !names.has(backend.name)) backend.drain();
      }
      for (const address of addresses) pool.add(address, 'config');
    },
    async stop({ graceful = true } = {}) {
      await control?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (!graceful) server.closeAllConnections();
      else {
        const timer = setTimeout(() => server.closeAllConnections(), gracefulMs);
        timer.unref();
        await closed;
        clearTimeout(timer);
      }
      pool.stop();
      await closed;
    },
  };
}

export { Pool } from './pool.js';
export { Backend } from './backend.js';
export { BackendLink } from './backend-link.js';
export { UwsgiLink } from './uwsgi-link.js';
