// Translating heads between HTTP/1.1 and tsgi at the front: the request head the front sends
// (end-to-end headers only, peer addresses, defaults left out) and the response headers it
// writes back (hop-by-hop ones dropped); an upgrade request's head keeps its Upgrade for a
// backend that can tunnel (upgradeHead), and a 101's headers keep Upgrade and Connection.
import type { Socket } from 'node:net';
import type { RequestHead } from '../../protocol/connection.js';
import { TsgiError } from '../../protocol/errors.js';
import { STATIC_NAMES, staticIndex } from '../../protocol/header-table.js';
import type { tsgi } from '../../protocol/generated/tsgi.js';
import type { HttpRequest } from './server.js';
import { BAD_FIELD_VALUE, HOP_BY_HOP, TOKEN } from '../../protocol/http-grammar.js';

const kPeer = Symbol('tsgi.peer');

const idx = (name: string) => STATIC_NAMES.indexOf(name);
const I_CONNECTION = idx('connection');
const I_TRANSFER_ENCODING = idx('transfer-encoding');
const I_HOST = idx('host');
const I_UPGRADE = idx('upgrade');
/**
 * Hop-by-hop headers (http-grammar.ts), by static index: never forwarded in either direction;
 * spelled out (index 0) by a backend that does not use the table, the name is looked up instead.
 */
const HOP_BY_HOP_INDEX = new Uint8Array(256);
for (const name of HOP_BY_HOP) if (idx(name) > 0) HOP_BY_HOP_INDEX[idx(name)] = 1;
/** Whether a static index (0: none, or an index from a later table) names a hop-by-hop header. */
const hopByHop = (index: number): boolean => index < 256 && HOP_BY_HOP_INDEX[index] === 1;
const CONNECTION_ORDINARY = new Set(['keep-alive', 'close']);
/** The hop-by-hop headers a 101 passes on to the client: they say what the connection becomes. */
const SWITCH_HEADERS = new Set(['upgrade', 'connection']);
/** host[:port] (RFC 9110 7.2): a reg-name or IPv4 address, or an [IPv6] literal; no userinfo, path or spaces. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?$/;
/** The last Host value HOST_VALUE passed: clients repeat theirs, and a comparison costs less than the test. */
let goodHost = '';

interface Peer {
  remoteAddr: string;
  remotePort: number;
  serverAddr: string;
  serverPort: number;
}

function peerOf(socket: Socket): Peer {
  const s = socket as Socket & { [kPeer]?: Peer };
  let peer = s[kPeer];
  if (peer === undefined) {
    const strip = (a: string | undefined) => (a?.startsWith('::ffff:') ? a.slice(7) : a ?? '');
    peer = {
      remoteAddr: strip(socket.remoteAddress), remotePort: socket.remotePort ?? 0,
      serverAddr: strip(socket.localAddress), serverPort: socket.localPort ?? 0,
    };
    s[kPeer] = peer;
  }
  return peer;
}

export interface TranslatedHead {
  head: RequestHead;
  /** Why the request must be refused with 400 (what the parser lets through), or null. */
  problem: string | null;
  /**
   * The Upgrade header's value when the request asks to upgrade the connection (HTTP/1.1,
   * `Connection: upgrade`, an Upgrade header, no body), else null. `head` leaves it out: a plain
   * request, as RFC 9110 7.8 lets a server take it; upgradeHead() puts it back.
   */
  upgrade: string | null;
}

/**
 * Translates the HTTP request head: end-to-end headers only (whether a body follows, and its
 * length, are the parser's: req.hasBody, req.contentLength).
 * The parser (protocol/http-request.ts) already refuses CL+TE, repeated or malformed
 * Content-Length, obs-fold, bare LF and NUL; what it lets through and is refused here: a Transfer-Encoding other than exactly
 * `chunked` (`xchunked`, `gzip, chunked`: RFC 9112 6.1 leaves the body length unknowable), and
 * HTTP/1.1 without Host, with two, or with one that is not host[:port] (RFC 9112 3.2).
 */
