// Reads HTTP/1.1 requests from a client's byte stream, chunk by chunk: the front's own parser.
// Strict where leniency lets requests be smuggled past it (RFC 9112): CRLF line endings only,
// no obs-fold, no whitespace before a colon, no control characters, one Content-Length of
// digits only, never both Content-Length and Transfer-Encoding, chunked last (once) or refused;
// whitespace is SP and HTAB only, never what String.prototype.trim() strips (U+00A0).
// Body chunks are views of the bytes pushed (no copy). No I/O.
import { TsgiError } from './errors.js';
import { CONTENT_LENGTH, ChunkedLines, HEX, LINE_BARE_LF, LINE_INCOMPLETE, LINE_TOO_LONG, TOKEN } from './http-grammar.js';

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
  /**
   * Largest head accepted, in bytes (431 beyond); also the most bytes of trailer fields (431) and
   * of chunk extensions (400) one request may carry, as they are no part of its body's size.
   */
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
/**
 * method SP request-target SP HTTP-version (RFC 9112 3). The target: the characters of RFC 3986
 * (unreserved, reserved but '#', '%') and the ones browsers send unescaped in a query and llhttp
 * and nginx accept: { } | ^ \ ` (WHATWG URL's query percent-encode set leaves them). Refused:
 * controls, SP, DEL, '"', '#', '<', '>' and every byte over 0x7e (a raw UTF-8 or latin1 byte
 * means different paths to different decoders).
 */
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([!$-;=?-~]+) HTTP\/1\.([01])$/;
/** Controls other than tab, and a CR or LF that is not part of a CRLF. */
const BAD_HEAD = /[\0-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
/** A chunk-size line or a trailer line longer than this is refused. */
const MAX_LINE = 4096;

function bad(why: string): TsgiError {
  return new TsgiError('TSGI_ERR_BAD_REQUEST', why);
}

/** A field value without the whitespace around it (RFC 9110 5.5). */
function trimFieldValue(v: string): string {
  let i = 0;
  let j = v.length;
  while (i < j && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  while (j > i && (v.charCodeAt(j - 1) === 0x20 || v.charCodeAt(j - 1) === 0x09)) j--;
  return v.slice(i, j);
}

const quote = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);

export class HttpRequestParser {
  readonly #events: RequestEvents;
  readonly #maxHead: number;
  #state: number = HEAD;
  /** Bytes of a head not yet complete. */
  #pending: Buffer | null = null;
  /** The lines of a chunked body: a CRLF on each, extensions to the grammar. */
  readonly #lines: ChunkedLines;
  #remaining = 0;
  #trailerBytes = 0;
  /** The trailer fields of the current request's chunked body, flat [name, value, …]; null without any. */
  trailers: string[] | null = null;
  /** Bytes of chunk extensions in this request so far. */
  #extensionBytes = 0;
  #stopped = false;

  constructor(events: RequestEvents, opts: RequestParserOptions = {}) {
    this.#events = events;
    this.#maxHead = opts.maxHeadSize ?? 16384;
    this.#lines = new ChunkedLines(true, MAX_LINE);
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
    this.#lines.clear();
    this.#remaining = 0;
    this.#trailerBytes = 0;
    this.trailers = null;
    this.#extensionBytes = 0;
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
    const method = m[1]!;
    const target = m[2]!;
    const why = targetProblem(method, target);
    if (why !== null) throw bad(why);
    const minor = m[3] === '1' ? 1 : 0;
    // Sized once from the line count: the array lives as long as the request (the whole wait for
    // the backend), and one grown by push() would carry ~17 empty slots (136 bytes) with it.
    let lines = 0;
    for (let i = text.indexOf('\n', eol); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
    const headers = new Array<string>(lines * 2);
    let h = 0;
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
      headers[h++] = name;
      headers[h++] = value;
      // The few names that frame the message or the connection, compared without allocating.
      switch (name.length) {
        case 14:
          if (isName(name, 'content-length')) {
            if (length !== null) throw bad('more than one Content-Length');
            length = value;
          }
          break;
        case 17:
          if (isName(name, 'transfer-encoding')) codings = codings === null ? value : `${codings}, ${value}`;
          break;
        case 10:
          if (isName(name, 'connection')) connection = connection === null ? value : `${connection}, ${value}`;
          break;
        case 6:
          if (isName(name, 'expect')) expect = expect === null ? value : `${expect}, ${value}`;
          break;
      }
    }
    let framing: ParsedRequestHead['framing'] = 'none';
    let contentLength = 0;
    if (codings !== null) {
      if (length !== null) throw bad('both Content-Length and Transfer-Encoding');
      // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing (6.3: 400, close).
      if (minor === 0) throw bad('Transfer-Encoding in an HTTP/1.0 request');
      if (codings !== 'chunked') checkCodings(codings);
      framing = 'chunked';
    } else if (length !== null) {
      if (!CONTENT_LENGTH.test(length)) throw bad(`invalid Content-Length ${quote(length)}`);
      contentLength = Number(length);
      if (contentLength > 0) framing = 'length';
    }
    let keepAlive = minor === 1;
    if (connection !== null) {
      const tokens = connection.toLowerCase();
      if (minor === 1) keepAlive = !hasToken(tokens, 'close');
      else keepAlive = hasToken(tokens, 'keep-alive') && !hasToken(tokens, 'close');
    }
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
    this.#events.onHead({ method, target, minor, headers, keepAlive, expectContinue, framing, contentLength });
    if (this.#state === DONE) {
      this.#stopped = true;
      this.#events.onEnd();
    }
  }

  /** A CRLF-terminated line of chunked coding: a chunk size, the CRLF after data, or a trailer. */
  #readLine(chunk: Buffer, pos: number): number {
    const lines = this.#lines;
    const next = lines.next(chunk, pos);
    if (next === LINE_INCOMPLETE) return chunk.length;
    if (next === LINE_TOO_LONG) throw bad('a line of the chunked request body is too long');
    if (next === LINE_BARE_LF) throw bad('a line of the chunked request body does not end with CRLF');
    const n = lines.end;
    if (this.#state === DATA_END) {
      if (n !== 0) throw bad('chunk data is not followed by CRLF');
      this.#state = SIZE;
    } else if (this.#state === SIZE) {
      this.#chunkSize();
    } else if (n === 0) {
      this.#state = DONE;
      this.#events.onEnd();
    } else {
      // Trailer fields, within the head's limit: kept for the request's handler (trailers).
      this.#trailerBytes += n + 2;
      if (this.#trailerBytes > this.#maxHead) {
        throw new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', `request trailers over ${this.#maxHead} bytes (--max-header-size)`);
      }
      const text = lines.line.toString('latin1', 0, n);
      const colon = text.indexOf(':');
      if (colon <= 0 || !TOKEN.test(text.slice(0, colon)) || BAD_HEAD.test(text)) throw bad(`malformed trailer ${quote(text)}`);
      (this.trailers ??= []).push(text.slice(0, colon), trimFieldValue(text.slice(colon + 1)));
    }
    return next;
  }

  /** The chunk-size line just read: the size (no string for the common line without extensions); extensions checked, counted and dropped. */
  #chunkSize(): void {
    const lines = this.#lines;
    const size = lines.chunkSize();
    const text = (): string => quote(lines.line.toString('latin1', 0, lines.end));
    if (size < 0) throw bad(`malformed chunk size ${text()}`);
    const ext = lines.extensionBytes();
    if (ext > 0) {
      // The extensions of a request's chunks count together (CVE-2024-22019: megabytes of them
      // around a few bytes of data were read without limit, none of it counted as body).
      this.#extensionBytes += ext;
      if (this.#extensionBytes > this.#maxHead) throw bad(`chunk extensions over ${this.#maxHead} bytes (--max-header-size)`);
      const c = lines.line[lines.end - ext];
      const what = c === 0x3b || c === 0x20 || c === 0x09 ? 'chunk extension' : 'chunk size';
      if (!lines.extensionsValid()) throw bad(`malformed ${what} ${text()}`);
    }
    if (size === 0) {
      this.#state = TRAILERS;
    } else {
      this.#remaining = size;
      this.#state = DATA;
    }
  }
}

