// HTTP/2 at the front's edge, with node:http2 (nghttp2 does the framing, HPACK, flow control
// and the known floods: rapid reset, CONTINUATION). Each HTTP/2 stream becomes an HttpRequest
// and an Http2Response, the same surfaces an HTTP/1.1 exchange has, so the exchange, static
// files and the access log serve both alike. Bodies stream both ways under both windows: the
// request's HTTP/2 stream is paused while the backend's tsgi window is shut (its WINDOW_UPDATEs
// wait), and the backend's credit waits for the client's 'drain'.
//
// Reached three ways: ALPN "h2" after a TLS handshake, the HTTP/2 connection preface on a
// cleartext connection (h2c with prior knowledge, on the HTTP/1.1 port), or an embedder.
import { constants, createServer, type IncomingHttpHeaders, type Http2Server, type OutgoingHttpHeaders,
  type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { LinkedSet } from '../../common/linked-set.js';
import type { Logger } from '../../common/log.js';
import { TsgiError, errorResponse } from '../../protocol/errors.js';
import { BAD_FIELD_VALUE, CONTENT_LENGTH, HOP_BY_HOP } from '../../protocol/http-grammar.js';
import type { ParsedRequestHead } from '../../protocol/http-request.js';
import { HttpRequest, type RequestConnection } from './request.js';
import { type HttpResponse, type ResponseHandler, type SocketTaker, checkContentLength, checkStatus, dateValue,
  lengthError } from './response.js';

export interface Http2EdgeOptions {
  log: Logger;
  onRequest: (req: HttpRequest, res: HttpResponse) => void;
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open on one connection. */
  maxConcurrentStreams: number;
  /** The bound on a decoded header list (--max-header-size; 431 beyond). */
  maxHeaderSize: number;
  /** Most header fields in a request (--max-headers); pseudo-headers not counted. */
  maxHeaders: number;
  /** A connection with no stream open for this long, in ms, is closed with GOAWAY (0: never). */
  idleTimeoutMs: number;
  /** Counts refusals (the metrics). */
  onRefused?: (status: number) => void;
}

/**
 * What the edge keeps of a session: its socket (the connection's own, not node:http2's proxy of
 * it), the streams open on it, and the timer that closes it once none has been for the idle timeout.
 */
interface SessionState {
  readonly session: ServerHttp2Session;
  readonly socket: Socket;
  open: number;
  idle: NodeJS.Timeout | null;
}

/** Respond options, made once (node:http2 copies them). */
const RESPOND_END = { endStream: true };
const RESPOND_MORE = { endStream: false };
const RESPOND_TRAILERS = { endStream: false, waitForTrailers: true };

export class Http2Edge {
  readonly #opts: Http2EdgeOptions;
  readonly #server: Http2Server;
  /** Open sessions. */
  readonly sessions = new Map<ServerHttp2Session, SessionState>();
  /** Responses of the streams open now (the status page's requests in flight); a LinkedSet, not a Set: one in and out per stream. */
  readonly responses = new LinkedSet<Http2Response>();
  /** Streams that carry a tunnel (a WebSocket, RFC 8441): the sweep applies --tunnel-idle-timeout to them. */
  readonly tunnels = new Set<Http2Response>();
  #closing = false;
  /** The socket accept() is handing to node:http2 (its 'session' event comes within). */
  #accepting: Socket | null = null;

  constructor(opts: Http2EdgeOptions) {
    this.#opts = opts;
    this.#server = createServer({
      settings: {
        maxConcurrentStreams: opts.maxConcurrentStreams,
        // Twice the limit, so that a list somewhat over it still reaches #check and gets its 431
        // (as on HTTP/1.1); nghttp2 resets a stream whose list is over this one.
        maxHeaderListSize: opts.maxHeaderSize * 2,
        enablePush: false,
        // RFC 8441: a WebSocket over an HTTP/2 stream (extended CONNECT with :protocol).
        enableConnectProtocol: true,
      },
      maxHeaderListPairs: opts.maxHeaders * 2 + 8,
      // Streams a client opens beyond SETTINGS_MAX_CONCURRENT_STREAMS, and frames nghttp2 finds
      // invalid, before the session is destroyed (Node's defaults, stated).
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 1000,
    });
    this.#server.on('session', (session: ServerHttp2Session) => this.#session(session));
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => {
      this.#stream(stream, headers, flags, raw);
    });
  }

  /** Serves an HTTP/2 connection (after ALPN h2, or a cleartext one that began with the preface). */
  accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    this.#accepting = socket;
    try {
      this.#server.emit('connection', socket);
    } finally {
      this.#accepting = null;
    }
  }

  /** Graceful: GOAWAY on every session; streams in progress complete, then the sessions close. */
  close(): void {
    this.#closing = true;
    for (const session of this.sessions.keys()) session.close();
  }

  destroyAll(): void {
    for (const session of this.sessions.keys()) session.destroy();
  }

  /** The server's sweep, at `now`: each tunnel checks its idle time (as an HTTP/1.1 upgraded connection's does). */
  sweep(now: number): void {
    for (const res of this.tunnels) res.checkIdle(now);
  }

  #session(session: ServerHttp2Session): void {
    const state: SessionState = { session, socket: this.#accepting ?? session.socket as Socket, open: 0, idle: null };
    this.sessions.set(session, state);
    const log = this.#opts.log;
    const who = (): string => state.socket.remoteAddress ?? 'client';
    session.on('close', () => {
      this.sessions.delete(session);
      if (state.idle !== null) clearTimeout(state.idle);
    });
    session.on('error', (err: NodeJS.ErrnoException) => log.debug(`HTTP/2 session with ${who()}: ${err.code ?? err.message}`));
    session.on('frameError', (type: number, code: number) => log.debug(`HTTP/2 session with ${who()}: frame ${type} not sent (${code})`));
    session.on('goaway', (code: number) => {
      // ENHANCE_YOUR_CALM from our side is nghttp2 cutting a flood (rapid reset, CONTINUATION, …).
      if (code !== constants.NGHTTP2_NO_ERROR) log.debug(`HTTP/2 session with ${who()}: GOAWAY ${code}`);
    });
    // The idle timeout counts from the moment no stream is open (its timer restarted then), not
    // from the last frame: node:http2's own session timeout would be reset by every frame.
    const idle = this.#opts.idleTimeoutMs;
    if (idle > 0) {
      state.idle = setTimeout(Http2Edge.#onIdle, idle, state);
      state.idle.unref();
    }
    if (this.#closing) session.close();
  }

  static #onIdle(state: SessionState): void {
    if (state.open === 0) state.session.close();
  }

  /** A stream of the session closed: its idle timer starts again when it was the last. */
  static streamClosed(state: SessionState): void {
    if (--state.open === 0 && state.idle !== null) state.idle.refresh();
  }

  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]): void {
    const state = this.sessions.get(stream.session as ServerHttp2Session);
    if (state === undefined) {
      stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    state.open++;
    // RFC 8441: CONNECT with :protocol websocket goes on as the HTTP/1.1 upgrade a backend knows.
    const websocket = headers[':method'] === 'CONNECT' && headers[':protocol'] === 'websocket';
    const method = websocket ? 'GET' : headers[':method'] ?? '';
    const res = new Http2Response(stream, state, this, method);
    this.responses.add(res);
    const refused = this.#check(headers, raw, websocket);
    // :authority is the Host (RFC 9113 8.3.1); a Host field beside it is kept as sent.
    const authority = headers[':authority'];
    const fields: string[] = typeof authority === 'string' ? ['host', authority] : [];
    let first = fields.length;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 0x3a /* : */) continue;
      if (name === 'host' && first > 0) {
        fields.splice(0, first);
        first = 0;
      }
      fields.push(name, raw[i + 1]!);
    }
    if (websocket) {
      // The HTTP/1.1 handshake's fields (RFC 6455 4.1), the key made here: HTTP/2 has none.
      fields.push('connection', 'upgrade', 'upgrade', 'websocket', 'sec-websocket-key', randomBytes(16).toString('base64'));
    }
    const length = headers['content-length'];
    // An extended CONNECT has no request body: its stream's bytes are the WebSocket's.
    const ended = websocket || (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0 || stream.readableEnded;
    const head: ParsedRequestHead = {
      method,
      target: headers[':path'] ?? '',
      minor: 1,
      headers: fields,
      keepAlive: true,
      expectContinue: headers.expect === '100-continue',
      framing: ended ? 'none' : length !== undefined ? 'length' : 'chunked',
      contentLength: !ended && length !== undefined ? Number(length) : 0,
    };
    const req = new HttpRequest(res, head, '2.0');
    req.extendedConnect = websocket;
    res.req = req;
    if (refused !== null) {
      const answer = errorResponse(refused);
      this.#opts.log.warn(`${answer.status} to ${res.socket.remoteAddress ?? 'client'} (HTTP/2): ${refused.message}`);
      this.#opts.onRefused?.(answer.status);
      res.writeHead(answer.status, answer.reason, answer.headers);
      res.end(Buffer.from(answer.body));
      return;
    }
    if (!ended) res.listen(req);
    this.#opts.onRequest(req, res);
  }

  /** A stream's error (a reset by the client, a session torn down): its response hears of it by 'close'. */
  streamError(stream: ServerHttp2Stream, err: NodeJS.ErrnoException): void {
    this.#opts.log.debug(`HTTP/2 stream ${stream.id}: ${err.code ?? err.message}`);
  }

  /** What HTTP/2 adds to the HTTP/1.1 checks the exchange makes: the pseudo-headers, a numeric Content-Length. */
  #check(headers: IncomingHttpHeaders, raw: string[], websocket: boolean): TsgiError | null {
    const method = headers[':method'];
    if (method === 'CONNECT' && !websocket) {
      return new TsgiError('TSGI_ERR_NOT_IMPLEMENTED', `CONNECT over HTTP/2 is served for :protocol websocket only (${String(headers[':protocol'] ?? 'none')})`);
    }
    const path = headers[':path'];
    if (typeof path !== 'string' || path === '') return new TsgiError('TSGI_ERR_BAD_REQUEST', 'HTTP/2 request without :path');
    const length = headers['content-length'];
    if (length !== undefined && (typeof length !== 'string' || !CONTENT_LENGTH.test(length))) {
      return new TsgiError('TSGI_ERR_BAD_REQUEST', 'malformed Content-Length');
    }
    // The size HTTP/2 counts a header list by (RFC 9113 6.5.2): each field's octets plus 32.
    let size = 0;
    for (let i = 1; i < raw.length; i += 2) {
      size += raw[i - 1]!.length + raw[i]!.length + 32;
      if (BAD_FIELD_VALUE.test(raw[i]!)) return new TsgiError('TSGI_ERR_BAD_REQUEST', `a control character in the value of ${raw[i - 1]}`);
    }
    if (size > this.#opts.maxHeaderSize) {
      return new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', `header list of ${size} bytes over --max-header-size ${this.#opts.maxHeaderSize}`);
    }
    return null;
  }
}

