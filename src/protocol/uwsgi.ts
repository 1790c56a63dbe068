// The uwsgi packet, as nginx's uwsgi_pass and uWSGI speak it: a 4-byte header, a block of
// key/value vars (the CGI environ), then, for a request, the raw body of CONTENT_LENGTH bytes.
// Encoding, decoding and an incremental parser; no I/O. Used by both sides of tsgi.
//
//    0            1                         3            4
//   +------------+-------------------------+------------+
//   | modifier1  | datasize  u16 LE        | modifier2  |      header: 4 bytes
//   +------------+-------------------------+------------+
//   | key size u16 LE | key … | value size u16 LE | value … |   repeated: `datasize` bytes
//   +-----------------+-------+-------------------+---------+
//   | body: CONTENT_LENGTH raw bytes (requests; not part of the packet) …
//
// modifier1 0 is a WSGI request; 100 is a ping, answered with a 4-byte header (modifier2 1).
import { ProtocolError } from './errors.js';

export const UWSGI_HEADER_SIZE = 4;
/** The largest vars block the u16 datasize can describe: the protocol's 64 KiB. */
export const UWSGI_MAX_VARS_SIZE = 0xffff;

export const Modifier1 = {
  /** A request for a WSGI-style application: vars, then the body. */
  WSGI: 0,
  /** A ping: the answer is a bare header with modifier1 100 and modifier2 1. */
  PING: 100,
} as const;

/** The answer to a ping: modifier1 100, datasize 0, modifier2 1 (as uWSGI's ping plugin). */
export const PING_REPLY: Uint8Array = Uint8Array.of(Modifier1.PING, 0, 0, 1);

/**
 * A var's value: bytes, or a string of bytes (Latin-1, as WSGI's native strings are). A string
 * holding a character above U+00FF cannot be Latin-1 and is written as UTF-8 instead.
 */
export type UwsgiValue = string | Uint8Array;

export interface UwsgiPacket {
  modifier1: number;
  modifier2: number;
  /** The vars in the order sent; keys and values as Latin-1 strings (one char per byte). */
  vars: [string, string][];
}

function bytesOf(value: UwsgiValue): Buffer {
  if (typeof value !== 'string') return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return /[^\x00-\xff]/.test(value) ? Buffer.from(value, 'utf8') : Buffer.from(value, 'latin1');
}

/** The vars block (without the header). Throws when a key or value is over 65535 bytes. */
export function encodeVars(vars: Iterable<readonly [string, UwsgiValue]>): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  for (const [key, value] of vars) {
    const k = bytesOf(key);
    const v = bytesOf(value);
    if (k.length === 0) throw new ProtocolError('uwsgi var with an empty key');
    if (k.length > 0xffff || v.length > 0xffff) {
      throw new ProtocolError(`uwsgi var ${key.slice(0, 40)} is over 65535 bytes`, 'TSGI_ERR_FRAME_TOO_LARGE');
    }
    const lengths = Buffer.allocUnsafe(2);
    lengths.writeUInt16LE(k.length, 0);
    const vlen = Buffer.allocUnsafe(2);
    vlen.writeUInt16LE(v.length, 0);
    parts.push(lengths, k, vlen, v);
    size += 4 + k.length + v.length;
  }
  return Buffer.concat(parts, size);
}

/** The 4-byte header. */
export function encodeHeader(modifier1: number, datasize: number, modifier2 = 0): Buffer {
  if (datasize > UWSGI_MAX_VARS_SIZE) {
    throw new ProtocolError(`uwsgi vars block of ${datasize} bytes exceeds the protocol's ${UWSGI_MAX_VARS_SIZE}`,
      'TSGI_ERR_FRAME_TOO_LARGE');
  }
  const header = Buffer.allocUnsafe(UWSGI_HEADER_SIZE);
  header[0] = modifier1 & 0xff;
  header.writeUInt16LE(datasize, 1);
  header[3] = modifier2 & 0xff;
  return header;
}

/** Header and vars of a packet, ready to write (the body, if any, follows it raw). */
export function encodePacket(vars: Iterable<readonly [string, UwsgiValue]>, modifier1: number = Modifier1.WSGI, modifier2 = 0): Buffer {
  const block = encodeVars(vars);
  return Buffer.concat([encodeHeader(modifier1, block.length, modifier2), block]);
}

/**
 * Keys seen before, by a hash of their bytes: the same few dozen keys (nginx's uwsgi_params,
 * the common headers) come in every packet, and one string per key, used again, saves making
 * it and V8 interning it as a property name on every request. Bounded; a miss makes a string.
 */
const KEYS = new Map<number, string>();
const KEYS_MAX = 512;

function varKey(block: Buffer, pos: number, len: number): string {
  let h = len;
  for (let i = pos; i < pos + len; i++) h = (Math.imul(h, 31) + block[i]!) | 0;
  const known = KEYS.get(h);
  if (known !== undefined && known.length === len) {
    let same = true;
    for (let i = 0; i < len; i++) {
      if (known.charCodeAt(i) !== block[pos + i]) {
        same = false;
        break;
      }
    }
    if (same) return known;
  }
  const key = block.toString('latin1', pos, pos + len);
  if (known !== undefined || KEYS.size >= KEYS_MAX) return key;
  const kept = internalized(key);
  KEYS.set(h, kept);
  return kept;
}

/**
 * V8's own copy of `key` as a property name (its string table's): a key kept for every later
 * packet compares with the constant names (a switch, environ['HTTP_HOST']) by identity and
 * goes into the environ without a look-up in the string table each time.
 */
function internalized(key: string): string {
  const holder: Record<string, 0> = {};
  holder[key] = 0;
  for (const name in holder) return name;
  return key;
}