/** absolute-form (RFC 9112 3.2.2) as HTTP URIs have it: scheme "://" [ userinfo "@" ] host [ ":" port ], then '/', '?' or the end. */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[A-Za-z0-9\-._~!$&'()*+,;=%:]*@)?(?:\[[A-Za-z0-9\-._~!$&'()*+,;=:]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?(?:[/?]|$)/;
/** authority-form (RFC 9112 3.2.3), for CONNECT alone: host ":" port. */
const AUTHORITY_FORM = /^(?:\[[A-Za-z0-9\-._~!$&'()*+,;=:]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]+$/;

/**
 * Why a request-target whose characters passed REQUEST_LINE is refused, or null. Its form must
 * fit the method (RFC 9112 3.2): origin-form ('/…') or absolute-form, '*' for OPTIONS alone,
 * authority-form for CONNECT alone (and CONNECT nothing else). Before any '?', a '%' starts two
 * hex digits (RFC 3986 2.1) and '\' is refused: decoders disagree on '%zz' and on '\' as a
 * separator, so the front and the app would see two paths. A query is left as sent ('100%' as
 * browsers send it), as nginx does.
 */
function targetProblem(method: string, target: string): string | null {
  const connect = method.length === 7 && method === 'CONNECT';
  if (target.charCodeAt(0) !== 0x2f /* / */ || connect) {
    if (connect) return AUTHORITY_FORM.test(target) ? null : `CONNECT request target ${quote(target)} is not host:port`;
    if (target === '*') return method === 'OPTIONS' ? null : `request target * with ${method} (only OPTIONS may have it)`;
    if (!ABSOLUTE_FORM.test(target)) return `request target ${quote(target)} is neither origin-form, absolute-form nor *`;
  }
  const q = target.indexOf('?');
  const pathEnd = q === -1 ? target.length : q;
  for (let i = target.indexOf('%'); i !== -1 && i < pathEnd; i = target.indexOf('%', i + 1)) {
    if (HEX[target.charCodeAt(i + 1) & 0xff]! < 0 || HEX[target.charCodeAt(i + 2) & 0xff]! < 0 || i + 2 >= pathEnd) {
      return `a '%' not followed by two hex digits in the path of ${quote(target)}`;
    }
  }
  const bs = target.indexOf('\\');
  if (bs !== -1 && bs < pathEnd) return `a backslash in the path of ${quote(target)}`;
  return null;
}

/** Whether `name` (a token) is `lower` (lowercase letters and '-') in any case, without allocating. */
function isName(name: string, lower: string): boolean {
  // For a token, c | 0x20 is a lowercase letter only for that letter in either case, '-' only for '-'.
  for (let i = 0; i < lower.length; i++) if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** transfer-coding = token *( OWS ";" OWS token BWS "=" BWS ( token / quoted-string ) ) (RFC 9112 7, RFC 9110 10.1.4). */
const TRANSFER_CODING = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))*$/;

/**
 * Refuses a Transfer-Encoding (all its lines, joined with ', ') that is not a list of transfer
 * codings ending with chunked, or that names chunked twice (RFC 9112 6.1, 6.3). Elements are
 * separated by commas with SP or HTAB around them; empty elements are ignored (RFC 9110 5.6.1).
 * Nothing else counts as whitespace: `\xa0chunked\xa0` is not chunked.
 */
function checkCodings(codings: string): void {
  let last = '';
  let chunked = 0;
  let i = 0;
  while (i <= codings.length) {
    // One element: up to a comma outside a quoted-string.
    let end = i;
    let quoted = false;
    for (; end < codings.length; end++) {
      const c = codings.charCodeAt(end);
      if (quoted && c === 0x5c) end++;
      else if (c === 0x22) quoted = !quoted;
      else if (c === 0x2c && !quoted) break;
    }
    let s = i;
    let e = end;
    while (s < e && (codings.charCodeAt(s) === 0x20 || codings.charCodeAt(s) === 0x09)) s++;
    while (e > s && (codings.charCodeAt(e - 1) === 0x20 || codings.charCodeAt(e - 1) === 0x09)) e--;
    if (s < e) {
      const m = TRANSFER_CODING.exec(codings.slice(s, e));
      if (m === null) throw bad(`Transfer-Encoding ${quote(codings)} is not a list of transfer codings`);
      last = m[1]!;
      if (last.length === 7 && isName(last, 'chunked')) chunked++;
    }
    i = end + 1;
  }
  if (last.length !== 7 || !isName(last, 'chunked')) throw bad(`Transfer-Encoding ${quote(codings)} does not end with chunked`);
  if (chunked > 1) throw bad(`Transfer-Encoding ${quote(codings)} applies chunked more than once`);
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