/**
 * An HTTP/2 stream with the part of a net.Socket a tunnel uses: write, end, pause, resume, the
 * peer's address, and a reset (RST_STREAM CANCEL for a socket's TCP reset).
 */
class StreamSocket {
  readonly #stream: ServerHttp2Stream;
  readonly remoteAddress: string | undefined;

  constructor(stream: ServerHttp2Stream, socket: Socket) {
    this.#stream = stream;
    this.remoteAddress = socket.remoteAddress;
  }

  get destroyed(): boolean {
    return this.#stream.destroyed || this.#stream.closed;
  }

  get writableEnded(): boolean {
    return this.#stream.writableEnded;
  }

  write(chunk: Uint8Array, done?: () => void): boolean {
    return this.#stream.write(chunk, done);
  }

  end(): void {
    this.#stream.end();
  }

  pause(): void {
    this.#stream.pause();
  }

  resume(): void {
    this.#stream.resume();
  }

  resetAndDestroy(): void {
    if (!this.#stream.closed) this.#stream.close(constants.NGHTTP2_CANCEL);
  }

  destroy(): void {
    this.resetAndDestroy();
  }
}

/** Flat [name, value, …] fields as node:http2 headers: lowercase names, repeated ones as arrays. */
function fieldsObject(fields: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name)) addField(out, name, fields[i + 1]!);
  }
  return out;
}

