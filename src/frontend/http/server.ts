// The front's HTTP/1.1 server: client connections read with the strict parser of
// protocol/http-request.ts and answered by HttpResponse, without node:http. Node's server
// costs a Readable and a Writable per request and a writev per response; this one costs two
// small objects and, for the common small response, one write of one string. Measured on the
// hello app: ~5 µs less CPU per request at the front (see the README's performance section).
//
// One request at a time per connection: bytes after a request (pipelined ones) wait, unparsed,
// until its response is complete, so responses can only go out in order. Limits: --max-header-size
// (431), --headers-timeout (408), --keep-alive-timeout, --max-connections (503 + Retry-After);
// malformed heads get 400; every refusal is a log line and closes the connection.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../common/log.js';
import { type ParsedRequestHead, HttpRequestParser, type RequestEvents } from '../../protocol/http-request.js';
import { TsgiError, httpStatusFor, rawErrorResponse, reasonPhrase } from '../../protocol/errors.js';
import { BAD_FIELD_VALUE, CONTENT_LENGTH } from '../../protocol/http-grammar.js';

export interface HttpServerOptions {
  log: Logger;
  /** Called for each request head; the body (if any) flows once the handler asks for it. */
  onRequest: (req: HttpRequest, res: HttpResponse) => void;
  /** Seconds-as-ms an idle keep-alive connection stays open (0: no limit). */
  keepAliveTimeoutMs: number;
  /** Time a client has to complete a request head, in ms (0: no limit); 408 beyond. */
  headersTimeoutMs: number;
  /** Largest request head in bytes; 431 beyond. */
  maxHeaderSize: number;
  /** Client connections at once (0: no limit); one over it gets 503 and is closed. */
  maxConnections: number;
  /**
   * A request body still coming after its response ended (read and dropped) that stalls this
   * long, in ms, closes its connection (0: no limit); while a handler reads it, the handler's.
   */
  bodyTimeoutMs?: number;
  /**
   * Once the front is done with a connection (a close after its response, or a refusal), what
   * the client still sends is read and dropped for at most this long, in ms, from the moment the
   * last response byte was handed to the kernel; then it is destroyed whatever comes (nginx's
   * lingering_time). Also the most an unread request body is read and dropped for.
   */
  lingerTimeoutMs?: number;
  /** A response that cannot hand the kernel a byte for this long, in ms, is abandoned and its connection closed (0: no limit). */
  sendTimeoutMs?: number;
  /**
   * The most bytes a connection reads and drops once nothing will use them (the rest of an
   * unread request body, what comes after a close): beyond it the front stops reading and closes.
   */
  maxDropBytes?: number;
  /** Counts refusals (the metrics): called with the status of each. */
  onRefused?: (status: number) => void;
  /** False: no timer sweeps the connections; the owner calls sweep() (tests, with a clock of their own). */
  sweeper?: boolean;
}

/** Default of lingerTimeoutMs. */
export const LINGER_TIMEOUT_MS = 5000;
/** Default of maxDropBytes. */
export const MAX_DROP_BYTES = 1024 * 1024;
/**
 * Connections refused at --max-connections that may linger at once (reading what their client
 * sends, so that the close does not reset the 503 away); beyond it, the 503 is written and the
 * socket destroyed at once. Bounds the descriptors a flood of refused connections holds.
 */
const MAX_REFUSED_LINGERING = 64;
const OVER_MAX_CONNECTIONS = rawErrorResponse(new TsgiError('TSGI_ERR_OVERLOADED', 'over --max-connections'));
/** Bodies up to this size are written together with the head, as one string. */
const SMALL_BODY = 2048;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const ignore = (): void => {};

let dateMs = 0;
let dateLine = '';
/** The Date header line, made at most once a second. */
function dateHeader(): string {
  const now = Date.now();
  if (now - dateMs >= 1000 || now < dateMs) {
    dateMs = now - (now % 1000);
    dateLine = `Date: ${new Date(dateMs).toUTCString()}\r\n`;
  }
  return dateLine;
}

