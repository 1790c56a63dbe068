// A link to a uwsgi backend (`--backend uwsgi:unix:PATH`, e.g. a real uWSGI running a Python
// WSGI app). The uwsgi protocol carries one request per connection, so each request opens its
// own: the uwsgi packet and the body go out, the raw HTTP response comes back and is reported
// through the same stream surface (onHead / onData / onReset / onDrain) that exchange.ts drives
// for tsgi streams, with the same flow control both ways.
import { connect, type Socket } from 'node:net';
import type { Address } from '../../common/address.js';
import { LOCAL_CONNECTION_LOST, type RequestHead, type StreamHandler } from '../../protocol/connection.js';
import { DEFAULTS, ResetCode } from '../../protocol/constants.js';
import { TsgiError } from '../../protocol/errors.js';
import type { tsgi } from '../../protocol/generated/tsgi.js';
import { packHeaders } from '../../protocol/header-table.js';
import { HttpResponseParser, type ParsedResponseHead } from '../../protocol/http-response.js';
import { encodePacket } from '../../protocol/uwsgi.js';
import type { Link, LinkOwner, LinkConnection, LinkEvents, LinkOptions, LinkState, LinkStream } from './link.js';
import { contentLengthOf, requestVars } from './uwsgi-vars.js';
import { HOP_BY_HOP } from '../../protocol/http-grammar.js';
import { LinkedSet } from '../../common/linked-set.js';

/**
 * uwsgi needs CONTENT_LENGTH before the body, so a request body sent without one (chunked) is
 * buffered up to this many bytes, then sent with its length; a longer one is answered 413.
 */
export const CHUNKED_BODY_LIMIT = 1024 * 1024;
/** A probe connect that takes longer counts as a failure. */
const PROBE_TIMEOUT_MS = 5000;
const EMPTY = Buffer.alloc(0);
/** Connect errors that mean nothing serves at the address: the backend is down. */
const DOWN = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ENOTSOCK', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);

function dial(address: Address): Socket {
  return address.kind === 'unix' ? connect(address.path) : connect({ host: address.host, port: address.port, noDelay: true });
}

/** The response head as exchange.ts takes it from a tsgi RESPONSE frame. */
function responseHead(parsed: ParsedResponseHead): tsgi.Response {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < parsed.headers.length; i += 2) {
    if (parsed.headers[i]!.toLowerCase() !== 'connection') continue;
    for (const token of parsed.headers[i + 1]!.split(',')) drop.add(token.trim().toLowerCase());
  }
  // A length the body is not framed by (chunked or close-delimited) would be wrong downstream.
  if (parsed.framing === 'chunked' || parsed.framing === 'close' || parsed.status === 204) drop.add('content-length');
  const block = packHeaders(parsed.headers, (_index, lower) => drop.has(lower));
  const headers = { names: block.names ?? [], values: block.values ?? [], literalNames: block.literalNames ?? [] };
  return { status: parsed.status, reason: parsed.reason, headers } as unknown as tsgi.Response;
}

/** One request on its own uwsgi connection, seen by exchange.ts as a tsgi Stream. */
class UwsgiStream implements LinkStream {
  handler: StreamHandler | null = null;
  /** A uwsgi backend acknowledges nothing: a request lost with its connection is never sent again. */
  readonly credited = true;
  /** uwsgi carries no upgraded connection. */
  readonly tunnel = false;
  closed = false;
  localEnded = false;
  remoteEnded = false;
  linkedIn: LinkedSet<UwsgiStream> | null = null;
  linkedPrev: UwsgiStream | null = null;
  linkedNext: UwsgiStream | null = null;
  readonly #link: UwsgiLink;
  readonly #head: RequestHead;
  readonly #parser: HttpResponseParser;
  #socket: Socket | null = null;
  /** A chunked body being buffered (null when the length is known). */
  #held: Buffer[] | null = null;
  /** The packet of a request whose body has not begun: it goes out with the first chunk. */
  #packet: Buffer | null = null;
  #heldBytes = 0;
  #connected = false;
  #error: string | null = null;
  /** Response bytes handed to exchange.ts and not yet written to its client. */
  #unconsumed = 0;
  #paused = false;