export function requestHead(req: HttpRequest): TranslatedHead {
  const raw = req.rawHeaders;
  // Sized for every field: the head is kept until the response (a refused stream is sent
  // again), and arrays grown by push() would keep ~16 empty slots each that long.
  const names = new Array<number>(raw.length >> 1);
  const values = new Array<string>(raw.length >> 1);
  let kept = 0;
  let literalNames: string[] | undefined;
  let problem: string | null = null;
  let hasHost = false;
  let connectionTokens: string[] | null = null;
  let upgrade: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const index = staticIndex(name);
    if (index === I_TRANSFER_ENCODING) {
      // Only SP and HTAB around it are whitespace (not U+00A0, which trim() takes too); any case
      // is lowercased exactly, as latin1 has no other letter that lowercases to ASCII.
      if (value !== 'chunked' && trimOws(value).toLowerCase() !== 'chunked') {
        problem = `Transfer-Encoding ${JSON.stringify(value)} is not "chunked"`;
      }
      continue;
    }
    if (index === I_HOST) {
      if (hasHost) problem = 'more than one Host';
      else if (value !== goodHost) {
        if (HOST_VALUE.test(value)) goodHost = value;
        else problem = `Host ${JSON.stringify(value)} is not host[:port]`;
      }
      hasHost = true;
    }
    if (index === I_CONNECTION) {
      for (const t of value.split(',')) {
        const token = trimOws(t).toLowerCase();
        if (token !== '' && !CONNECTION_ORDINARY.has(token)) (connectionTokens ??= []).push(token);
      }
      continue;
    } else if (hopByHop(index) || (index === 0 && HOP_BY_HOP.has(name.toLowerCase()))) {
      if (index === I_UPGRADE) upgrade = upgrade === null ? value : `${upgrade}, ${value}`;
      continue;
    }
    names[kept] = index;
    values[kept++] = value;
    if (index === 0) (literalNames ??= []).push(name);
  }
  if (kept < names.length) names.length = values.length = kept; // hop-by-hop fields left out
  if (connectionTokens !== null) {
    if (upgrade !== null && (!connectionTokens.includes('upgrade') || req.hasBody || (req.httpVersion !== '1.1' && !req.extendedConnect)
      || trimOws(upgrade) === '')) upgrade = null;
    // Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1): drop them (rare path).
    const drop = new Set(connectionTokens);
    let lit = 0;
    const keepNames: number[] = [];
    const keepValues: string[] = [];
    const keepLiterals: string[] = [];
    for (let i = 0; i < names.length; i++) {
      const index = names[i]!;
      const name = index === 0 ? literalNames![lit++]! : STATIC_NAMES[index]!;
      if (drop.has(name.toLowerCase())) continue;
      keepNames.push(index);
      keepValues.push(values[i]!);
      if (index === 0) keepLiterals.push(name);
    }
    names.length = 0;
    names.push(...keepNames);
    values.length = 0;
    values.push(...keepValues);
    literalNames = keepLiterals.length > 0 ? keepLiterals : undefined;
  }
  const peer = peerOf(req.socket);
  const head: RequestHead = {
    target: req.url,
    headers: literalNames === undefined ? { names, values } : { names, literalNames, values },
    remoteAddr: peer.remoteAddr,
    remotePort: peer.remotePort,
    serverAddr: peer.serverAddr,
    serverPort: peer.serverPort,
  };
  if (req.method !== 'GET') head.method = req.method;
  if ((req.socket as { encrypted?: boolean }).encrypted === true) head.scheme = 'https';
  if (req.httpVersion !== '1.1') head.protocol = `HTTP/${req.httpVersion}`;
  else if (!hasHost) problem = 'HTTP/1.1 request without Host';
  if (connectionTokens === null) upgrade = null;
  return { head, problem, upgrade };
}

/**
 * The head of an upgrade request for a backend that can tunnel: `head` with its Upgrade header
 * and `Connection: upgrade` back, and Request.upgrade set.
 */
export function upgradeHead(head: RequestHead, upgrade: string): RequestHead {
  const h = head.headers!;
  const names = [...h.names!, I_UPGRADE, I_CONNECTION];
  const values = [...h.values!, upgrade, 'upgrade'];
  const headers = h.literalNames === undefined || h.literalNames === null ? { names, values }
    : { names, literalNames: h.literalNames, values };
  return { ...head, headers, upgrade: true };
}