export class HttpServer {
  /** The listener; a worker of --processes N never listens, it is handed connections (accept). */
  readonly listener: Server;
  readonly opts: HttpServerOptions;
  readonly connections = new Set<Connection>();
  /** After close(): responses say Connection: close and their connections end when done. */
  closing = false;
  #sweeper: NodeJS.Timeout | null = null;
  #refused = 0;
  /** Connections the front is done with, lingering until their client closes or the deadline: oldest first. */
  readonly #ended = new Set<Connection>();
  /** Sockets refused at --max-connections, lingering: when each was refused. */
  readonly #lingering = new Map<Socket, number>();
  readonly lingerTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly maxDropBytes: number;
  /** The Connection (and Keep-Alive) lines of a response that keeps its connection open. */
  readonly keepAliveHeader: string;

  constructor(opts: HttpServerOptions) {
    this.opts = opts;
    this.listener = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    this.keepAliveHeader = opts.keepAliveTimeoutMs > 0
      ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(opts.keepAliveTimeoutMs / 1000)}\r\n`
      : 'Connection: keep-alive\r\n';
    this.lingerTimeoutMs = opts.lingerTimeoutMs ?? LINGER_TIMEOUT_MS;
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 0;
    this.maxDropBytes = opts.maxDropBytes ?? MAX_DROP_BYTES;
    const timeouts = [opts.headersTimeoutMs, opts.keepAliveTimeoutMs, opts.bodyTimeoutMs ?? 0, this.lingerTimeoutMs,
      this.sendTimeoutMs].filter((t) => t > 0);
    if (timeouts.length > 0 && opts.sweeper !== false) {
      // One timer looks at every connection (as Node's server does), not a timer per connection.
      const every = Math.min(1000, Math.max(100, Math.min(...timeouts) / 4));
      this.#sweeper = setInterval(() => this.sweep(), every);
      this.#sweeper.unref();
    }
  }

  /** Serves a client connection: the listener's, or one handed over by the primary of --processes N. */
  accept(socket: Socket): void {
    const max = this.opts.maxConnections;
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (max > 0 && this.connections.size >= max && !this.#evictLingering()) {
      this.#refuse(socket, max);
      return;
    }
    socket.setNoDelay(true);
    // A client may half-close after its request and still read the response (Node's http
    // server allows it too); sockets handed over by the primary are made this way here.
    socket.allowHalfOpen = true;
    new Connection(this, socket);
  }

  /** Closes the connections between requests; busy ones close when their response is done. */
  closeIdleConnections(): void {
    for (const c of this.connections) if (c.idle) c.socket.destroy();
  }

  closeAllConnections(): void {
    for (const c of this.connections) c.socket.destroy();
    for (const socket of this.#lingering.keys()) socket.destroy();
  }

  /** Sockets open: connections served, and refused ones still lingering. */
  get sockets(): number {
    return this.connections.size + this.#lingering.size;
  }

  /**
   * Marks the server closing (the listener is closed by the caller): idle connections close now,
   * busy ones after their response; the timeouts keep applying until the last one is gone.
   */
  close(): void {
    this.closing = true;
    this.closeIdleConnections();
    if (this.connections.size === 0) this.#stopSweeping();
  }

  #stopSweeping(): void {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  /** The front is done with `c`: it lingers, and gives way to a new connection at --max-connections. */
  ended(c: Connection): void {
    this.#ended.add(c);
  }

  /**
   * At --max-connections, a connection the front is done with (its response all out, only
   * lingering to read what the client still sends) is closed to make room: lingering sockets
   * cannot lock honest clients out. False when none can go.
   */
  #evictLingering(): boolean {
    let looked = 0;
    for (const c of this.#ended) {
      if (++looked > 16) break;
      if (c.socket.writableLength > 0) continue; // its response is still going out
      this.#ended.delete(c);
      c.socket.destroy();
      return true;
    }
    return false;
  }

  /** A connection closed: one fewer (and the end of a burst of refusals is logged). */
  closed(c: Connection): void {
    this.connections.delete(c);
    this.#ended.delete(c);
    if (this.closing && this.connections.size === 0) this.#stopSweeping();
    const max = this.opts.maxConnections;
    if (this.#refused > 0 && this.connections.size < max) {
      this.opts.log.warn(`accepting connections again; ${this.#refused} refused with 503 while at --max-connections ${max}`);
      this.#refused = 0;
    }
  }

  #refuse(socket: Socket, max: number): void {
    const who = socket.remoteAddress ?? 'unix client';
    if (this.#refused++ === 0) {
      this.opts.log.warn(`503 to ${who}: ${this.connections.size} connections open, at --max-connections ${max}; `
        + 'refusing new connections until one closes');
    } else {
      this.opts.log.debug(`503 to ${who}: at --max-connections ${max}`);
    }
    this.opts.onRefused?.(503);
    socket.on('error', ignore);
    socket.end(OVER_MAX_CONNECTIONS);
    if (this.#lingering.size >= MAX_REFUSED_LINGERING) {
      socket.destroySoon(); // too many lingering already: the descriptor goes once the 503 is out
      return;
    }
    // Read and drop the request, so that closing does not reset the 503 away; at the linger
    // deadline the socket goes whatever the client still sends.
    this.#lingering.set(socket, Date.now());
    socket.on('close', () => this.#lingering.delete(socket));
    socket.resume();
  }

  /** Applies every timeout as of `now` (the sweeper calls it; a test may, with a time of its own). */
  sweep(now = Date.now()): void {
    const { headersTimeoutMs, keepAliveTimeoutMs, bodyTimeoutMs = 0 } = this.opts;
    for (const c of this.connections) c.checkTimeouts(now, headersTimeoutMs, keepAliveTimeoutMs, bodyTimeoutMs);
    const linger = this.lingerTimeoutMs;
    if (linger > 0) {
      for (const [socket, since] of this.#lingering) if (now - since > linger) socket.destroy();
    }
  }
}

