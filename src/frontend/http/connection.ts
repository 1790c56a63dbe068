// One client connection of the front's HTTP/1.1 server: its parser, the request in progress and
// the bytes waiting behind it (pipelining, one request at a time), the half-close, and the
// timeouts the server's sweeper applies (headers, keep-alive, body, send, linger) with the
// bounds on what is read and dropped. After a 101 the socket is handed over (takeOver): nothing
// more is parsed, and its bytes, its FIN, its drain and the sweeps go to the new owner.
import type { Socket } from 'node:net';
import { type ParsedRequestHead, HttpRequestParser, type RequestEvents } from '../../protocol/http-request.js';
import { TsgiError, httpStatusFor, rawErrorResponse } from '../../protocol/errors.js';
import { HttpRequest } from './request.js';
import { Http1Response, type HttpResponse, type SocketTaker } from './response.js';
import type { Logger } from '../../common/log.js';
import type { LinkedSet } from '../../common/linked-set.js';

/** The HTTP/2 connection preface's first line (RFC 9113 3.4): enough to tell h2c from HTTP/1.1. */
const PREFACE_START = Buffer.from('PRI * HTTP/2.0\r\n', 'latin1');

function startsWithPreface(chunk: Buffer): boolean {
  return chunk.length >= PREFACE_START.length && chunk.compare(PREFACE_START, 0, PREFACE_START.length, 0, PREFACE_START.length) === 0;
}

/** What a connection needs of its server (server.ts's HttpServer is one). */
export interface ConnectionHost {
  readonly opts: {
    readonly log: Logger;
    readonly maxHeaderSize: number;
    readonly onRequest: (req: HttpRequest, res: HttpResponse) => void;
    readonly onRefused?: (status: number) => void;
  };
  readonly connections: LinkedSet<Connection>;
  readonly closing: boolean;
  readonly keepAliveHeader: string;
  readonly lingerTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly maxDropBytes: number;
  /** Where a connection that opens with the HTTP/2 preface goes; null: HTTP/2 is off. */
  readonly http2: { accept(socket: Socket): void } | null;
  /** `c` closed. */
  closed(c: Connection): void;
  /** The server is done with `c`: it lingers. */
  ended(c: Connection): void;
}

/** One client connection: its parser, the request in progress, and the bytes waiting behind it. */
export class Connection implements RequestEvents {
  readonly server: ConnectionHost;
  readonly socket: Socket;
  readonly #parser: HttpRequestParser;
  req: HttpRequest | null = null;
  res: Http1Response | null = null;
  linkedIn: LinkedSet<Connection> | null = null;
  linkedPrev: Connection | null = null;
  linkedNext: Connection | null = null;
  /** The response in progress waits for 'drain'. */
  drainWaiter: Http1Response | null = null;
  /** False once this connection is to close after the response in progress. */
  keepAlive = true;
  /** Bytes read but not parsed yet: behind a paused body, or after the request in progress. */
  #held: Buffer | null = null;
  #heldAt = 0;
  #parsing = false;
  #requests = 0;
  /** When the wait for the next head began (connection open, or the last response's end). */
  #waitingSince = Date.now();
  /** When the first byte of the head being read arrived; 0 when none has. */
  #headSince = 0;
  /** Body bytes read and dropped (answered requests), as the sweeper last saw them, and since when. */
  #dropped = 0;
  #droppedMark = 0;
  #droppedSince = 0;
  /** When the rest of an answered request's body began to be read and dropped; 0: not dropping. */
  #discardSince = 0;
  #socketPaused = false;
  /** Nothing more is parsed: the connection closes once its last response is out. */
  #ending = false;
  /** The front stopped reading for good (too much dropped): the socket stays paused until it goes. */
  #readStopped = false;
  /** When the last response byte was handed to the kernel after the end; 0: not yet. */
  #lingerSince = 0;
  /** Bytes handed to the kernel, as the sweeper last saw them while some waited, and since when. */
  #sentMark = 0;
  #sendSince = 0;
  /**
   * The next pipelined request waits until the client reads what was written (the socket's
   * buffer drains): a client that pipelines and never reads cannot make the front buffer more.
   */
  #awaitingDrain = false;
  /** The client half-closed: the requests received are answered, then the connection ends. */
  #clientEnded = false;
  /** 100 Continue lines written to a half-closed client to learn whether it is still there. */
  #probes = 0;
  /** The owner of the socket after a 101: nothing is parsed any more. */
  #taker: SocketTaker | null = null;

