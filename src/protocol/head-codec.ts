// Hand-written codecs for the messages every request puts on a link: the REQUEST, RESPONSE and
// TRAILERS heads and their HeaderBlock (proto/tsgi.proto stays the schema; the other messages
// keep the generated protobufjs code). An encoder writes the whole frame, header and payload,
// into one buffer of the exact size, in the bytes protobufjs writes for the same message; a
// decoder reads straight from the payload into objects of one shape, and takes any valid
// encoding: fields in any order or repeated, numbers packed or not, unknown fields skipped.
import { FRAME_HEADER_SIZE } from './constants.js';
import { ProtocolError } from './errors.js';
import { writeFrameHeader } from './frame.js';
import type { tsgi } from './generated/tsgi.js';

type Block = tsgi.HeaderBlock.$Properties;

const NO_NUMBERS: number[] = Object.freeze([]) as unknown as number[];
const NO_STRINGS: string[] = Object.freeze([]) as unknown as string[];
const NO_BYTES = new Uint8Array(0);
/** Strings up to this length are measured and copied here, longer ones by Buffer's own code. */
const SHORT = 32;

// Encoding.

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos] = v;
  return pos + 1;
}

/** Bytes of `s` in UTF-8 (a lone surrogate counts as U+FFFD, as Buffer writes it). */
function utf8Length(s: string): number {
  const n = s.length;
  if (n > SHORT) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}

/**
 * The UTF-8 lengths of a message's strings, in the order the size pass measures them and the
 * write pass writes them (each string is measured once).
 */
const lengths: number[] = [];
let measured = 0;
let written = 0;

/** A string field: tag, length, bytes. */
function stringSize(s: string): number {
  const n = utf8Length(s);
  lengths[measured++] = n;
  return 1 + varintSize(n) + n;
}

function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
  buf[pos++] = tag;
  const n = lengths[written++]!;
  pos = writeVarint(buf, pos, n);
  if (n === s.length) {
    if (n <= SHORT) for (let i = 0; i < n; i++) buf[pos + i] = s.charCodeAt(i);
    else buf.write(s, pos, n, 'latin1');
  } else {
    buf.write(s, pos, n, 'utf8');
  }
  return pos + n;
}

function packedLength(values: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) n += varintSize(values[i]! >>> 0);
  return n;
}

function writePacked(buf: Buffer, pos: number, tag: number, values: readonly number[]): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, packedLength(values));
  for (let i = 0; i < values.length; i++) pos = writeVarint(buf, pos, values[i]! >>> 0);
  return pos;
}

function packedSize(values: readonly number[]): number {
  const n = packedLength(values);
  return 1 + varintSize(n) + n;
}

/** A uint32 field: tag, varint. */
function uintSize(v: number): number {
  return 1 + varintSize(v >>> 0);
}

function writeUint(buf: Buffer, pos: number, tag: number, v: number): number {
  buf[pos++] = tag;
  return writeVarint(buf, pos, v >>> 0);
}

/** The HeaderBlock's own bytes (without its tag and length). */
function blockLength(b: Block): number {
  let n = 0;
  const { names, literalNames, values, refs, joinedValues, transient } = b;
  if (names != null && names.length > 0) n += packedSize(names);
  if (literalNames != null) for (let i = 0; i < literalNames.length; i++) n += stringSize(literalNames[i]!);
  if (values != null) for (let i = 0; i < values.length; i++) n += stringSize(values[i]!);
  if (refs != null && refs.length > 0) n += packedSize(refs);
  if (joinedValues != null && joinedValues !== '') n += stringSize(joinedValues);
  if (transient != null && transient.length > 0) n += packedSize(transient);
  return n;
}

function writeBlock(buf: Buffer, pos: number, tag: number, b: Block, length: number): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, length);
  const { names, literalNames, values, refs, joinedValues, transient } = b;
  if (names != null && names.length > 0) pos = writePacked(buf, pos, 10, names);
  if (literalNames != null) for (let i = 0; i < literalNames.length; i++) pos = writeString(buf, pos, 18, literalNames[i]!);
  if (values != null) for (let i = 0; i < values.length; i++) pos = writeString(buf, pos, 26, values[i]!);
  if (refs != null && refs.length > 0) pos = writePacked(buf, pos, 34, refs);
  if (joinedValues != null && joinedValues !== '') pos = writeString(buf, pos, 42, joinedValues);
  if (transient != null && transient.length > 0) pos = writePacked(buf, pos, 50, transient);
  return pos;
}

