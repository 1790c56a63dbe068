// Backends found by DNS (`--backend dns:NAME:PORT`, `--backend srv:_SERVICE._PROTO.NAME`): what a
// Kubernetes headless Service, Consul DNS or Nomad publish. The name is resolved again and again
// (--dns-interval at most, sooner when the records' TTL is shorter); each address found becomes a
// backend of the pool, and one that disappears is drained, not cut. A backend keeps its health
// (its links, its backoff) across resolutions while its address stays. A failed resolution keeps
// the last good set and is logged once, until a resolution succeeds again.
// Another source of addresses (the Kubernetes API's EndpointSlices, xDS) would drive the same
// two hooks: add(address) for each address present, drain(address) for each one gone.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { type Address, formatAddress } from '../../common/address.js';
import type { Logger } from '../../common/log.js';
import { ConfigError } from '../../protocol/errors.js';

/** Resolutions no closer together than this, whatever the TTL (dnsmasq's local records have TTL 0). */
const MIN_INTERVAL_MS = 1000;
/** One query: this long per try, two tries per server. */
const QUERY_TIMEOUT_MS = 2000;

export interface DiscoveryHooks {
  /** An address is in the answer: make it (or keep it) a routed backend. */
  add(address: Address, source: string): void;
  /** An address left the answer: drain its backend. */
  drain(address: Address): void;
}

export interface DiscoveryOptions {
  log: Logger;
  /** --dns-interval, in ms: the longest wait between two resolutions. */
  intervalMs: number;
  /** --dns-server: IP[:PORT] of the servers to ask instead of the system's. */
  servers: string[];
}

interface Found {
  address: Address;
  ttl: number;
}

/** Checks --dns-server values (node:dns takes IP addresses with an optional port, not names). */
export function checkDnsServers(servers: readonly string[]): void {
  for (const s of servers) {
    const m = /^(?:\[([^\]]+)\]|([^:\]]+))(?::(\d+))?$/.exec(s);
    const host = m?.[1] ?? m?.[2] ?? (isIP(s) === 6 ? s : undefined);
    if (host === undefined || isIP(host) === 0 || (m?.[3] !== undefined && (Number(m[3]) === 0 || Number(m[3]) > 65535))) {
      throw new ConfigError(`--dns-server: expected an IP address with an optional port (10.96.0.10, 127.0.0.1:5353, [::1]:53), got '${s}'`);
    }
  }
}

export class DnsDiscovery {
  /** What the user wrote: `dns:NAME:PORT` or `srv:NAME` (with `tls:` if the links are TLS). */
  readonly name: string;
  readonly #target: Address & { kind: 'tcp' };
  readonly #hooks: DiscoveryHooks;
  readonly #opts: DiscoveryOptions;
  readonly #resolver: Resolver;
  /** The addresses of the last good answer, by formatted address. */
  #current = new Map<string, Address>();
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** A failure was logged; the next success says so. */
  #failing = false;
  #resolved = false;
  /** Resolutions done (for tests and /status). */
  resolutions = 0;

  constructor(target: Address & { kind: 'tcp' }, hooks: DiscoveryHooks, opts: DiscoveryOptions) {
    this.#target = target;
    this.name = formatAddress(target);
    this.#hooks = hooks;
    this.#opts = opts;
    this.#resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 2 });
    if (opts.servers.length > 0) this.#resolver.setServers(opts.servers);
  }

