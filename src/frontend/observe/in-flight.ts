// The requests in flight at the front, oldest first, read off the client connections when the
// status is asked for (php-fpm's full status, live): nothing is kept per request for it. A
// proxied request's exchange is its response's handler and knows its backend.
import type { HttpServer } from '../http/server.js';

export interface InFlightRequest {
  method: string;
  /** The target, its query cut (queries carry tokens). */
  path: string;
  /** The backend it went to; '-' while it waits for one. */
  backend: string;
  /** queued (no backend yet), backend (no response head yet), responding (the head went out). */
  phase: string;
  /** Milliseconds since it arrived. */
  ageMs: number;
  /** The request id (--request-id-header), if known. */
  id?: string;
}

/** What an exchange (the response's handler) shows of itself. */
interface Shown {
  readonly started: number;
  readonly backendName: string;
}

/** At most `limit` requests open on `server`'s connections now, the oldest first. */
export function inFlightRequests(server: HttpServer, limit = 50): InFlightRequest[] {
  const now = performance.now();
  const out: InFlightRequest[] = [];
  for (const res of server.responses()) {
    const req = res.req;
    if (res.ended || res.statusCode === 101) continue; // a 101 is an upgraded connection: counted as a tunnel
    const ex = res.handler as Partial<Shown> | null;
    if (ex === null || typeof ex.started !== 'number' || typeof ex.backendName !== 'string') continue;
    const q = req.url.indexOf('?');
    const id = req.requestId;
    out.push({
      method: req.method,
      path: q === -1 ? req.url : `${req.url.slice(0, q)}?…`,
      backend: ex.backendName,
      phase: ex.backendName === '-' ? 'queued' : res.headersSent ? 'responding' : 'backend',
      ageMs: Math.round(now - ex.started),
      ...(id !== '' ? { id } : {}),
    });
  }
  out.sort((a, b) => b.ageMs - a.ageMs);
  return out.slice(0, limit);
}
