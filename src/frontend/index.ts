// The front, `tsgi front`: an HTTP/1.1 listener that carries each request to a backend over
// persistent multiplexed tsgi connections. start(config) and stop({ graceful }) are its verbs.
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { type Address, formatAddress } from '../common/address.js';
import { listenOn } from '../common/listen.js';
import { createLogger } from '../common/log.js';
import { ConfigError } from '../protocol/errors.js';
import { Pool } from './pool.js';
import { handleRequest, type ProxyOptions } from './proxy.js';

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
}

export interface Front {
  readonly address: Address;
  readonly pool: Pool;
  readonly server: Server;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export async function start(config: FrontConfig): Promise<Front> {
  const log = createLogger('front');
  if (config.listen === undefined) throw new ConfigError('tsgi front needs --listen HOST:PORT or unix:PATH');
  if (config.backends.length === 0) throw new ConfigError('tsgi front needs at least one --backend unix:PATH or tcp:HOST:PORT');
  const pool = new Pool({
    log,
    queueSize: config.queueSize ?? 1024,
    queueTimeoutMs: (config.queueTimeout ?? 5) * 1000,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
  });
  for (const address of config.backends) pool.add(address);
  const proxy: ProxyOptions = { pool, log, responseTimeoutMs: (config.responseTimeout ?? 60) * 1000 };
  const headersTimeout = (config.headersTimeout ?? 30) * 1000;
  const server = createServer({
    noDelay: true,
    keepAliveTimeout: (config.keepAliveTimeout ?? 5) * 1000,
    headersTimeout,
    requestTimeout: 0, // bodies may stream for as long as they need; heads are bounded above
    maxHeaderSize: config.maxHeaderSize ?? 16384,
  }, (req, res) => handleRequest(req, res, proxy));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status];
    log.warn(`${status} from ${socket.remoteAddress ?? 'unix client'}: ${err.code ?? ''} ${err.message}`);
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  const bound = await listenOn(server, config.listen, config.socketMode);
  log.info(`listening on http ${formatAddress(bound)}; backends: ${config.backends.map(formatAddress).join(', ')}`);
  const gracefulMs = (config.gracefulTimeout ?? 30) * 1000;
  return {
    address: bound,
    pool,
    server,
    async stop({ graceful = true } = {}) {
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
export { BackendLink } from './backend-link.js';