  constructor(link: UwsgiLink, head: RequestHead, endStream: boolean) {
    this.#link = link;
    this.#head = head;
    this.#parser = new HttpResponseParser({
      onHead: (parsed) => this.#onHead(parsed),
      onBody: (chunk) => this.#onBody(chunk),
      onEnd: () => this.#onEnd(),
    }, { headRequest: head.method === 'HEAD' });
    if (endStream) {
      this.#dial(encodePacket(requestVars(head)), []);
    } else if (contentLengthOf(head) === undefined) {
      encodePacket(requestVars(head, CHUNKED_BODY_LIMIT)); // too large a head throws now, not later
      this.#held = [];
    } else {
      // Connect with the first bytes of the body in hand: packet and (often all of) the body
      // reach the server in one write, so a server that answers without reading the body
      // cannot close before it has it (our next write would fail and lose its response).
      this.#packet = encodePacket(requestVars(head));
    }
    if (endStream) this.localEnded = true;
  }

  get blocked(): boolean {
    return this.#socket?.writableNeedDrain ?? false;
  }

  #dial(packet: Buffer, body: Buffer[]): void {
    const socket = dial(this.#link.address);
    this.#socket = socket;
    socket.on('connect', () => { this.#connected = true; });
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('end', () => this.#eof());
    socket.on('drain', () => { if (!this.closed) this.handler?.onDrain?.(); });
    socket.on('error', (err: NodeJS.ErrnoException) => { this.#error ??= err.code ?? err.message; });
    socket.on('close', () => this.#onClose());
    // One write, so one syscall: a server that answers without reading the body must not be
    // able to close between the packet and the body (our write would fail, its answer lost).
    socket.write(body.length === 0 ? packet : Buffer.concat([packet, ...body]));
  }

  write(chunk: Uint8Array, endStream = false): boolean {
    if (this.closed || this.localEnded) return false;
    if (endStream) this.localEnded = true;
    if (this.#held !== null) {
      if (chunk.length > 0) {
        this.#held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        this.#heldBytes += chunk.length;
        if (this.#heldBytes > CHUNKED_BODY_LIMIT) {
          this.#held = null;
          this.localEnded = true; // nothing more is taken; the 413 goes out on the next tick
          process.nextTick(() => this.#tooLarge());
          return false;
        }
      }
      if (endStream) {
        const body = this.#held;
        this.#held = null;
        this.#dial(encodePacket(requestVars(this.#head, this.#heldBytes)), body);
      }
      return true;
    }
    if (this.#packet !== null) {
      const first = this.#packet;
      this.#packet = null;
      this.#dial(first, chunk.length > 0 ? [Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)] : []);
      return !this.#socket!.writableNeedDrain;
    }
    const socket = this.#socket!;
    if (chunk.length === 0) return !socket.writableNeedDrain;
    return socket.write(chunk);
  }

  end(): void {
    this.write(EMPTY, true);
  }

  /** uwsgi has no request trailers: the body just ends. */
  sendTrailers(): void {
    this.end();
  }

  consume(n: number): void {
    this.#unconsumed -= n;
    if (this.#paused && this.#unconsumed < this.#link.window) {
      this.#paused = false;
      this.#socket?.resume();
    }
  }

  reset(_code: number, _message = ''): void {
    if (this.closed) return;
    this.#close();
  }

  /** Cuts the request (the link is being removed): it fails as a lost connection. */
  _destroy(): void {
    this.#socket?.destroy();
    if (this.#socket === null && !this.closed) this.#lost(`backend ${this.#link.name} removed`);
  }

  #close(): void {
    this.closed = true;
    this.#held = null;
    this.#packet = null;
    this.#link._forget(this);
    this.#socket?.destroy();
  }

  #receive(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.#parser.push(chunk);
    } catch (err) {
      this.#lost(`backend ${this.#link.name} sent an invalid response (${(err as Error).message})`);
    }
  }

  #eof(): void {
    if (this.closed) return;
    try {
      this.#parser.finish();
    } catch (err) {
      this.#lost(`${(err as Error).message}: connection to backend ${this.#link.name} lost`);
    }
  }

  #onHead(parsed: ParsedResponseHead): void {
    const head = responseHead(parsed);
    const end = parsed.framing === 'none';
    if (end) {
      this.remoteEnded = true;
      this.#close(); // closed before the owner hears of the end, as a tsgi stream is
    }
    this.handler?.onHead?.(head, end);
  }

  #onBody(chunk: Buffer): void {
    if (this.closed || chunk.length === 0) return;
    this.#unconsumed += chunk.length;
    if (!this.#paused && this.#unconsumed >= this.#link.window) {
      this.#paused = true;
      this.#socket?.pause();
    }
    this.handler?.onData?.(chunk, false);
  }

  #onEnd(): void {
    if (this.closed) return;
    this.remoteEnded = true;
    this.#close();
    this.handler?.onData?.(EMPTY, true);
  }

  #lost(message: string): void {
    if (this.closed) return;
    this.#close();
    this.handler?.onReset?.(LOCAL_CONNECTION_LOST, message);
  }

  #onClose(): void {
    if (this.closed) return;
    if (!this.#connected) {
      // Never reached the backend: the request was not processed and may go elsewhere.
      const why = this.#error ?? 'closed';
      this.#close();
      if (DOWN.has(why)) this.#link._down(why);
      this.handler?.onReset?.(ResetCode.REFUSED_STREAM, `cannot connect to ${this.#link.name} (${why})`);
      return;
    }
    if (this.#error === 'ECONNRESET' && this.#parser.untilClose) {
      // A server that closes with some of our request body unread resets the connection
      // after the response it wrote: for a body delimited by the close, that is its end.
      this.#eof();
      return;
    }
    this.#lost(`connection to backend ${this.#link.name} lost${this.#error ? ` (${this.#error})` : ''}`);
  }

  /**
   * A chunked body over the limit: refused like a tsgi backend refuses one (a TOO_LARGE reset),
   * so the exchange answers it as every other refusal (413, and the connection closes).
   */
  #tooLarge(): void {
    if (this.closed) return;
    this.#close();
    this.handler?.onReset?.(ResetCode.TOO_LARGE, `a request body without Content-Length is limited to ${CHUNKED_BODY_LIMIT} bytes for a uwsgi backend`);
  }
}