  constructor(server: ConnectionHost, socket: Socket) {
    this.server = server;
    this.socket = socket;
    this.#parser = new HttpRequestParser(this, { maxHeadSize: server.opts.maxHeaderSize });
    server.connections.add(this);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => {
      if (this.#taker !== null) {
        this.#taker.onSocketDrain();
        return;
      }
      const res = this.drainWaiter;
      this.drainWaiter = null;
      res?.drained();
      if (this.#awaitingDrain) {
        this.#awaitingDrain = false;
        this.#continue();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      server.opts.log.debug(`client ${socket.remoteAddress ?? 'on unix socket'}: ${err.code ?? err.message}`);
    });
    socket.on('close', () => this.#onClose());
    socket.on('end', () => this.#onClientEnd());
  }

  /**
   * The client is done sending (a FIN): every request it sent whole is still answered, in
   * order, then the connection ends (as node:http and nginx do for `nc -N`). A request whose
   * body was cut short cannot be: its response is abandoned (the app told through the
   * exchange's close) and the connection ends once what was written is out.
   */
  #onClientEnd(): void {
    this.#clientEnded = true;
    if (this.#taker !== null) {
      this.#taker.onSocketEnd();
      return;
    }
    if (this.#ending) return;
    const req = this.req;
    const res = this.res;
    if (req !== null && (!req.complete || res!.headersSent && !res!.ended)) {
      // A body cut short, or a FIN while reading a streamed response: the way clients leave.
      this.keepAlive = false;
      if (!req.discarding) this.#abandon();
      this.#end();
    } else if (req === null && this.#held === null && !this.#awaitingDrain) {
      this.#end(); // between requests, or in a head that will never be completed
    } else if (res !== null && !res.headersSent) {
      // Waiting for its answer: a client that closed for good (not half) resets a write, which
      // tells the app. An HTTP/1.1 client must accept an unexpected 1xx (RFC 9110 15.2), so a
      // 100 Continue probes now and once more at the next sweep (the reset fails the second).
      this.#probe(res);
    }
    // Otherwise pipelined requests wait: they are answered, then #continue() ends the connection.
  }

  /** Probes a half-closed client waiting for the head of `res` (at most twice). */
  #probe(res: Http1Response): void {
    if (this.#probes < 2 && res.req.httpVersion === '1.1') {
      this.#probes++;
      res.writeContinue();
    }
  }

  /** No request in progress and nothing of the next one read. */
  get idle(): boolean {
    return this.req === null && this.#held === null && this.#parser.idle;
  }

  checkTimeouts(now: number, headersMs: number, keepAliveMs: number, bodyMs: number): void {
    if (this.#taker !== null) {
      this.#taker.checkIdle(now);
      return;
    }
    const socket = this.socket;
    const server = this.server;
    if (socket.writableLength > 0) {
      // Bytes wait for the client to read: only the send timeout applies (not idle, not lingering).
      const sendMs = server.sendTimeoutMs;
      if (sendMs > 0) {
        const sent = socket.bytesWritten - socket.writableLength;
        if (this.#sendSince === 0 || sent !== this.#sentMark) {
          this.#sentMark = sent;
          this.#sendSince = now;
        } else if (now - this.#sendSince > sendMs) {
          this.#sendStalled(sendMs);
          return;
        }
      }
      if (this.req === null) this.#waitingSince = now; // idle counts from the last byte out
      if (this.req === null || !this.req.discarding) return;
    } else {
      this.#sendSince = 0;
    }
    if (this.#ending) {
      // Done with it: what the client still sends is dropped until the linger deadline.
      if (socket.writableLength > 0) return;
      if (this.#lingerSince === 0) this.#lingerSince = now;
      else if (now - this.#lingerSince > server.lingerTimeoutMs) socket.destroy();
      return;
    }
    const req = this.req;
    if (req !== null) {
      if (req.discarding) this.#checkDiscard(req, now, bodyMs);
      else if (this.#clientEnded && this.res !== null && !this.res.headersSent) this.#probe(this.res);
      return;
    }
    if (this.#headSince > 0) {
      if (headersMs > 0 && now - this.#headSince > headersMs) {
        this.#refuse(new TsgiError('TSGI_ERR_REQUEST_TIMEOUT', `request head not complete within --headers-timeout (${headersMs / 1000} s)`));
      }
    } else if (this.#requests > 0 ? keepAliveMs > 0 && now - this.#waitingSince > keepAliveMs
      : headersMs > 0 && now - this.#waitingSince > headersMs) {
      this.socket.destroy(); // idle: closed without a word, as the Keep-Alive header announced
    }
  }

  /**
   * The rest of an answered request's body: the connection closes when it stops coming
   * (--body-timeout), or is still coming at the linger deadline (--linger-timeout).
   */
  #checkDiscard(req: HttpRequest, now: number, bodyMs: number): void {
    const lingerMs = this.server.lingerTimeoutMs;
    if (lingerMs > 0 && now - this.#discardSince > lingerMs) {
      this.#stopDropping(`the unread body of ${req.method} ${req.url} still coming after --linger-timeout (${lingerMs / 1000} s)`);
      return;
    }
    if (bodyMs === 0) return;
    if (this.#dropped !== this.#droppedMark || this.#droppedSince === 0) {
      this.#droppedMark = this.#dropped;
      this.#droppedSince = now;
    } else if (now - this.#droppedSince > bodyMs) {
      this.server.opts.log.warn(`closed the connection of ${this.#who}: the body of `
        + `${req.method} ${req.url}, answered already, stalled for --body-timeout (${bodyMs / 1000} s)`);
      this.socket.destroy();
    }
  }

  get #who(): string {
    return this.socket.remoteAddress ?? 'a unix client';
  }

  /** The client has not read a byte for --send-timeout: the response is abandoned and the connection cut. */
  #sendStalled(ms: number): void {
    const res = this.res;
    const what = res !== null && !res.ended ? `the response to ${res.req.method} ${res.req.url}` : 'the last response';
    this.server.opts.log.warn(`closed the connection of ${this.#who}: ${what} could not be written for `
      + `--send-timeout (${ms / 1000} s), ${this.socket.writableLength} bytes unsent`);
    this.socket.destroy();
  }

  /** Bytes read and dropped (an unread body, or what comes after the end): bounded. */
  #drop(n: number, what: string): void {
    this.#dropped += n;
    const max = this.server.maxDropBytes;
    if (this.#dropped > max && !this.#readStopped) {
      this.#stopDropping(`dropped ${this.#dropped} bytes of ${what}, over ${max} (the smaller of --max-body-size and 1 MiB)`);
    }
  }

