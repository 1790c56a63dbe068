// Metrics that cost a few array increments per request: plain counters and a fixed-bucket
// histogram updated on the hot path, turned into Prometheus series only when scraped, through
// metric objects a prom-client Registry (and AggregatorRegistry.aggregate) accepts as its own.
import type { Metric, Registry } from 'prom-client';
import { acceptErrors } from './accept-guard.js';
import { onFirstUse } from './load-on-use.js';
import { logWriteErrors } from './log.js';

/**
 * prom-client, loaded on first use (--admin), not at start: merely loading it (it pulls in
 * https, zlib, cluster and perf_hooks) was measured to cost the front several µs of CPU per
 * request with no --admin at all.
 */
export const promClient = onFirstUse<typeof import('prom-client')>('prom-client');

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One series value; `metricName` for a histogram's _bucket / _sum / _count lines. */
export interface Sample {
  labels?: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * Registers a metric whose values `collect` computes at scrape time. Workers' values are summed
 * when a supervisor aggregates them (AggregatorRegistry's 'sum').
 */
export function defineMetric(registry: Registry, name: string, help: string, type: MetricType,
  collect: () => Sample[]): void {
  const metric = {
    name, help, type, aggregator: 'sum',
    get: async () => {
      const values = collect();
      for (const v of values) v.labels ??= {}; // aggregate() hashes every value's labels
      return { name, help, type, aggregator: 'sum', values };
    },
    reset() {},
  };
  registry.registerMetric(metric as unknown as Metric);
}

/** Series every tsgi process has: its failed log writes and its refused or failed accepts. */
export function defineProcessMetrics(registry: Registry): void {
  defineMetric(registry, 'tsgi_log_write_errors_total', 'log lines dropped because writing them to stderr failed (EPIPE, ENOSPC)',
    'counter', () => [{ value: logWriteErrors() }]);
  defineMetric(registry, 'tsgi_accept_errors_total',
    'connections refused at accept for want of file descriptors (EMFILE), or accept() failures, by code', 'counter',
    () => [...acceptErrors].map(([code, value]) => ({ labels: { code }, value })));
}

/** Latency buckets in seconds: 0.5 ms to 30 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** A histogram of seconds with fixed buckets: observe() is a short scan and two additions. */
export class Histogram {
  readonly bounds: readonly number[];
  /** Non-cumulative counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[] = LATENCY_BUCKETS) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }

  /** The Prometheus series: cumulative buckets, then sum and count. */
  samples(name: string): Sample[] {
    const out: Sample[] = [];
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i]!;
      out.push({ metricName: `${name}_bucket`, labels: { le: this.bounds[i]! }, value: acc });
    }
    out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: this.count });
    out.push({ metricName: `${name}_sum`, value: this.sum });
    out.push({ metricName: `${name}_count`, value: this.count });
    return out;
  }
}

/** Counts by HTTP status (100-999; anything else under 0), for a `{status}` label. */
export class StatusCounts {
  readonly counts = new Float64Array(1000);
  total = 0;

  add(status: number): void {
    this.counts[status > 99 && status < 1000 ? status : 0]!++;
    this.total++;
  }

  samples(): Sample[] {
    const out: Sample[] = [];
    for (let s = 0; s < 1000; s++) {
      const n = this.counts[s]!;
      if (n > 0) out.push({ labels: { status: s }, value: n });
    }
    return out;
  }

  /** { "200": n, … } for /status. */
  toJSON(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let s = 0; s < 1000; s++) if (this.counts[s]! > 0) out[s] = this.counts[s]!;
    return out;
  }
}

/**
 * A log message with the query string of every request target in it cut to `?…`: /status and the
 * status page show the recent errors to whoever can reach the admin server, and queries carry
 * tokens. (The log itself keeps them.)
 */
export function withoutQueries(message: string): string {
  return message.replace(/(?<=\S)\?\S+?(?=[:;,]?(?:\s|$))/g, '?…');
}

/** The last `size` warnings and errors (their queries cut), for /status and the status page. */
export class RecentErrors {
  readonly #items: { time: string; level: string; message: string }[] = [];
  readonly #size: number;

  constructor(size = 50) {
    this.#size = size;
  }

  push(level: string, message: string): void {
    if (this.#items.length >= this.#size) this.#items.shift();
    this.#items.push({ time: new Date().toISOString(), level, message: withoutQueries(message) });
  }

  /** Newest first. */
  list(): { time: string; level: string; message: string }[] {
    return this.#items.slice().reverse();
  }
}
