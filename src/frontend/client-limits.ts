// Limits on client connections at the front that Node's http server does not answer itself:
// a connection over --max-connections gets a 503 with Retry-After before it is closed (Node's
// own maxConnections drops it without a word), and parser errors become 400 / 408 / 431.
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { TsgiError, httpStatusFor, rawErrorResponse } from '../protocol/errors.js';
import { failResponse } from './proxy.js';

/** How long a refused connection is kept to read what its client still sends (no RST under the 503). */
const REFUSED_LINGER_MS = 2000;

const ignore = (): void => {};

/**
 * Caps the client connections open at once. Node's own 'connection' listener (the HTTP parser)
 * is taken off and called only for connections under the cap; one over it is answered 503 +
 * Retry-After and closed. One warn line when a burst of refusals begins, one when it ends.
 */
export function limitConnections(server: Server, max: number, log: Logger, onRefused?: (status: number) => void): void {
  // Node's own listener; any other 'connection' listener keeps seeing every connection.
  const accept = server.listeners('connection').find((l) => l.name === 'connectionListener') as
    ((this: Server, socket: Socket) => void) | undefined;
  if (accept === undefined) throw new Error('limitConnections: this http.Server has no connectionListener');
  server.removeListener('connection', accept);
  let open = 0;
  let refused = 0;
  const onClose = (): void => {
    open--;
    if (refused > 0 && open < max) {
      log.warn(`accepting connections again; ${refused} refused with 503 while at --max-connections ${max}`);
      refused = 0;
    }
  };
  server.on('connection', function (this: Server, socket: Socket) {
    if (open < max) {
      open++;
      socket.once('close', onClose);
      accept.call(this, socket);
      return;
    }
    if (refused++ === 0) {
      log.warn(`503 to ${socket.remoteAddress ?? 'unix client'}: ${open} connections open, at --max-connections ${max}; `
        + 'refusing new connections until one closes');
    } else {
      log.debug(`503 to ${socket.remoteAddress ?? 'unix client'}: at --max-connections ${max}`);
    }
    onRefused?.(503);
    socket.on('error', ignore);
    socket.end(rawErrorResponse(503));
    socket.resume(); // read and drop the request, so closing does not reset the 503 away
    socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
  });
}

/** Node's HTTP parser failed on a client's bytes (or its head timed out): 400, 408 or 431, then close. */
export function clientErrorHandler(log: Logger, onRefused?: (status: number) => void): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE') {
      // The client went away (mid-request, or before sending one): nobody to answer.
      log.debug(`client ${socket.remoteAddress ?? 'on unix socket'} went away: ${err.code ?? err.message}`);
      socket.destroy();
      return;
    }
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 'TSGI_ERR_HEADERS_TOO_LARGE'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'TSGI_ERR_REQUEST_TIMEOUT' : 'TSGI_ERR_BAD_REQUEST';
    const what = code === 'TSGI_ERR_HEADERS_TOO_LARGE' ? 'request head over --max-header-size'
      : code === 'TSGI_ERR_REQUEST_TIMEOUT' ? 'request head not complete within --headers-timeout' : 'malformed request';
    const error = new TsgiError(code, `${what} (${err.code ?? ''} ${err.message})`);
    const current = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    const status = httpStatusFor(error);
    if (current != null) {
      // A request on this connection was already handed over. An error in its body ends that
      // exchange (it answers, or cuts); an error in a pipelined request after it is answered
      // once its response is complete. Never a response on top of another.
      if (!current.req.complete && failResponse(current, error)) return;
      if (current.writableFinished || current.destroyed) {
        socket.end();
        return;
      }
      log.warn(`${status} to ${socket.remoteAddress ?? 'unix client'}: ${error.message}; after the response in progress`);
      onRefused?.(status);
      current.once('finish', () => socket.end(rawErrorResponse(status)));
      return;
    }
    log.warn(`${status} to ${socket.remoteAddress ?? 'unix client'}: ${error.message}`);
    onRefused?.(status);
    socket.end(rawErrorResponse(status));
  };
}
