// One HTTP exchange at the front: the request becomes a REQUEST frame (and DATA frames) on a
// backend stream; the RESPONSE and DATA frames become the HTTP response. Both bodies stream
// with backpressure: the client socket's drain grants the backend credit, and the backend's
// credit resumes the client's upload. The exchange is the handler of its backend stream, of its
// request's body and of its response (methods on its prototype: no closures per request), and
// keeps its state to itself.
// Limits checked here: header count, body size (declared, then counted), body stalls, and
// admission (--max-in-flight, in the pool; --max-tunnels for an upgrade request); a refusal
// closes the client connection. An upgrade request goes to a backend that can tunnel (else as a
// plain one); a 101 hands its socket and its stream to a Tunnel (tunnel.ts), and the exchange
// is then only what the access log and the metrics record when the tunnel closes.
import assert from 'node:assert/strict';
import type { Logger } from '../common/log.js';
import { type HeaderFields, LOCAL_CONNECTION_LOST, type RequestHead, type StreamHandler } from '../protocol/connection.js';
import { packHeaders } from '../protocol/header-table.js';
import { NOT_TRAILERS } from '../protocol/http-grammar.js';
import { RESET_CODE_NAMES, ResetCode } from '../protocol/constants.js';
import { TsgiError, blamesBackend, errorResponse } from '../protocol/errors.js';
import type { tsgi } from '../protocol/generated/tsgi.js';
import type { BodyReader, HttpRequest, HttpResponse, ResponseHandler } from './http/server.js';
import type { Link, LinkStream } from './upstream/link.js';
import { channels, type Observed, type Observer, statusOf } from './observe/observe.js';
import type { Pool, Waiter } from './upstream/pool.js';
import { retain } from './upstream/read-buffers.js';
import { ResponseDeadlines, type Waiting } from './upstream/response-deadlines.js';
import { LARGE_BODY, largeBodyEnds, largeBodyStarts } from './http/body-reads.js';
import { type HeadLimits, admissionError, requestHead, responseHeaders, upgradeHead } from './http/request-head.js';
import { Tunnel, type Tunnels } from './tunnel.js';

export { requestHead };

export interface ProxyOptions extends HeadLimits {
  pool: Pool;
  log: Logger;
  /** How long the backend has to send a response head, from the end of the request body (or dispatch, with none). */
  responseTimeoutMs: number;
  /** The access log and/or metrics: called once per exchange when its response closed. */
  observe?: Observer;
  /** A request body that sends nothing for this long gets 408; 0 for no limit. */
  bodyTimeoutMs?: number;
  /** Upgraded connections (--max-tunnels, --tunnel-idle-timeout); without it, upgrade requests go as plain ones. */
  tunnels?: Tunnels;
}

/** A refused request (never processed) is sent again, up to this many times in all. */
const MAX_ATTEMPTS = 5;
/** Methods a request lost with its connection may be sent again with (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/**
 * A backend's --timeout (from its HELLO) is enforced here too, this much later: a backend that
 * can act answers first (and names the request in its own log); one stuck on the CPU cannot.
 */
const HARD_TIMEOUT_MARGIN_MS = 250;
const EMPTY = Buffer.alloc(0);

/** The response deadlines of every exchange with one --response-timeout, by that timeout in ms. */
const deadlines = new Map<number, ResponseDeadlines<Exchange>>();