  /**
   * Stops reading for good: what is written still goes out (the end follows the response in
   * progress), and the socket goes at the linger deadline, whatever the client sends.
   */
  #stopDropping(why: string): void {
    this.server.opts.log.warn(`closing the connection of ${this.#who}: ${why}`);
    this.keepAlive = false;
    this.#readStopped = true;
    this.#pauseSocket();
    if (this.#parsing) this.#parser.stop();
    if (!this.#ending && (this.res === null || this.res.ended)) this.#end();
  }

  /**
   * Hands the socket to `taker` (a 101 went out): nothing more is parsed, no keep-alive, no
   * linger. Returns the client's bytes read after the request head (sent before the 101),
   * which the taker forwards first; the socket stays paused until the taker resumes it.
   */
  takeOver(taker: SocketTaker): Buffer | null {
    this.#taker = taker;
    this.keepAlive = false;
    this.drainWaiter = null;
    this.#awaitingDrain = false;
    const held = this.#held === null ? null : this.#held.subarray(this.#heldAt);
    this.#held = null;
    this.#socketPaused = true;
    this.socket.pause();
    return held !== null && held.length > 0 ? held : null;
  }

  /** The client sent its FIN. */
  get clientEnded(): boolean {
    return this.#clientEnded;
  }

  /** The rest of an answered body starts being read and dropped now. */
  discardStarted(): void {
    this.#discardSince = Date.now();
  }

  #onData(chunk: Buffer): void {
    if (this.#taker !== null) {
      this.#taker.onSocketData(chunk);
      return;
    }
    if (this.#requests === 0 && chunk[0] === 0x50 /* P */ && this.req === null && this.#held === null
        && this.server.http2 !== null && startsWithPreface(chunk)) {
      this.#toHttp2(chunk);
      return;
    }
    if (this.#ending) {
      this.#drop(chunk.length, 'what came after the end'); // after a refusal or Connection: close
      return;
    }
    if (this.#held !== null || this.#parsing || this.#awaitingDrain) {
      // Bytes read before the pause took effect: kept behind the ones already waiting.
      this.#held = this.#held === null ? chunk : Buffer.concat([this.#held.subarray(this.#heldAt), chunk]);
      this.#heldAt = 0;
      return;
    }
    this.#feed(chunk, 0);
  }

