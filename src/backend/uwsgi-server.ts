// The backend's uwsgi listener (`tsgi serve --uwsgi-socket PATH`): takes the genuine uwsgi
// packets that nginx's uwsgi_pass sends, runs the application for each request, and writes the
// response back as raw HTTP/1.1. One request per connection; the connection closes at the end.
import type { Socket } from 'node:net';
import { SocketStream, type ByteStream, type RawStream, type RawStreamOwner } from '../common/raw-stream.js';
import type { Address } from '../common/address.js';
import type { Logger } from '../common/log.js';
import { DEFAULTS } from '../protocol/constants.js';
import { TsgiError, rawErrorResponse, reasonPhrase } from '../protocol/errors.js';
import { Modifier1, PING_REPLY, UwsgiPacketParser, wholePacket, type UwsgiPacket } from '../protocol/uwsgi.js';
import { LazySignal, buildEnvironFromVars } from './environ.js';
import { runApplication, type Responder } from './gateway.js';
import { InputStream } from './input.js';
import type { ServeMetrics } from './metrics.js';
import { SocketListener } from './listener.js';
import { LinkedSet } from '../common/linked-set.js';
import type { Application } from './types.js';
import { CONTENT_LENGTH } from '../protocol/http-grammar.js';

export interface UwsgiServerOptions {
  /** Where to listen; null for a worker, whose connections come from its supervisor. */
  address: Address | null;
  app: Application;
  log: Logger;
  scriptName?: string;
  multiprocess?: boolean;
  /** Request body bytes read ahead of the application before the socket is paused. */
  window?: number;
  socketMode?: number;
  /** Largest vars block accepted (the protocol's 64 KiB by default). */
  maxVarsSize?: number;
  /** Called after each completed request with the running total. */
  onServed?: (served: number) => void;
  /** --admin: count each request's status and latency. */
  metrics?: ServeMetrics;
}

/** A client that sends no complete packet within this long is dropped (within twice this long). */
const PACKET_TIMEOUT_MS = 30_000;
/** After the response, unread request bytes are drained for at most this long before closing. */
const LINGER_MS = 2000;
/** A first chunk of body up to this size goes out in one buffer with the head. */
const JOIN_MAX = 16 * 1024;
const BAD_REQUEST = Buffer.from(rawErrorResponse(new TsgiError('TSGI_ERR_BAD_REQUEST', 'malformed uwsgi packet')), 'latin1');

/** Writes the response to the socket as raw HTTP/1.1, honouring the socket's backpressure. */
class SocketResponder implements Responder {
  aborted = false;
  /** The status sent (0 until the head went out). */
  status = 0;
  readonly #socket: ByteStream;
  readonly #headRequest: boolean;
  #bodyless = false;
  /** A head held back to go out with the first chunk of body. */
  #head: string | null = null;
  #waiter: (() => void) | null = null;

  constructor(socket: ByteStream, headRequest: boolean) {
    this.#socket = socket;
    this.#headRequest = headRequest;
  }