function bytesSize(b: Uint8Array): number {
  return 1 + varintSize(b.length) + b.length;
}

function writeBytes(buf: Buffer, pos: number, tag: number, b: Uint8Array): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, b.length);
  buf.set(b, pos);
  return pos + b.length;
}

/** A new frame buffer of `payload` bytes with its header written; the payload starts at FRAME_HEADER_SIZE. */
function frame(type: number, flags: number, stream: number, payload: number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload);
  writeFrameHeader(buf, 0, type, flags, stream, payload);
  return buf;
}

function done(buf: Buffer, pos: number): Buffer {
  if (pos !== buf.length || written !== measured) throw new Error(`head encoder wrote ${pos} of ${buf.length} bytes`);
  return buf;
}

/** A REQUEST frame (`type`) carrying `m`, encoded as tsgi.Request. */
export function encodeRequestFrame(type: number, flags: number, stream: number, m: tsgi.Request.$Properties): Buffer {
  const { method, target, headers, remoteAddr, remotePort, serverAddr, serverPort, scheme, protocol, timeoutMs,
    remoteIp, serverIp, upgrade, requestId } = m;
  measured = 0;
  let n = 0;
  let blockLen = 0;
  if (method != null && method !== '') n += stringSize(method);
  if (target != null && target !== '') n += stringSize(target);
  if (headers != null) {
    blockLen = blockLength(headers);
    n += 1 + varintSize(blockLen) + blockLen;
  }
  if (remoteAddr != null && remoteAddr !== '') n += stringSize(remoteAddr);
  if (remotePort != null && remotePort !== 0) n += uintSize(remotePort);
  if (serverAddr != null && serverAddr !== '') n += stringSize(serverAddr);
  if (serverPort != null && serverPort !== 0) n += uintSize(serverPort);
  if (scheme != null && scheme !== '') n += stringSize(scheme);
  if (protocol != null && protocol !== '') n += stringSize(protocol);
  if (timeoutMs != null && timeoutMs !== 0) n += uintSize(timeoutMs);
  if (remoteIp != null && remoteIp.length > 0) n += bytesSize(remoteIp);
  if (serverIp != null && serverIp.length > 0) n += bytesSize(serverIp);
  if (upgrade === true) n += 2;
  if (requestId != null && requestId !== '') n += stringSize(requestId);
  const buf = frame(type, flags, stream, n);
  written = 0;
  let pos = FRAME_HEADER_SIZE;
  if (method != null && method !== '') pos = writeString(buf, pos, 10, method);
  if (target != null && target !== '') pos = writeString(buf, pos, 18, target);
  if (headers != null) pos = writeBlock(buf, pos, 26, headers, blockLen);
  if (remoteAddr != null && remoteAddr !== '') pos = writeString(buf, pos, 34, remoteAddr);
  if (remotePort != null && remotePort !== 0) pos = writeUint(buf, pos, 40, remotePort);
  if (serverAddr != null && serverAddr !== '') pos = writeString(buf, pos, 50, serverAddr);
  if (serverPort != null && serverPort !== 0) pos = writeUint(buf, pos, 56, serverPort);
  if (scheme != null && scheme !== '') pos = writeString(buf, pos, 66, scheme);
  if (protocol != null && protocol !== '') pos = writeString(buf, pos, 74, protocol);
  if (timeoutMs != null && timeoutMs !== 0) pos = writeUint(buf, pos, 80, timeoutMs);
  if (remoteIp != null && remoteIp.length > 0) pos = writeBytes(buf, pos, 90, remoteIp);
  if (serverIp != null && serverIp.length > 0) pos = writeBytes(buf, pos, 98, serverIp);
  if (upgrade === true) {
    buf[pos++] = 104;
    buf[pos++] = 1;
  }
  if (requestId != null && requestId !== '') pos = writeString(buf, pos, 114, requestId);
  return done(buf, pos);
}

