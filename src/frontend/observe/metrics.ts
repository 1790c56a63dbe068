// The front's metrics: requests by status, latency, bytes (counted per response by the observer,
// a few array increments), and the pool's state (backends, in-flight, queue) computed at scrape
// time. Feeds /metrics (Prometheus text) and /status (JSON); with --processes N the primary sums
// the processes' /status documents (sumStatuses) as it sums their series.
import type { Registry } from 'prom-client';
import { packageVersion } from '../../common/admin-server.js';
import { defineMetric, defineProcessMetrics, Histogram, promClient, type RecentErrors, type Sample, StatusCounts } from '../../common/metrics.js';
import { processUsage, type ProcessUsage } from '../../common/process-usage.js';
import { mergeResponses, RecentResponses, type RecentResponse } from '../../common/recent-responses.js';
import { RollingStats, type RollingPoints, type RollingSummary, sumPoints } from '../../common/rolling.js';
import type { HttpServer } from '../http/server.js';
import { inFlightRequests, type InFlightRequest } from './in-flight.js';
import { mergeBackendRows } from './merge.js';
import type { Observed } from './observe.js';
import { statusOf } from './observe.js';
import type { Pool } from '../upstream/pool.js';
import type { Tunnels } from '../tunnel.js';

const STATES = ['up', 'connecting', 'down', 'draining'] as const;

/** The front's /status document. */
export interface FrontStatus {
  kind: 'front';
  version: string;
  pid: number;
  uptime: number;
  listen: string;
  requests: number;
  inFlight: number;
  queued: number;
  statuses: Record<string, number>;
  refused: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  backends: { name: string; source: string; state: string; links: number; inFlight: number; requests: number; failures: number;
    /** The last minutes of its responses (summed over processes, then summarized as `recent`). */
    window?: RollingPoints; recent?: RollingSummary }[];
  /** Upgraded connections (WebSockets): open now, opened, closed by reason, bytes from and to clients. */
  tunnels: TunnelCounts;
  recentErrors: { time: string; level: string; message: string }[];
  /** Client connections open, and the limits the page shows the counts against (per process). */
  connections: number;
  limits: FrontLimits;
  /** The last minutes of all responses (summarized as `recent`). */
  window?: RollingPoints;
  recent?: RollingSummary;
  /** The requests in flight, the oldest first. */
  requestsInFlight: InFlightRequest[];
  /** The last 5xx responses (an app's 500 included), newest first. */
  recentResponses: RecentResponse[];
  /** CPU and memory of each process (the primary and its front processes with --processes N). */
  processUsage: ProcessUsage[];
}

/** --queue-size, --max-in-flight, --max-connections (0: no limit), and the processes that each have them. */
export interface FrontLimits { queueSize: number; maxInFlight: number; maxConnections: number; processes: number }

export interface TunnelCounts {
  open: number;
  opened: number;
  closed: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
}

/** The counts of a status that only grow: what an exited process still adds to the sums. */
export type FrontTotals = Pick<FrontStatus, 'requests' | 'statuses' | 'refused' | 'bytesIn' | 'bytesOut' | 'tunnels'>;

const noTunnels = (): TunnelCounts => ({ open: 0, opened: 0, closed: {}, bytesIn: 0, bytesOut: 0 });