  head(status: number, reason: string, headers: string[], end: boolean): void {
    this.status = status;
    let text = `HTTP/1.1 ${status} ${reason || reasonPhrase(status) || 'Unknown'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.#bodyless = end || this.#headRequest || status === 204 || status === 304;
    if (this.#socket.destroyed) return;
    this.#head = text + '\r\n';
    // Unless it ends here, the gateway follows the head with its first chunk at once (then both
    // go out in one write), or says it goes alone (headAlone).
    if (end) this.#flushHead();
  }

  headAlone(): void {
    this.#flushHead();
  }

  /** Writes a head still held back, alone. */
  #flushHead(): void {
    const head = this.#head;
    if (head === null) return;
    this.#head = null;
    if (!this.#socket.destroyed) this.#socket.write(Buffer.from(head, 'latin1'));
  }

  /** uwsgi carries one response: an interim one would end it (nginx takes the first status line). */
  informational(): void {}

  /** The body is delimited by the close, with no chunked framing: trailers cannot travel. */
  trailers(): void {}

  write(chunk: Uint8Array, _end: boolean): boolean {
    if (this.aborted || this.#socket.destroyed) return false;
    const head = this.#head;
    if (head !== null && !this.#bodyless && chunk.length > 0 && chunk.length <= JOIN_MAX) {
      // Head and body in one buffer: one write, one system call, no writev.
      this.#head = null;
      const bytes = Buffer.allocUnsafe(head.length + chunk.length);
      bytes.write(head, 0, 'latin1');
      bytes.set(chunk, head.length);
      return this.#socket.write(bytes);
    }
    if (head !== null) this.#flushHead();
    if (this.#bodyless || chunk.length === 0) return true;
    return this.#socket.write(chunk);
  }

  /** The response is complete: a head still held back goes out now. */
  flush(): void {
    this.#flushHead();
  }

  drain(): Promise<void> {
    if (this.aborted || !this.#socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiter = resolve;
      this.#socket.onDrain(() => this._wake());
    });
  }

  /**
   * After the head, the response can only be cut. Over TCP a reset tells nginx it is
   * incomplete; a Unix socket has no reset, so there only a Content-Length shows the cut.
   */
  abort(_reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.#socket.reset();
    this._wake();
  }

  _wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }
}

/** One connection: the packet, then one request with its body, then the close. */
class UwsgiExchange implements RawStreamOwner {
  readonly socket: ByteStream;
  readonly #server: UwsgiServer;
  readonly #opts: UwsgiServerOptions;
  #parser: UwsgiPacketParser | null = null;
  #state: 'packet' | 'running' | 'done' = 'packet';
  #input: InputStream | null = null;
  #signal = new LazySignal();
  #responder: SocketResponder | null = null;
  /** Body bytes still to come from the client. */
  #remaining = 0;
  /** Body bytes received and not yet taken by the application. */
  #buffered = 0;
  #paused = false;
  method = '';
  uri = '';
  started = 0;
  linkedIn: LinkedSet<UwsgiExchange> | null = null;
  linkedPrev: UwsgiExchange | null = null;
  linkedNext: UwsgiExchange | null = null;

  constructor(server: UwsgiServer, socket: ByteStream, opts: UwsgiServerOptions) {
    this.#server = server;
    this.socket = socket;
    this.#opts = opts;
  }

  /** No complete packet within the packet timeout: dropped (called by the server's sweep). */
  _expire(): void {
    this.#opts.log.warn(`uwsgi: no complete packet from ${this.#peer()} within ${PACKET_TIMEOUT_MS / 1000} s; closing`);
    this.socket.destroy();
  }

  _error(err: Error): void {
    this.#opts.log.debug(`uwsgi connection error: ${err.message}`);
  }

  #peer(): string {
    return this.socket.peer() ?? 'a unix-socket client';
  }

  _onData(chunk: Buffer): void {
    if (this.#state === 'packet') {
      let parsed: { packet: UwsgiPacket; rest: Buffer } | null;
      try {
        parsed = this.#parser === null ? wholePacket(chunk, this.#opts.maxVarsSize) : null;
        if (parsed === null) {
          this.#parser ??= new UwsgiPacketParser(this.#opts.maxVarsSize);
          // The parser keeps the chunks of a packet that came in parts.
          parsed = this.#parser.push(this.socket.lent ? Buffer.from(chunk) : chunk);
        }
      } catch (err) {
        this.#refuse((err as Error).message);
        return;
      }
      if (parsed === null) return;
      this.#parser = null;
      this.#server._gotPacket(this);
      this.#packet(parsed.packet, parsed.rest);
    } else if (this.#state === 'running' && this.#remaining > 0) {
      this.#body(chunk);
    } // else: bytes past the body, or after the response or a refusal: drained and dropped
  }