  /** The addresses routed to now. */
  get addresses(): Address[] {
    return [...this.#current.values()];
  }

  start(): void {
    void this.#refresh();
  }

  /** No more resolutions; the addresses found are drained. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#resolver.cancel();
    for (const address of this.#current.values()) this.#hooks.drain(address);
    this.#current.clear();
  }

  async #refresh(): Promise<void> {
    let found: Found[] | null = null;
    let error: string | null = null;
    try {
      found = this.#target.discover === 'srv' ? await this.#srv() : await this.#hosts(this.#target.host, this.#target.port, true);
    } catch (err) {
      error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
    if (this.#stopped) return;
    this.resolutions++;
    let ttl = Infinity;
    if (found === null) {
      if (!this.#failing) {
        this.#failing = true;
        this.#opts.log.warn(`backend ${this.name}: DNS resolution failed (${error}${this.#servers()}); `
          + `keeping the ${this.#current.size} address${this.#current.size === 1 ? '' : 'es'} found before; retrying`);
      }
    } else {
      if (this.#failing) {
        this.#failing = false;
        this.#opts.log.info(`backend ${this.name}: DNS resolves again`);
      }
      for (const f of found) ttl = Math.min(ttl, f.ttl);
      this.#apply(found.map((f) => f.address));
    }
    const wait = Math.min(this.#opts.intervalMs, Math.max(MIN_INTERVAL_MS, Number.isFinite(ttl) ? ttl * 1000 : Infinity));
    this.#timer = setTimeout(() => { this.#timer = null; void this.#refresh(); }, wait);
    this.#timer.unref();
  }

  /** Adds the new addresses and drains the ones gone; logs what changed. */
  #apply(addresses: Address[]): void {
    const next = new Map(addresses.map((a) => [formatAddress(a), a]));
    const added = [...next.keys()].filter((k) => !this.#current.has(k));
    const gone = [...this.#current.keys()].filter((k) => !next.has(k));
    for (const key of gone) this.#hooks.drain(this.#current.get(key)!);
    for (const [key, address] of next) if (!this.#current.has(key)) this.#hooks.add(address, this.name);
    if (!this.#resolved || added.length > 0 || gone.length > 0) {
      const parts = [];
      if (added.length > 0) parts.push(`added ${added.join(', ')}`);
      if (gone.length > 0) parts.push(`draining ${gone.join(', ')}`);
      this.#opts.log.info(`backend ${this.name}: ${next.size} address${next.size === 1 ? '' : 'es'} in DNS`
        + (parts.length > 0 ? ` (${parts.join('; ')})` : ''));
      if (next.size === 0) this.#opts.log.warn(`backend ${this.name}: DNS answers no address; requests wait for one (--queue-timeout)`);
    }
    this.#resolved = true;
    this.#current = next;
  }

  /**
   * A and AAAA records of `host`; an empty list when the name has none (an answer, not a failure).
   * When one family fails and the other answers, the failed family keeps its addresses of the
   * last good answer (`keep`: for a dns: name; an SRV target fails whole).
   */
  async #hosts(host: string, port: number, keep = false): Promise<Found[]> {
    if (isIP(host) !== 0) return [{ address: this.#address(host, port), ttl: Infinity }];
    const [v4, v6] = await Promise.allSettled([
      this.#resolver.resolve4(host, { ttl: true }),
      this.#resolver.resolve6(host, { ttl: true }),
    ]);
    const failed = [v4, v6].filter((r) => r.status === 'rejected' && !noRecords(r.reason)) as PromiseRejectedResult[];
    if (failed.length === 2 || (failed.length === 1 && !keep)) throw failed[0]!.reason;
    const out: Found[] = [];
    for (const [family, r] of [[4, v4], [6, v6]] as const) {
      if (r.status === 'fulfilled') for (const rec of r.value) out.push({ address: this.#address(rec.address, port), ttl: rec.ttl });
      else if (!noRecords(r.reason)) {
        for (const a of this.#current.values()) if (a.kind === 'tcp' && isIP(a.host) === family) out.push({ address: a, ttl: 0 });
      }
    }
    return out;
  }

  /** The SRV records' targets of the best (lowest) priority, each resolved to its addresses. */
  async #srv(): Promise<Found[]> {
    let records;
    try {
      records = await this.#resolver.resolveSrv(this.#target.host);
    } catch (err) {
      if (noRecords(err)) return [];
      throw err;
    }
    if (records.length === 0) return [];
    const best = Math.min(...records.map((r) => r.priority));
    const lists = await Promise.all(records.filter((r) => r.priority === best).map((r) => this.#hosts(r.name, r.port)));
    return lists.flat();
  }

  #address(ip: string, port: number): Address {
    const t = this.#target;
    // A TLS backend's certificate names the service, not the pod's IP address.
    const name = t.discover === 'srv' ? t.host.replace(/^_[^.]+\._[^.]+\./, '') : t.host;
    return {
      kind: 'tcp', host: ip, port,
      ...(t.protocol !== undefined ? { protocol: t.protocol } : {}),
      ...(t.tls === true ? { tls: true, servername: name } : {}),
    };
  }

  #servers(): string {
    return this.#opts.servers.length > 0 ? ` asking ${this.#opts.servers.join(', ')}` : '';
  }
}

/** The name exists with no record of that type, or does not exist: no addresses, not a failure. */
function noRecords(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENODATA' || code === 'ENOTFOUND';
}