export class Exchange implements Waiter, Observed, StreamHandler, BodyReader, ResponseHandler, Waiting<Exchange> {
  readonly req: HttpRequest;
  readonly res: HttpResponse;
  /** The REQUEST frame's head (the trusted forwarding headers are applied to it before start()). */
  readonly head: RequestHead;
  /** performance.now() at arrival (the access log and the latency histogram). */
  readonly started = performance.now();
  readonly #opts: ProxyOptions;
  /** Why the head is refused with 400 (see requestHead), or null. */
  readonly #problem: string | null;
  /** Admitted by the pool (counted in its inFlight until finish()). */
  #admitted = false;
  /** Armed only for a request with a body: fires when the upload stalls (--body-timeout). */
  #bodyTimer: NodeJS.Timeout | null = null;
  #cancelled = false;
  #stream: LinkStream | null = null;
  #link: Link | null = null;
  #headReceived = false;
  #done = false;
  /**
   * The body chunks sent so far, kept until the backend shows it took the stream (a head, or
   * flow-control credit). A refused stream can then be sent elsewhere, body and all. Bounded:
   * the stream's credit window stops the upload long before this grows past it.
   */
  #replay: Buffer[] | null = null;
  #attempts = 0;
  /** Bytes written to the client but not yet acknowledged to the backend. */
  #pendingCredit = 0;
  #awaitingDrain = false;
  /** The client response is corked until the end of this tick. */
  #corked = false;
  /** Waiting for the response head under --response-timeout: the list's fields (response-deadlines.ts). */
  deadlineAt = 0;
  deadlineIn: ResponseDeadlines<Exchange> | null = null;
  deadlinePrev: Exchange | null = null;
  deadlineNext: Exchange | null = null;
  /** The backend's --timeout, from dispatch: 504 (or a cut) even when the backend cannot answer. */
  #hardTimer: NodeJS.Timeout | null = null;
  /** 444 once the app cut the connection (no head went out): what the access log and metrics record. */
  #unsentStatus: number | undefined = undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  /** The Upgrade header of a request that asks to upgrade (while it still may), else null. */
  #upgrade: string | null;
  /** Counted in the tunnels' pending (reserve()) until the answer. */
  #reserved = false;
  /** After a 101: the tunnel that carries the connection. */
  #tunnel: Tunnel | null = null;
  /** The body is read in large reads (http/body-reads.ts) until it ends. */
  #largeReads = false;

  constructor(req: HttpRequest, res: HttpResponse, opts: ProxyOptions) {
    this.req = req;
    this.res = res;
    this.#opts = opts;
    const { head, problem, upgrade } = requestHead(req);
    this.head = head;
    this.#problem = problem;
    this.#upgrade = opts.tunnels === undefined ? null : upgrade;
    if (req.hasBody) this.#replay = [];
    res.handler = this;
    if (channels.start.hasSubscribers) channels.start.publish({ method: req.method, url: req.url, remote: this.remote });
  }

  get backendName(): string {
    return this.#link === null ? '-' : this.#link.name;
  }

  get remote(): string {
    return this.head.remoteAddr ?? '';
  }

  /** Body bytes read from the client (after a 101, the tunnel's). */
  get bytesIn(): number {
    return this.#tunnel === null ? this.#bytesIn : this.#tunnel.bytesIn;
  }

  /** Body bytes written to the client (after a 101, the tunnel's). */
  get bytesOut(): number {
    return this.#tunnel === null ? this.#bytesOut : this.#tunnel.bytesOut;
  }

  get unsentStatus(): number | undefined {
    return this.#unsentStatus;
  }

