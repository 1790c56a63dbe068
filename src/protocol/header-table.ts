// The static table of common header names (as HPACK has one): a header whose name is in the
// table travels as its index, one byte, instead of its spelling. Part of protocol version 1:
// entries may be appended in a later version, never reordered or removed.
import type { tsgi } from './generated/tsgi.js';
import { ProtocolError } from './errors.js';

/** Index 0 is reserved: it means "the name is spelled out in literal_names". */
export const STATIC_NAMES: readonly string[] = [
  '',
  // request
  'host', 'user-agent', 'accept', 'accept-language', 'accept-encoding', 'accept-charset',
  'connection', 'content-type', 'content-length', 'cookie', 'referer', 'origin',
  'cache-control', 'pragma', 'upgrade-insecure-requests', 'dnt', 'if-none-match',
  'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range', 'authorization',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip',
  'x-requested-with', 'forwarded', 'via', 'expect', 'te', 'priority', 'sec-fetch-site',
  'sec-fetch-mode', 'sec-fetch-dest', 'sec-fetch-user', 'sec-ch-ua', 'sec-ch-ua-mobile',
  'sec-ch-ua-platform', 'access-control-request-method', 'access-control-request-headers',
  'x-request-id', 'traceparent', 'tracestate', 'max-forwards', 'from', 'upgrade',
  'proxy-authorization', 'x-csrf-token', 'sec-websocket-key', 'sec-websocket-version',
  // response
  'date', 'server', 'set-cookie', 'location', 'etag', 'last-modified', 'expires', 'vary',
  'content-encoding', 'content-language', 'content-disposition', 'content-range',
  'content-location', 'accept-ranges', 'age', 'allow', 'retry-after', 'www-authenticate',
  'proxy-authenticate', 'link', 'refresh', 'transfer-encoding', 'keep-alive', 'trailer',
  'x-powered-by', 'alt-svc', 'server-timing', 'timing-allow-origin',
  'access-control-allow-origin', 'access-control-allow-credentials',
  'access-control-allow-headers', 'access-control-allow-methods',
  'access-control-expose-headers', 'access-control-max-age', 'strict-transport-security',
  'content-security-policy', 'x-content-type-options', 'x-frame-options', 'x-xss-protection',
  'referrer-policy', 'cross-origin-opener-policy', 'cross-origin-embedder-policy',
  'cross-origin-resource-policy', 'permissions-policy', 'x-cache', 'x-runtime',
];

const INDEX = new Map<string, number>();
for (let i = 1; i < STATIC_NAMES.length; i++) INDEX.set(STATIC_NAMES[i]!, i);

/** Spellings seen on the wire (e.g. "User-Agent") mapped to their index; bounded. */
const SPELLINGS = new Map<string, number>();
const MAX_SPELLINGS = 4096;

/** The static-table index of a header name in any letter case, or 0. */
export function staticIndex(name: string): number {
  let index = SPELLINGS.get(name);
  if (index !== undefined) return index;
  index = INDEX.get(name.toLowerCase()) ?? 0;
  if (SPELLINGS.size < MAX_SPELLINGS) SPELLINGS.set(name, index);
  return index;
}

export type HeaderBlockShape = tsgi.HeaderBlock.$Properties;

/**
 * Packs header fields given flat, as Node's rawHeaders are ([name, value, name, value, …]),
 * skipping the entries for which `skip(index, lowercaseName)` is true.
 */
export function packHeaders(flat: readonly string[], skip?: (index: number, name: string) => boolean): HeaderBlockShape {
  const names: number[] = [];
  const values: string[] = [];
  let literalNames: string[] | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    const index = staticIndex(name);
    if (skip !== undefined && skip(index, index === 0 ? name.toLowerCase() : STATIC_NAMES[index]!)) continue;
    names.push(index);
    values.push(flat[i + 1]!);
    if (index === 0) (literalNames ??= []).push(name);
  }
  return literalNames === undefined ? { names, values } : { names, literalNames, values };
}

/** Unpacks a header block into flat [name, value, …] with table names in lower case. */
export function unpackHeaders(block: HeaderBlockShape | null | undefined): string[] {
  const out: string[] = [];
  if (!block) return out;
  const names = block.names ?? [];
  const values = block.values ?? [];
  const literal = block.literalNames ?? [];
  if (values.length !== names.length) throw new ProtocolError('header block has names and values of different counts');
  let next = 0;
  for (let i = 0; i < names.length; i++) {
    const index = names[i]!;
    const name = index === 0 ? literal[next++] : STATIC_NAMES[index];
    if (name === undefined) throw new ProtocolError(`header name ${index === 0 ? 'literal' : `index ${index}`} is missing`);
    out.push(name, values[i]!);
  }
  return out;
}