  /** Parses from `pos` while a request can take the bytes; holds the rest. */
  #feed(chunk: Buffer, pos: number): void {
    const parser = this.#parser;
    this.#parsing = true;
    try {
      while (pos < chunk.length && !this.#ending) {
        const req = this.req;
        if (req !== null && (req.complete || (req.paused && !req.discarding))) break; // waits for the response, or a resume
        if (req === null && this.#headSince === 0) this.#headSince = Date.now();
        pos = parser.push(chunk, pos);
        if (this.socket.destroyed) return;
      }
    } catch (err) {
      this.#parsing = false;
      this.#malformed(err as TsgiError);
      return;
    }
    this.#parsing = false;
    if (this.#ending) return;
    if (pos < chunk.length) {
      this.#held = chunk;
      this.#heldAt = pos;
      this.#pauseSocket();
    } else {
      this.#held = null;
      this.#resumeSocket();
    }
    // A response that ended while the parser ran (a refusal answered at once) moves on now.
    if (this.req !== null && this.req.complete && this.res!.ended) this.#next();
  }

  onHead(head: ParsedRequestHead): void {
    this.#headSince = 0;
    this.#requests++;
    const req = new HttpRequest(this, head);
    const res = new Http1Response(this, req);
    this.req = req;
    this.res = res;
    this.keepAlive = head.keepAlive && !this.server.closing;
    this.server.opts.onRequest(req, res);
    if (req.paused && !req.complete) this.#parser.stop(); // the body waits until the handler reads it
  }

  onBody(chunk: Buffer): void {
    const req = this.req!;
    if (req.discarding) this.#drop(chunk.length, `the unread body of ${req.method} ${req.url}`);
    else if (req.reader !== null) req.reader.onBodyData(chunk);
    if (req.paused && !req.discarding) this.#parser.stop();
  }

  onEnd(): void {
    const req = this.req!;
    req.trailers = this.#parser.trailers;
    req.complete = true;
    req.paused = false;
    if (req.reader !== null && !req.discarding) req.reader.onBodyEnd();
  }

  pauseBody(): void {
    if (this.#parsing) this.#parser.stop();
    this.#pauseSocket();
  }

  resumeBody(): void {
    if (this.#parsing) return; // the parser's loop goes on by itself
    process.nextTick(resumeHeld, this);
  }

  /** Continues with the bytes held back, then with the socket. */
  resumeHeld(): void {
    if (this.socket.destroyed || this.#parsing || this.#awaitingDrain || this.#readStopped) return;
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      this.#feed(held, this.#heldAt);
    } else {
      this.#resumeSocket();
    }
  }

  responseEnded(res: Http1Response): void {
    res.closed();
    if (this.drainWaiter === res) this.drainWaiter = null;
    const req = this.req!;
    if (!this.keepAlive) {
      // Connection: close was said: nothing more is parsed (what comes is read and dropped, so
      // closing does not reset the response away).
      this.#end();
      return;
    }
    if (!req.complete) {
      // Answered before the whole body came: the rest is read and dropped, then the next request.
      if (req.reader !== null || req.paused) req.discard();
      return;
    }
    if (!this.#parsing) this.#next();
  }

  /** The request in progress is complete and answered: on to the next one. */
  #next(): void {
    this.req = null;
    this.res = null;
    this.#droppedSince = 0;
    this.#dropped = 0;
    this.#droppedMark = 0;
    this.#discardSince = 0;
    this.#parser.reset();
    this.#waitingSince = Date.now();
    if (this.server.closing) {
      this.#end();
      return;
    }
    if (this.socket.writableNeedDrain) {
      // The client has not read the last response yet: the next one waits for it (the drain).
      this.#awaitingDrain = true;
      this.#pauseSocket();
      return;
    }
    this.#continue();
  }

  /** Parses what is held (pipelined requests), then reads on; after the client's FIN, ends instead. */
  #continue(): void {
    this.resumeHeld();
    if (this.#clientEnded && !this.#ending && this.req === null && this.#held === null && !this.#awaitingDrain) this.#end();
  }

  /**
   * Ends the connection once what was written is out. What the client still sends is read and
   * dropped (unread bytes would make the close a reset, which can destroy the response in
   * flight), within bounds: maxDropBytes, and the linger deadline the sweeper keeps.
   */
  #end(): void {
    if (!this.#ending) this.server.ended(this);
    this.#ending = true;
    this.#held = null;
    this.#awaitingDrain = false;
    this.socket.end();
    this.#resumeSocket();
  }

  #pauseSocket(): void {
    if (!this.#socketPaused) {
      this.#socketPaused = true;
      this.socket.pause();
    }
  }

  #resumeSocket(): void {
    if (this.#socketPaused && !this.#readStopped) {
      this.#socketPaused = false;
      this.socket.resume();
    }
  }

  /** The parser refused the client's bytes: in a head, a status and the close; in a body, the handler decides. */
  #malformed(err: TsgiError): void {
    const req = this.req;
    this.#held = null;
    if (req !== null) {
      this.#ending = true;
      this.keepAlive = false;
      this.#resumeSocket();
      if (!req.complete && req.reader !== null && !this.res!.ended && req.reader.onBodyError(err)) return;
      this.socket.destroySoon();
      return;
    }
    this.#refuse(err);
  }

