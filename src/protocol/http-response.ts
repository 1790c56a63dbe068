// Reads a raw HTTP/1.x response from a byte stream, chunk by chunk: what a uwsgi server
// (uWSGI, or tsgi serve --uwsgi-socket) writes back. Status line and headers, then a body
// framed by Content-Length, chunked coding, or the end of the connection. No I/O.
import { ProtocolError } from './errors.js';
import { BAD_FIELD_VALUE, CONTENT_LENGTH, ChunkedLines, LINE_INCOMPLETE, TOKEN } from './http-grammar.js';

export interface ParsedResponseHead {
  status: number;
  /** The reason phrase as sent ('' when none). */
  reason: string;
  /** Header fields as sent, flat: [name, value, name, value, …]. */
  headers: string[];
  /**
   * How the body is delimited: none (HEAD, 204, 304, length 0), length, chunked, or close; or
   * 'tunnel' after a 101 (with `upgrade`): every later byte is the upgraded protocol's.
   */
  framing: 'none' | 'length' | 'chunked' | 'close' | 'tunnel';
}

export interface ResponseEvents {
  /** The final head (1xx interim heads are skipped). */
  onHead(head: ParsedResponseHead): void;
  onBody(chunk: Buffer): void;
  /** The body is complete. */
  onEnd(): void;
}

export interface ResponseParserOptions {
  /** Largest head accepted, in bytes. */
  maxHeadSize?: number;
  /** The request was HEAD: whatever the headers say, no body follows. */
  headRequest?: boolean;
  /** The request asked to upgrade: a 101 is final, and what follows it goes to onBody, unparsed. */
  upgrade?: boolean;
}

type State = 'head' | 'length' | 'size' | 'data' | 'data-end' | 'trailers' | 'close' | 'done';

/** The reason phrase may not hold controls other than tab (the front could not write them on). */
const STATUS_LINE = /^HTTP\/1\.[01] ([1-9]\d\d)(?: ([^\0-\x08\x0a-\x1f\x7f]*))?$/;
const MAX_LINE = 4096;

export class HttpResponseParser {
  readonly #events: ResponseEvents;
  readonly #maxHead: number;
  readonly #headRequest: boolean;
  readonly #upgrade: boolean;
  #state: State = 'head';
  /** Bytes of the head not yet complete. */
  #pending: Buffer | null = null;
  /** The lines of a chunked body, read leniently (see ChunkedLines). */
  readonly #lines = new ChunkedLines(false, MAX_LINE);
  #remaining = 0;

  constructor(events: ResponseEvents, opts: ResponseParserOptions = {}) {
    this.#events = events;
    this.#maxHead = opts.maxHeadSize ?? 64 * 1024;
    this.#headRequest = opts.headRequest ?? false;
    this.#upgrade = opts.upgrade ?? false;
  }

  get done(): boolean {
    return this.#state === 'done';
  }

  /** True while the body runs until the connection closes (no length, not chunked). */
  get untilClose(): boolean {
    return this.#state === 'close';
  }

  /** True until the final head was parsed. */
  get awaitingHead(): boolean {
    return this.#state === 'head';
  }

