// One backend address as the front sees it: the set of links to it (as many as the backend
// asks for in HELLO, one per worker; one uwsgi link for a uwsgi: address), its state in the
// pool, and its counters.
// reconcile() keeps the links at the target, with backoff while the address keeps failing.
import { type Address, formatAddress } from '../common/address.js';
import type { Logger } from '../common/log.js';
import { BackendLink } from './backend-link.js';
import type { Link, LinkOptions } from './link.js';
import { UwsgiLink } from './uwsgi-link.js';

/** active: routed to; draining: finishing in-flight requests, then removed; removed: gone. */
export type BackendState = 'active' | 'draining' | 'removed';

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;
const MAX_LINKS = 64;

export interface BackendOptions {
  address: Address;
  log: Logger;
  window?: number;
  maxFrameSize?: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Any link of this backend may take new streams now. */
  onReady(backend: Backend): void;
  /** A draining backend finished its last request and closed. */
  onGone(backend: Backend): void;
}

export class Backend {
  readonly address: Address;
  readonly name: string;
  state: BackendState = 'active';
  readonly links: Link[] = [];
  /** Requests sent, and requests that failed because of this backend (lost, reset, timed out). */
  requests = 0;
  failures = 0;
  /** Where it came from: the command line / config file, or a registration. */
  readonly source: string;
  #opts: BackendOptions;
  #want = 1;
  #connectFailures = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #everReady = false;

  constructor(opts: BackendOptions, source: string) {
    this.#opts = opts;
    this.address = opts.address;
    this.name = formatAddress(opts.address);
    this.source = source;
  }

  /** Requests in flight on all links. */
  get inFlight(): number {
    let n = 0;
    for (const link of this.links) n += link.load;
    return n;
  }

  get ready(): boolean {
    return this.state === 'active' && this.links.some((l) => l.canOpen);
  }

  /** Status: up (a link is ready), connecting, down (unreachable), draining. */
  get status(): string {
    if (this.state !== 'active') return this.state;
    if (this.links.some((l) => l.state === 'ready')) return 'up';
    return this.#connectFailures > 0 ? 'down' : 'connecting';
  }

  /** Opens links until there are as many live ones as the backend wants. */
  reconcile(): void {
    if (this.state !== 'active' || this.#retryTimer !== null) return;
    const live = this.links.filter((l) => l.state === 'connecting' || l.state === 'ready').length;
    if (this.#connectFailures > 0) {
      // While the address fails, probe with one connection at a time; the rest follow when
      // a probe gets through (its onReady reconciles again).
      if (live < this.#want && !this.links.some((l) => l.state === 'connecting')) this.#open();
      return;
    }
    for (let i = live; i < this.#want; i++) this.#open();
  }

  #open(): void {
    const o = this.#opts;
    const linkOptions: LinkOptions = {
      owner: this, address: this.address, name: this.name, log: o.log, window: o.window, maxFrameSize: o.maxFrameSize,
      pingIntervalMs: o.pingIntervalMs, pingTimeoutMs: o.pingTimeoutMs,
    };
    const Kind = this.address.protocol === 'uwsgi' ? UwsgiLink : BackendLink;
    const link = new Kind(linkOptions, {
      onReady: (l) => {
        if (this.#connectFailures > 0 && this.#everReady) o.log.info(`backend ${this.name} is back`);
        else if (!this.#everReady) o.log.info(`backend ${this.name} is ready (${l.conn.peerSoftware})`);
        this.#everReady = true;
        this.#connectFailures = 0;
        this.#want = Math.max(1, Math.min(MAX_LINKS, l.conn.peerConnections || 1));
        if (this.state !== 'active') l.drain();
        this.reconcile();
        o.onReady(this);
      },
      onGoAway: (l, message) => {
        o.log.info(`backend ${this.name}: a connection is going away${message ? ` (${message})` : ''}; draining it`);
        // Replace it at once: the backend's supervisor routes the new one to a live worker.
        this.reconcile();
        void l;
      },
      onClose: (l, established, error) => {
        const i = this.links.indexOf(l);
        if (i !== -1) this.links.splice(i, 1);
        if (this.state !== 'active') {
          if (this.links.length === 0) this.#gone();
          return;
        }
        if (!established) {
          if (this.#connectFailures++ === 0) {
            if (this.#everReady) o.log.warn(`backend ${this.name} unreachable (${error ?? 'closed'}); retrying`);
            else o.log.info(`waiting for backend ${this.name} (${error ?? 'closed'})`);
          }
          const delay = Math.min(MIN_BACKOFF_MS * 2 ** (this.#connectFailures - 1), MAX_BACKOFF_MS);
          this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.reconcile(); }, delay);
          this.#retryTimer.unref();
        } else {
          if (error !== null) o.log.warn(`connection to backend ${this.name} lost (${error})`);
          this.reconcile();
        }
      },
    });
    this.links.push(link);
  }

  /** The ready link with the fewest streams, or null. */
  pick(): Link | null {
    let best: Link | null = null;
    for (const link of this.links) {
      if (link.canOpen && (best === null || link.load < best.load)) best = link;
    }
    return best;
  }

  /** Graceful: no new requests; links close as their requests finish; then it is gone. */
  drain(): void {
    if (this.state !== 'active') return;
    this.state = 'draining';
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.links.length === 0) this.#gone();
    for (const link of [...this.links]) {
      if (link.state === 'connecting') link.close();
      else link.drain();
    }
  }

  /** Now: cut every link (requests in flight on them fail with 502). */
  remove(): void {
    this.drain();
    for (const link of [...this.links]) link.close();
  }

  /** Back to active (a registration of an address that was draining). */
  activate(): void {
    if (this.state !== 'draining') return;
    this.state = 'active';
    this.reconcile();
  }

  #gone(): void {
    if (this.state === 'removed') return;
    this.state = 'removed';
    this.#opts.onGone(this);
  }
}