  /** Answers a request that never reached a handler with its error status, and closes. */
  #refuse(err: TsgiError): void {
    const status = httpStatusFor(err);
    const who = this.socket.remoteAddress ?? 'unix client';
    const what = err.code === 'TSGI_ERR_HEADERS_TOO_LARGE' ? `request head over --max-header-size (${err.message})`
      : err.code === 'TSGI_ERR_BAD_REQUEST' ? `malformed request (${err.message})` : err.message;
    this.server.opts.log.warn(`${status} to ${who}: ${what}`);
    this.server.opts.onRefused?.(status);
    this.#headSince = 0;
    this.req = null;
    this.keepAlive = false;
    this.#waitingSince = Number.POSITIVE_INFINITY;
    this.socket.write(rawErrorResponse(err), 'latin1');
    this.#end();
  }

  /**
   * The client opened with the HTTP/2 connection preface (h2c with prior knowledge): the socket
   * goes to the HTTP/2 sessions, the bytes read so far with it.
   */
  #toHttp2(first: Buffer): void {
    const socket = this.socket;
    for (const event of ['data', 'drain', 'error', 'close', 'end']) socket.removeAllListeners(event);
    this.server.closed(this);
    socket.pause();
    socket.unshift(first);
    this.server.http2!.accept(socket);
  }

  #onClose(): void {
    this.server.closed(this);
    this.#abandon();
  }

  /** The client is gone: a response not ended yet is closed for its handler. */
  #abandon(): void {
    const res = this.res;
    if (res !== null && !res.ended) {
      res.destroyed = true;
      res.closed();
    }
  }
}

function resumeHeld(c: Connection): void {
  c.resumeHeld();
}
