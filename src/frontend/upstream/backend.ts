// One backend address as the front sees it: the set of links to it (as many as the backend
// asks for in HELLO, one per worker; one uwsgi link for a uwsgi: address), its state in the
// pool, and its counters.
// reconcile() keeps the links at the target, with backoff while the address keeps failing (a
// link that goes away soon after its handshake counts as a failure); grow() opens a few more
// when every stream of the wanted ones is taken, and idle ones beyond the target close again.
import { type Address, formatAddress } from '../../common/address.js';
import { BackendLink } from './tsgi-link.js';
import type { Link, LinkOptions, LinkOwner } from './link.js';
import { UwsgiLink } from './uwsgi-link.js';

/** active: routed to; draining: finishing in-flight requests, then removed; removed: gone. */
export type BackendState = 'active' | 'draining' | 'removed';

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;
const MAX_LINKS = 64;
/** Links opened beyond what the backend asks for, when every stream of its links is taken. */
export const MAX_EXTRA_LINKS = 8;
/** A link up this long proved the address healthy: the backoff starts over. */
const STABLE_MS = 1000;
/**
 * After a failed TLS handshake, the next attempt: certificates do not fix themselves within a
 * backoff, so the address stays down this long, or until the front reloads its own (SIGHUP).
 */
const TLS_RETRY_MS = 30_000;
/** A link beyond the wanted count that carried no request for this long is closed. */
const EXTRA_IDLE_MS = 30_000;

/** What every link to the address is made with (less its owner and name), and the pool's hooks. */
export interface BackendOptions extends Omit<LinkOptions, 'owner' | 'name'> {
  /** Any link of this backend may take new streams now. */
  onReady(backend: Backend): void;
  /** A draining backend finished its last request and closed. */
  onGone(backend: Backend): void;
}

export class Backend implements LinkOwner {
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
  /** The last error that ended a connection attempt (for the log line of a refused request). */
  #lastError: string | null = null;
  /** The first failed connection attempt of a run of failures was logged. */
  #unreachableLogged = false;
  /** A link became ready again during this run of failures (logged once). */
  #backLogged = false;
  #everReady = false;
  /** When each link became ready. */
  #readyAt = new WeakMap<Link, number>();
  /** Links whose end (GOAWAY or close) was already counted for the backoff. */
  #ended = new WeakSet<Link>();
  #stableTimer: NodeJS.Timeout | null = null;
  /** Closes idle links beyond the wanted count; runs only while there are some. */
  #idleTimer: NodeJS.Timeout | null = null;
  /** Each link's request count at the last idle sweep. */
  #seen = new WeakMap<Link, number>();
  /** Requests on each link that were refused or lost before a response head. */
  #unanswered = new WeakMap<Link, number>();
  /** The links reached the cap and that was logged (again after the next idle sweep). */
  #capLogged = false;
  /** The last TLS handshake failure logged (each new reason is logged once). */
  #tlsLogged: string | null = null;
  /** The address is down because its TLS handshake failed: SIGHUP's reload retries it at once. */
  #tlsDown = false;

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