type BodyHandler = (req: HttpRequest, chunk: Buffer) => void;
type RequestHandler = (req: HttpRequest) => void;

/** A request as the front's handlers see it: the head, and the body through callbacks. */
export class HttpRequest {
  readonly method: string;
  readonly url: string;
  /** '1.1' or '1.0'. */
  readonly httpVersion: string;
  /** Header fields as sent: [name, value, name, value, …]. */
  readonly rawHeaders: string[];
  readonly socket: Socket;
  readonly expectContinue: boolean;
  readonly hasBody: boolean;
  /** The body's declared length (Content-Length framing, over 0), or -1: chunked, or no body. */
  readonly contentLength: number;
  /** The whole request, body included, has been read. */
  complete: boolean;
  /** The handler's own state for this request. */
  context: unknown = null;
  onData: BodyHandler | null = null;
  onEnd: RequestHandler | null = null;
  /** The body was malformed (a bad chunk): the handler answers, or cuts, with this error. */
  onError: ((req: HttpRequest, err: TsgiError) => boolean) | null = null;
  readonly #conn: Connection;
  #headers: Record<string, string> | null = null;
  /** The handler asked for no more body for now (or has not asked for it yet). */
  paused: boolean;
  discarding = false;

  constructor(conn: Connection, head: ParsedRequestHead) {
    this.#conn = conn;
    this.socket = conn.socket;
    this.method = head.method;
    this.url = head.target;
    this.httpVersion = head.minor === 1 ? '1.1' : '1.0';
    this.rawHeaders = head.headers;
    this.expectContinue = head.expectContinue;
    this.hasBody = head.framing !== 'none';
    this.contentLength = head.framing === 'length' ? head.contentLength : -1;
    this.complete = !this.hasBody;
    this.paused = this.hasBody;
  }