/** Adds a field to node:http2 headers, a repeated one as an array. */
function addField(out: OutgoingHttpHeaders, name: string, value: string): void {
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [prev as string, value];
}

/**
 * A response on an HTTP/2 stream: the head is held until the first body bytes (or the end), as
 * on HTTP/1.1, so a whole small response is one HEADERS and one DATA frame with its length.
 * It is also the request's link to the stream (pause, resume) for the body.
 */
export class Http2Response implements HttpResponse, RequestConnection {
  statusCode = 200;
  headersSent = false;
  ended = false;
  destroyed = false;
  handler: ResponseHandler | null = null;
  req!: HttpRequest;
  readonly socket: Socket;
  linkedIn: LinkedSet<Http2Response> | null = null;
  linkedPrev: Http2Response | null = null;
  linkedNext: Http2Response | null = null;
  readonly #stream: ServerHttp2Stream;
  #head: OutgoingHttpHeaders | null = null;
  #hasLength = false;
  #remaining = 0;
  #noBody: boolean;
  #awaitingDrain = false;
  /** Trailer fields to end the stream with; sent on 'wantTrailers'. */
  #trailers: OutgoingHttpHeaders | null = null;
  /** After a WebSocket's 101 (RFC 8441): the tunnel that has the stream's bytes. */
  #taker: SocketTaker | null = null;
  #tunnelSocket: Socket | null = null;
  /** 'drain' is listened to from the first time it is awaited (most responses never are). */
  #drainListened = false;
  readonly #session: SessionState;
  readonly #edge: Http2Edge;

