// The front's control protocol: one JSON object per line over a Unix socket, one answer line
// per request. `tsgi ctl` and `tsgi serve --register` speak it as clients; the front serves it.
import { connect } from 'node:net';
import { TsgiError } from '../protocol/errors.js';

export type ControlOp = 'list' | 'add' | 'drain' | 'remove';

export interface ControlRequest {
  op: ControlOp;
  /** Backend address for add / drain / remove: unix:PATH or tcp:HOST:PORT. */
  address?: string;
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

export interface ControlResponse {
  ok: boolean;
  error?: string;
  backends?: BackendInfo[];
  queued?: number;
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

/** Sends one request to a control socket and resolves with the answer. */
export function controlRequest(path: string, request: ControlRequest, timeoutMs = 5000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `the front's control socket ${path} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(buffer.slice(0, nl)) as ControlResponse);
      } catch {
        reject(new TsgiError('TSGI_ERR_PROTOCOL', `the front's control socket ${path} sent a malformed answer`));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === undefined ? err.message : `${err.code}${ERRNO_TEXT[err.code] === undefined ? '' : ` (${ERRNO_TEXT[err.code]})`}`;
      reject(new TsgiError('TSGI_ERR_BACKEND_UNAVAILABLE', `cannot connect to the front's control socket ${path}: ${why}`, { cause: err }));
    });
  });
}