export class UwsgiLink implements Link {
  readonly name: string;
  readonly owner: LinkOwner;
  readonly address: Address;
  /** Response bytes read ahead of a slow client before the backend's connection is paused. */
  readonly window: number;
  state: LinkState = 'connecting';
  requests = 0;
  readonly conn: LinkConnection;
  readonly #events: LinkEvents;
  /** A LinkedSet, not a Set: one stream in and out per request. */
  readonly #streams = new LinkedSet<UwsgiStream>();
  #established = false;
  #probe: Socket | null = null;

  constructor(opts: LinkOptions, events: LinkEvents) {
    this.name = opts.name;
    this.owner = opts.owner;
    this.address = opts.address;
    this.window = opts.window ?? DEFAULTS.initialWindow;
    this.#events = events;
    this.conn = { open: (head, end) => this.#open(head, end), peerSoftware: 'uwsgi', peerConnections: 1 };
    this.#startProbe();
  }

  get load(): number {
    return this.#streams.size;
  }

  get canOpen(): boolean {
    return this.state === 'ready';
  }

  /** A uwsgi backend cannot carry an upgraded connection: upgrade requests go to it as plain ones. */
  get tunnels(): boolean {
    return false;
  }

  /** There is no handshake: the backend is ready once a connection to it opens. */
  #startProbe(): void {
    const socket = dial(this.address);
    this.#probe = socket;
    socket.setTimeout(PROBE_TIMEOUT_MS, () => {
      socket.destroy(new TsgiError('TSGI_ERR_BACKEND_TIMEOUT', `no connection within ${PROBE_TIMEOUT_MS / 1000} s`));
    });
    let error: string | null = null;
    socket.on('error', (err: NodeJS.ErrnoException) => { error ??= err.code ?? err.message; });
    socket.on('connect', () => {
      socket.destroy();
      this.#probe = null;
      if (this.state !== 'connecting') return;
      this.state = 'ready';
      this.#established = true;
      this.#events.onReady(this);
    });
    socket.on('close', () => {
      if (this.#probe !== socket) return;
      this.#probe = null;
      this.#closed(error ?? 'closed');
    });
  }

  #open(head: RequestHead, endStream: boolean): LinkStream {
    if (!this.canOpen) throw new TsgiError('TSGI_ERR_STREAM_REFUSED', `uwsgi backend ${this.name} is not ready`);
    const stream = new UwsgiStream(this, head, endStream);
    this.#streams.add(stream);
    return stream;
  }

  _forget(stream: UwsgiStream): void {
    this.#streams.delete(stream);
  }

  /** A request could not connect: the address is down; the backend replaces this link with backoff. */
  _down(error: string): void {
    if (this.state === 'ready') this.#closed(error);
  }

  release(): void {
    if (this.state === 'draining' && this.load === 0) this.#closed(null);
  }

  drain(): void {
    if (this.state === 'closed') return;
    if (this.state === 'connecting') {
      this.close();
      return;
    }
    this.state = 'draining';
    this.release();
  }

  close(): void {
    this.#probe?.destroy();
    this.#probe = null;
    for (const stream of [...this.#streams]) stream._destroy();
    this.#closed(null);
  }

  #closed(error: string | null): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.#events.onClose(this, this.#established, error);
  }
}
