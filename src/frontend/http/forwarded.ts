// The client's address and scheme as a trusted proxy (nginx in front of tsgi front) reports
// them: X-Forwarded-For (read from the right, skipping trusted hops), else X-Real-IP, and
// X-Forwarded-Proto. Read only when the peer is trusted (--trust-proxy); never otherwise.
import { isIP } from 'node:net';
import { plainAddress, type ProxyTrust } from '../../common/trust-proxy.js';
import type { RequestHead } from '../../protocol/connection.js';

/** An address as it may appear in X-Forwarded-For: bare, [v6], [v6]:port, or v4:port. */
function addressOf(entry: string): string | null {
  let text = entry.trim();
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end === -1) return null;
    text = text.slice(1, end);
  } else if (/^[\d.]+:\d+$/.test(text)) {
    text = text.slice(0, text.indexOf(':'));
  }
  text = plainAddress(text.toLowerCase());
  return isIP(text) !== 0 ? text : null;
}

export interface Forwarded {
  remoteAddr?: string;
  scheme?: 'http' | 'https';
}

/**
 * What the forwarded headers say, given the raw headers of a request from a trusted peer.
 * X-Forwarded-For is walked from the right: the first address that is not itself a trusted
 * proxy is the client (all trusted: the leftmost). A malformed entry stops the walk there.
 */
export function readForwarded(rawHeaders: readonly string[], trust: ProxyTrust): Forwarded {
  const hops: string[] = [];
  let realIp: string | undefined;
  let proto: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'x-forwarded-for') hops.push(...rawHeaders[i + 1]!.split(','));
    else if (name === 'x-real-ip') realIp ??= rawHeaders[i + 1]!;
    else if (name === 'x-forwarded-proto') proto ??= rawHeaders[i + 1]!;
  }
  const out: Forwarded = {};
  let client: string | null = null;
  for (let i = hops.length - 1; i >= 0; i--) {
    const addr = addressOf(hops[i]!);
    if (addr === null) break;
    client = addr;
    if (!trust.trusts(addr, false)) break;
  }
  if (client === null && realIp !== undefined) client = addressOf(realIp);
  if (client !== null) out.remoteAddr = client;
  const scheme = proto?.split(',')[0]!.trim().toLowerCase();
  if (scheme === 'http' || scheme === 'https') out.scheme = scheme;
  return out;
}

/**
 * Rewrites the request head's client address and scheme from the forwarded headers when the
 * peer is trusted; leaves it alone otherwise. The client port is unknown then (0).
 */
export function applyForwarded(head: RequestHead, rawHeaders: readonly string[], trust: ProxyTrust, unixPeer: boolean): void {
  if (trust.empty || !trust.trusts(head.remoteAddr ?? undefined, unixPeer)) return;
  const fwd = readForwarded(rawHeaders, trust);
  if (fwd.remoteAddr !== undefined) {
    head.remoteAddr = fwd.remoteAddr;
    head.remotePort = 0;
  }
  if (fwd.scheme === 'https') head.scheme = 'https';
  else if (fwd.scheme === 'http') delete head.scheme;
}