  /** Links connecting or ready (not draining, not closed). */
  get #live(): number {
    let n = 0;
    for (const l of this.links) if (l.state === 'connecting' || l.state === 'ready') n++;
    return n;
  }

  /** Opens links until there are as many live ones as the backend wants. */
  reconcile(): void {
    if (this.state !== 'active' || this.#retryTimer !== null) return;
    const live = this.#live;
    if (this.#connectFailures > 0) {
      // While the address fails, probe with one connection at a time; the rest follow when
      // a probe gets through (its onReady reconciles again).
      if (live < this.#want && !this.links.some((l) => l.state === 'connecting')) this.#open();
      return;
    }
    for (let i = live; i < this.#want; i++) this.#open();
  }

  /**
   * Every stream of this backend's links is taken: opens one more link, up to MAX_EXTRA_LINKS
   * beyond what the backend asked for, so that slow clients holding streams do not starve the
   * others (the backend's --max-streams applies per connection). True if one was opened.
   */
  grow(): boolean {
    if (this.state !== 'active' || this.#retryTimer !== null || this.#connectFailures > 0) return false;
    let live = 0;
    for (const l of this.links) {
      if (l.state === 'connecting' || l.canOpen) return false; // one is coming, or has room
      if (l.state === 'ready') live++;
    }
    if (live === 0) return false;
    if (live >= this.#want + MAX_EXTRA_LINKS) {
      if (!this.#capLogged) {
        // Once per sweep of idle links at most: the refusals that may follow log each request.
        this.#capLogged = true;
        this.#opts.log.warn(`${this.shortage()} (${MAX_EXTRA_LINKS} beyond the ${this.#want} it asks for); `
          + 'requests wait in the queue (--queue-size, --queue-timeout)');
      }
      return false;
    }
    this.#opts.log.info(`backend ${this.name}: every stream of its ${live} connection${live === 1 ? '' : 's'} in use; opening one more`);
    this.#open();
    if (this.#idleTimer === null) {
      this.#idleTimer = setInterval(() => this.#closeIdle(), EXTRA_IDLE_MS);
      this.#idleTimer.unref();
    }
    return true;
  }

  /** Drains links beyond the wanted count that carried no request since the last sweep. */
  #closeIdle(): void {
    this.#capLogged = false;
    let surplus = this.#live - this.#want;
    for (const link of this.links) {
      const before = this.#seen.get(link);
      this.#seen.set(link, link.requests);
      if (surplus > 0 && link.state === 'ready' && link.load === 0 && before === link.requests) {
        this.#opts.log.info(`backend ${this.name}: closing a connection idle for ${EXTRA_IDLE_MS / 1000} s beyond the ${this.#want} it asks for`);
        link.drain();
        surplus--;
      }
    }
    if (this.#live <= this.#want && this.#idleTimer !== null) {
      clearInterval(this.#idleTimer);
      this.#idleTimer = null;
    }
  }

  /** A request on `link` was refused or lost before its response head: it was not served. */
  unanswered(link: Link): void {
    this.#unanswered.set(link, (this.#unanswered.get(link) ?? 0) + 1);
  }

  /** Why no stream can be opened on this backend now (for a refused or waiting request). */
  shortage(): string {
    if (this.state !== 'active') return `${this.name} is ${this.state}`;
    let ready = 0;
    for (const l of this.links) {
      if (l.canOpen) return `${this.name} has room`;
      if (l.state === 'ready') ready++;
    }
    if (ready > 0) {
      return `streams of ${this.name} exhausted: ${this.inFlight} in use on ${ready} connection${ready === 1 ? '' : 's'}`;
    }
    return `no connection to ${this.name} is ready (${this.status}${this.#lastError ? `: ${this.#lastError}` : ''})`;
  }

  /**
   * A link went away (GOAWAY or close; counted once per link). One that stayed up STABLE_MS,
   * or served a request (one not refused or lost before its head), resets the backoff and is
   * replaced at once; any other (one that never got ready, or went away at once) is a failure:
   * the next connection waits for the backoff, which doubles with each failure.
   */
  #linkEnded(link: Link, established: boolean, error: string | null): void {
    if (this.#ended.has(link)) return;
    this.#ended.add(link);
    if (this.state !== 'active') return;
    const o = this.#opts;
    const readyAt = this.#readyAt.get(link);
    const served = link.requests > (this.#unanswered.get(link) ?? 0);
    if (established && readyAt !== undefined && (served || Date.now() - readyAt >= STABLE_MS)) {
      this.#connectFailures = 0;
      this.#lastError = null;
      this.#unreachableLogged = false;
      this.#backLogged = false;
      if (error !== null) o.log.warn(`connection to backend ${this.name} lost (${error})`);
      this.reconcile();
      return;
    }
    if (error !== null) this.#lastError = error;
    const failures = ++this.#connectFailures;
    const delay = Math.min(MIN_BACKOFF_MS * 2 ** (failures - 1), MAX_BACKOFF_MS);
    if (established) {
      // Logged while the delay grows, then quiet: an address that flaps must not flood the log.
      const previous = failures === 1 ? 0 : Math.min(MIN_BACKOFF_MS * 2 ** (failures - 2), MAX_BACKOFF_MS);
      if (delay !== previous) {
        o.log.warn(`backend ${this.name}: a connection ended ${error ?? 'by GOAWAY'} less than ${STABLE_MS / 1000} s `
          + `after its handshake, having served no request (failure ${failures}); next connection in ${delay / 1000} s (backoff)`);
      }
    } else if (!this.#unreachableLogged) {
      this.#unreachableLogged = true;
      if (this.#everReady) o.log.warn(`backend ${this.name} unreachable (${error ?? 'closed'}); retrying`);
      else o.log.info(`waiting for backend ${this.name} (${error ?? 'closed'})`);
    }
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.reconcile(); }, delay);
    this.#retryTimer.unref();
  }

  /**
   * A TLS handshake failed: the address is down, and not retried in a loop. The reason is logged
   * (once per reason) with the flags that fix it; the next attempt comes after TLS_RETRY_MS, or
   * at once when the front reloads its certificates (retryTls).
   */
  #tlsFailed(link: Link, error: string): void {
    this.#ended.add(link);
    this.#connectFailures++;
    this.#lastError = error;
    this.#tlsDown = true;
    if (this.#tlsLogged !== error) {
      this.#tlsLogged = error;
      this.#opts.log.warn(`backend ${this.name}: ${error}; marked down, next attempt in ${TLS_RETRY_MS / 1000} s or on SIGHUP `
        + '(check --backend-tls-ca, --backend-tls-cert, --backend-tls-key and --backend-tls-servername here, '
        + 'and --tls-cert, --tls-key and --tls-ca on the backend)');
    }
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.reconcile(); }, TLS_RETRY_MS);
    this.#retryTimer.unref();
  }

  /** The front reloaded its certificates: an address down for a failed handshake is tried again now. */
  retryTls(): void {
    if (!this.#tlsDown || this.state !== 'active') return;
    this.#tlsDown = false;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.reconcile();
  }

  /** After a failure, the address counts as healthy again once a link stayed up STABLE_MS. */
  #checkStable(): void {
    this.#stableTimer = null;
    if (this.#connectFailures === 0 || this.state !== 'active') return;
    const now = Date.now();
    let pending = false;
    for (const link of this.links) {
      if (link.state !== 'ready') continue;
      if (now - (this.#readyAt.get(link) ?? now) >= STABLE_MS) {
        this.#connectFailures = 0;
        this.#lastError = null;
        this.#unreachableLogged = false;
        this.#backLogged = false;
        this.reconcile();
        return;
      }
      pending = true;
    }
    if (pending) this.#armStable();
  }

  #armStable(): void {
    if (this.#stableTimer !== null) return;
    this.#stableTimer = setTimeout(() => this.#checkStable(), STABLE_MS);
    this.#stableTimer.unref();
  }

  #open(): void {
    const o = this.#opts;
    const linkOptions: LinkOptions = {
      owner: this, address: this.address, name: this.name, log: o.log, window: o.window, maxFrameSize: o.maxFrameSize,
      pingIntervalMs: o.pingIntervalMs, pingTimeoutMs: o.pingTimeoutMs,
      maxResponseHeaderSize: o.maxResponseHeaderSize, tls: o.tls, tlsServername: o.tlsServername,
    };
    const Kind = this.address.protocol === 'uwsgi' ? UwsgiLink : BackendLink;
    const link = new Kind(linkOptions, {
      onReady: (l) => {
        if (!this.#everReady) o.log.info(`backend ${this.name} is ready (${l.conn.peerSoftware})`);
        else if (this.#connectFailures > 0 && !this.#backLogged) {
          this.#backLogged = true;
          o.log.info(`backend ${this.name} is back`);
        }
        this.#everReady = true;
        this.#tlsDown = false;
        this.#tlsLogged = null;
        this.#readyAt.set(l, Date.now());
        // The backoff starts over only once a link has stayed up (#checkStable).
        if (this.#connectFailures > 0) this.#armStable();
        this.#want = Math.max(1, Math.min(MAX_LINKS, l.conn.peerConnections || 1));
        if (this.state !== 'active') l.drain();
        this.reconcile();
        o.onReady(this);
      },
      onGoAway: (l, message) => {
        o.log.info(`backend ${this.name}: a connection is going away${message ? ` (${message})` : ''}; draining it`);
        // Replaced at once if it had stayed up (the backend's supervisor routes the new one to a
        // live worker); after the backoff if it went away right after its handshake.
        this.#linkEnded(l, this.#readyAt.has(l), null);
      },
      onClose: (l, established, error, tlsFailed) => {
        const i = this.links.indexOf(l);
        if (i !== -1) this.links.splice(i, 1);
        if (this.state !== 'active') {
          if (this.links.length === 0) this.#gone();
          return;
        }
        if (tlsFailed === true && !this.#ended.has(l)) this.#tlsFailed(l, error ?? 'TLS handshake failed');
        else if (this.#ended.has(l)) this.reconcile(); // counted at its GOAWAY
        else this.#linkEnded(l, established, error);
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
    if (this.#stableTimer !== null) clearTimeout(this.#stableTimer);
    this.#stableTimer = null;
    if (this.#idleTimer !== null) clearInterval(this.#idleTimer);
    this.#idleTimer = null;
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
