// Which peers may speak for the client (`tsgi front --trust-proxy`): `loopback` (127.0.0.0/8
// and ::1), `unix` (a peer on a Unix socket, e.g. nginx on the same host), or CIDRs and
// addresses, IPv4 or IPv6. Only a trusted peer's X-Forwarded-* / X-Real-IP headers are believed.
import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../protocol/errors.js';

/** Parses one comma-separated --trust-proxy value into checked, normalised entries. */
export function parseTrustProxy(text: string, what = '--trust-proxy'): string[] {
  const entries: string[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === 'loopback' || entry === 'unix') {
      entries.push(entry);
      continue;
    }
    const slash = entry.indexOf('/');
    const addr = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(addr);
    const bits = slash === -1 ? (family === 6 ? 128 : 32) : Number(entry.slice(slash + 1));
    if (family === 0 || !Number.isInteger(bits) || bits < 0 || bits > (family === 6 ? 128 : 32)
        || (slash !== -1 && !/^\d{1,3}$/.test(entry.slice(slash + 1)))) {
      throw new ConfigError(`${what}: expected loopback, unix, an IP address or a CIDR such as 10.0.0.0/8 or fd00::/8, got '${raw.trim()}'`);
    }
    entries.push(`${addr}/${bits}`);
  }
  return entries;
}

/** An IPv4-mapped IPv6 address (::ffff:1.2.3.4) as the IPv4 address it is. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export class ProxyTrust {
  readonly entries: readonly string[];
  readonly #unix: boolean;
  readonly #list = new BlockList();

  constructor(entries: readonly string[]) {
    this.entries = entries;
    this.#unix = entries.includes('unix');
    for (const entry of entries) {
      if (entry === 'unix') continue;
      if (entry === 'loopback') {
        this.#list.addSubnet('127.0.0.0', 8, 'ipv4');
        this.#list.addSubnet('::1', 128, 'ipv6');
        continue;
      }
      const [addr, bits] = entry.split('/') as [string, string];
      this.#list.addSubnet(addr, Number(bits), isIP(addr) === 6 ? 'ipv6' : 'ipv4');
    }
  }

  /** True when nothing is trusted (the default): forwarded headers are never read. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** Whether a peer may speak for the client: its address, or '' / undefined for a Unix-socket peer. */
  trusts(address: string | undefined, unixPeer: boolean): boolean {
    if (unixPeer) return this.#unix;
    if (address === undefined || address === '') return false;
    const plain = plainAddress(address);
    const family = isIP(plain);
    if (family === 0) return false;
    return this.#list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  }
}