/**
 * The keys of the last block, by position: nginx sends the same uwsgi_params in the same order
 * on every request, so a key is most often the one at its place last time, checked against the
 * text without a hash or a lookup. Bounded; a key not found there goes through KEYS.
 */
const LAST_KEYS: string[] = [];
const LAST_KEYS_MAX = 128;

/** Decodes a vars block; a length that runs past the block, or an empty key, is refused. */
export function decodeVars(block: Buffer): [string, string][] {
  return decodeVarsIn(block, 0, block.length);
}

/**
 * The vars block at `start`..`end` of `buf`. The block is read as one Latin-1 string, once (one
 * call into the runtime); the keys and values are cut from it, not each made from the bytes.
 */
function decodeVarsIn(buf: Buffer, start: number, end: number): [string, string][] {
  const vars: [string, string][] = [];
  if (start === end) return vars;
  const text = buf.toString('latin1', start, end);
  const size = end - start;
  let pos = 0;
  let i = 0;
  while (pos < size) {
    if (size - pos < 2) throw new ProtocolError(`uwsgi vars: a stray byte at offset ${pos} where a key size should start`);
    const klen = buf[start + pos]! | (buf[start + pos + 1]! << 8);
    pos += 2;
    if (klen === 0) throw new ProtocolError(`uwsgi vars: empty key at offset ${pos - 2}`);
    if (klen > size - pos) throw new ProtocolError(`uwsgi vars: key of ${klen} bytes runs past the end of the block`);
    let key = i < LAST_KEYS.length ? LAST_KEYS[i]! : undefined;
    if (key === undefined || key.length !== klen || !text.startsWith(key, pos)) {
      key = varKey(buf, start + pos, klen);
      if (i <= LAST_KEYS.length && i < LAST_KEYS_MAX) LAST_KEYS[i] = key;
    }
    pos += klen;
    if (size - pos < 2) throw new ProtocolError(`uwsgi vars: key ${key.slice(0, 40)} has no value size`);
    const vlen = buf[start + pos]! | (buf[start + pos + 1]! << 8);
    pos += 2;
    if (vlen > size - pos) throw new ProtocolError(`uwsgi vars: value of ${key.slice(0, 40)} (${vlen} bytes) runs past the end of the block`);
    vars[i] = [key, vlen === 0 ? '' : text.slice(pos, pos + vlen)];
    pos += vlen;
    i++;
  }
  return vars;
}

const NO_BYTES = Buffer.alloc(0);

/**
 * A packet that arrived whole in one chunk (nginx writes it with one call), read without a
 * parser; null when the chunk holds less than the packet, or a vars block over `maxVarsSize`
 * (then UwsgiPacketParser, fed the same chunk, waits for the rest or refuses it).
 */
export function wholePacket(chunk: Buffer, maxVarsSize: number = UWSGI_MAX_VARS_SIZE): { packet: UwsgiPacket; rest: Buffer } | null {
  if (chunk.length < UWSGI_HEADER_SIZE) return null;
  const size = chunk.readUInt16LE(1);
  if (size > maxVarsSize || chunk.length < UWSGI_HEADER_SIZE + size) return null;
  const modifier1 = chunk[0]!;
  const end = UWSGI_HEADER_SIZE + size;
  const vars = modifier1 === Modifier1.PING && size === 0 ? [] : decodeVarsIn(chunk, UWSGI_HEADER_SIZE, end);
  return { packet: { modifier1, modifier2: chunk[3]!, vars }, rest: end === chunk.length ? NO_BYTES : chunk.subarray(end) };
}

/**
 * Reads one packet from a byte stream, chunk by chunk. The declared vars size is checked
 * against the limit as soon as the header is complete, before any of the block is buffered.
 */
export class UwsgiPacketParser {
  readonly maxVarsSize: number;
  #header: Buffer | null = null;
  #parts: Buffer[] = [];
  #have = 0;
  #done = false;

  constructor(maxVarsSize: number = UWSGI_MAX_VARS_SIZE) {
    this.maxVarsSize = maxVarsSize;
  }

  /** Bytes buffered so far (never more than the header and the declared block). */
  get buffered(): number {
    return this.#have;
  }

  /**
   * Feeds bytes. Returns the packet once complete, with the bytes that followed it in the same
   * chunk (the start of the body); null while more are needed. Throws ProtocolError.
   */
  push(chunk: Buffer): { packet: UwsgiPacket; rest: Buffer } | null {
    if (this.#done) throw new Error('the uwsgi packet was already parsed');
    if (chunk.length === 0) return null;
    this.#parts.push(chunk);
    this.#have += chunk.length;
    if (this.#header === null) {
      if (this.#have < UWSGI_HEADER_SIZE) return null;
      const all = this.#take();
      const header = all.subarray(0, UWSGI_HEADER_SIZE);
      const size = header.readUInt16LE(1);
      if (size > this.maxVarsSize) {
        this.#done = true;
        throw new ProtocolError(`uwsgi packet declares ${size} bytes of vars; the limit is ${this.maxVarsSize}`,
          'TSGI_ERR_FRAME_TOO_LARGE');
      }
      this.#header = header;
      this.#parts = [all.subarray(UWSGI_HEADER_SIZE)];
      this.#have = all.length - UWSGI_HEADER_SIZE;
    }
    const header = this.#header;
    const size = header.readUInt16LE(1);
    if (this.#have < size) return null;
    const all = this.#take();
    this.#done = true;
    this.#parts = [];
    const vars = header[0] === Modifier1.PING && size === 0 ? [] : decodeVars(all.subarray(0, size));
    return { packet: { modifier1: header[0]!, modifier2: header[3]!, vars }, rest: all.subarray(size) };
  }

  #take(): Buffer {
    const parts = this.#parts;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.#have);
  }
}