  /** The client went away: the pool's queue skips it. */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  start(): void {
    const o = this.#opts;
    const req = this.req;
    let err = admissionError(req, this.#problem, o);
    if (err === null && this.#upgrade !== null) {
      err = o.tunnels!.reserve();
      this.#reserved = err === null;
    }
    err ??= o.pool.admit();
    if (err !== null) {
      this.#fail(err);
      return;
    }
    this.#admitted = true;
    // Expect: 100-continue is answered only now: a refused request (413, 503) is never uploaded.
    if (req.expectContinue) this.res.writeContinue();
    o.pool.acquire(this);
  }

  dispatch(link: Link | null, err?: TsgiError): void {
    if (this.#done || this.#cancelled) return;
    if (link === null) {
      this.#fail(err ?? new TsgiError('TSGI_ERR_NO_BACKEND', 'no backend available'));
      return;
    }
    this.#attempts++;
    let head = this.head;
    let end = !this.req.hasBody;
    if (this.#upgrade !== null) {
      // Only a backend that can tunnel gets the upgrade; with none, it is a plain request (RFC 9110 7.8).
      if (!link.tunnels) link = this.#opts.pool.pickTunnel() ?? link;
      if (link.tunnels) {
        head = upgradeHead(head, this.#upgrade);
        end = false; // the stream stays open for the tunnel
      } else {
        this.#opts.log.debug(`${this.req.method} ${this.req.url}: no ready backend can carry an upgraded connection; sent as a plain request`);
        this.#upgrade = null;
        this.#release();
      }
    }
    let stream: LinkStream;
    try {
      stream = link.conn.open(head, end);
    } catch (e) {
      this.#fail(e instanceof TsgiError && e.code === 'TSGI_ERR_FRAME_TOO_LARGE'
        ? new TsgiError('TSGI_ERR_PROTOCOL', `request head too large for backend ${link.name}: ${e.message}`)
        : e);
      return;
    }
    link.requests++;
    link.owner.requests++;
    if (channels.dispatch.hasSubscribers) {
      channels.dispatch.publish({ method: this.req.method, url: this.req.url, backend: link.name, attempt: this.#attempts, exchange: this });
    }
    this.#link = link;
    this.#stream = stream;
    stream.handler = this;
    // The response timeout counts from the end of the request body: an upload slower than it is
    // bounded by --body-timeout (a stall) and --max-body-size, not taken for a silent backend.
    if (!this.req.hasBody || this.req.complete) this.#armResponseTimer();
    const hard = link.conn.peerRequestTimeoutMs;
    if (hard !== undefined && hard > 0) {
      if (this.#hardTimer !== null) clearTimeout(this.#hardTimer);
      this.#hardTimer = setTimeout(Exchange.#onHardTimeout, hard + HARD_TIMEOUT_MARGIN_MS, this, hard, performance.now());
    }
    if (this.req.hasBody && this.#attempts === 1) {
      if (this.req.contentLength >= LARGE_BODY && this.req.httpVersion !== '2.0') {
        this.#largeReads = true;
        largeBodyStarts(this.req.socket);
      }
      this.req.readBody(this);
      const ms = this.#opts.bodyTimeoutMs;
      if (ms && !this.req.complete) this.#bodyTimer = setTimeout(Exchange.#onBodyTimeout, ms, this);
    } else if (this.req.hasBody) {
      // A retry: what the refused stream carried goes again, then the rest as it comes.
      assert(this.#replay !== null, 'a request is sent again only while its body is held');
      let more = true;
      for (const chunk of this.#replay) more = stream.write(chunk);
      if (this.req.complete) {
        if (this.req.trailers === null) stream.end();
        else stream.sendTrailers(packHeaders(this.req.trailers, trailerSkip));
      }
      else if (more) this.req.resume();
    }
  }

  #endLargeReads(): void {
    this.#largeReads = false;
    largeBodyEnds(this.req.socket);
  }

  #armResponseTimer(): void {
    const ms = this.#opts.responseTimeoutMs;
    if (this.deadlineIn === null && !this.#headReceived && ms > 0) {
      let list = deadlines.get(ms);
      if (list === undefined) deadlines.set(ms, list = new ResponseDeadlines(ms, Exchange.#onResponseTimeout));
      list.add(this);
    }
  }

  /** The response timeout no longer runs (a head came, the exchange ended, or the upload goes on). */
  #disarmResponseTimer(): void {
    this.deadlineIn?.delete(this);
  }

  /**
   * Ends the exchange with an error: a status if the head has not gone out, else a cut (and a
   * cut without a response when the application cut its own connection).
   */
  #fail(err: unknown): void {
    if (this.#done) return;
    this.#finish();
    const { req, res } = this;
    const log = this.#opts.log;
    const message = err instanceof Error ? err.message : String(err);
    const peer = `(client ${req.socket.remoteAddress ?? 'on unix socket'}, request id ${req.requestId || '-'})`;
    if (this.#cancelled) {
      log.debug(`${req.method} ${req.url}: ${message} (client already gone)`);
      return;
    }
    if (err instanceof TsgiError && err.code === 'TSGI_ERR_CONNECTION_CUT') {
      this.#unsentStatus = err.status;
      log.warn(`${req.method} ${req.url}: ${message}; client connection cut, no response ${peer}`);
      res.destroy();
      return;
    }
    if (res.headersSent) {
      log.warn(`${req.method} ${req.url}: ${message}; response cut after the head ${peer}`);
      // What was written this tick goes out before the cut, unless it would look complete.
      res.destroy();
      return;
    }
    if (this.#link !== null && blamesBackend(err)) this.#link.owner.failures++;
    // A refused request closes its connection (the rest of it is not trusted, or not read).
    const answer = errorResponse(err, { bodyUnread: req.hasBody && !req.complete });
    log.warn(`${answer.status} ${req.method} ${req.url}: ${message} ${peer}`);
    res.writeHead(answer.status, answer.reason, answer.headers);
    this.#bytesOut += answer.body.length; // before end(): the response's close (the access log) runs inside it
    res.end(Buffer.from(answer.body));
  }

  /** The upgrade request will not be upgraded: it no longer counts against --max-tunnels. */
  #release(): void {
    if (this.#reserved) {
      this.#reserved = false;
      this.#opts.tunnels!.release();
    }
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#largeReads) this.#endLargeReads();
    this.#release();
    this.#disarmResponseTimer();
    if (this.#hardTimer !== null) clearTimeout(this.#hardTimer);
    this.#hardTimer = null;
    if (this.#bodyTimer !== null) clearTimeout(this.#bodyTimer);
    this.#bodyTimer = null;
    if (this.#admitted) this.#opts.pool.leave();
    const stream = this.#stream;
    if (stream !== null && !stream.closed) {
      stream.reset(this.#cancelled ? ResetCode.CANCEL : ResetCode.NO_ERROR, this.#cancelled ? 'client went away' : '');
    }
    if (this.req.hasBody && !this.req.complete) this.req.discard(); // the rest of a body nobody will read
    if (this.#link !== null) this.#opts.pool.release(this.#link);
  }

  // The client side: the response's close and drain, the request body.

  onResponseClose(): void {
    const { req, res } = this;
    const opts = this.#opts;
    if (this.#tunnel !== null) {
      this.#tunnel.socketClosed(); // the upgraded connection is over: its stream and link go now
      opts.pool.release(this.#link!);
    } else if (!this.#done && !res.ended) {
      this.#cancelled = true;
      opts.log.debug(`${req.method} ${req.url}: client went away`);
      this.#finish();
    }
    if (opts.observe !== undefined) opts.observe(this);
    if (channels.end.hasSubscribers) {
      channels.end.publish({ method: req.method, url: req.url, status: statusOf(this), backend: this.backendName,
        bytesIn: this.#bytesIn, bytesOut: this.#bytesOut, ms: performance.now() - this.started });
    }
  }

  onResponseDrain(): void {
    this.#awaitingDrain = false;
    const n = this.#pendingCredit;
    this.#pendingCredit = 0;
    this.#stream?.consume(n);
  }

  onBodyData(chunk: Buffer): void {
    this.#bytesIn += chunk.length;
    const max = this.#opts.maxBodySize;
    if (max && this.#bytesIn > max) {
      // Only a chunked body gets here (a declared length over the limit was refused at once).
      this.#stream?.reset(ResetCode.TOO_LARGE, 'request body over the front\'s --max-body-size');
      this.#fail(new TsgiError('TSGI_ERR_BODY_TOO_LARGE', `chunked body grew over --max-body-size ${max}`));
      return;
    }
    if (this.#bodyTimer !== null) this.#bodyTimer.refresh();
    if (this.#replay !== null) this.#replay.push(chunk);
    const stream = this.#stream;
    if (stream === null) {
      this.req.pause(); // waiting for a backend (a retry): hold the rest of the upload
      return;
    }
    if (stream.closed || stream.localEnded) return;
    if (!stream.write(chunk)) {
      this.req.pause();
      this.#armResponseTimer(); // the backend must take the body within --response-timeout
    }
  }

  onBodyEnd(): void {
    if (this.#largeReads) this.#endLargeReads();
    if (this.#bodyTimer !== null) {
      clearTimeout(this.#bodyTimer);
      this.#bodyTimer = null;
    }
    const stream = this.#stream;
    if (stream !== null && !stream.closed) {
      const trailers = this.req.trailers;
      if (trailers === null) stream.end();
      else stream.sendTrailers(packHeaders(trailers, trailerSkip));
      this.#armResponseTimer();
    }
  }

  /**
   * The parser failed on the body of a request already handed over (a bad chunk, say): ends the
   * exchange with `err` (a status if no head went out yet, else a cut). False when it is done.
   */
  onBodyError(err: TsgiError): boolean {
    if (this.#done) return false;
    this.#stream?.reset(ResetCode.CANCEL, `the front refused the rest of the request: ${err.message}`);
    this.#fail(err);
    return true;
  }

  // The backend side: the stream's events.

  onDrain(): void {
    this.#replay = null; // credit came back: the backend took the stream, it will not be refused
    // The backend reads the upload again: its response timeout waits for the end.
    if (!this.req.complete) this.#disarmResponseTimer();
    if (!this.#done) this.req.resume();
  }

  onHead(head: tsgi.Response, end: boolean): void {
    if (this.#done) return;
    this.#headReceived = true;
    this.#replay = null;
    this.#disarmResponseTimer();
    if (this.#stream!.tunnel) {
      this.#openTunnel(head);
      return;
    }
    this.#release();
    const res = this.res;
    try {
      res.writeHead(head.status, head.reason || undefined, responseHeaders(head.headers as tsgi.HeaderBlock));
    } catch (err) {
      this.#fail(new TsgiError('TSGI_ERR_PROTOCOL', `backend sent an invalid response head: ${(err as Error).message}`));
      return;
    }
    if (channels.head.hasSubscribers) channels.head.publish({ method: this.req.method, url: this.req.url, status: head.status, exchange: this });
    if (end) this.#endResponse();
    // Held for the body that the same backend read brings (one write, and a Content-Length when it
    // ends there); when that read brought no body, the head goes out alone (a stream of events).
    else if (heldHeads.push(this) === 1) process.nextTick(Exchange.#sendHeldHeads);
  }

  /** An interim response (103 Early Hints) before the head: passed on to the client. */
  onInformational(head: tsgi.Response): void {
    if (this.#done) return;
    try {
      this.res.writeInformational(head.status, responseHeaders(head.headers as tsgi.HeaderBlock));
    } catch (err) {
      this.#opts.log.debug(`${this.req.method} ${this.req.url}: interim ${head.status} dropped: ${(err as Error).message}`);
    }
  }

  /** The response ends with trailer fields (onData's end follows): the ones a trailer may be go on. */
  onTrailers(headers: HeaderFields): void {
    if (this.#done) return;
    let fields: string[];
    try {
      fields = responseHeaders(headers as tsgi.HeaderBlock);
    } catch (err) {
      this.#opts.log.debug(`${this.req.method} ${this.req.url}: trailers dropped: ${(err as Error).message}`);
      return;
    }
    const kept: string[] = [];
    for (let i = 0; i < fields.length; i += 2) {
      if (!NOT_TRAILERS.has(fields[i]!.toLowerCase())) kept.push(fields[i]!, fields[i + 1]!);
    }
    this.res.addTrailers(kept);
  }

  onData(chunk: Buffer, end: boolean): void {
    if (this.#done) return;
    const res = this.res;
    if (end) {
      // The last (often the only) chunk: head, body and end go to the client in one write.
      this.#endResponse(chunk);
      return;
    }
    if (chunk.length === 0) return;
    // The pieces of body that one backend read delivers go to the client in one write.
    if (!this.#corked) {
      this.#corked = true;
      res.cork();
      process.nextTick(Exchange.#uncork, this);
    }
    let more: boolean;
    this.#bytesOut += chunk.length;
    try {
      more = res.write(chunk, retain(chunk));
    } catch (err) {
      this.#fail(this.#lengthMismatch(err)); // more bytes than the Content-Length: never sent
      return;
    }
    if (more && !this.#awaitingDrain) {
      this.#stream!.consume(chunk.length);
    } else {
      this.#pendingCredit += chunk.length;
      if (!this.#awaitingDrain) {
        this.#awaitingDrain = true;
        res.onceDrain();
      }
    }
  }

  onReset(code: number, message: string): void {
    if (this.#done) return;
    const link = this.#link;
    const req = this.req;
    const backend = link?.name ?? 'backend';
    const lost = code === LOCAL_CONNECTION_LOST;
    // Not served: the link does not count as healthy for the reconnection backoff.
    if (!this.#headReceived && (lost || code === ResetCode.REFUSED_STREAM) && link !== null) link.owner.unanswered(link);
    // Sent again to another (or the reconnected) backend only when it cannot have been processed:
    // - REFUSED_STREAM: the backend says it never handed the stream to the app;
    // - the tsgi connection died (LOCAL_CONNECTION_LOST) before the backend acknowledged the
    //   stream in any way: no response head and no flow-control credit (credit means the app
    //   read the body). The backend may still have handed it to the app, so only an idempotent
    //   method (RFC 9110 9.2.2) is sent again, and only once: a request that kills its backend
    //   takes down two at most. A uwsgi request has no acknowledgement: never sent again.
    // In both cases only if the body sent so far is still held (replay), within MAX_ATTEMPTS.
    const stream = this.#stream;
    assert(stream !== null, 'a reset came from a stream the exchange does not hold');
    const unacknowledged = lost && this.#attempts === 1 && IDEMPOTENT.has(req.method) && !stream.credited;
    if ((code === ResetCode.REFUSED_STREAM || unacknowledged) && !this.#headReceived
        && (!req.hasBody || this.#replay !== null) && this.#attempts < MAX_ATTEMPTS) {
      this.#opts.log.debug(`${req.method} ${req.url}: ${lost ? 'lost with' : 'refused by'} `
        + `${backend} before it took the request (${message}); retrying`);
      this.#stream = null;
      if (link !== null) this.#opts.pool.release(link);
      this.#opts.pool.acquire(this);
      return;
    }
    // NO_ERROR after a complete response (the backend did not read the whole body) never gets here:
    // the exchange is done. Before the end it cuts the response like any other reset — returning
    // here left the client waiting for the rest forever.
    let err: TsgiError;
    if (lost) err = new TsgiError('TSGI_ERR_BACKEND_LOST', `${message} before the response completed`);
    else if (code === ResetCode.REFUSED_STREAM) err = new TsgiError('TSGI_ERR_STREAM_REFUSED', `${backend} refused the request: ${message}`);
    else if (code === ResetCode.TOO_LARGE && !this.#headReceived) {
      // Refused before a body byte went: the head was too large for it (431); after, the body (413).
      const body = this.#bytesIn > 0;
      err = new TsgiError(body ? 'TSGI_ERR_BODY_TOO_LARGE' : 'TSGI_ERR_HEADERS_TOO_LARGE',
        `${backend} refused the request ${body ? 'body' : 'head'} as too large${message ? ` (${message})` : ''}`);
    }
    // CANCEL before the head: the application cut its connection (node:http's socket.destroy()).
    // TIMEOUT before the head: the request ran past the backend's --timeout.
    else if (code === ResetCode.TIMEOUT && !this.#headReceived) err = new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `${backend}: ${message || 'request timed out'}`);
    else if (code === ResetCode.CANCEL && !this.#headReceived) err = new TsgiError('TSGI_ERR_CONNECTION_CUT', `${backend} cancelled the request: ${message}`);
    else err = new TsgiError('TSGI_ERR_BACKEND_RESET', `${backend} reset the stream: ${RESET_CODE_NAMES[code] ?? code}${message ? ` (${message})` : ''}`);
    this.#fail(err);
  }

  /**
   * The backend answered the upgrade with 101: the head goes to the client and a Tunnel takes
   * the socket and the stream over. The request is done (it leaves --max-in-flight), its stream
   * and link stay the tunnel's until the socket closes (onResponseClose).
   */
  #openTunnel(head: tsgi.Response): void {
    let headers: string[];
    try {
      headers = responseHeaders(head.headers as tsgi.HeaderBlock, true);
    } catch (err) {
      this.#fail(new TsgiError('TSGI_ERR_PROTOCOL', `backend sent an invalid 101 head: ${(err as Error).message}`));
      return;
    }
    let upgrade = false;
    for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === 'upgrade') upgrade = true;
    if (!upgrade) {
      this.#fail(new TsgiError('TSGI_ERR_PROTOCOL', `${this.#link!.name} sent a 101 without an Upgrade header`));
      return;
    }
    const { req, res } = this;
    const stream = this.#stream!;
    const tunnel = new Tunnel(this.#opts.tunnels!, res.tunnelSocket ?? req.socket, stream, `${req.method} ${req.url}`,
      /(^|[\s,])websocket($|[\s,])/i.test(this.#upgrade!));
    let held: Buffer | null;
    try {
      held = res.switchProtocols!(head.reason || undefined, headers, tunnel);
    } catch (err) {
      this.#fail(new TsgiError('TSGI_ERR_PROTOCOL', `backend sent an invalid 101 head: ${(err as Error).message}`));
      return;
    }
    if (channels.head.hasSubscribers) channels.head.publish({ method: req.method, url: req.url, status: 101 });
    this.#done = true;
    if (this.#hardTimer !== null) clearTimeout(this.#hardTimer); // the backend's --timeout ends at the 101 too
    this.#hardTimer = null;
    this.#reserved = false; // the tunnel counts now
    this.#tunnel = tunnel;
    stream.handler = tunnel;
    if (this.#admitted) this.#opts.pool.leave();
    tunnel.start(held);
  }

  /** Ends the response; one whose body fell short of its Content-Length is cut instead. */
  #endResponse(last?: Buffer): void {
    if (last !== undefined) this.#bytesOut += last.length;
    try {
      if (last === undefined || last.length === 0) this.res.end();
      else this.res.end(last, retain(last)); // the link's read slab is used again once this is out
    } catch (err) {
      this.#fail(this.#lengthMismatch(err));
      return;
    }
    this.#finish();
  }

  #lengthMismatch(err: unknown): TsgiError {
    return new TsgiError('TSGI_ERR_PROTOCOL', `${this.#link?.name ?? 'backend'} sent a body that does not match `
      + `its Content-Length (${(err as Error).message})`);
  }

  // Timers and end-of-tick work: static, so that no closure is made per request.

  static #sendHeldHeads(): void {
    const list = heldHeads;
    heldHeads = [];
    for (const ex of list) if (!ex.#done && !ex.res.headersSent) ex.res.write(EMPTY);
  }

  static #uncork(ex: Exchange): void {
    ex.#corked = false;
    ex.res.uncork();
  }

  static #onResponseTimeout(ex: Exchange): void {
    if (ex.#done || ex.#headReceived) return;
    const s = ex.#opts.responseTimeoutMs / 1000;
    const backend = ex.#link?.name ?? 'backend';
    ex.#stream?.reset(ResetCode.TIMEOUT, `no response within ${s} s`);
    ex.#fail(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', ex.req.complete
      ? `no response from ${backend} within --response-timeout ${s} s`
      : `${backend} took no more of the request body (${ex.#bytesIn} bytes in) within --response-timeout ${s} s`));
  }

  static #onHardTimeout(ex: Exchange, limitMs: number, since: number): void {
    ex.#hardTimer = null;
    if (ex.#done) return;
    const backend = ex.#link?.name ?? 'backend';
    const ran = ((performance.now() - since) / 1000).toFixed(1);
    ex.#stream?.reset(ResetCode.TIMEOUT, `request still running after the backend's --timeout ${limitMs / 1000} s`);
    ex.#fail(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT',
      `${backend} did not finish the request within its --timeout ${limitMs / 1000} s (running ${ran} s)`));
  }

  static #onBodyTimeout(ex: Exchange): void {
    if (ex.#done || ex.req.complete) return;
    if (ex.req.paused) {
      // Held back by the front (backend credit, or waiting for a backend): not the client's stall.
      ex.#bodyTimer!.refresh();
      return;
    }
    ex.#bodyTimer = null;
    const s = ex.#opts.bodyTimeoutMs! / 1000;
    ex.#stream?.reset(ResetCode.TIMEOUT, `request body stalled for ${s} s`);
    ex.#fail(new TsgiError('TSGI_ERR_REQUEST_TIMEOUT',
      `request body stalled for --body-timeout ${s} s after ${ex.#bytesIn} bytes`));
  }
}

/** Request trailer fields that are not passed on (RFC 9110 6.5.1). */
const trailerSkip = (_index: number, name: string): boolean => NOT_TRAILERS.has(name);

/** Exchanges whose head arrived without its end in the backend reads of this turn. */
let heldHeads: Exchange[] = [];

export function handleRequest(req: HttpRequest, res: HttpResponse, opts: ProxyOptions): void {
  new Exchange(req, res, opts).start();
}