  #body(chunk: Buffer): void {
    const n = Math.min(this.#remaining, chunk.length);
    if (n === 0) return;
    this.#remaining -= n;
    this.#buffered += n;
    const bytes = n === chunk.length ? chunk : chunk.subarray(0, n);
    this.#input!.push(this.socket.lent ? Buffer.from(bytes) : bytes);
    if (this.#remaining === 0) this.#input!.end();
    else if (this.#buffered >= (this.#opts.window ?? DEFAULTS.initialWindow) && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
  }

  /** The application took `n` body bytes: read more once under the window again. */
  #consumed(n: number): void {
    this.#buffered -= n;
    if (this.#paused && this.#buffered < (this.#opts.window ?? DEFAULTS.initialWindow)) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  #refuse(message: string): void {
    this.#opts.log.warn(`uwsgi: refusing a malformed packet from ${this.#peer()}: ${message}`);
    this.#state = 'done';
    this.#server._gotPacket(this);
    this.socket.end(BAD_REQUEST);
    this.#linger();
  }

  #packet(packet: UwsgiPacket, rest: Buffer): void {
    const log = this.#opts.log;
    if (packet.modifier1 === Modifier1.PING) {
      log.debug(`uwsgi: ping from ${this.#peer()}`);
      this.#state = 'done';
      this.socket.end(PING_REPLY);
      this.#linger();
      return;
    }
    if (packet.modifier1 !== Modifier1.WSGI) {
      this.#refuse(`modifier1 ${packet.modifier1} is not supported (0: request, 100: ping)`);
      return;
    }
    const input = new InputStream((n) => this.#consumed(n));
    const environ = buildEnvironFromVars(packet.vars, {
      input, signal: this.#signal, scriptName: this.#opts.scriptName ?? '', multiprocess: this.#opts.multiprocess ?? false,
    });
    // The environ holds the last CONTENT_LENGTH var, as a loop over the vars would find it.
    const declared = environ.CONTENT_LENGTH;
    let length = 0;
    if (declared !== undefined && declared !== '') {
      if (!CONTENT_LENGTH.test(declared)) {
        this.#refuse(`CONTENT_LENGTH ${JSON.stringify(declared.slice(0, 40))} is not a number of bytes`);
        return;
      }
      length = Number(declared);
    }
    this.#input = input;
    this.method = environ.REQUEST_METHOD;
    this.uri = environ.REQUEST_URI;
    this.started = performance.now();
    this.#remaining = length;
    if (length === 0) input.end();
    else if (rest.length > 0) this.#body(rest);
    // The rest of a body is read into slabs kept by its chunks, not copied out of a shared buffer.
    if (this.#remaining > 0) this.socket.readIntoSlabs();
    this.#state = 'running';
    this.#responder = new SocketResponder(this.socket, this.method === 'HEAD');
    this.#server._started(this);
    runApplication(this.#opts.app, environ, this.#responder, log, () => this.#finished());
  }

  #finished(): void {
    this.#state = 'done';
    this.#server._finished(this);
    this.#opts.metrics?.observe(this.#responder!.status, this.started, this);
    const socket = this.socket;
    if (this.#responder!.aborted || socket.destroyed) return;
    this.#responder!.flush();
    if (this.#remaining === 0 && socket.writableLength === 0) {
      // The whole request was read and the whole response is in the kernel: closing now sends
      // it and then the end, as shutdown() and waiting for the peer's close would, in two
      // system calls and a wait fewer (nothing unread, so no reset). Done with it: its close
      // has nothing to tell this exchange (in no set, not running).
      socket.release();
      return;
    }
    socket.end();
    this.#linger();
  }

  /**
   * After our end: reads (and drops) what the client still sends, so that closing with unread
   * bytes does not reset the connection before the client read the response; closes once the
   * client does, or a moment after the response was flushed.
   */
  #linger(): void {
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
    const socket = this.socket;
    this.#server._lingering(this);
    socket.onFinish(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
  }

  /** Past --timeout: 504 if no head went out (then the connection ends), else a cut. */
  timeOut(limitMs: number): void {
    if (this.#state !== 'running') return;
    const responder = this.#responder!;
    if (responder.aborted) return;
    const err = new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `request ran past --timeout ${limitMs / 1000} s`);
    if (responder.status === 0 && !this.socket.destroyed) {
      responder.aborted = true;
      responder.status = 504;
      this.socket.end(Buffer.from(rawErrorResponse(err), 'latin1'));
      this.#linger();
      responder._wake();
    } else {
      responder.abort(err.message);
    }
    this.#input?.fail(err);
    this.#signal.abort(err);
  }

  _onEnd(): void {
    if (this.#state === 'packet') {
      const buffered = this.#parser?.buffered ?? 0;
      if (buffered > 0) this.#opts.log.warn(`uwsgi: ${this.#peer()} closed the connection in the middle of a packet (${buffered} bytes)`);
      else this.#opts.log.debug('uwsgi: a connection closed without a packet');
      this.socket.destroy();
    } else if (this.#state === 'running') {
      // nginx never half-closes a uwsgi connection: its end means the client went away. The
      // response may still be written (a peer that only half-closed gets it), but the app hears.
      const err = new TsgiError('TSGI_ERR_CLIENT_GONE', this.#remaining > 0
        ? `the client closed the uwsgi connection with ${this.#remaining} bytes of the body unsent`
        : 'the client closed the uwsgi connection');
      this.#input?.fail(err);
      this.#signal.abort(err);
    } // else: the socket closes once our side has ended too
  }

  _onClose(): void {
    this.#server._closed(this);
    if (this.#state !== 'running') return;
    const err = new TsgiError('TSGI_ERR_CLIENT_GONE', 'the client closed the uwsgi connection');
    const responder = this.#responder!;
    responder.aborted = true;
    this.#input?.fail(err);
    this.#signal.abort(err);
    responder._wake();
  }
}

export class UwsgiServer extends SocketListener<UwsgiExchange> {
  protected readonly words = { listening: 'accepting uwsgi on', request: 'uwsgi request' };
  readonly #opts: UwsgiServerOptions;
  /**
   * Connections waiting for their packet, by age: a sweep every PACKET_TIMEOUT_MS drops those
   * already waiting at the one before (one timer for all, not one per connection). Once it has
   * its packet a connection is in the request tracker while it runs, then among the lingering
   * until it closes: always in one of these sets, which a stop closes.
   */
  #young = new LinkedSet<UwsgiExchange>();
  #old = new LinkedSet<UwsgiExchange>();
  readonly #lingering = new LinkedSet<UwsgiExchange>();
  #sweep: NodeJS.Timeout | null = null;

  constructor(opts: UwsgiServerOptions) {
    super(opts, { allowHalfOpen: true });
    this.#opts = opts;
  }

  protected serve(socket: Socket): void {
    this.#serve(new SocketStream(socket));
  }

  protected override serveRaw(stream: RawStream): void {
    this.#serve(stream);
  }

  #serve(stream: ByteStream): void {
    const ex = new UwsgiExchange(this, stream, this.#opts);
    this.#young.add(ex);
    // Last: the first read may come (and the whole exchange run) within start().
    stream.start(ex);
    this.#sweep ??= setInterval(() => this.#expire(), PACKET_TIMEOUT_MS).unref();
  }

  /** The connection has its packet (or is gone): out of the packet timeout's reach. */
  _gotPacket(ex: UwsgiExchange): void {
    if (!this.#young.delete(ex)) this.#old.delete(ex);
  }

  /** Past its response (or refused): waits for its close. */
  _lingering(ex: UwsgiExchange): void {
    this._gotPacket(ex);
    // One cut past --timeout stays with the running requests until its application returns.
    if (ex.linkedIn === null) this.#lingering.add(ex);
  }

  _closed(ex: UwsgiExchange): void {
    this._gotPacket(ex);
    this.#lingering.delete(ex);
  }

  /** One sweep: connections already waiting at the last one are dropped; the newer ones age. */
  #expire(): void {
    const old = this.#old;
    this.#old = this.#young;
    this.#young = new LinkedSet();
    for (const ex of [...old]) ex._expire();
  }

  protected override closeConnections(): void {
    super.closeConnections();
    for (const set of [this.#young, this.#old, this.#lingering, this.requests.running()]) {
      for (const ex of [...set]) ex.socket.destroy();
    }
  }

  override async stop(opts?: { graceful?: boolean; timeoutMs?: number }): Promise<void> {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
    await super.stop(opts);
  }

  protected override timeOut(ex: UwsgiExchange, limitMs: number): void {
    ex.timeOut(limitMs);
  }

  _started(ex: UwsgiExchange): void {
    this.requests.start(ex);
  }

  _finished(ex: UwsgiExchange): void {
    this.requests.finish(ex);
  }
}
