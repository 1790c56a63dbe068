// The control protocol: one JSON object per line over a Unix socket (or mutual TLS to a front's
// --control-listen), one answer line per request. A front's socket (tsgi front --control) lists,
// adds, drains and removes backends; `tsgi serve --register` and `tsgi ctl` speak it as clients.
// A backend's own socket (tsgi serve --control) lists, scales and reloads its workers, for
// `tsgi ctl` alone.
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { TsgiError } from '../protocol/errors.js';
import { parseAddress } from './address.js';
import { closeListener, listenOn } from './listen.js';
import type { Logger } from './log.js';
import { nodeTls, type TlsContext, tlsReason } from './tls.js';

/** list, add, drain, remove: a front's. list, scale, reload: a backend's. */
export type ControlOp = 'list' | 'add' | 'drain' | 'remove' | 'scale' | 'reload';

export interface ControlRequest {
  op: ControlOp;
  /** Backend address for add / drain / remove: unix:PATH or tcp:HOST:PORT. */
  address?: string;
  /**
   * A backend announcing itself (add) or withdrawing (drain): the id of its registration, new
   * each time it starts. An address drained by `tsgi ctl drain` stays drained through the
   * announcements of the same registration; a new one (the backend restarted) ends the hold.
   */
  registration?: string;
  /** scale: workers to add (negative: to remove). */
  delta?: number;
  /** scale: the number of workers to have (instead of delta). */
  workers?: number;
}

export interface BackendInfo {
  address: string;
  state: string;
  source: string;
  connections: number;
  inFlight: number;
  requests: number;
  failures: number;
}

/** One worker of a backend (tsgi serve --control). */
export interface WorkerInfo {
  id: number;
  pid: number | undefined;
  generation: number;
  state: string;
  connections: number;
  inFlight: number;
  requests: number;
}

export interface ControlResponse {
  ok: boolean;
  error?: string;
  backends?: BackendInfo[];
  queued?: number;
  /** add from a registration: the address is held drained (`tsgi ctl drain`); nothing is routed to it. */
  held?: boolean;
  /** A backend's answer: its workers, generation and worker target. */
  workers?: WorkerInfo[];
  generation?: number;
  target?: number;
}

/** Answers one control request. */
export type ControlHandler = (req: ControlRequest) => ControlResponse | Promise<ControlResponse>;

const MAX_LINE = 64 * 1024;

/** Serves the control protocol on a Unix socket: a line in, the handler's answer out, in order. */
export class ControlListener {
  readonly #server: Server;
  /** The Unix socket path; null when requests come only from accept() (a TLS listener). */
  readonly #path: string | null;
  readonly #log: Logger;
  readonly #handle: ControlHandler;

  constructor(path: string | null, handle: ControlHandler, log: Logger) {
    this.#path = path;
    this.#log = log;
    this.#handle = handle;
    this.#server = createServer((socket) => serveLines(socket, handle));
  }

  /** Serves a connection accepted elsewhere (a front's --control-listen, after its TLS handshake). */
  accept(socket: Socket): void {
    serveLines(socket, this.#handle);
  }

  async listen(socketMode?: number): Promise<void> {
    if (this.#path === null) return;
    await listenOn(this.#server, { kind: 'unix', path: this.#path }, socketMode);
    this.#log.info(`control socket on ${this.#path}`);
  }

  close(): Promise<void> {
    return closeListener(this.#server);
  }
}

function serveLines(socket: Socket, handle: ControlHandler): void {
  let buffer = '';
  // Answers go out in the order of the requests, even when one takes longer.
  let previous: Promise<void> = Promise.resolve();
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    if (buffer.length > MAX_LINE) {
      socket.end(JSON.stringify({ ok: false, error: 'request line too long' }) + '\n');
      return;
    }
    let nl;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let answer: Promise<ControlResponse>;
      try {
        const req = JSON.parse(line) as ControlRequest;
        answer = Promise.resolve(handle(req)).catch((err: Error) => ({ ok: false, error: err.message }));
      } catch {
        answer = Promise.resolve({ ok: false, error: 'malformed request: send one JSON object per line, e.g. {"op":"list"}' });
      }
      previous = previous.then(() => answer).then((a) => { socket.write(JSON.stringify(a) + '\n'); });
    }
  });
}

/** What the errors of connect() on a Unix socket path mean, in a few words. */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied: the socket file\'s mode (--socket-mode) and owner decide who may connect',
  ECONNREFUSED: 'nothing is listening on it',
  ENOTSOCK: 'not a socket',
  ENOTDIR: 'a part of the path is not a directory',
  EPERM: 'not permitted',
};

/** Opens a connection to a control socket PATH, or (with `tls`) to tls:HOST:PORT. */
function dial(path: string, tls: TlsContext | null): Socket {
  if (!path.startsWith('tls:')) return connect(path);
  const a = parseAddress(path, '--register', true);
  if (a.kind !== 'tcp' || tls === null) throw new TsgiError('TSGI_ERR_CONFIG', `${path}: registration over TCP needs --tls-cert, --tls-key and --tls-ca`);
  const { checkServerIdentity, connect: connectTls } = nodeTls();
  return connectTls({
    host: a.host, port: a.port, secureContext: tls.context, servername: isIP(a.host) === 0 ? a.host : undefined,
    checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(a.host, cert),
  });
}

/**
 * Sends one request to a control socket (a PATH, or tls:HOST:PORT with the TLS context of
 * --tls-*) and resolves with the answer.
 */
export function controlRequest(path: string, request: ControlRequest, timeoutMs = 5000, tls: TlsContext | null = null): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const tcp = path.startsWith('tls:');
    let socket: Socket;
    try {
      socket = dial(path, tls);
    } catch (err) {
      reject(err);
      return;
    }
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `the control socket ${path} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on(tcp ? 'secureConnect' : 'connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(buffer.slice(0, nl)) as ControlResponse);
      } catch {
        reject(new TsgiError('TSGI_ERR_PROTOCOL', `the control socket ${path} sent a malformed answer`));
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      // A no-op once answered; otherwise the front hung up without an answer.
      reject(new TsgiError('TSGI_ERR_BACKEND_UNAVAILABLE', `the control socket ${path} closed the connection without an answer`
        + (tcp ? ' (over TLS: it refused our certificate? its log says why)' : '')));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = tcp ? tlsReason(err)
        : err.code === undefined ? err.message : `${err.code}${ERRNO_TEXT[err.code] === undefined ? '' : ` (${ERRNO_TEXT[err.code]})`}`;
      reject(new TsgiError('TSGI_ERR_BACKEND_UNAVAILABLE', `cannot connect to the control socket ${path}: ${why}`, { cause: err }));
    });
  });
}