/** A list element without the SP and HTAB around it (RFC 9110 5.6.3), and nothing else. */
function trimOws(s: string): string {
  let i = 0;
  let j = s.length;
  while (i < j && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
  while (j > i && (s.charCodeAt(j - 1) === 0x20 || s.charCodeAt(j - 1) === 0x09)) j--;
  return i === 0 && j === s.length ? s : s.slice(i, j);
}

/**
 * The response head's headers for Node's writeHead, hop-by-hop ones dropped. Names and values
 * Node would refuse are refused here first: a writeHead that throws has already taken the
 * status (a 204's "no body"), and the 502 written after it came out without its body.
 * `switching`: the headers of a 101, whose Upgrade and Connection go to the client.
 */
export function responseHeaders(block: tsgi.HeaderBlock | null | undefined, switching = false): string[] {
  const out: string[] = [];
  if (!block) return out;
  const { names, values, literalNames } = block;
  let lit = 0;
  for (let i = 0; i < names.length; i++) {
    const index = names[i]!;
    const value = values[i] ?? '';
    if (index === 0) {
      const name = literalNames[lit++];
      if (name === undefined) throw new TsgiError('TSGI_ERR_PROTOCOL', 'response head is missing a literal header name');
      if (!TOKEN.test(name)) throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid response header name ${JSON.stringify(name.slice(0, 40))}`);
      if (HOP_BY_HOP.has(name.toLowerCase()) && !(switching && SWITCH_HEADERS.has(name.toLowerCase()))) continue;
      if (BAD_FIELD_VALUE.test(value)) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header ${name} has a control character in its value`);
      out.push(name, value);
    } else if (!hopByHop(index) || (switching && (index === I_UPGRADE || index === I_CONNECTION))) {
      const name = STATIC_NAMES[index];
      if (name === undefined) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header index ${index} is not in the table`);
      if (BAD_FIELD_VALUE.test(value)) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header ${name} has a control character in its value`);
      out.push(name, value);
    }
  }
  return out;
}

const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)/i;

/** The limits a request head is held to before anything serves it. */
export interface HeadLimits {
  /** Most header fields in a request head (431 beyond); 0 for no limit. */
  maxHeaders?: number;
  /** Largest request body in bytes (413 beyond); 0 for no limit. */
  maxBodySize?: number;
}

/**
 * Why a request is refused before anything serves it (proxied or static): a problem of its
 * translated head or of its target (400), too many fields (431), a declared body over the limit
 * (413); null when it may go on.
 */
export function admissionError(req: HttpRequest, problem: string | null, limits: HeadLimits): TsgiError | null {
  if (problem !== null) return new TsgiError('TSGI_ERR_BAD_REQUEST', problem);
  if (limits.maxHeaders && req.rawHeaders.length > limits.maxHeaders * 2) {
    return new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', `more than --max-headers ${limits.maxHeaders} header fields`);
  }
  if (req.url.charCodeAt(0) !== 0x2f /* / */) {
    const target = targetProblem(req.url, req.headers.host);
    if (target !== null) return new TsgiError('TSGI_ERR_BAD_REQUEST', target);
  }
  if (limits.maxBodySize && req.contentLength > limits.maxBodySize) {
    return new TsgiError('TSGI_ERR_BODY_TOO_LARGE', `Content-Length ${req.contentLength} is over --max-body-size ${limits.maxBodySize}`);
  }
  return null;
}

/**
 * Why a request target that is not origin-form ('/…') is refused, or null when it is fine:
 * '*' (OPTIONS), or absolute-form naming the same authority as Host. An absolute-form target
 * naming another host is refused: the app would see one host in Host and another in the URL.
 */
export function targetProblem(target: string, host: string | undefined): string | null {
  if (target === '*') return null;
  const m = ABSOLUTE_FORM.exec(target);
  if (m === null) return `request target ${JSON.stringify(target.slice(0, 100))} is neither origin-form nor absolute-form`;
  const authority = m[1]!.toLowerCase();
  if (authority.includes('@')) return 'absolute-form request target carries userinfo';
  if (host === undefined || authority !== host.toLowerCase()) {
    return `absolute-form request target names ${JSON.stringify(authority)} but Host is ${JSON.stringify(host ?? '')}`;
  }
  return null;
}
