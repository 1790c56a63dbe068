// The admin server of `tsgi front --admin` and `tsgi serve --admin`: GET /metrics (Prometheus
// text format), /status (JSON) and / (a self-contained status page that polls /status).
// One small node:http server; it never shares a listener or a code path with the traffic.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Address, formatAddress } from './address.js';
import { closeListener, listenOn } from './listen.js';
import type { Logger } from './log.js';
import type { RecentErrors } from './metrics.js';
import { STATUS_PAGE } from './status-page.js';

export interface AdminOptions {
  address: Address;
  log: Logger;
  socketMode?: number;
  /** The Prometheus exposition and its content type. */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** The /status document. */
  status(): unknown | Promise<unknown>;
}

export interface AdminServer {
  readonly address: Address;
  close(): Promise<void>;
}

let version: string | undefined;

/** The package version, for /status and the page. */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      const url = new URL('../../../package.json', import.meta.url);
      version = (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

/** A logger that also keeps its warnings and errors in `recent` (for /status and the page). */
export function recordErrors(log: Logger, recent: RecentErrors): Logger {
  return {
    debug: log.debug,
    info: log.info,
    warn: (m) => { recent.push('warn', m); log.warn(m); },
    error: (m, err) => { recent.push('error', err instanceof Error ? `${m}: ${err.message}` : m); log.error(m, err); },
    enabled: log.enabled,
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      const { contentType, body } = await opts.metrics();
      send(res, 200, contentType, body);
    } else if (path === '/status') {
      send(res, 200, 'application/json', JSON.stringify(await opts.status(), null, 1) + '\n');
    } else if (path === '/' || path === '/index.html') {
      send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE);
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /status or /metrics\n');
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      opts.log.error(`admin: ${req.method} ${req.url} failed`, err);
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `500 ${err.message}\n`);
      else res.destroy();
    });
  });
  const bound = await listenOn(server, opts.address, opts.socketMode);
  opts.log.info(`admin on http ${formatAddress(bound)}: /metrics, /status, /`);
  return {
    address: bound,
    async close() {
      const closed = closeListener(server);
      server.closeAllConnections();
      await closed; // Node removes its socket file (and closeListener spares a newer one's)
    },
  };
}
