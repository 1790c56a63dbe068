// The admin server of `tsgi front --admin` and `tsgi serve --admin`: GET /metrics (Prometheus
// text format), /status (JSON), / (a self-contained status page that polls /status), and the
// probes of an orchestrator: /livez (the process answers) and /readyz (route to it; 503 from
// the moment a graceful stop begins).
// One small node:http server; it never shares a listener or a code path with the traffic.
// On TCP it answers only a Host naming its own address or localhost (421 otherwise), so a web
// page whose name is made to resolve to it (DNS rebinding) cannot read it from a browser.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
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
  /** /readyz: null when ready, else why not (answered with 503). */
  notReady?(): string | null;
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

/** HOST:PORT as a Host header writes it: an IPv6 address in brackets, an IPv4-mapped one plain. */
function hostPort(host: string, port: number): string {
  const plain = host.startsWith('::ffff:') && isIP(host.slice(7)) === 4 ? host.slice(7) : host;
  return `${isIP(plain) === 6 ? `[${plain}]` : plain}:${port}`.toLowerCase();
}

/**
 * The Host values a TCP admin server answers: its address as bound (an IP address, or the name
 * given to --admin) and localhost, with its port (or without one on port 80); and, per request,
 * the address the client connected to (for one bound to 0.0.0.0 or ::).
 */
function hostCheck(bound: Address & { kind: 'tcp' }): (host: string | undefined, socket: Socket) => boolean {
  const names = [hostPort(bound.host, bound.port), `localhost:${bound.port}`, 'localhost'];
  if (bound.port === 80) names.push(hostPort(bound.host, 80).slice(0, -3));
  const allowed = new Set(names);
  return (host, socket) => {
    // No Host at all: HTTP/1.0 from a script; a browser always sends one.
    if (host === undefined) return true;
    const h = host.toLowerCase();
    if (allowed.has(h)) return true;
    const local = socket.localAddress;
    if (local === undefined || socket.localPort === undefined) return false;
    const here = hostPort(local, socket.localPort);
    return h === here || (socket.localPort === 80 && h === here.slice(0, -3));
  };
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  let hostAllowed: ((host: string | undefined, socket: Socket) => boolean) | null = null;
  let misdirected = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    // The probes tell nothing worth reading through DNS rebinding, and a kubelet sends the pod's IP as Host.
    if ((path === '/livez' || path === '/readyz') && (req.method === 'GET' || req.method === 'HEAD')) {
      const why = path === '/readyz' ? opts.notReady?.() ?? null : null;
      send(res, why === null ? 200 : 503, 'text/plain; charset=utf-8', why === null ? 'ok\n' : `not ready: ${why}\n`);
      return;
    }
    if (hostAllowed !== null && !hostAllowed(req.headers.host, req.socket)) {
      const why = `admin: 421 for Host ${JSON.stringify(req.headers.host)} (client ${req.socket.remoteAddress}): `
        + `the admin server (--admin ${formatAddress(bound)}) answers only its own address or localhost, `
        + 'so that no web page can read it through DNS rebinding';
      if (misdirected++ === 0) opts.log.warn(`${why}; further ones are logged at debug level`);
      else opts.log.debug(`${why} (${misdirected} so far)`);
      send(res, 421, 'text/plain; charset=utf-8', `misdirected request: ask for ${formatAddress(bound)} or localhost\n`);
      return;
    }
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
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /, /status, /metrics, /livez or /readyz\n');
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      opts.log.error(`admin: ${req.method} ${(req.url ?? '').split('?', 1)[0]} failed`, err);
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `500 ${err.message}\n`);
      else res.destroy();
    });
  });
  const bound = await listenOn(server, opts.address, opts.socketMode);
  // A Unix-socket admin server answers any Host: a browser cannot reach it.
  if (bound.kind === 'tcp') hostAllowed = hostCheck(bound);
  opts.log.info(`admin on http ${formatAddress(bound)}: /metrics, /status, /, /livez, /readyz`);
  return {
    address: bound,
    async close() {
      const closed = closeListener(server);
      server.closeAllConnections();
      await closed; // Node removes its socket file (and closeListener spares a newer one's)
    },
  };
}
