// The one hook through which a finished response reaches the access log and the metrics. The
// proxy's Exchange is itself an Observed (no object per request); any other responder (static
// files) passes an object of the same shape to `observe` when its response closes.
import { channel } from 'node:diagnostics_channel';
import type { HttpRequest, HttpResponse } from '../http/server.js';

/**
 * The request lifecycle at the front on node:diagnostics_channel, for tracing without a log
 * line: `tsgi:front:request:start` ({ method, url, remote }), `…:dispatch` ({ method, url,
 * backend, attempt, exchange }), `…:head` ({ method, url, status, exchange }), `…:end` ({ method,
 * url, status, backend, bytesIn, bytesOut, ms }); `exchange` is the same object for one request
 * (--otlp-endpoint's spans hang on it). Messages are made only while someone subscribes.
 */
export const channels = {
  start: channel('tsgi:front:request:start'),
  dispatch: channel('tsgi:front:request:dispatch'),
  head: channel('tsgi:front:request:head'),
  end: channel('tsgi:front:request:end'),
};

export interface Observed {
  readonly req: HttpRequest;
  readonly res: HttpResponse;
  /** performance.now() when the request arrived. */
  readonly started: number;
  /** What answered: a backend's name, 'static', or '-' when none did (503 while queued, a refusal). */
  readonly backendName: string;
  /** Request body bytes read from the client. */
  readonly bytesIn: number;
  /** Response body bytes written to the client (the head not counted, as Apache's %b). */
  readonly bytesOut: number;
  /** The client's address (the trusted X-Forwarded-For one when --trust-proxy applies); '' if none. */
  readonly remote: string;
  /** The status to record for a response whose head never went out, when not 499 (444: an app cut it). */
  readonly unsentStatus?: number;
}

/** Called once per response, when it closed (completely sent, cut, or the client went away). */
export type Observer = (r: Observed) => void;

/**
 * The status a response ended with. No head went out: 499 (nginx's "client closed request"), or
 * 444 (nginx's "closed without a response") when the app cut the connection.
 */
export function statusOf(r: Observed): number {
  return r.res.headersSent ? r.res.statusCode : r.unsentStatus ?? 499;
}

/** One observer calling each of these (undefined if none: the proxy then skips the call). */
export function combineObservers(observers: (Observer | undefined)[]): Observer | undefined {
  const list = observers.filter((o): o is Observer => o !== undefined);
  if (list.length === 0) return undefined;
  if (list.length === 1) return list[0];
  const [a, b] = list as [Observer, Observer];
  return list.length === 2 ? (r) => { a(r); b(r); } : (r) => { for (const o of list) o(r); };
}

