// Socket addresses as users write them: `unix:PATH`, `tcp:HOST:PORT`, `HOST:PORT`, `:PORT`,
// `[::1]:PORT`, and for a front's backend a `uwsgi:` prefix on any of them (that backend speaks
// the uwsgi protocol, not tsgi frames). One parser for every flag that takes an address.
import { ConfigError } from '../protocol/errors.js';

/** The protocol spoken at an address: tsgi frames (the default), or uwsgi packets. */
export type AddressProtocol = 'tsgi' | 'uwsgi';

export type Address =
  | { kind: 'unix'; path: string; protocol?: AddressProtocol }
  | { kind: 'tcp'; host: string; port: number; protocol?: AddressProtocol };

/**
 * Parses an address. `uwsgi:` in front (`uwsgi:unix:/run/uwsgi.sock`, `uwsgi:tcp:127.0.0.1:3031`)
 * is accepted only where `allowUwsgi` says so: a front's backends.
 */
export function parseAddress(text: string, what = 'address', allowUwsgi = false): Address {
  if (text.startsWith('uwsgi:')) {
    if (!allowUwsgi) {
      throw new ConfigError(`${what}: a uwsgi: address names a uwsgi backend for 'tsgi front --backend'; here use unix:PATH or HOST:PORT`);
    }
    return { ...parseAddress(text.slice(6), what), protocol: 'uwsgi' };
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
  return `${prefix}${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
