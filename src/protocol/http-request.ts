// Reads HTTP/1.1 requests from a client's byte stream, chunk by chunk: the front's own parser.
// Strict where leniency lets requests be smuggled past it (RFC 9112): CRLF line endings only,
// no obs-fold, no whitespace before a colon, no control characters, one Content-Length of
// digits only, never both Content-Length and Transfer-Encoding, chunked last or refused.
// Body chunks are views of the bytes pushed (no copy). No I/O.
import { TsgiError } from './errors.js';

export interface ParsedRequestHead {
  method: string;
  /** The request target exactly as sent. */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Header fields as sent, flat: [name, value, name, value, …] (values without surrounding whitespace). */
  headers: string[];
  /** The connection may carry another request after this one (HTTP/1.1 unless `close`; HTTP/1.0 with `keep-alive`). */
  keepAlive: boolean;
  /** `Expect: 100-continue` (HTTP/1.1); any other expectation is refused (417). */
  expectContinue: boolean;
  /** How the body is delimited: none, Content-Length, or chunked coding. */
  framing: 'none' | 'length' | 'chunked';
  /** The declared length (framing 'length'), else 0. */
  contentLength: number;
}

export interface RequestEvents {
  onHead(head: ParsedRequestHead): void;
  onBody(chunk: Buffer): void;
  /** The request (head and body) is complete; push() stops after it. */
  onEnd(): void;
}

export interface RequestParserOptions {
  /** Largest head accepted, in bytes (431 beyond). */
  maxHeadSize?: number;
}

// Parser states.
const HEAD = 0;
const LENGTH = 1;
const SIZE = 2;
const DATA = 3;
const DATA_END = 4;
const TRAILERS = 5;
const DONE = 6;

const CRLF2 = Buffer.from('\r\n\r\n');
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\0- \x7f]+) HTTP\/1\.([01])$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Controls other than tab, and a CR or LF that is not part of a CRLF. */
const BAD_HEAD = /[\0-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
const DIGITS = /^\d{1,15}$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})(?:[ \t]*;[^\0-\x08\x0a-\x1f\x7f]*)?$/;
/** A chunk-size line or a trailer line longer than this is refused. */
const MAX_LINE = 4096;

function bad(why: string): TsgiError {
  return new TsgiError('TSGI_ERR_BAD_REQUEST', why);
}

const quote = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);

export class HttpRequestParser {
  readonly #events: RequestEvents;
  readonly #maxHead: number;
  #state: number = HEAD;
  /** Bytes of a head, a chunk-size line or a trailer not yet complete. */
  #pending: Buffer | null = null;
  #remaining = 0;
  #trailerBytes = 0;
  #stopped = false;

  constructor(events: RequestEvents, opts: RequestParserOptions = {}) {
    this.#events = events;
    this.#maxHead = opts.maxHeadSize ?? 16384;
  }

  /** True between requests: nothing of the next one has been read (a keep-alive connection at rest). */
  get idle(): boolean {
    return this.#state === HEAD && this.#pending === null;
  }

  /** True once the current request is complete, until reset(). */
  get done(): boolean {
    return this.#state === DONE;
  }

  /** Ready for the next request on the connection. */
  reset(): void {
    this.#state = HEAD;
    this.#pending = null;
    this.#remaining = 0;
    this.#trailerBytes = 0;
  }

