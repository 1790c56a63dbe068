// What a parent process needs to serve /metrics for its children (`tsgi serve --workers N`'s
// supervisor, `tsgi front --processes N`'s primary): keeping each child's last snapshot, and
// summing them with prom-client's AggregatorRegistry so that the counters of children that
// exited stay in the sums (a counter never goes down). Asking them is children.ts's ask().
import type { Registry } from 'prom-client';
import { promClient } from './metrics.js';

/** The counters and histograms of a child's snapshot: what still counts after it exited. */
export function cumulativeOnly(snapshot: object[]): object[] {
  return snapshot.filter((m) => {
    const type = (m as { type?: string }).type;
    return type === 'counter' || type === 'histogram';
  });
}

/** Sums snapshots into one (kept for exited children, so that the list stays short). */
export function mergeSnapshots(snapshots: object[][]): object[] {
  return promClient().AggregatorRegistry.aggregate(snapshots).getMetricsAsArray().map((m) => {
    const { name, help, type, values, aggregator } = m as unknown as Record<string, unknown>;
    return { name, help, type, values, aggregator };
  });
}

/** Sums the children's series (from register.getMetricsAsJSON()) with the parent's own. */
export async function aggregate(own: Registry, children: object[][]): Promise<{ contentType: string; body: string }> {
  const merged = promClient().AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...children]);
  return { contentType: merged.contentType, body: await merged.metrics() };
}

/**
 * Each child's latest metrics snapshot, and the cumulative series of those that exited. A child
 * is keyed by a number of the parent's choosing (its worker id).
 */
export class ChildSnapshots {
  readonly #last = new Map<number, object[]>();
  #gone: object[][] = [];

  /** A child sent a snapshot (asked for, or of its own accord). */
  update(id: number, snapshot: object[]): void {
    this.#last.set(id, snapshot);
  }

  last(id: number): object[] | null {
    return this.#last.get(id) ?? null;
  }

  /**
   * The child's IPC channel closed: no message of its can still arrive, so its last snapshot is
   * final; its counters and histograms stay in every later sum.
   */
  closed(id: number): void {
    const last = this.#last.get(id);
    if (last === undefined) return;
    this.#last.delete(id);
    this.#gone.push(cumulativeOnly(last));
    if (this.#gone.length > 8) this.#gone = [mergeSnapshots(this.#gone)];
  }

  /**
   * Every snapshot to sum: the exited children's, those of children that exited (`exited(id)`)
   * but whose channel has not closed yet (cumulative series only), and the live ones' answers
   * (`live`, keyed by id; a null answer: that child's last snapshot, if any).
   */
  all(live: Map<number, object[] | null>, exited: (id: number) => boolean): object[][] {
    const out = [...this.#gone];
    for (const [id, m] of this.#last) if (!live.has(id) && exited(id)) out.push(cumulativeOnly(m));
    for (const [id, m] of live) {
      const snapshot = m ?? this.#last.get(id);
      if (snapshot !== undefined) out.push(snapshot);
    }
    return out;
  }
}
