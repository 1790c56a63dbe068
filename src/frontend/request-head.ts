// Translating heads between HTTP/1.1 and tsgi at the front: the request head the front sends
// (end-to-end headers only, peer addresses, defaults left out) and the response headers it
// writes back (hop-by-hop ones dropped).
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { RequestHead } from '../protocol/connection.js';
import { TsgiError } from '../protocol/errors.js';
import { STATIC_NAMES, staticIndex } from '../protocol/header-table.js';
import type { tsgi } from '../protocol/generated/tsgi.js';

const kPeer = Symbol('tsgi.peer');

const idx = (name: string) => STATIC_NAMES.indexOf(name);
const I_CONNECTION = idx('connection');
const I_CONTENT_LENGTH = idx('content-length');
const I_TRANSFER_ENCODING = idx('transfer-encoding');
/** Hop-by-hop headers, by static index: never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  I_CONNECTION, idx('keep-alive'), idx('te'), idx('trailer'), I_TRANSFER_ENCODING, idx('upgrade'),
  idx('proxy-authorization'), idx('proxy-authenticate'),
]);
// Spelled out (index 0) by a backend that does not use the table, a hop-by-hop name must still go.
const HOP_BY_HOP_LITERAL = new Set([
  'proxy-connection', 'connection', 'keep-alive', 'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
]);
const CONNECTION_ORDINARY = new Set(['keep-alive', 'close']);

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

/** Translates the HTTP request head: end-to-end headers only, plus whether a body follows. */
export function requestHead(req: IncomingMessage): { head: RequestHead; hasBody: boolean } {
  const raw = req.rawHeaders;
  const names: number[] = [];
  const values: string[] = [];
  let literalNames: string[] | undefined;
  let hasBody = false;
  let connectionTokens: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const index = staticIndex(name);
    if (index === I_TRANSFER_ENCODING) {
      hasBody = true;
      continue;
    }
    if (index === I_CONTENT_LENGTH) {
      if (value !== '0') hasBody = true;
    } else if (index === I_CONNECTION) {
      for (const t of value.split(',')) {
        const token = t.trim().toLowerCase();
        if (token !== '' && !CONNECTION_ORDINARY.has(token)) (connectionTokens ??= []).push(token);
      }
      continue;
    } else if (HOP_BY_HOP.has(index) || (index === 0 && HOP_BY_HOP_LITERAL.has(name.toLowerCase()))) {
      continue;
    }
    names.push(index);
    values.push(value);
    if (index === 0) (literalNames ??= []).push(name);
  }
  if (connectionTokens !== null) {
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
    target: req.url ?? '/',
    headers: literalNames === undefined ? { names, values } : { names, literalNames, values },
    remoteAddr: peer.remoteAddr,
    remotePort: peer.remotePort,
    serverAddr: peer.serverAddr,
    serverPort: peer.serverPort,
  };
  if (req.method !== 'GET') head.method = req.method;
  if (req.httpVersion !== '1.1') head.protocol = `HTTP/${req.httpVersion}`;
  return { head, hasBody };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * The response head's headers for Node's writeHead, hop-by-hop ones dropped. Names and values
 * Node would refuse are refused here first: a writeHead that throws has already taken the
 * status (a 204's "no body"), and the 502 written after it came out without its body.
 */
export function responseHeaders(block: tsgi.HeaderBlock | null | undefined): string[] {
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
      if (HOP_BY_HOP_LITERAL.has(name.toLowerCase())) continue;
      if (BAD_VALUE.test(value)) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header ${name} has a control character in its value`);
      out.push(name, value);
    } else if (!HOP_BY_HOP.has(index)) {
      const name = STATIC_NAMES[index];
      if (name === undefined) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header index ${index} is not in the table`);
      if (BAD_VALUE.test(value)) throw new TsgiError('TSGI_ERR_PROTOCOL', `response header ${name} has a control character in its value`);
      out.push(name, value);
    }
  }
  return out;
}