  constructor(stream: ServerHttp2Stream, session: SessionState, edge: Http2Edge, method: string) {
    this.#stream = stream;
    this.#session = session;
    this.#edge = edge;
    this.socket = session.socket;
    this.#noBody = method === 'HEAD';
    // The two listeners every stream has (each costs node:http2 a 'newListener' event).
    stream.on('error', (err: NodeJS.ErrnoException) => edge.streamError(stream, err));
    stream.on('close', () => this.#closed());
  }

  /** Feeds the stream's body to `req` (its reader, when it reads), and its end. */
  listen(req: HttpRequest): void {
    const stream = this.#stream;
    stream.pause();
    stream.on('data', (chunk: Buffer) => {
      if (!req.discarding && req.reader !== null) req.reader.onBodyData(chunk);
    });
    stream.on('trailers', (headers: IncomingHttpHeaders) => {
      const fields: string[] = [];
      for (const [name, value] of Object.entries(headers)) {
        if (name.charCodeAt(0) === 0x3a || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) fields.push(name, v);
      }
      if (fields.length > 0) req.trailers = fields;
    });
    stream.on('end', () => {
      req.complete = true;
      req.paused = false;
      if (req.reader !== null && !req.discarding) req.reader.onBodyEnd();
    });
  }

  // RequestConnection: the request's body flow.

  pauseBody(): void {
    this.#stream.pause();
  }

  resumeBody(): void {
    this.#stream.resume();
  }

  /** Nobody will read the rest: it is dropped as it comes, and the stream reset once the response is out. */
  discardStarted(): void {}

  // HttpResponse.

  writeHead(status: number, reason: string | undefined, headers: readonly string[]): void {
    if (this.headersSent) throw new Error('writeHead: the head was already sent');
    checkStatus(status, reason);
    // HTTP/2 has no reason phrase (RFC 9113 8.3.2); field names go lowercase (8.2.1).
    const head: OutgoingHttpHeaders = { ':status': status };
    let length: string | null = null;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!.toLowerCase();
      const value = headers[i + 1]!;
      if (name === 'content-length') {
        if (length !== null && length !== value) throw new TsgiError('TSGI_ERR_PROTOCOL', 'two different Content-Lengths');
        length = value;
        continue;
      }
      // Connection-specific fields are malformed in HTTP/2 (8.2.2): the front's own Connection: close among them.
      if (!HOP_BY_HOP.has(name)) addField(head, name, value);
    }
    if (length !== null) {
      checkContentLength(length);
      head['content-length'] = length;
    }
    if (head.date === undefined) head.date = dateValue();
    this.#hasLength = length !== null;
    this.#remaining = length !== null ? Number(length) : 0;
    this.#noBody = status === 204 || status === 304 || this.req.method === 'HEAD';
    this.statusCode = status;
    this.#head = head;
  }

  writeContinue(): void {
    this.writeInformational(100, []);
  }