/** A RESPONSE frame (`type`) carrying `m`, encoded as tsgi.Response. */
export function encodeResponseFrame(type: number, flags: number, stream: number, m: tsgi.Response.$Properties): Buffer {
  const { status, reason, headers } = m;
  measured = 0;
  let n = 0;
  let blockLen = 0;
  if (status != null && status !== 0) n += uintSize(status);
  if (reason != null && reason !== '') n += stringSize(reason);
  if (headers != null) {
    blockLen = blockLength(headers);
    n += 1 + varintSize(blockLen) + blockLen;
  }
  const buf = frame(type, flags, stream, n);
  written = 0;
  let pos = FRAME_HEADER_SIZE;
  if (status != null && status !== 0) pos = writeUint(buf, pos, 8, status);
  if (reason != null && reason !== '') pos = writeString(buf, pos, 18, reason);
  if (headers != null) pos = writeBlock(buf, pos, 26, headers, blockLen);
  return done(buf, pos);
}

/** A TRAILERS frame (`type`) carrying `headers`, encoded as tsgi.Trailers. */
export function encodeTrailersFrame(type: number, flags: number, stream: number, headers: Block | null | undefined): Buffer {
  if (headers == null) return frame(type, flags, stream, 0);
  measured = 0;
  const blockLen = blockLength(headers);
  const buf = frame(type, flags, stream, 1 + varintSize(blockLen) + blockLen);
  written = 0;
  return done(buf, writeBlock(buf, FRAME_HEADER_SIZE, 10, headers, blockLen));
}

// Decoding: one payload at a time (nothing here is re-entered), read through module state; the
// payload is let go after it (a view of a read slab must not be held past its read).

const NO_PAYLOAD = Buffer.alloc(0);
let src: Buffer = NO_PAYLOAD;
let at = 0;
let what = '';

function truncated(): ProtocolError {
  return new ProtocolError(`${what} payload is truncated or malformed`);
}

function varint(end: number): number {
  if (at >= end) throw truncated();
  let b = src[at++]!;
  if (b < 0x80) return b;
  return longVarint(b, end);
}

/** The rest of a varint whose first byte `b` (already read) has its high bit set. */
function longVarint(b: number, end: number): number {
  let value = b & 0x7f;
  for (let shift = 7; shift < 70; shift += 7) {
    if (at >= end) throw truncated();
    b = src[at++]!;
    if (shift < 32) value |= (b & 0x7f) << shift;
    if (b < 0x80) return value >>> 0;
  }
  throw new ProtocolError(`${what} payload has a varint longer than 10 bytes`);
}

