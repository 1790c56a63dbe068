// The backends a front routes to. Each request goes to the least-loaded ready link (power of
// two choices over the backends, then the least-loaded link within); while no backend is
// ready, requests wait in a bounded queue for a bounded time, then get 503. When every stream
// of a backend's links is taken, the backend first opens a few more links (Backend.grow). Above
// maxInFlight, new requests are shed at once (503 + Retry-After) instead of queued.
// Backends join and leave at run time (control socket, config reload) without a restart.
import assert from 'node:assert/strict';
import { type Address, formatAddress } from '../../common/address.js';
import type { Logger } from '../../common/log.js';
import { defaultOf } from '../../common/options.js';
import type { TlsContext } from '../../common/tls.js';
import { ConfigError, TsgiError } from '../../protocol/errors.js';
import { Backend } from './backend.js';
import { checkDnsServers, DnsDiscovery } from './discovery.js';
import type { Link } from './link.js';

export interface Waiter {
  /** Called with a link that can open a stream, or with the error that ended the wait. */
  dispatch(link: Link | null, err?: TsgiError): void;
  /** True once the client went away; the queue skips it. */
  cancelled: boolean;
}

export interface PoolOptions {
  log: Logger;
  queueSize: number;
  queueTimeoutMs: number;
  /** Requests admitted at once (in flight to a backend or waiting for one); 0 for no limit. */
  maxInFlight?: number;
  window?: number;
  maxFrameSize?: number;
  maxResponseHeaderSize?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** --backend-tls-*: what links to tls: backends connect with (null: such backends are refused). */
  tls?: TlsContext | null;
  /** --backend-tls-servername. */
  tlsServername?: string;
  /** --dns-interval (ms) and --dns-server, for dns: and srv: backends. */
  dnsIntervalMs?: number;
  dnsServers?: string[];
}

interface Queued {
  waiter: Waiter;
  deadline: number;
}