export const noTotals = (): FrontTotals => ({ requests: 0, statuses: {}, refused: {}, bytesIn: 0, bytesOut: 0, tunnels: noTunnels() });

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Adds the growing counts of `from` to `into` (an exited process's last status into the totals). */
export function addTotals(into: FrontTotals, from: FrontTotals): void {
  into.requests += from.requests;
  into.bytesIn += from.bytesIn;
  into.bytesOut += from.bytesOut;
  addCounts(into.statuses, from.statuses);
  addCounts(into.refused, from.refused);
  // `open` is not a total: sumStatuses adds it from the live processes only.
  const t = from.tunnels ?? noTunnels();
  into.tunnels.opened += t.opened;
  into.tunnels.bytesIn += t.bytesIn;
  into.tunnels.bytesOut += t.bytesOut;
  addCounts(into.tunnels.closed, t.closed);
}

/**
 * One /status from the processes' (--processes N): counts summed, with `gone` (the exited
 * processes' totals) added; each backend once, its counts summed over the live processes and its
 * states joined when they disagree ('up/connecting'); the recent errors of all, newest first.
 */
export function sumStatuses(parts: FrontStatus[], gone: FrontTotals, own: Pick<FrontStatus, 'pid' | 'uptime' | 'listen'>
  & { recentErrors: FrontStatus['recentErrors']; limits: FrontLimits }): FrontStatus {
  const totals = noTotals();
  addTotals(totals, gone);
  let inFlight = 0;
  let queued = 0;
  let connections = 0;
  const errors = [...own.recentErrors];
  for (const p of parts) {
    addTotals(totals, p);
    totals.tunnels.open += p.tunnels?.open ?? 0;
    inFlight += p.inFlight;
    queued += p.queued;
    connections += p.connections;
    errors.push(...p.recentErrors);
  }
  errors.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  const backends = mergeBackendRows(parts.map((p) => p.backends), 'name', ['links', 'inFlight', 'requests', 'failures']);
  for (const row of backends) {
    row.window = sumPoints(parts.flatMap((p) => p.backends.filter((b) => b.name === row.name && b.window).map((b) => b.window!)));
  }
  return {
    kind: 'front', version: packageVersion(), pid: own.pid, uptime: own.uptime, listen: own.listen,
    ...totals, inFlight, queued, connections, limits: own.limits,
    backends,
    recentErrors: errors.slice(0, 50),
    window: sumPoints(parts.flatMap((p) => (p.window ? [p.window] : []))),
    requestsInFlight: parts.flatMap((p) => p.requestsInFlight).sort((a, b) => b.ageMs - a.ageMs).slice(0, 50),
    recentResponses: mergeResponses(parts.map((p) => p.recentResponses)),
    processUsage: parts.flatMap((p) => p.processUsage),
  };
}

export class FrontMetrics {
  readonly registry: Registry = new (promClient().Registry)();
  readonly statuses = new StatusCounts();
  readonly latency = new Histogram();
  /** Refused before a request existed: parser errors (400/408/431), --max-connections (503). */
  readonly refusals = new StatusCounts();
  bytesIn = 0;
  bytesOut = 0;
  /** Responses by the client's HTTP version ('1.0', '1.1', '2.0'). */
  readonly #protocols = new Map<string, number>();
  readonly #pool: Pool;
  readonly #recent: RecentErrors;
  readonly #listen: string;
  readonly #since = Date.now();
  readonly #window = new RollingStats();
  readonly #byBackend = new Map<string, RollingStats>();
  readonly #errors = new RecentResponses();
  readonly #limits: FrontLimits;
  #server: HttpServer | null = null;
  /** What this process is called in the process table. */
  role = 'front';
  /** The observer to hand the proxy: bound once. */
  readonly observe: (r: Observed) => void;
  /** Counts a client refused before any request was parsed: bound once. */
  readonly refused: (status: number) => void;

  readonly #tunnels: Tunnels | null;

  /** `accessLog`: the --access-log whose dropped lines are counted, if any. */
  constructor(pool: Pool, recent: RecentErrors, listen: string, accessLog: { readonly droppedTotal: number } | null = null,
    limits: Omit<FrontLimits, 'processes'> = { queueSize: 0, maxInFlight: 0, maxConnections: 0 },
    tunnels: Tunnels | null = null) {
    this.#limits = { ...limits, processes: 1 };
    this.#pool = pool;
    this.#tunnels = tunnels;
    this.#recent = recent;
    this.#listen = listen;
    this.observe = (r) => this.record(r);
    this.refused = (status) => this.refusals.add(status);
    const reg = this.registry;
    const perBackend = (value: (b: Pool['backends'][number]) => number) => (): Sample[] =>
      this.#pool.backends.map((b) => ({ labels: { backend: b.name }, value: value(b) }));
    defineMetric(reg, 'tsgi_http_requests_total', 'HTTP responses by status', 'counter', () => this.statuses.samples());
    defineMetric(reg, 'tsgi_http_requests_by_protocol_total', 'HTTP responses by the client\'s protocol (HTTP/1.0, HTTP/1.1, HTTP/2.0)',
      'counter', () => [...this.#protocols].map(([v, n]) => ({ labels: { protocol: `HTTP/${v}` }, value: n })));
    defineMetric(reg, 'tsgi_http_refused_total',
      'clients answered before a request was parsed: malformed (400), too slow (408), head too large (431), over --max-connections (503)',
      'counter', () => this.refusals.samples());
    defineMetric(reg, 'tsgi_http_request_duration_seconds', 'time from request to the response closing', 'histogram',
      () => this.latency.samples('tsgi_http_request_duration_seconds'));
    defineMetric(reg, 'tsgi_http_in_flight', 'requests at a backend or waiting for one', 'gauge',
      () => [{ value: this.inFlight }]);
    defineMetric(reg, 'tsgi_queue_depth', 'requests waiting for a ready backend', 'gauge', () => [{ value: this.#pool.queued }]);
    defineMetric(reg, 'tsgi_http_request_bytes_total', 'request body bytes received', 'counter', () => [{ value: this.bytesIn }]);
    defineMetric(reg, 'tsgi_http_response_bytes_total', 'response body bytes sent', 'counter', () => [{ value: this.bytesOut }]);
    defineMetric(reg, 'tsgi_tunnels_open', 'upgraded connections (WebSockets) open', 'gauge',
      () => [{ value: tunnels?.open.size ?? 0 }]);
    defineMetric(reg, 'tsgi_tunnels_opened_total', 'upgraded connections opened (101 from a backend)', 'counter',
      () => [{ value: tunnels?.opened ?? 0 }]);
    defineMetric(reg, 'tsgi_tunnels_closed_total', 'upgraded connections closed, by reason', 'counter',
      () => Object.entries(tunnels?.closed ?? {}).map(([reason, value]) => ({ labels: { reason }, value })));
    defineMetric(reg, 'tsgi_tunnel_bytes_total', 'bytes carried by upgraded connections: in from clients, out to clients', 'counter',
      () => [{ labels: { direction: 'in' }, value: tunnels?.bytesIn ?? 0 }, { labels: { direction: 'out' }, value: tunnels?.bytesOut ?? 0 }]);
    defineMetric(reg, 'tsgi_backend_up', '1 if the backend has a ready connection', 'gauge',
      perBackend((b) => (b.status === 'up' ? 1 : 0)));
    defineMetric(reg, 'tsgi_backend_state', 'the backend\'s state (1 for the current one)', 'gauge', () => {
      const out: Sample[] = [];
      for (const b of this.#pool.backends) {
        const status = b.status;
        for (const state of STATES) out.push({ labels: { backend: b.name, state }, value: status === state ? 1 : 0 });
      }
      return out;
    });
    defineMetric(reg, 'tsgi_backend_in_flight', 'requests in flight at the backend', 'gauge', perBackend((b) => b.inFlight));
    defineMetric(reg, 'tsgi_backend_connections', 'open connections (links) to the backend', 'gauge',
      perBackend((b) => b.links.length));
    defineMetric(reg, 'tsgi_backend_requests_total', 'requests sent to the backend', 'counter', perBackend((b) => b.requests));
    defineMetric(reg, 'tsgi_backend_failures_total', 'requests failed by the backend (lost, reset, timed out)', 'counter',
      perBackend((b) => b.failures));
    defineMetric(reg, 'tsgi_access_log_dropped_total', 'access log lines dropped: the log was behind, or its writes failed',
      'counter', () => [{ value: accessLog?.droppedTotal ?? 0 }]);
    defineProcessMetrics(reg);
    promClient().collectDefaultMetrics({ register: reg });
  }

  /** The HTTP server whose connections and requests in flight /status lists. */
  attach(server: HttpServer): void {
    this.#server = server;
  }

  record(r: Observed): void {
    const status = statusOf(r);
    const now = performance.now();
    const seconds = (now - r.started) / 1000;
    const epochMs = performance.timeOrigin + now;
    this.statuses.add(status);
    this.latency.observe(seconds);
    const version = r.req.httpVersion;
    this.#protocols.set(version, (this.#protocols.get(version) ?? 0) + 1);
    this.bytesIn += r.bytesIn;
    this.bytesOut += r.bytesOut;
    this.#window.record(status, seconds, epochMs);
    const name = r.backendName;
    this.#windowOf(name).record(status, seconds, epochMs);
    if (status >= 500) this.#errors.push(status, r.req.method, r.req.url, name, seconds * 1000, epochMs);
  }

  #windowOf(backend: string): RollingStats {
    let w = this.#byBackend.get(backend);
    if (w === undefined) this.#byBackend.set(backend, w = new RollingStats());
    return w;
  }

  get inFlight(): number {
    let n = this.#pool.queued;
    for (const b of this.#pool.backends) n += b.inFlight;
    // A backend's streams include its upgraded connections; requests in flight do not.
    n = Math.max(0, n - (this.#tunnels?.open.size ?? 0));
    return n;
  }

  status(): FrontStatus {
    const now = Date.now();
    if (this.#byBackend.size > this.#pool.backends.length + 8) {
      // Backends that left (registered ones come and go): their last minutes go with them.
      const names = new Set(this.#pool.backends.map((b) => b.name));
      for (const name of this.#byBackend.keys()) if (!names.has(name)) this.#byBackend.delete(name);
    }
    return {
      kind: 'front',
      version: packageVersion(),
      pid: process.pid,
      uptime: (Date.now() - this.#since) / 1000,
      listen: this.#listen,
      requests: this.statuses.total,
      inFlight: this.inFlight,
      queued: this.#pool.queued,
      statuses: this.statuses.toJSON(),
      refused: this.refusals.toJSON(),
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      backends: this.#pool.backends.map((b) => ({
        name: b.name, source: b.source, state: b.status, links: b.links.length, inFlight: b.inFlight,
        requests: b.requests, failures: b.failures, window: this.#windowOf(b.name).export(now),
      })),
      tunnels: this.tunnelCounts(),
      recentErrors: this.#recent.list(),
      connections: this.#server?.connections.size ?? 0,
      limits: this.#limits,
      window: this.#window.export(now),
      requestsInFlight: this.#server === null ? [] : inFlightRequests(this.#server),
      recentResponses: this.#errors.list(),
      processUsage: [processUsage(this.role)],
    };
  }

  tunnelCounts(): TunnelCounts {
    const t = this.#tunnels;
    if (t === null) return noTunnels();
    return { open: t.open.size, opened: t.opened, closed: { ...t.closed }, bytesIn: t.bytesIn, bytesOut: t.bytesOut };
  }
}