  /** Header values by lowercase name (repeated ones joined with ', '), made on first use. */
  get headers(): Record<string, string> {
    if (this.#headers === null) {
      const h: Record<string, string> = Object.create(null) as Record<string, string>;
      const raw = this.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!.toLowerCase();
        const prev = h[name];
        h[name] = prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`;
      }
      this.#headers = h;
    }
    return this.#headers;
  }

  /** Delivers the body to these handlers, starting now. */
  readBody(onData: BodyHandler, onEnd: RequestHandler): void {
    this.onData = onData;
    this.onEnd = onEnd;
    this.resume();
  }

  pause(): void {
    if (this.complete || this.paused) return;
    this.paused = true;
    this.#conn.pauseBody();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.#conn.resumeBody();
  }

  /**
   * Nobody will read the rest of the body: it is read and dropped, within bounds (the
   * connection's maxDropBytes and linger timeout), and the connection stays usable if it ends
   * within them.
   */
  discard(): void {
    if (!this.discarding) this.#conn.discardStarted();
    this.discarding = true;
    this.onData = null;
    this.resume();
  }
}

/**
 * A response: the head is held until the first body bytes (or the end), then written with
 * them; write() of no bytes sends it alone.
 */
export class HttpResponse {
  statusCode = 200;
  headersSent = false;
  /** end() was called. */
  ended = false;
  destroyed = false;
  context: unknown = null;
  /** Called once the response closes: ended, or its connection went away first. */
  onClose: ((res: HttpResponse) => void) | null = null;
  readonly req: HttpRequest;
  readonly #conn: Connection;
  /** The head, written by writeHead and not yet sent. */
  #head: string | null = null;
  #hasLength = false;
  #remaining = 0;
  #chunked = false;
  #noBody: boolean;
  #onDrain: ((res: HttpResponse) => void) | null = null;

  constructor(conn: Connection, req: HttpRequest) {
    this.#conn = conn;
    this.req = req;
    this.#noBody = req.method === 'HEAD';
  }

  get socket(): Socket {
    return this.#conn.socket;
  }

  /**
   * Sets the status and headers (flat: [name, value, …], checked by the caller for tokens and
   * control characters). Throws, writing nothing, on a Content-Length that is not one number.
   * A head not sent yet (no body bytes written) may be replaced: an error found after the
   * backend's head still becomes a clean 502 rather than a cut.
   */
  writeHead(status: number, reason: string | undefined, headers: readonly string[]): void {
    if (this.headersSent) throw new Error('writeHead: the head was already sent');
    if (!(status >= 200 && status <= 999) || (reason !== undefined && BAD_FIELD_VALUE.test(reason))) {
      throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid response status ${status} ${JSON.stringify((reason ?? '').slice(0, 40))}`);
    }
    let head = `HTTP/1.1 ${status} ${reason || reasonPhrase(status) || 'Unknown'}\r\n`;
    let length: string | null = null;
    let hasDate = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        if (length !== null && length !== value) throw new TsgiError('TSGI_ERR_PROTOCOL', 'two different Content-Lengths');
        if (length !== null) continue;
        length = value;
      } else if (name.length === 4 && name.toLowerCase() === 'date') {
        hasDate = true;
      } else if (name.length === 10 && name.toLowerCase() === 'connection') {
        // Only the front's own refusals say this (hop-by-hop fields from backends are dropped).
        if (value.toLowerCase() === 'close') this.#conn.keepAlive = false;
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (length !== null && !CONTENT_LENGTH.test(length)) {
      throw new TsgiError('TSGI_ERR_PROTOCOL', `invalid Content-Length ${JSON.stringify(length.slice(0, 40))}`);
    }
    this.#hasLength = length !== null;
    this.#remaining = length !== null ? Number(length) : 0;
    if (!hasDate) head += dateHeader();
    this.#noBody = status === 204 || status === 304 || this.req.method === 'HEAD';
    this.statusCode = status;
    this.#head = head;
  }

  /** Writes `100 Continue`: the client may send the body it announced with Expect. */
  writeContinue(): void {
    if (!this.headersSent && !this.destroyed) this.#conn.socket.write(CONTINUE, 'latin1');
  }

  cork(): void {
    this.#conn.socket.cork();
  }

  uncork(): void {
    this.#conn.socket.uncork();
  }

  /** Calls `fn` once when the socket can take more (after a write returned false). */
  onceDrain(fn: (res: HttpResponse) => void): void {
    this.#onDrain = fn;
    this.#conn.drainWaiter = this;
  }

  drained(): void {
    const fn = this.#onDrain;
    this.#onDrain = null;
    fn?.(this);
  }

  /**
   * Writes body bytes; false when the socket's buffer is full (wait for onceDrain). Throws,
   * writing nothing, when they would run past the Content-Length (the client would read the
   * rest as the next response). `done` is called once the bytes are handed to the kernel.
   */
  write(chunk: Buffer, done?: () => void): boolean {
    if (this.ended || this.destroyed) {
      done?.();
      return false;
    }
    const socket = this.#conn.socket;
    if (this.#head !== null) this.#sendHead(false, 0);
    if (this.#noBody || chunk.length === 0) {
      done?.();
      return true;
    }
    if (this.#hasLength) {
      if (chunk.length > this.#remaining) throw lengthError(`${chunk.length} more bytes with ${this.#remaining} left`, done);
      this.#remaining -= chunk.length;
      return socket.write(chunk, done);
    }
    if (this.#chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      const more = socket.write('\r\n', 'latin1', done);
      socket.uncork();
      return more;
    }
    return socket.write(chunk, done); // HTTP/1.0 without a length: delimited by the close
  }

  /**
   * Ends the response, with `last` as its final body bytes. Throws, writing nothing of the
   * end, when the body falls short of (or runs past) its Content-Length.
   */
  end(last?: Buffer, done?: () => void): void {
    if (this.ended || this.destroyed) {
      done?.();
      return;
    }
    const socket = this.#conn.socket;
    const n = last === undefined || this.#noBody ? 0 : last.length;
    if (this.#head !== null) {
      // The usual case: head and whole body together.
      if (this.#hasLength && !this.#noBody && n !== this.#remaining) throw lengthError(`${n} bytes for a Content-Length of ${this.#remaining}`, done);
      const head = this.#sendHead(true, n);
      if (n === 0) {
        socket.write(head, 'latin1', done);
      } else if (n <= SMALL_BODY) {
        socket.write(head + last!.toString('latin1', 0, n), 'latin1', done);
      } else {
        socket.cork();
        socket.write(head, 'latin1');
        socket.write(last!, done);
        socket.uncork();
      }
    } else if (this.#hasLength && !this.#noBody) {
      if (n !== this.#remaining) throw lengthError(`${n} bytes at the end with ${this.#remaining} left`, done);
      if (n > 0) socket.write(last!, done);
      else done?.();
    } else if (this.#chunked) {
      if (n > 0) {
        socket.cork();
        socket.write(`${n.toString(16)}\r\n`, 'latin1');
        socket.write(last!);
        socket.write('\r\n0\r\n\r\n', 'latin1', done);
        socket.uncork();
      } else {
        socket.write('0\r\n\r\n', 'latin1', done);
      }
    } else if (n > 0) {
      socket.write(last!, done);
    } else {
      done?.();
    }
    this.ended = true;
    this.#conn.responseEnded(this);
  }

  /**
   * Cuts the connection (a response that cannot be completed). What was written and is still
   * corked goes out first (the head, say, so the client sees why), unless the body has reached
   * its Content-Length: the client would take that for a whole response.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const socket = this.#conn.socket;
    if (!(this.#hasLength && this.#remaining === 0 && !this.#noBody)) {
      while (socket.writableCorked > 0) socket.uncork();
    }
    socket.destroy();
  }

  /**
   * Sends the held head, with the framing now decided: Content-Length when the whole body is
   * known (`final`), chunked for HTTP/1.1, else the close. Returns it instead when `final`.
   */
  #sendHead(final: boolean, n: number): string {
    let head = this.#head!;
    this.#head = null;
    this.headersSent = true;
    const conn = this.#conn;
    if (!this.#hasLength && !this.#noBody) {
      if (final) head += `Content-Length: ${n}\r\n`;
      else if (this.req.httpVersion === '1.1') {
        this.#chunked = true;
        head += 'Transfer-Encoding: chunked\r\n';
      } else {
        conn.keepAlive = false;
      }
    }
    if (conn.server.closing) conn.keepAlive = false;
    head += conn.keepAlive ? conn.server.keepAliveHeader : 'Connection: close\r\n';
    head += '\r\n';
    if (final) return head;
    this.#conn.socket.write(head, 'latin1');
    return '';
  }
}

/** The error for a body that does not match its Content-Length (nothing of it was written: `done` is called now). */
function lengthError(detail: string, done: (() => void) | undefined): TsgiError {
  done?.();
  return new TsgiError('TSGI_ERR_PROTOCOL', `body length does not match the Content-Length: ${detail}`);
}

/** One client connection: its parser, the request in progress, and the bytes waiting behind it. */
class Connection implements RequestEvents {
  readonly server: HttpServer;
  readonly socket: Socket;
  readonly #parser: HttpRequestParser;
  req: HttpRequest | null = null;
  res: HttpResponse | null = null;
  /** The response in progress waits for 'drain'. */
  drainWaiter: HttpResponse | null = null;
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

  constructor(server: HttpServer, socket: Socket) {
    this.server = server;
    this.socket = socket;
    this.#parser = new HttpRequestParser(this, { maxHeadSize: server.opts.maxHeaderSize });
    server.connections.add(this);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => {
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
  #probe(res: HttpResponse): void {
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

  /** The rest of an answered body starts being read and dropped now. */
  discardStarted(): void {
    this.#discardSince = Date.now();
  }

  #onData(chunk: Buffer): void {
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
    const res = new HttpResponse(this, req);
    this.req = req;
    this.res = res;
    this.keepAlive = head.keepAlive && !this.server.closing;
    this.server.opts.onRequest(req, res);
    if (req.paused && !req.complete) this.#parser.stop(); // the body waits until the handler reads it
  }

  onBody(chunk: Buffer): void {
    const req = this.req!;
    if (req.discarding) this.#drop(chunk.length, `the unread body of ${req.method} ${req.url}`);
    else if (req.onData !== null) req.onData(req, chunk);
    if (req.paused && !req.discarding) this.#parser.stop();
  }

  onEnd(): void {
    const req = this.req!;
    req.complete = true;
    req.paused = false;
    const onEnd = req.onEnd;
    if (onEnd !== null && !req.discarding) onEnd(req);
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

  responseEnded(res: HttpResponse): void {
    res.onClose?.(res);
    res.onClose = null;
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
      if (req.onData !== null || req.paused) req.discard();
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
      if (!req.complete && req.onError !== null && !this.res!.ended && req.onError(req, err)) return;
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

  #onClose(): void {
    this.server.closed(this);
    this.#abandon();
  }

  /** The client is gone: a response not ended yet is closed for its handler. */
  #abandon(): void {
    const res = this.res;
    if (res !== null && !res.ended) {
      res.destroyed = true;
      const onClose = res.onClose;
      res.onClose = null;
      onClose?.(res);
    }
  }
}

function resumeHeld(c: Connection): void {
  c.resumeHeld();
}
