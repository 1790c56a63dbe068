// The backend's metrics. Each process that runs the app (the single process, or each worker)
// counts its requests by status and their latency (a few array increments per request); a
// supervisor adds its own (workers, generation, restarts) and sums the workers' series, which it
// asks for over IPC (common/worker-metrics.ts).
import type { Registry } from 'prom-client';
import { defineMetric, defineProcessMetrics, Histogram, promClient, type Sample, StatusCounts } from '../common/metrics.js';
import { processUsage, type ProcessUsage } from '../common/process-usage.js';
import { RecentResponses, type RecentResponse } from '../common/recent-responses.js';
import { RollingStats, type RollingPoints } from '../common/rolling.js';

/** What a process running the app reports for the status page (a worker: with each heartbeat). */
export interface ServeReport {
  window: RollingPoints;
  /** Requests running, the longest-running first. */
  requests: { method: string; uri: string; ms: number }[];
  /** The last 5xx responses, newest first. */
  responses: RecentResponse[];
  usage: ProcessUsage;
}

/** What a server reports for the gauges. */
export interface Gauged {
  readonly inFlight: number;
  readonly connections?: number;
}

export class ServeMetrics {
  readonly registry: Registry = new (promClient().Registry)();
  readonly statuses = new StatusCounts();
  readonly latency = new Histogram();
  readonly #servers: (Gauged & { requestsInFlight?(limit?: number): ServeReport['requests'] })[] = [];
  readonly #window = new RollingStats();
  readonly #errors = new RecentResponses();

  /** `processMetrics`: prom-client's default process metrics (not in workers: the supervisor has its own). */
  constructor(processMetrics: boolean) {
    const reg = this.registry;
    defineMetric(reg, 'tsgi_serve_requests_total', 'requests the application answered, by status (499: the front or client went away first)',
      'counter', () => this.statuses.samples());
    defineMetric(reg, 'tsgi_serve_request_duration_seconds', 'time from request to the end of the application\'s response',
      'histogram', () => this.latency.samples('tsgi_serve_request_duration_seconds'));
    defineMetric(reg, 'tsgi_serve_in_flight', 'requests the application is running', 'gauge', () => [{ value: this.inFlight }]);
    defineMetric(reg, 'tsgi_serve_connections', 'open front connections', 'gauge', () => [{ value: this.connections }]);
    defineProcessMetrics(reg);
    if (processMetrics) promClient().collectDefaultMetrics({ register: reg });
  }

  /** The servers whose in-flight requests and connections the gauges add up. */
  attach(...servers: ((Gauged & { requestsInFlight?(limit?: number): ServeReport['requests'] }) | null)[]): void {
    for (const s of servers) if (s !== null) this.#servers.push(s);
  }

  /** A request finished: its status (0 if no head went out) and performance.now() at its start. */
  observe(status: number, started: number, request?: { readonly method: string; readonly uri: string }): void {
    const code = status === 0 ? 499 : status;
    const now = performance.now();
    const seconds = (now - started) / 1000;
    this.statuses.add(code);
    this.latency.observe(seconds);
    const epochMs = performance.timeOrigin + now;
    this.#window.record(code, seconds, epochMs);
    if (code >= 500 && request !== undefined) this.#errors.push(code, request.method, request.uri, this.name, seconds * 1000, epochMs);
  }

  /** How this process is named in the recent errors and the process table. */
  name = 'serve';

  /** This process's part of the status page. */
  report(): ServeReport {
    const requests = this.#servers.flatMap((s) => s.requestsInFlight?.(50) ?? []).sort((a, b) => b.ms - a.ms).slice(0, 50);
    return { window: this.#window.export(Date.now()), requests, responses: this.#errors.list(), usage: processUsage(this.name) };
  }

  get inFlight(): number {
    let n = 0;
    for (const s of this.#servers) n += s.inFlight;
    return n;
  }

  get connections(): number {
    let n = 0;
    for (const s of this.#servers) n += s.connections ?? 0;
    return n;
  }
}

/** What the supervisor exposes about its workers. */
export interface SupervisorView {
  readonly generation: number;
  readonly workers: readonly { state: string }[];
  readonly restartsByReason: ReadonlyMap<string, number>;
}

/** The supervisor's own series; merged with its workers' by aggregate(). */
export function supervisorRegistry(view: SupervisorView): Registry {
  const reg = new (promClient().Registry)();
  defineMetric(reg, 'tsgi_serve_workers', 'worker processes by state', 'gauge', () => {
    const counts = new Map<string, number>([['starting', 0], ['ready', 0], ['retiring', 0], ['stopping', 0]]);
    for (const w of view.workers) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
    return [...counts].map(([state, value]): Sample => ({ labels: { state }, value }));
  });
  defineMetric(reg, 'tsgi_serve_generation', 'the current worker generation (a reload adds one)', 'gauge',
    () => [{ value: view.generation }]);
  defineMetric(reg, 'tsgi_serve_worker_restarts_total', 'workers replaced other than by a reload or scaling, by reason',
    'counter', () => [...view.restartsByReason].map(([reason, value]) => ({ labels: { reason }, value })));
  defineProcessMetrics(reg);
  promClient().collectDefaultMetrics({ register: reg });
  return reg;
}
