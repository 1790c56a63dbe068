// Socket addresses as users write them: `unix:PATH`, `tcp:HOST:PORT`, `HOST:PORT`, `:PORT`,
// `[::1]:PORT`. One parser for every flag that takes an address.
import { ConfigError } from '../protocol/errors.js';

export type Address =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

export function parseAddress(text: string, what = 'address'): Address {
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
  if (a.kind === 'unix') return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
