// Bookkeeping of the requests a backend server is running, shared by the tsgi and the uwsgi
// listeners: counts for heartbeats and --max-requests, the oldest request for --timeout logs,
// and a wait for idleness on graceful stop.
import { LinkedSet, type Linked } from '../common/linked-set.js';

/** A request as the tracker sees it; its class also declares the Linked fields (null). */
export interface Tracked {
  readonly method: string;
  readonly uri: string;
  /** performance.now() at the start. */
  readonly started: number;
}

export class RequestTracker<T extends Tracked & Linked<T>> {
  /** Requests running now. */
  inFlight = 0;
  /** Requests finished since start. */
  served = 0;
  /** In the order they started (a LinkedSet, not a Set: one entry in and out per request). */
  readonly #active = new LinkedSet<T>();
  /** Requests ended for running past --timeout (they stay active until their app returns). */
  readonly #expired = new WeakSet<T>();
  #idleWaiters: (() => void)[] = [];
  readonly #onServed: ((served: number) => void) | undefined;

  constructor(onServed?: (served: number) => void) {
    this.#onServed = onServed;
  }

  start(request: T): void {
    this.inFlight++;
    this.#active.add(request);
  }

  /** Marks a request done; a second call for the same request does nothing. */
  finish(request: T): void {
    if (!this.#active.delete(request)) return;
    this.inFlight--;
    this.served++;
    this.#onServed?.(this.served);
    if (this.inFlight === 0 && this.#idleWaiters.length > 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** The requests running now, the longest-running first. */
  running(): Iterable<T> {
    return this.#active;
  }

  /** The longest-running request now (the first started of those running). */
  oldest(): { method: string; uri: string; ms: number } | null {
    const r = this.#active.first();
    return r === null ? null : { method: r.method, uri: r.uri, ms: Math.round(performance.now() - r.started) };
  }

  /** At most `limit` requests running now, the longest-running first (for the status pages). */
  list(limit: number): { method: string; uri: string; ms: number }[] {
    const now = performance.now();
    const out: { method: string; uri: string; ms: number }[] = [];
    for (const r of this.#active) {
      if (out.length >= limit) break;
      out.push({ method: r.method, uri: r.uri, ms: Math.round(now - r.started) });
    }
    return out;
  }

  /** The requests running for `ms` or longer that were not returned before, oldest first. */
  overdue(ms: number): T[] {
    const now = performance.now();
    const out: T[] = [];
    for (const r of this.#active) {
      if (now - r.started < ms) break; // started in order: the rest are younger
      if (this.#expired.has(r)) continue;
      this.#expired.add(r);
      out.push(r);
    }
    return out;
  }

  /** Resolves when nothing runs, or after `timeoutMs`; true if idle. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
    ]);
    clearTimeout(timer);
    return this.inFlight === 0;
  }
}
