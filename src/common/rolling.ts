// The last minutes of traffic for the status page: per-second slots of responses by status class
// and latency buckets (a slot index and two increments per response, no allocation), exported as
// 5-second points that processes' reports sum exactly (histogram buckets add up), and summed up
// as steady req/s, the last minute's 5xx share and p50/p95/p99, and sparklines.
import { LATENCY_BUCKETS } from './metrics.js';

/** Seconds kept: the sparklines' span. */
export const SPAN_S = 300;
/** Seconds per exported point. */
export const STEP_S = 5;
const POINTS = SPAN_S / STEP_S;
/** Per slot: responses of classes 1xx..5xx (5), then the latency buckets (+Inf last). */
const CLASSES = 5;
const WIDTH = CLASSES + LATENCY_BUCKETS.length + 1;

/** Exported: `points[i]` covers the seconds [start + i·STEP_S, start + (i+1)·STEP_S); each is WIDTH counts or null (none). */
export interface RollingPoints {
  start: number;
  points: (number[] | null)[];
}

/** What the status page shows of a window. */
export interface RollingSummary {
  /** Responses per second over the last two complete points (10 s). */
  rps: number;
  /** The last minute: responses, by class, the 5xx share (0..1), and latency percentiles in ms (null: no response). */
  minute: { requests: number; classes: Record<string, number>; share5xx: number; p50: number | null; p95: number | null; p99: number | null };
  /** Per point (oldest first), the last SPAN_S seconds: req/s, 5xx per second, and p99 in ms (null: no response). */
  spark: { step: number; rps: number[]; errors: number[]; p99: (number | null)[] };
}

export class RollingStats {
  readonly #counts = new Float64Array(SPAN_S * WIDTH);
  /** The epoch second each slot holds (a slot whose second is stale is empty). */
  readonly #seconds = new Float64Array(SPAN_S).fill(-1);

  /** A response with `status`, `seconds` long, that ended at `nowMs` (epoch ms). */
  record(status: number, seconds: number, nowMs: number): void {
    const sec = Math.floor(nowMs / 1000);
    const slot = sec % SPAN_S;
    const base = slot * WIDTH;
    const counts = this.#counts;
    if (this.#seconds[slot] !== sec) {
      this.#seconds[slot] = sec;
      counts.fill(0, base, base + WIDTH);
    }
    const cls = (status / 100) | 0;
    if (cls >= 1 && cls <= CLASSES) counts[base + cls - 1]!++;
    const b = LATENCY_BUCKETS;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    counts[base + CLASSES + i]!++;
  }

  /** The last SPAN_S seconds up to `nowMs`, as points aligned on multiples of STEP_S (the last one partial). */
  export(nowMs: number): RollingPoints {
    const end = (Math.floor(nowMs / 1000 / STEP_S) + 1) * STEP_S;
    const start = end - SPAN_S;
    const points: (number[] | null)[] = new Array<number[] | null>(POINTS).fill(null);
    for (let slot = 0; slot < SPAN_S; slot++) {
      const sec = this.#seconds[slot]!;
      if (sec < start || sec >= end) continue;
      const p = Math.floor((sec - start) / STEP_S);
      const into = points[p] ??= new Array<number>(WIDTH).fill(0);
      const base = slot * WIDTH;
      for (let k = 0; k < WIDTH; k++) into[k]! += this.#counts[base + k]!;
    }
    return { start, points };
  }
}

/** Sums exported points (several processes, several backends) into one, on the latest alignment. */
export function sumPoints(parts: readonly RollingPoints[]): RollingPoints {
  let start = 0;
  for (const p of parts) start = Math.max(start, p.start);
  const points: (number[] | null)[] = new Array<number[] | null>(POINTS).fill(null);
  for (const part of parts) {
    const shift = (part.start - start) / STEP_S;
    part.points.forEach((src, i) => {
      const j = i + shift;
      if (src === null || j < 0 || j >= POINTS) return;
      const into = points[j] ??= new Array<number>(WIDTH).fill(0);
      for (let k = 0; k < WIDTH; k++) into[k]! += src[k]!;
    });
  }
  return { start, points };
}

/**
 * The latency (ms) under which a `q` share of the bucket counts falls, interpolated within its
 * bucket as Prometheus's histogram_quantile does (the largest bound for the +Inf bucket).
 */
function quantile(buckets: ArrayLike<number>, offset: number, total: number, q: number): number | null {
  if (total === 0) return null;
  const bounds = LATENCY_BUCKETS;
  const rank = q * total;
  let acc = 0;
  for (let i = 0; i < bounds.length; i++) {
    const n = buckets[offset + i]!;
    if (n > 0 && acc + n >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return round((lower + (bounds[i]! - lower) * ((rank - acc) / n)) * 1000);
    }
    acc += n;
  }
  return bounds[bounds.length - 1]! * 1000;
}

function requestsOf(p: number[]): number {
  let n = 0;
  for (let k = 0; k < CLASSES; k++) n += p[k]!;
  return n;
}

/** What the page shows of `w`, as of `nowMs`. */
export function summarize(w: RollingPoints, nowMs: number): RollingSummary {
  // The point holding `now` is partial; the two before it are complete.
  const current = Math.min(POINTS - 1, Math.max(0, Math.floor((nowMs / 1000 - w.start) / STEP_S)));
  let recent = 0;
  for (let i = current - 2; i < current; i++) if (i >= 0 && w.points[i] !== null) recent += requestsOf(w.points[i]!);
  const minute = new Array<number>(WIDTH).fill(0);
  const perMinute = 60 / STEP_S;
  for (let i = Math.max(0, current - perMinute + 1); i <= current; i++) {
    const p = w.points[i];
    if (p !== undefined && p !== null) for (let k = 0; k < WIDTH; k++) minute[k]! += p[k]!;
  }
  const total = requestsOf(minute);
  const spark: RollingSummary['spark'] = { step: STEP_S, rps: [], errors: [], p99: [] };
  for (let i = 0; i < current; i++) {
    const p = w.points[i];
    const n = p === null || p === undefined ? 0 : requestsOf(p);
    spark.rps.push(round(n / STEP_S));
    spark.errors.push(round(p === null || p === undefined ? 0 : p[4]! / STEP_S));
    spark.p99.push(p === null || p === undefined ? null : quantile(p, CLASSES, n, 0.99));
  }
  return {
    rps: round(recent / (2 * STEP_S)),
    minute: {
      requests: total,
      classes: { '1xx': minute[0]!, '2xx': minute[1]!, '3xx': minute[2]!, '4xx': minute[3]!, '5xx': minute[4]! },
      share5xx: total === 0 ? 0 : round(minute[4]! / total, 4),
      p50: quantile(minute, CLASSES, total, 0.5),
      p95: quantile(minute, CLASSES, total, 0.95),
      p99: quantile(minute, CLASSES, total, 0.99),
    },
    spark,
  };
}

type Windowed = { window?: RollingPoints; recent?: RollingSummary };

/**
 * The status as served: each raw window (`window`, summable), its own and its rows' (`backends`
 * of the front, `workers` of serve), replaced by its summary (`recent`).
 */
export function presentStatus<T extends Windowed & { backends?: Windowed[]; workers?: Windowed[] }>(s: T, nowMs = Date.now()): T {
  const present = <R extends Windowed>(row: R): R => {
    const out = { ...row };
    if (out.window !== undefined) out.recent = summarize(out.window, nowMs);
    delete out.window;
    return out;
  };
  const out = present(s);
  if (out.backends !== undefined) out.backends = out.backends.map(present);
  if (out.workers !== undefined) out.workers = out.workers.map(present);
  return out;
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