  /** From inside onBody: push() returns right after this chunk (the reader paused). */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Feeds bytes from `pos`; returns the offset where it stopped: the end of the chunk, the end
   * of the request (onEnd), or where stop() was called. Throws a TsgiError (400 or 431) on a
   * malformed request; the connection cannot be trusted after that.
   */
  push(chunk: Buffer, pos = 0): number {
    this.#stopped = false;
    const events = this.#events;
    while (pos < chunk.length && !this.#stopped) {
      switch (this.#state) {
        case HEAD:
          pos = this.#readHead(chunk, pos);
          break;
        case LENGTH: {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + n);
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = DONE;
          events.onBody(piece);
          if (this.#state === DONE) {
            events.onEnd();
            return pos;
          }
          break;
        }
        case DATA: {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + n);
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = DATA_END;
          events.onBody(piece);
          break;
        }
        case SIZE:
        case DATA_END:
        case TRAILERS:
          pos = this.#readLine(chunk, pos);
          if (this.done) return pos;
          break;
        case DONE:
          return pos;
      }
    }
    return pos;
  }

  /** Buffers until the blank line that ends the head, then parses it. Returns the new offset. */
  #readHead(chunk: Buffer, pos: number): number {
    let buf = chunk;
    let start = pos;
    const prev = this.#pending;
    if (prev !== null && prev.length === 1 && prev[0] === 0x0d && chunk[pos] === 0x0a) {
      this.#pending = null; // an empty line split across two reads
      return pos + 1;
    }
    if (prev === null) {
      // Empty lines before a request line are ignored (RFC 9112 2.2), as Node's parser does.
      while (chunk[start] === 0x0d && chunk[start + 1] === 0x0a) start += 2;
      if (start === chunk.length) return start;
      if (start === chunk.length - 1 && chunk[start] === 0x0d) {
        this.#pending = Buffer.from([0x0d]);
        return chunk.length;
      }
    } else {
      buf = Buffer.concat([prev, chunk.subarray(pos)]);
      start = 0;
    }
    const from = prev === null ? start : Math.max(0, prev.length - 3);
    const end = buf.indexOf(CRLF2, from);
    // The limit counts the whole head, its final CRLF CRLF included, however it was cut.
    if (end === -1 || end + 4 - start > this.#maxHead) {
      // A head with bare LF line endings would never show CRLF CRLF: refused now, not waited for.
      if (bareLf(buf, Math.max(start, from))) throw bad('a bare LF in the request head');
      if (buf.length - start > this.#maxHead) {
        throw new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', `request head over ${this.#maxHead} bytes`);
      }
      this.#pending = prev === null ? Buffer.from(buf.subarray(start)) : buf;
      return chunk.length;
    }
    this.#pending = null;
    const consumed = prev === null ? end + 4 : pos + end + 4 - prev.length;
    this.#parseHead(buf.toString('latin1', start, end));
    return consumed;
  }

  #parseHead(text: string): void {
    if (BAD_HEAD.test(text)) throw bad('a control character, bare CR or bare LF in the request head');
    let eol = text.indexOf('\r\n');
    const line = eol === -1 ? text : text.slice(0, eol);
    const m = REQUEST_LINE.exec(line);
    if (m === null) throw bad(`malformed request line ${quote(line)}`);
    const minor = m[3] === '1' ? 1 : 0;
    const headers: string[] = [];
    let length: string | null = null;
    let codings: string | null = null;
    let connection: string | null = null;
    let expect: string | null = null;
    while (eol !== -1) {
      const from = eol + 2;
      eol = text.indexOf('\r\n', from);
      const to = eol === -1 ? text.length : eol;
      const c0 = text.charCodeAt(from);
      if (c0 === 0x20 || c0 === 0x09) throw bad('obsolete line folding in a request header');
      const colon = text.indexOf(':', from);
      if (colon === -1 || colon >= to) throw bad(`header line without a colon ${quote(text.slice(from, to))}`);
      const name = text.slice(from, colon);
      if (!TOKEN.test(name)) throw bad(`malformed header name ${quote(name)}`);
      let vs = colon + 1;
      let ve = to;
      while (vs < ve && (text.charCodeAt(vs) === 0x20 || text.charCodeAt(vs) === 0x09)) vs++;
      while (ve > vs && (text.charCodeAt(ve - 1) === 0x20 || text.charCodeAt(ve - 1) === 0x09)) ve--;
      const value = text.slice(vs, ve);
      headers.push(name, value);
      // The few names that frame the message or the connection, compared without allocating.
      switch (name.length) {
        case 14:
          if (name.toLowerCase() === 'content-length') {
            if (length !== null) throw bad('more than one Content-Length');
            length = value;
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') codings = codings === null ? value : `${codings}, ${value}`;
          break;
        case 10:
          if (name.toLowerCase() === 'connection') connection = connection === null ? value : `${connection}, ${value}`;
          break;
        case 6:
          if (name.toLowerCase() === 'expect') expect = expect === null ? value : `${expect}, ${value}`;
          break;
      }
    }
    let framing: ParsedRequestHead['framing'] = 'none';
    let contentLength = 0;
    if (codings !== null) {
      if (length !== null) throw bad('both Content-Length and Transfer-Encoding');
      const last = codings.slice(codings.lastIndexOf(',') + 1).trim().toLowerCase();
      if (last !== 'chunked') throw bad(`Transfer-Encoding ${quote(codings)} does not end with chunked`);
      framing = 'chunked';
    } else if (length !== null) {
      if (!DIGITS.test(length)) throw bad(`invalid Content-Length ${quote(length)}`);
      contentLength = Number(length);
      if (contentLength > 0) framing = 'length';
    }
    let keepAlive = minor === 1;
    if (connection !== null) {
      const tokens = connection.toLowerCase();
      if (minor === 1) keepAlive = !hasToken(tokens, 'close');
      else keepAlive = hasToken(tokens, 'keep-alive') && !hasToken(tokens, 'close');
    }
    // HTTP/1.0 with Transfer-Encoding: read as chunked, then the connection closes (RFC 9112 6.1).
    if (minor === 0 && codings !== null) keepAlive = false;
    const expectContinue = minor === 1 && expect !== null && expect.toLowerCase() === '100-continue';
    // Any other expectation cannot be met (RFC 9110 10.1.1: 417); HTTP/1.0 ones are ignored.
    if (minor === 1 && expect !== null && !expectContinue) {
      throw new TsgiError('TSGI_ERR_EXPECTATION_FAILED', `Expect ${quote(expect)} cannot be met (only 100-continue can)`);
    }
    if (framing === 'length') {
      this.#remaining = contentLength;
      this.#state = LENGTH;
    } else if (framing === 'chunked') {
      this.#state = SIZE;
    } else {
      this.#state = DONE;
    }
    this.#events.onHead({ method: m[1]!, target: m[2]!, minor, headers, keepAlive, expectContinue, framing, contentLength });
    if (this.#state === DONE) {
      this.#stopped = true;
      this.#events.onEnd();
    }
  }

  /** A CRLF-terminated line of chunked coding: a chunk size, the CRLF after data, or a trailer. */
  #readLine(chunk: Buffer, pos: number): number {
    const nl = chunk.indexOf(0x0a, pos);
    const piece = chunk.subarray(pos, nl === -1 ? chunk.length : nl + 1);
    const prev = this.#pending;
    const line = prev === null ? piece : Buffer.concat([prev, piece]);
    if (line.length > MAX_LINE) throw bad('a line of the chunked request body is too long');
    if (nl === -1) {
      this.#pending = Buffer.from(line);
      return chunk.length;
    }
    this.#pending = null;
    const n = line.length;
    if (n < 2 || line[n - 2] !== 0x0d) throw bad('a line of the chunked request body does not end with CRLF');
    const text = line.toString('latin1', 0, n - 2);
    if (this.#state === DATA_END) {
      if (text !== '') throw bad('chunk data is not followed by CRLF');
      this.#state = SIZE;
    } else if (this.#state === SIZE) {
      const m = CHUNK_SIZE.exec(text);
      if (m === null) throw bad(`malformed chunk size ${quote(text)}`);
      const size = parseInt(m[1]!, 16);
      if (size === 0) {
        this.#state = TRAILERS;
      } else {
        this.#remaining = size;
        this.#state = DATA;
      }
    } else if (text === '') {
      this.#state = DONE;
      this.#events.onEnd();
    } else {
      // Trailer fields are read and dropped (the front forwards none), within the head's limit.
      this.#trailerBytes += n;
      if (this.#trailerBytes > this.#maxHead) throw new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', 'request trailers too large');
      const colon = text.indexOf(':');
      if (colon <= 0 || !TOKEN.test(text.slice(0, colon)) || BAD_HEAD.test(text)) throw bad(`malformed trailer ${quote(text)}`);
    }
    return nl + 1;
  }
}

/** Whether bytes from `from` hold an LF not preceded by CR. */
function bareLf(buf: Buffer, from: number): boolean {
  for (let i = buf.indexOf(0x0a, from); i !== -1; i = buf.indexOf(0x0a, i + 1)) {
    if (i === 0 || buf[i - 1] !== 0x0d) return true;
  }
  return false;
}

/** Whether a lowercased comma-separated list holds `token`. */
function hasToken(list: string, token: string): boolean {
  let i = list.indexOf(token);
  while (i !== -1) {
    const before = i === 0 ? ',' : list[i - 1];
    const after = list[i + token.length];
    const okBefore = before === ',' || before === ' ' || before === '\t';
    const okAfter = after === undefined || after === ',' || after === ' ' || after === '\t';
    if (okBefore && okAfter) return true;
    i = list.indexOf(token, i + 1);
  }
  return false;
}