  writeInformational(status: number, headers: readonly string[]): void {
    if (this.headersSent || this.destroyed || this.#stream.closed) return;
    const head = fieldsObject(headers);
    head[':status'] = status;
    this.#stream.additionalHeaders(head);
  }

  addTrailers(headers: readonly string[]): void {
    if (headers.length > 0 && !this.ended) this.#trailers = fieldsObject(headers);
  }

  /**
   * The backend's 101 to an extended CONNECT (RFC 8441): the client gets a 200 with the
   * WebSocket's fields (not the HTTP/1.1 handshake's Upgrade, Connection, Sec-WebSocket-Accept),
   * and the stream's bytes both ways are the tunnel's from now on.
   */
  switchProtocols(_reason: string | undefined, headers: readonly string[], taker: SocketTaker): Buffer | null {
    if (this.headersSent) throw new Error('switchProtocols: the head was already sent');
    const head = fieldsObject(headers);
    delete head['sec-websocket-accept'];
    head[':status'] = 200;
    this.headersSent = true;
    this.statusCode = 101;
    this.#taker = taker;
    this.#edge.tunnels.add(this);
    const stream = this.#stream;
    stream.respond(head, RESPOND_MORE);
    this.#listenDrain();
    stream.pause();
    stream.on('data', (chunk: Buffer) => taker.onSocketData(chunk));
    stream.on('end', () => taker.onSocketEnd());
    return null;
  }

  /** The sweep: the tunnel on this stream, if any, closes itself when idle too long. */
  checkIdle(now: number): void {
    this.#taker?.checkIdle(now);
  }

  /** The stream as the socket a tunnel writes to and reads from. */
  get tunnelSocket(): Socket | undefined {
    if (!this.req?.extendedConnect) return undefined;
    this.#tunnelSocket ??= new StreamSocket(this.#stream, this.socket) as unknown as Socket;
    return this.#tunnelSocket;
  }

  cork(): void {}

  uncork(): void {}

  onceDrain(): void {
    this.#awaitingDrain = true;
    this.#listenDrain();
  }

  #listenDrain(): void {
    if (this.#drainListened) return;
    this.#drainListened = true;
    this.#stream.on('drain', () => this.#drained());
  }

  write(chunk: Buffer, done?: () => void): boolean {
    const stream = this.#stream;
    if (this.ended || this.destroyed || stream.closed) {
      done?.();
      return false;
    }
    if (this.#head !== null) this.#sendHead(false);
    if (this.#noBody || chunk.length === 0) {
      done?.();
      return true;
    }
    if (this.#hasLength) {
      if (chunk.length > this.#remaining) throw lengthError(`${chunk.length} more bytes with ${this.#remaining} left`, done);
      this.#remaining -= chunk.length;
    }
    return stream.write(chunk, done);
  }

  end(last?: Buffer, done?: () => void): void {
    const stream = this.#stream;
    if (this.ended || this.destroyed || stream.closed) {
      done?.();
      return;
    }
    const n = last === undefined || this.#noBody ? 0 : last.length;
    if (this.#hasLength && !this.#noBody && n !== this.#remaining) throw lengthError(`${n} bytes at the end with ${this.#remaining} left`, done);
    this.ended = true;
    if (this.#head !== null) {
      if (!this.#hasLength && !this.#noBody) this.#head['content-length'] = n;
      this.#sendHead(n === 0);
      if (n === 0 && (this.#noBody || this.#trailers === null)) {
        done?.();
        this.#afterEnd();
        return;
      }
    }
    if (n > 0) stream.end(last, done);
    else stream.end(done);
    this.#afterEnd();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (!this.#stream.closed) this.#stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  #sendHead(endStream: boolean): void {
    const head = this.#head!;
    this.#head = null;
    this.headersSent = true;
    const stream = this.#stream;
    // A body that streams may end with trailers the head cannot know of yet: the stream waits
    // for them (an empty trailer section when none come); a whole body knows already.
    const waitForTrailers = !this.#noBody && (this.ended ? this.#trailers !== null : !endStream);
    if (waitForTrailers) stream.once('wantTrailers', () => stream.sendTrailers(this.#trailers ?? {}));
    stream.respond(head, waitForTrailers ? RESPOND_TRAILERS : endStream ? RESPOND_END : RESPOND_MORE);
  }

  /** A body the client is still sending is not read: RST_STREAM NO_ERROR once the response is out (RFC 9113 8.1). */
  #afterEnd(): void {
    if (this.req.complete) return;
    const stream = this.#stream;
    if (stream.writableFinished || stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
    else stream.once('finish', () => stream.close(constants.NGHTTP2_NO_ERROR));
  }

  #drained(): void {
    if (this.#taker !== null) {
      this.#taker.onSocketDrain();
      return;
    }
    if (!this.#awaitingDrain) return;
    this.#awaitingDrain = false;
    this.handler?.onResponseDrain?.();
  }

  /** The stream closed (ended, or reset by the client): the handler hears it once. */
  #closed(): void {
    this.#edge.responses.delete(this);
    if (this.#taker !== null) this.#edge.tunnels.delete(this);
    Http2Edge.streamClosed(this.#session);
    if (!this.ended) this.destroyed = true;
    const handler = this.handler;
    this.handler = null;
    handler?.onResponseClose();
  }
}