export class Pool {
  readonly backends: Backend[] = [];
  /** The dns: and srv: names resolved for backends, by name; their addresses are in `backends`. */
  readonly discoveries = new Map<string, DnsDiscovery>();
  #opts: PoolOptions;
  #queue: Queued[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #maxInFlight: number;
  /** Requests admitted and not yet done: at a backend, or waiting in the queue for one. */
  inFlight = 0;
  /** Requests shed since start because inFlight was at maxInFlight. */
  shed = 0;
  /**
   * Addresses `tsgi ctl drain` drained, with the registration id their backend had then (null:
   * none): its announcements do not route to them again; `tsgi ctl add` or a new registration does.
   */
  readonly held = new Map<string, string | null>();
  /** The latest registration id each self-registering backend announced. */
  readonly registrations = new Map<string, string>();

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    this.#maxInFlight = opts.maxInFlight ?? 0;
    checkDnsServers(opts.dnsServers ?? []);
  }

  /**
   * Admits a new request, or refuses it (TSGI_ERR_OVERLOADED, a 503 with Retry-After) when
   * maxInFlight are already admitted: load beyond what the backends can take is shed at once,
   * not queued until it times out. Every admitted request calls leave() once when it is done.
   */
  admit(): TsgiError | null {
    if (this.#maxInFlight > 0 && this.inFlight >= this.#maxInFlight) {
      this.shed++;
      return new TsgiError('TSGI_ERR_OVERLOADED', `over --max-in-flight ${this.#maxInFlight}: request shed`);
    }
    this.inFlight++;
    return null;
  }

  /** An admitted request is done (answered, failed or cancelled). */
  leave(): void {
    assert(this.inFlight > 0, 'a request left the pool without being admitted');
    this.inFlight--;
  }

  find(address: Address): Backend | undefined {
    const name = formatAddress(address);
    return this.backends.find((b) => b.name === name && b.state !== 'removed');
  }

  /**
   * Adds a backend (or re-activates a draining one with that address). A dns: or srv: address
   * starts resolving that name instead: each address it finds is added with the name as source.
   */
  add(address: Address, source = 'config'): { readonly name: string } {
    if (address.kind === 'tcp' && address.discover !== undefined) return this.#discover(address);
    return this.#add(address, source);
  }

  #discover(address: Address & { kind: 'tcp' }): DnsDiscovery {
    const name = formatAddress(address);
    const existing = this.discoveries.get(name);
    if (existing !== undefined) return existing;
    if (address.tls === true && (this.#opts.tls ?? null) === null) {
      throw new ConfigError(`backend ${name}: a tls: backend needs --backend-tls-ca, --backend-tls-cert and --backend-tls-key`);
    }
    const o = this.#opts;
    const discovery = new DnsDiscovery(address, {
      add: (a, source) => { this.#add(a, source); },
      drain: (a) => this.find(a)?.drain(),
    }, { log: o.log, intervalMs: o.dnsIntervalMs ?? defaultOf('dnsInterval') * 1000, servers: o.dnsServers ?? [] });
    this.discoveries.set(name, discovery);
    o.log.info(`backend ${name} added: resolving it every ${(o.dnsIntervalMs ?? defaultOf('dnsInterval') * 1000) / 1000} s at most`
      + `${o.dnsServers !== undefined && o.dnsServers.length > 0 ? ` with ${o.dnsServers.join(', ')}` : ''}`);
    if (!this.#stopped) discovery.start();
    return discovery;
  }

  /** Stops resolving a dns: or srv: name; its addresses are drained. */
  forget(name: string): void {
    const discovery = this.discoveries.get(name);
    if (discovery === undefined) return;
    this.discoveries.delete(name);
    discovery.stop();
  }

  #add(address: Address, source: string): Backend {
    const existing = this.find(address);
    if (existing !== undefined) {
      existing.activate();
      return existing;
    }
    const o = this.#opts;
    if (address.kind === 'tcp' && address.tls === true && (o.tls ?? null) === null) {
      throw new ConfigError(`backend ${formatAddress(address)}: a tls: backend needs --backend-tls-ca, --backend-tls-cert and --backend-tls-key`);
    }
    const backend = new Backend({
      address, log: o.log, window: o.window, maxFrameSize: o.maxFrameSize,
      pingIntervalMs: o.pingIntervalMs ?? defaultOf('pingInterval') * 1000, pingTimeoutMs: o.pingTimeoutMs ?? defaultOf('pingTimeout') * 1000,
      maxResponseHeaderSize: o.maxResponseHeaderSize, tls: o.tls, tlsServername: o.tlsServername,
      onReady: () => this.#drainQueue(),
      onGone: (b) => {
        const i = this.backends.indexOf(b);
        if (i !== -1) this.backends.splice(i, 1);
        o.log.info(`backend ${b.name} drained and removed`);
      },
    }, source);
    this.backends.push(backend);
    if (!this.#stopped) backend.reconcile();
    o.log.info(`backend ${backend.name} added (${source})`);
    return backend;
  }

  /** SIGHUP: the front's certificates are read again; backends down for a failed handshake are retried. */
  reloadTls(): void {
    const tls = this.#opts.tls ?? null;
    if (tls === null) return;
    if (tls.reload(this.#opts.log)) for (const backend of this.backends) backend.retryTls();
  }

  /** Number of active backends: bounds how often a refused request is retried. */
  get size(): number {
    let n = 0;
    for (const b of this.backends) if (b.state === 'active') n++;
    return n;
  }

  /** The least-loaded ready link: power of two random choices among ready backends. */
  pick(): Link | null {
    const backends = this.backends;
    const n = backends.length;
    if (n === 1) return backends[0]!.state === 'active' ? backends[0]!.pick() : null;
    let a: Link | null = null;
    let b: Link | null = null;
    if (n > 1) {
      const i = Math.floor(Math.random() * n);
      let j = Math.floor(Math.random() * (n - 1));
      if (j >= i) j++;
      a = backends[i]!.state === 'active' ? backends[i]!.pick() : null;
      b = backends[j]!.state === 'active' ? backends[j]!.pick() : null;
      if (a !== null && b !== null) return a.load <= b.load ? a : b;
      if (a !== null || b !== null) return a ?? b;
    }
    // Both choices were not ready: scan for any ready one.
    let best: Link | null = null;
    for (const backend of backends) {
      if (backend.state !== 'active') continue;
      const link = backend.pick();
      if (link !== null && (best === null || link.load < best.load)) best = link;
    }
    return best;
  }

  /**
   * The least-loaded ready link that can carry an upgraded connection (open tunnels count in a
   * link's load), or null when no ready backend can: an upgrade request then goes as a plain one.
   */
  pickTunnel(): Link | null {
    let best: Link | null = null;
    for (const backend of this.backends) {
      if (backend.state !== 'active') continue;
      for (const link of backend.links) {
        if (link.canOpen && link.tunnels && (best === null || link.load < best.load)) best = link;
      }
    }
    return best;
  }

  /** Hands the waiter a link now, or queues it until one is ready (bounded in size and time). */
  acquire(waiter: Waiter): void {
    const link = this.queued === 0 ? this.pick() : null;
    if (link !== null) {
      waiter.dispatch(link);
      return;
    }
    if (this.#stopped) {
      waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND', 'front is shutting down'));
      return;
    }
    // Backends whose every stream is taken open another link; the request waits for it.
    for (const backend of this.backends) backend.grow();
    if (this.queued >= this.#opts.queueSize) {
      waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND',
        `${this.shortage()}; the wait queue is full (--queue-size ${this.#opts.queueSize})`));
      return;
    }
    this.#queue.push({ waiter, deadline: Date.now() + this.#opts.queueTimeoutMs });
    this.#armTimer();
  }

  /** What ran out, for the log line of a request that waits or is refused. */
  shortage(): string {
    const active = this.backends.filter((b) => b.state === 'active');
    if (active.length === 0) {
      if (this.discoveries.size > 0) return `no address found in DNS yet for ${[...this.discoveries.keys()].join(', ')}`;
      return 'no backend configured';
    }
    return active.map((b) => b.shortage()).join('; ');
  }

  /** A stream finished on the link: a draining link may close, and a waiter may go. */
  release(link: Link): void {
    link.release();
    if (this.queued > 0) this.#drainQueue();
  }

  /** Requests waiting for a backend. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  #shift(): Queued | undefined {
    const item = this.#queue[this.#head];
    if (item === undefined) return undefined;
    this.#queue[this.#head++] = undefined as unknown as Queued;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  #drainQueue(): void {
    while (this.queued > 0) {
      const head = this.#queue[this.#head]!;
      if (head.waiter.cancelled) {
        this.#shift();
        continue;
      }
      const link = this.pick();
      if (link === null) {
        for (const backend of this.backends) backend.grow();
        break;
      }
      this.#shift();
      head.waiter.dispatch(link);
    }
    this.#armTimer();
  }

  #armTimer(): void {
    if (this.#timer !== null || this.queued === 0) return;
    const wait = Math.max(0, this.#queue[this.#head]!.deadline - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const now = Date.now();
      while (this.queued > 0) {
        const head = this.#queue[this.#head]!;
        if (!head.waiter.cancelled && head.deadline > now) break;
        this.#shift();
        if (!head.waiter.cancelled) {
          head.waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND',
            `${this.shortage()}; waited --queue-timeout ${this.#opts.queueTimeoutMs / 1000} s`));
        }
      }
      this.#drainQueue();
    }, wait);
  }

  /** Closes every backend link; queued requests get 503. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    while (this.queued > 0) {
      const { waiter } = this.#shift()!;
      if (!waiter.cancelled) waiter.dispatch(null, new TsgiError('TSGI_ERR_NO_BACKEND', 'front is shutting down'));
    }
    for (const discovery of this.discoveries.values()) discovery.stop();
    for (const backend of [...this.backends]) backend.remove();
  }
}