  /** Feeds bytes; throws ProtocolError on a malformed response. Bytes after the end are ignored. */
  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && this.#state !== 'done') {
      switch (this.#state) {
        case 'head':
          pos = this.#readHead(chunk, pos);
          break;
        case 'length': {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + n);
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = 'done';
          this.#events.onBody(piece);
          if (this.#state === 'done') this.#events.onEnd();
          break;
        }
        case 'close':
          this.#events.onBody(pos === 0 ? chunk : chunk.subarray(pos));
          pos = chunk.length;
          break;
        case 'size':
        case 'trailers':
          pos = this.#readLine(chunk, pos);
          break;
        case 'data': {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const piece = chunk.subarray(pos, pos + n);
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#state = 'data-end';
          }
          this.#events.onBody(piece);
          break;
        }
        case 'data-end':
          pos = this.#readLine(chunk, pos);
          break;
      }
    }
  }

  /** The connection ended: completes a body delimited by the close; else the response was cut. */
  finish(): void {
    if (this.#state === 'done') return;
    if (this.#state === 'close') {
      this.#state = 'done';
      this.#events.onEnd();
      return;
    }
    throw new ProtocolError(this.#state === 'head'
      ? 'the connection closed before a complete response head'
      : 'the connection closed before the response body was complete');
  }

  /** Buffers until the blank line that ends the head, then parses it. Returns the new offset. */
  #readHead(chunk: Buffer, pos: number): number {
    const prev = this.#pending?.length ?? 0;
    const buf = prev === 0 ? chunk.subarray(pos) : Buffer.concat([this.#pending!, chunk.subarray(pos)]);
    // Look for CRLF CRLF (or LF LF), starting a little before the new bytes.
    let end = -1;
    let sep = 0;
    for (let i = Math.max(0, prev - 3); i < buf.length; i++) {
      if (buf[i] !== 0x0a) continue;
      if (buf[i + 1] === 0x0a) { end = i; sep = 2; break; }
      if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) { end = i; sep = 3; break; }
    }
    if (end === -1) {
      if (buf.length > this.#maxHead) throw new ProtocolError(`response head exceeds ${this.#maxHead} bytes`);
      this.#pending = prev === 0 ? Buffer.from(buf) : buf;
      return chunk.length;
    }
    if (end > this.#maxHead) throw new ProtocolError(`response head exceeds ${this.#maxHead} bytes`);
    this.#pending = null;
    const used = end + sep - prev; // bytes of this chunk that belonged to the head
    this.#parseHead(buf.toString('latin1', 0, end));
    return pos + used;
  }

  #parseHead(text: string): void {
    const lines = (text.endsWith('\r') ? text.slice(0, -1) : text).split(/\r?\n/);
    const m = STATUS_LINE.exec(lines[0]!);
    if (m === null) throw new ProtocolError(`malformed status line ${JSON.stringify(lines[0]!.slice(0, 80))}`);
    const status = Number(m[1]);
    const headers: string[] = [];
    let lengths: string[] | null = null;
    let codings: string | null = null;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      if (line[0] === ' ' || line[0] === '\t') throw new ProtocolError('obsolete line folding in a response header');
      const colon = line.indexOf(':');
      const name = colon === -1 ? '' : line.slice(0, colon);
      if (!TOKEN.test(name)) throw new ProtocolError(`malformed response header line ${JSON.stringify(line.slice(0, 80))}`);
      const value = line.slice(colon + 1).trim();
      if (BAD_FIELD_VALUE.test(value)) throw new ProtocolError(`response header ${name} has a control character in its value`);
      const lower = name.toLowerCase();
      if (lower === 'content-length') (lengths ??= []).push(value);
      else if (lower === 'transfer-encoding') codings = codings === null ? value : `${codings}, ${value}`;
      headers.push(name, value);
    }
    if (status === 101 && this.#upgrade) {
      this.#state = 'close';
      this.#events.onHead({ status, reason: m[2] ?? '', headers, framing: 'tunnel' });
      return;
    }
    if (status < 200) {
      if (status === 101) throw new ProtocolError('a uwsgi backend cannot switch protocols (101)');
      return; // an interim response (100 Continue, 103 Early Hints): the final one follows
    }
    let framing: ParsedResponseHead['framing'];
    if (this.#headRequest || status === 204 || status === 304) {
      framing = 'none';
    } else if (codings !== null) {
      const last = codings.split(',').pop()!.trim().toLowerCase();
      framing = last === 'chunked' ? 'chunked' : 'close';
    } else if (lengths !== null) {
      const values = new Set(lengths.flatMap((v) => v.split(',')).map((v) => v.trim()));
      const [only] = values;
      if (values.size !== 1 || !CONTENT_LENGTH.test(only!)) {
        throw new ProtocolError(`invalid Content-Length ${JSON.stringify(lengths.join(', ').slice(0, 80))}`);
      }
      this.#remaining = Number(only);
      framing = this.#remaining === 0 ? 'none' : 'length';
    } else {
      framing = 'close';
    }
    this.#state = framing === 'none' ? 'done' : framing === 'length' ? 'length' : framing === 'chunked' ? 'size' : 'close';
    this.#events.onHead({ status, reason: m[2] ?? '', headers, framing });
    if (framing === 'none') this.#events.onEnd();
  }

  /** A line of chunked coding: a chunk size, the end of a chunk, or a trailer. */
  #readLine(chunk: Buffer, pos: number): number {
    const lines = this.#lines;
    const next = lines.next(chunk, pos);
    if (next === LINE_INCOMPLETE) return chunk.length;
    if (next < 0) throw new ProtocolError('a line of the chunked response body is too long');
    if (this.#state === 'data-end') {
      if (lines.end !== 0) throw new ProtocolError('chunk data is not followed by CRLF');
      this.#state = 'size';
    } else if (this.#state === 'size') {
      const size = lines.chunkSize();
      if (size < 0 || !lines.extensionsValid()) {
        throw new ProtocolError(`malformed chunk size ${JSON.stringify(lines.line.toString('latin1', 0, Math.min(lines.end, 40)))}`);
      }
      if (size === 0) this.#state = 'trailers';
      else {
        this.#remaining = size;
        this.#state = 'data';
      }
    } else if (lines.end === 0) { // trailers: ignored, up to the blank line that ends the body
      this.#state = 'done';
      this.#events.onEnd();
    }
    return next;
  }
}