/** The end of a length-delimited field that starts at `at`. */
function delimited(end: number): number {
  const n = varint(end);
  const stop = at + n;
  if (stop > end) throw truncated();
  return stop;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function string(end: number): string {
  const stop = delimited(end);
  const start = at;
  at = stop;
  return text(start, stop);
}

/** The string in the bytes from `start` to `stop`. */
function text(start: number, stop: number): string {
  const n = stop - start;
  if (n === 0) return '';
  for (let i = start; i < stop; i++) {
    if (src[i]! >= 0x80) {
      try {
        return utf8.decode(src.subarray(start, stop));
      } catch {
        throw new ProtocolError(`${what} payload has a string that is not valid UTF-8`);
      }
    }
  }
  if (n > SHORT) return src.toString('latin1', start, stop);
  let s = String.fromCharCode(src[start]!);
  for (let i = start + 1; i < stop; i++) s += String.fromCharCode(src[i]!);
  return s;
}

/**
 * The part up to the last '-' of the last request id decoded, and its bytes: a front's ids are a
 * per-process prefix and a counter, so the next id reuses that string and decodes only its tail.
 */
let idPrefix = '';
let idPrefixBytes: Uint8Array = NO_BYTES;

function requestId(end: number): string {
  const stop = delimited(end);
  const start = at;
  at = stop;
  const p = idPrefixBytes.length;
  if (p > 0 && stop - start > p) {
    let i = 0;
    while (i < p && src[start + i] === idPrefixBytes[i]) i++;
    if (i === p) {
      let tail = '';
      for (i = start + p; i < stop; i++) {
        const c = src[i]!;
        if (c >= 0x80) break;
        tail += String.fromCharCode(c);
      }
      if (i === stop) return idPrefix + tail;
    }
  }
  const id = text(start, stop);
  const dash = id.lastIndexOf('-');
  if (dash >= 7 && dash < 64 && id.length === stop - start) { // ASCII: one byte a character
    idPrefix = id.slice(0, dash + 1);
    idPrefixBytes = Uint8Array.prototype.slice.call(src, start, start + dash + 1);
  }
  return id;
}

/** Appends a packed (wire type 2) or single (wire type 0) uint32 field's values to `into`. */
function uints(into: number[], wireType: number, end: number): number[] {
  const stop = wireType === 0 ? end : delimited(end);
  if (wireType !== 0 && at === stop) return into; // an empty packed field
  let out = into;
  if (out === NO_NUMBERS) out = [varint(stop)]; // most heads: one value, or a few
  else out.push(varint(stop));
  if (wireType === 0) return out;
  while (at < stop) out.push(varint(stop));
  return out;
}

function push(into: string[], value: string): string[] {
  if (into === NO_STRINGS) return [value];
  into.push(value);
  return into;
}

/** Skips a field of `wireType` (a group, with what it holds). */
function skip(wireType: number, field: number, end: number, depth = 0): void {
  switch (wireType) {
    case 0:
      varint(end);
      return;
    case 1:
      at += 8;
      break;
    case 2:
      at = delimited(end);
      return;
    case 3:
      if (depth > 32) throw new ProtocolError(`${what} payload nests groups too deep`);
      for (;;) {
        const tag = varint(end);
        const nested = tag >>> 3;
        if (nested === 0) throw truncated();
        if ((tag & 7) === 4) {
          if (nested !== field) throw truncated();
          return;
        }
        skip(tag & 7, nested, end, depth + 1);
      }
    case 5:
      at += 4;
      break;
    default:
      throw new ProtocolError(`${what} payload has a field of wire type ${wireType}`);
  }
  if (at > end) throw truncated();
}

/** The next tag; 0 is never a valid one. */
function tag(end: number): number {
  const t = varint(end);
  if (t >>> 3 === 0) throw new ProtocolError(`${what} payload has a field number 0`);
  return t;
}

function newBlock(): tsgi.HeaderBlock {
  return { names: NO_NUMBERS, literalNames: NO_STRINGS, values: NO_STRINGS, refs: NO_NUMBERS, joinedValues: '', transient: NO_NUMBERS } as tsgi.HeaderBlock;
}

/** Reads a HeaderBlock ending at `end` into `b` (a repeated field merges, as protobuf says). */
function block(end: number, b: tsgi.HeaderBlock): tsgi.HeaderBlock {
  while (at < end) {
    const t = tag(end);
    const wireType = t & 7;
    switch (t >>> 3) {
      case 1: if (wireType === 2 || wireType === 0) { b.names = uints(b.names, wireType, end); continue; } break;
      case 2: if (wireType === 2) { b.literalNames = push(b.literalNames, string(end)); continue; } break;
      case 3: if (wireType === 2) { b.values = push(b.values, string(end)); continue; } break;
      case 4: if (wireType === 2 || wireType === 0) { b.refs = uints(b.refs, wireType, end); continue; } break;
      case 5: if (wireType === 2) { b.joinedValues = string(end); continue; } break;
      case 6: if (wireType === 2 || wireType === 0) { b.transient = uints(b.transient, wireType, end); continue; } break;
      default: break;
    }
    skip(wireType, t >>> 3, end);
  }
  return b;
}

function subBlock(end: number, into: tsgi.HeaderBlock | null | undefined): tsgi.HeaderBlock {
  const stop = delimited(end);
  const b = block(stop, (into as tsgi.HeaderBlock | null | undefined) ?? newBlock());
  at = stop;
  return b;
}

/** Addresses as dotted strings by their 32-bit value: clients repeat, the server's never changes. */
const ADDRESSES = new Map<number, string>();
/** The last address each field (remote_ip, server_ip) carried, as a key and a dotted string. */
const lastKeys = [0, 0];
const lastDotted = ['0.0.0.0', '0.0.0.0'];

/** The dotted form of a 4-byte address field (`which`: 0 remote, 1 server; null when empty); another length is refused. */
function address(end: number, which: number): string | null {
  const stop = delimited(end);
  if (stop === at) return null;
  if (stop - at !== 4) throw new ProtocolError(`an address of ${stop - at} bytes in ${which === 0 ? 'remote_ip' : 'server_ip'}; expected 4`);
  const key = (src[at]! << 24) | (src[at + 1]! << 16) | (src[at + 2]! << 8) | src[at + 3]!;
  at = stop;
  if (key === lastKeys[which]) return lastDotted[which]!;
  let s = ADDRESSES.get(key);
  if (s === undefined) {
    s = `${src[stop - 4]}.${src[stop - 3]}.${src[stop - 2]}.${src[stop - 1]}`;
    if (ADDRESSES.size >= 4096) ADDRESSES.clear();
    ADDRESSES.set(key, s);
  }
  lastKeys[which] = key;
  lastDotted[which] = s;
  return s;
}

/**
 * Decodes a REQUEST payload. The IPv4 forms (remote_ip, server_ip) come back as the dotted
 * remoteAddr and serverAddr (remoteIp and serverIp are then empty); one of another length than
 * 4 bytes is refused.
 */
export function decodeRequest(payload: Buffer): tsgi.Request {
  src = payload;
  at = 0;
  what = 'REQUEST';
  const end = payload.length;
  const m = {
    method: '', target: '', headers: null as tsgi.HeaderBlock | null, remoteAddr: '', remotePort: 0, serverAddr: '', serverPort: 0,
    scheme: '', protocol: '', timeoutMs: 0, remoteIp: NO_BYTES, serverIp: NO_BYTES, upgrade: false, requestId: '',
  };
  let remoteIp: string | null = null;
  let serverIp: string | null = null;
  while (at < end) {
    const t = tag(end);
    const wireType = t & 7;
    if (wireType === 2) {
      switch (t >>> 3) {
        case 1: m.method = string(end); continue;
        case 2: m.target = string(end); continue;
        case 3: m.headers = subBlock(end, m.headers); continue;
        case 4: m.remoteAddr = string(end); continue;
        case 6: m.serverAddr = string(end); continue;
        case 8: m.scheme = string(end); continue;
        case 9: m.protocol = string(end); continue;
        case 11: remoteIp = address(end, 0); continue;
        case 12: serverIp = address(end, 1); continue;
        case 14: m.requestId = requestId(end); continue;
        default: break;
      }
    } else if (wireType === 0) {
      switch (t >>> 3) {
        case 5: m.remotePort = varint(end); continue;
        case 7: m.serverPort = varint(end); continue;
        case 10: m.timeoutMs = varint(end); continue;
        case 13: m.upgrade = varint(end) !== 0; continue;
        default: break;
      }
    }
    skip(wireType, t >>> 3, end);
  }
  if (remoteIp !== null) m.remoteAddr = remoteIp;
  if (serverIp !== null) m.serverAddr = serverIp;
  src = NO_PAYLOAD;
  return m as tsgi.Request;
}

/** Decodes a RESPONSE payload. */
export function decodeResponse(payload: Buffer): tsgi.Response {
  src = payload;
  at = 0;
  what = 'RESPONSE';
  const end = payload.length;
  const m = { status: 0, reason: '', headers: null as tsgi.HeaderBlock | null };
  while (at < end) {
    const t = tag(end);
    const wireType = t & 7;
    switch (t >>> 3) {
      case 1: if (wireType === 0) { m.status = varint(end); continue; } break;
      case 2: if (wireType === 2) { m.reason = string(end); continue; } break;
      case 3: if (wireType === 2) { m.headers = subBlock(end, m.headers); continue; } break;
      default: break;
    }
    skip(wireType, t >>> 3, end);
  }
  src = NO_PAYLOAD;
  return m as tsgi.Response;
}

/** Decodes a TRAILERS payload: its header block (null when absent). */
export function decodeTrailers(payload: Buffer): tsgi.HeaderBlock | null {
  src = payload;
  at = 0;
  what = 'TRAILERS';
  const end = payload.length;
  let headers: tsgi.HeaderBlock | null = null;
  while (at < end) {
    const t = tag(end);
    if (t === 10) {
      headers = subBlock(end, headers);
      continue;
    }
    skip(t & 7, t >>> 3, end);
  }
  src = NO_PAYLOAD;
  return headers;
}
