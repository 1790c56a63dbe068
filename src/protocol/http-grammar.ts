// The HTTP field grammar, once: each rule with its RFC section, for every place that reads or
// writes a head (the front's parser and responses, the uwsgi response parser, the gateway's
// checks of an app's headers, the head translation). Strings here are latin1 (one char a byte).

/** A token (RFC 9110 5.6.2): a method, a header name, a coding, a connection option. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * What a field value (or a reason phrase) may not hold (RFC 9110 5.5): control characters other
 * than HTAB, and DEL. obs-text (0x80-0xff) is let through, as RFC 9110 allows a recipient to.
 */
export const BAD_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * A Content-Length value (RFC 9110 8.6): digits only, no sign, space or list; at most 15 of them,
 * so the number is exact in a double and no length can overflow.
 */
export const CONTENT_LENGTH = /^\d{1,15}$/;

/** CONTENT_LENGTH.test(value), without a regular expression call (a value here is a few digits). */
export function isContentLength(value: string): boolean {
  const n = value.length;
  if (n === 0 || n > 15) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Fields that belong to one connection, never forwarded in either direction nor accepted from an
 * app: RFC 9110 7.6.1's connection options, the legacy Proxy-Connection and Keep-Alive, and the
 * list PEP 3333 refuses from a WSGI app (RFC 2616 13.5.1: with Proxy-Authenticate and
 * Proxy-Authorization, and "Trailers" as PEP 3333 spells it). Lowercase.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade',
]);

/**
 * Fields that may not be trailers (RFC 9110 6.5.1): framing, routing, authentication, and what
 * the head decides (content type and coding, caching, cookies), lowercase; the hop-by-hop ones too.
 * An app may not set them (the gateway refuses them) and the front drops them from a backend's.
 */
export const NOT_TRAILERS: ReadonlySet<string> = new Set([
  'content-length', 'content-type', 'content-encoding', 'content-range', 'host', 'cache-control', 'expires',
  'date', 'location', 'set-cookie', 'authorization', 'www-authenticate', ...HOP_BY_HOP,
]);

/** Hex digits (RFC 5234 HEXDIG, either case): their value, or -1. */
export const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX[0x41 + i] = HEX[0x61 + i] = 10 + i;

/** Most hex digits in a chunk size (leading zeros included): 2^48 - 1 bytes at most, exact in a double. */
export const MAX_CHUNK_SIZE_DIGITS = 12;

/**
 * What may follow a chunk size on its line (RFC 9112 7.1.1): chunk-ext = *( BWS ";" BWS
 * chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), a name a token, a value a token or a
 * quoted-string. `2;`, `2; =x`, `2;a=` and `2 ` are refused.
 */
const CHUNK_EXT = /^(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)+$/;
/** The lenient reading: whitespace, then anything after a ';'. */
const LOOSE_CHUNK_EXT = /^[ \t]*(?:;.*)?$/;

/** Why ChunkedLines.next() could not give a line. */
export const LINE_INCOMPLETE = -1;
export const LINE_TOO_LONG = -2;
/** Strict only: the line ends with a bare LF. */
export const LINE_BARE_LF = -3;

/**
 * The lines of chunked transfer coding (RFC 9112 7.1): a chunk size with its extensions, the
 * CRLF after chunk data, a trailer field, the blank line at the end. One reader for both
 * directions, which differ on purpose, by the `strict` flag:
 * - strict (a client's request, which the front forwards: anything two parsers could read two
 *   ways is a smuggling vector): lines end with CRLF, extensions follow the grammar;
 * - lenient (a backend's response, which the front re-frames for its client, so no ambiguity
 *   can pass): a bare LF ends a line (RFC 9112 2.2 lets a recipient accept it), and whatever
 *   follows a ';' is dropped unread.
 */
const NO_LINE = Buffer.alloc(0);

export class ChunkedLines {
  /**
   * The last line next() gave, up to `end` (the line ending excluded): a view of the bytes
   * pushed, so it keeps the whole read they came in alive until clear().
   */
  line: Buffer = NO_LINE;
  end = 0;
  readonly #strict: boolean;
  readonly #max: number;
  #pending: Buffer | null = null;
  #digits = 0;

  constructor(strict: boolean, maxLine: number) {
    this.#strict = strict;
    this.#max = maxLine;
  }

  /**
   * Takes the bytes of `chunk` from `pos` up to the next LF. Returns the offset after the line,
   * with the line in `line` and `end`; or a LINE_* code: incomplete (the bytes are held for the
   * next call), too long (over maxLine), or a bare LF where CRLF is required.
   */
  next(chunk: Buffer, pos: number): number {
    const nl = chunk.indexOf(0x0a, pos);
    const piece = chunk.subarray(pos, nl === -1 ? chunk.length : nl + 1);
    const prev = this.#pending;
    const line = prev === null ? piece : Buffer.concat([prev, piece]);
    if (line.length > this.#max) return LINE_TOO_LONG;
    if (nl === -1) {
      this.#pending = Buffer.from(line);
      return LINE_INCOMPLETE;
    }
    this.#pending = null;
    let end = line.length - 1;
    if (end > 0 && line[end - 1] === 0x0d) end--;
    else if (this.#strict) return LINE_BARE_LF;
    this.line = line;
    this.end = end;
    return nl + 1;
  }

  /** Drops the last line and a line held incomplete (the parser starts over). */
  clear(): void {
    this.#pending = null;
    this.line = NO_LINE;
    this.end = 0;
  }

  /**
   * The chunk size at the start of the current line (1*HEXDIG), or -1 when there is none or it
   * has more than MAX_CHUNK_SIZE_DIGITS digits. extensionBytes() then counts what follows it.
   */
  chunkSize(): number {
    const line = this.line;
    const end = this.end;
    let size = 0;
    let i = 0;
    for (; i < end && i <= MAX_CHUNK_SIZE_DIGITS; i++) {
      const d = HEX[line[i]!]!;
      if (d < 0) break;
      size = size * 16 + d;
    }
    this.#digits = i;
    return i === 0 || i > MAX_CHUNK_SIZE_DIGITS ? -1 : size;
  }

  /** Bytes after the chunk size on its line (its extensions, and the whitespace before them). */
  extensionBytes(): number {
    return this.end - this.#digits;
  }

  /** The extensions after the chunk size read as the direction's rule says (see the class). */
  extensionsValid(): boolean {
    if (this.#digits === this.end) return true;
    const text = this.line.toString('latin1', this.#digits, this.end);
    return (this.#strict ? CHUNK_EXT : LOOSE_CHUNK_EXT).test(text);
  }
}
