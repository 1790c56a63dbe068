// Socket addresses as users write them: `unix:PATH`, `tcp:HOST:PORT`, `HOST:PORT`, `:PORT`,
// `[::1]:PORT`, and for a front's backend a `uwsgi:` prefix on any of them (that backend speaks
// the uwsgi protocol, not tsgi frames), a `tls:` prefix on a TCP one (the link is mutual TLS),
// and the names the front resolves itself: `dns:NAME:PORT` (A/AAAA) and `srv:_SERVICE._PROTO.NAME`
// (SRV). One parser for every flag that takes an address.
import { ConfigError } from '../protocol/errors.js';

/** The protocol spoken at an address: tsgi frames (the default), or uwsgi packets. */
export type AddressProtocol = 'tsgi' | 'uwsgi';

/**
 * A front's backend found by DNS: `dns` resolves `host` (A and AAAA) to addresses on `port`;
 * `srv` resolves `host` as an SRV name (targets and ports from the records; port is 0).
 */
export type Discovery = 'dns' | 'srv';

export type Address =
  | { kind: 'unix'; path: string; protocol?: AddressProtocol }
  | {
    kind: 'tcp'; host: string; port: number; protocol?: AddressProtocol;
    /** The link is TLS, both sides verified (a front's backend: `tls:HOST:PORT`). */
    tls?: boolean;
    /** The name the backend's certificate must carry, when it is not `host` (an address found by DNS). */
    servername?: string;
    /** Not one address but a name the front resolves (`dns:` / `srv:`). */
    discover?: Discovery;
  };

/**
 * Parses an address. `uwsgi:` in front (`uwsgi:unix:/run/uwsgi.sock`, `uwsgi:tcp:127.0.0.1:3031`),
 * `tls:`, `dns:` and `srv:` are accepted only where `forBackend` says so: a front's backends.
 */
export function parseAddress(text: string, what = 'address', forBackend = false): Address {
  if (text.startsWith('uwsgi:')) {
    if (!forBackend) {
      throw new ConfigError(`${what}: a uwsgi: address names a uwsgi backend for 'tsgi front --backend'; here use unix:PATH or HOST:PORT`);
    }
    return { ...parseAddress(text.slice(6), what), protocol: 'uwsgi' };
  }
  if (text.startsWith('tls:')) {
    if (!forBackend) {
      throw new ConfigError(`${what}: a tls: address names a TLS backend for 'tsgi front --backend'; `
        + 'a backend serves TLS with --tls-cert, --tls-key and --tls-ca on a plain --listen HOST:PORT');
    }
    const inner = parseAddress(text.slice(4), what, true);
    if (inner.kind !== 'tcp' || inner.protocol === 'uwsgi') {
      throw new ConfigError(`${what}: tls: takes HOST:PORT, dns:NAME:PORT or srv:NAME, got '${text}'`);
    }
    return { ...inner, tls: true };
  }
  if (text.startsWith('dns:') || text.startsWith('srv:')) {
    const discover = text.slice(0, 3) as Discovery;
    if (!forBackend) throw new ConfigError(`${what}: a ${discover}: name is resolved by 'tsgi front --backend' only; here use HOST:PORT`);
    if (discover === 'srv') {
      const name = text.slice(4);
      if (!/^_[^.]+\._(tcp|udp)\.[^:]+$/.test(name)) {
        throw new ConfigError(`${what}: srv: takes an SRV name such as srv:_tsgi._tcp.app.default.svc.cluster.local, got '${text}'`);
      }
      return { kind: 'tcp', host: name, port: 0, discover };
    }
    const m = /^([^:\[\]]+):(\d+)$/.exec(text.slice(4));
    if (m === null || Number(m[2]) === 0 || Number(m[2]) > 65535) {
      throw new ConfigError(`${what}: dns: takes NAME:PORT such as dns:app.default.svc.cluster.local:9000, got '${text}'`);
    }
    return { kind: 'tcp', host: m[1]!, port: Number(m[2]), discover };
  }
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (path === '') throw new ConfigError(`${what}: 'unix:' needs a socket path, e.g. unix:/run/tsgi.sock`);
    return { kind: 'unix', path };
  }
  const rest = text.startsWith('tcp:') ? text.slice(4) : text;
  if (rest.startsWith('/') || rest.startsWith('.')) return { kind: 'unix', path: rest };
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(rest);
  if (m === null) {
    throw new ConfigError(`${what}: expected HOST:PORT, unix:PATH or tcp:HOST:PORT, got '${text}'`);
  }
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`${what}: port ${port} is out of range (0-65535)`);
  return { kind: 'tcp', host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function formatAddress(a: Address): string {
  const prefix = a.protocol === 'uwsgi' ? 'uwsgi:' : '';
  if (a.kind === 'unix') return `${prefix}unix:${a.path}`;
  const tls = a.tls === true ? 'tls:' : '';
  if (a.discover === 'srv') return `${tls}srv:${a.host}`;
  if (a.discover === 'dns') return `${tls}dns:${a.host}:${a.port}`;
  return `${prefix}${tls}${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
