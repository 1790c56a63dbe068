// The backends a front routes to: picks the least-loaded ready link for each request, and
// holds requests in a bounded queue for a bounded time while no backend is ready.
import type { Address } from '../common/address.js';
import type { Logger } from '../common/log.js';
import { TsgiError } from '../protocol/errors.js';
import { BackendLink } from './backend-link.js';

export interface Waiter {
  /** Called with a link that can open a stream, or with the error that ended the wait. */
  dispatch(link: BackendLink | null, err?: TsgiError): void;
  /** True once the client went away; the queue skips it. */
  cancelled: boolean;
}

export interface PoolOptions {
  log: Logger;
  queueSize: number;
  queueTimeoutMs: number;
  window?: number;
  maxFrameSize?: number;
}

interface Queued {
  waiter: Waiter;
  deadline: number;
}

export class Pool {
  readonly links: BackendLink[] = [];
  #opts: PoolOptions;
  #queue: Queued[] = [];
  #timer: NodeJS.Timeout | null = null;
  #next = 0;

  constructor(opts: PoolOptions) {
    this.#opts = opts;
  }

  add(address: Address): BackendLink {
    const link = new BackendLink({
      address, log: this.#opts.log, window: this.#opts.window, maxFrameSize: this.#opts.maxFrameSize,
      onReady: () => this.#drainQueue(),
    });
    this.links.push(link);
    link.connect();
    return link;
  }

  /** The ready link with the fewest streams in flight (ties go round-robin), or null. */
  pick(): BackendLink | null {
    const links = this.links;
    const n = links.length;
    let best: BackendLink | null = null;
    const start = this.#next++ % (n || 1);
    for (let i = 0; i < n; i++) {
      const link = links[(start + i) % n]!;
      if (link.canOpen && (best === null || link.load < best.load)) best = link;
    }
    return best;
  }

  /** Hands the waiter a link now, or queues it until one is ready (bounded in size and time). */
  acquire(waiter: Waiter): void {
    const link = this.#queue.length === 0 ? this.pick() : null;
    if (link !== null) {
      waiter.dispatch(link);
      return;
    }
    if (this.#queue.length >= this.#opts.queueSize) {
      waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND',
        `no backend ready and the wait queue is full (${this.#opts.queueSize})`));
      return;
    }
    this.#queue.push({ waiter, deadline: Date.now() + this.#opts.queueTimeoutMs });
    this.#armTimer();
  }

  get queued(): number {
    return this.#queue.length;
  }

  #drainQueue(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      if (head.waiter.cancelled) {
        this.#queue.shift();
        continue;
      }
      const link = this.pick();
      if (link === null) break;
      this.#queue.shift();
      head.waiter.dispatch(link);
    }
    this.#armTimer();
  }

  #armTimer(): void {
    if (this.#timer !== null || this.#queue.length === 0) return;
    const wait = Math.max(0, this.#queue[0]!.deadline - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const now = Date.now();
      while (this.#queue.length > 0 && (this.#queue[0]!.deadline <= now || this.#queue[0]!.waiter.cancelled)) {
        const { waiter } = this.#queue.shift()!;
        if (!waiter.cancelled) {
          waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND',
            `no backend became ready within ${this.#opts.queueTimeoutMs} ms`));
        }
      }
      this.#drainQueue();
    }, wait);
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const { waiter } of this.#queue.splice(0)) {
      if (!waiter.cancelled) waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND', 'front is shutting down'));
    }
    for (const link of this.links) link.stop();
  }
}
