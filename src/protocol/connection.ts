// One tsgi connection as a state machine: handshake, stream table (streams in stream.ts),
// GOAWAY and PING. It does no I/O: bytes come in through `receive()` and go out through the
// `write` function it is given, so the same code runs over a Unix socket, TCP or a test pair.
import {
  DEFAULTS, Flags, FrameType, MAX_PEER_TEXT, MAX_STREAM_ID, PEER_LIMITS, PROTOCOL_VERSIONS, REPLY_LIMITS, RESET_CODE_NAMES, ResetCode,
  TRANSIENT_VERSION, TUNNEL_VERSION,
} from './constants.js';
import { ProtocolError, TsgiError } from './errors.js';
import { FrameDecoder, encodeFrame, frameHeader } from './frame.js';
import { decodeRequest, decodeResponse, decodeTrailers } from './head-codec.js';
import { GoAway, Hello, Ping, Reset, Window } from './messages.js';
import type { tsgi } from './generated/tsgi.js';
import { Stream, type RequestHead, type StreamOwner } from './stream.js';
import { StreamTable } from './stream-table.js';
import { ValueDecoder, ValueEncoder } from './value-table.js';

export { Stream };

export type { HeaderFields, RequestHead, ResponseHead, StreamHandler } from './stream.js';

/** What an HTTP/1.1 reason phrase cannot hold (Node's own check on a status message). */
const BAD_REASON = /[^\t\x20-\x7e\x80-\xff]/;

/** Reset codes that never travel on the wire: the connection itself ended. */
export const LOCAL_CONNECTION_LOST = 0x100;

/** Text a peer chose (a RESET or GOAWAY message, its software), cut short enough for a log line. */
export function peerText(text: string): string {
  return text.length <= MAX_PEER_TEXT ? text : `${text.slice(0, MAX_PEER_TEXT - 1)}…`;
}

export interface ConnectionOptions {
  role: 'client' | 'server';
  /**
   * Writes bytes to the peer, in order. The I/O layer coalesces writes of one tick. It returns
   * false when the transport holds more than it wants to (the peer is slow to read, or this
   * tick wrote a lot), and then calls `drained()` once it has handed everything on. Any other
   * value (true, nothing) means there is room.
   */
  write: (chunk: Uint8Array) => unknown;
  maxFrameSize?: number;
  /** Largest head or trailers accepted from the peer, decoded (names and values, 4 bytes more a field). */
  maxHeadSize?: number;
  /** How messages name that limit (the option that sets it). */
  maxHeadSizeName?: string;
  initialWindow?: number;
  maxStreams?: number;
  software?: string;
  /** Connections the peer should open to us (a backend's worker count). */
  connectionsHint?: number;
  /** A backend's hard limit on a request's run time, in ms (its --timeout; 0 or absent: none). */
  requestTimeoutMs?: number;
  versions?: readonly number[];
  /** The peer's HELLO arrived and a version was agreed. */
  onReady?: (conn: Connection) => void;
  /** Server role: a new request stream. */
  onRequest?: (stream: Stream, head: tsgi.Request, endStream: boolean) => void;
  onGoAway?: (lastStreamId: number, code: number, message: string) => void;
  onPong?: (id: number) => void;
  /** A protocol error: the connection must be closed by the I/O layer. */
  onError?: (err: TsgiError) => void;
  /** Something the peer did that is refused or corrected without closing: for the log. */
  onWarning?: (message: string) => void;
}

/** What a head frame may carry beyond its header fields (status, reason, addresses, protobuf tags). */
const HEAD_FRAME_SLACK = 8192;

export class Connection implements StreamOwner {
  readonly role: 'client' | 'server';
  readonly maxFrameSize: number;
  readonly initialWindow: number;
  readonly maxStreams: number;
  readonly maxHeadSize: number;
  readonly streams = new StreamTable<Stream>();
  /** The version agreed with the peer (0 until its HELLO). */
  version = 0;
  peerMaxFrameSize: number = DEFAULTS.maxFrameSize;
  peerInitialWindow: number = DEFAULTS.initialWindow;
  peerMaxStreams = 0;
  peerSoftware = '';
  /** Header values this side sent before on this connection (per-connection indexing). */
  readonly valueEncoder = new ValueEncoder();
  /** Header values the peer sent before on this connection. */
  readonly valueDecoder = new ValueDecoder();
  /** Connections the peer asked us to open (0: no preference). */
  peerConnections = 0;
  /** The peer's hard limit on a request's run time, in ms (a backend's --timeout; 0: none). */
  peerRequestTimeoutMs = 0;
  dataChunkSize: number = DEFAULTS.dataChunkSize;
  /** We sent GOAWAY: no new streams accepted (server) or opened (client). */
  goAwaySent = false;
  /** The peer sent GOAWAY: open no new streams on this connection. */
  goAwayReceived = false;
  closed = false;

  #opts: ConnectionOptions;
  #write: (chunk: Uint8Array) => unknown;
  #decoder: FrameDecoder;
  #nextStreamId = 1;
  #lastPeerStreamId = 0;
  #versions: readonly number[];
  #onFrame = this.#handleFrame.bind(this);
  /** The transport said it holds too much (write returned false) and has not drained since. */
  #congested = false;
  /** Replies written while congested (REPLY_LIMITS). */
  #owedPongs = 0;
  #owedResets = 0;

  constructor(opts: ConnectionOptions) {
    this.#opts = opts;
    this.role = opts.role;
    this.#write = opts.write;
    this.maxFrameSize = opts.maxFrameSize ?? DEFAULTS.maxFrameSize;
    this.initialWindow = opts.initialWindow ?? DEFAULTS.initialWindow;
    this.maxStreams = opts.maxStreams ?? DEFAULTS.maxStreams;
    this.maxHeadSize = opts.maxHeadSize ?? DEFAULTS.maxHeadSize;
    this.#versions = opts.versions ?? PROTOCOL_VERSIONS;
    this.#decoder = new FrameDecoder(this.maxFrameSize, { fragmentData: true });
  }

  /** Sends our HELLO. Call once, when the transport is open. */
  start(): void {
    this.writeFrame(FrameType.HELLO, 0, 0, Hello.encode({
      versions: this.#versions as number[],
      maxFrameSize: this.maxFrameSize,
      initialWindow: this.initialWindow,
      maxStreams: this.maxStreams,
      software: this.#opts.software ?? 'tsgi',
      connections: this.#opts.connectionsHint ?? 0,
      requestTimeoutMs: this.#opts.requestTimeoutMs ?? 0,
    }).finish());
  }

  get ready(): boolean {
    return this.version !== 0 && !this.closed;
  }

  /** Client role: whether a new stream may be opened now. */
  get canOpen(): boolean {
    return this.ready && !this.goAwayReceived && !this.goAwaySent && this.#nextStreamId <= MAX_STREAM_ID
      && (this.peerMaxStreams === 0 || this.streams.size < this.peerMaxStreams);
  }

  /**
   * Feeds bytes from the transport. Protocol errors go to onError (and are thrown to no one).
   * Returns false when the I/O layer should stop reading the peer until it calls `drained()`:
   * replies to the peer pile up unwritten (it does not read them).
   */
  receive(chunk: Buffer): boolean {
    if (this.closed) return true;
    try {
      this.#decoder.push(chunk, this.#onFrame);
    } catch (err) {
      this.#protocolError(err);
      return true;
    }
    return !this.#congested || this.#owedPongs + this.#owedResets < REPLY_LIMITS.pause;
  }

  /** The transport handed on everything it held: replies are no longer owed, reading may resume. */
  drained(): void {
    this.#congested = false;
    this.#owedPongs = 0;
    this.#owedResets = 0;
  }

  /** Whether the transport is congested (it has not drained since a write returned false). */
  get congested(): boolean {
    return this.#congested;
  }

  /** Replies (PONG, RESET) written to the peer while the transport was congested, since it drained. */
  get repliesOwed(): number {
    return this.#owedPongs + this.#owedResets;
  }

  /** Client role: opens a stream and sends the request head. */
  open(head: RequestHead, endStream: boolean): Stream {
    if (this.role !== 'client') throw new Error('only the client opens streams');
    if (!this.canOpen) throw new TsgiError('TSGI_ERR_STREAM_REFUSED', 'connection cannot open new streams');
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = new Stream(this, id, this.peerInitialWindow, this.initialWindow);
    this.streams.set(id, stream);
    try {
      stream.sendRequest(head, endStream);
    } catch (err) {
      this.streams.delete(id);
      stream.closed = true;
      throw err;
    }
    return stream;
  }

  /** No new streams: the server refuses later ones, the client stops opening them. */
  goAway(code: number = ResetCode.NO_ERROR, message = ''): void {
    if (this.closed || this.goAwaySent) return;
    this.goAwaySent = true;
    this.writeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({
      lastStreamId: this.role === 'server' ? this.#lastPeerStreamId : 0, code, message,
    }).finish());
  }

  ping(id: number): void {
    if (!this.closed) this.writeFrame(FrameType.PING, 0, 0, Ping.encode({ id }).finish());
  }

  /**
   * The transport is gone (or must go): every open stream ends with LOCAL_CONNECTION_LOST.
   * Idempotent.
   */
  destroy(message = 'connection lost'): void {
    if (this.closed) return;
    this.closed = true;
    const streams = this.streams.values();
    this.streams.clear();
    for (const stream of streams) {
      stream.closed = true;
      stream._closeQueue();
      stream.handler?.onReset?.(LOCAL_CONNECTION_LOST, message);
    }
  }

  writeFrame(type: number, flags: number, stream: number, payload: Uint8Array): void {
    if (this.closed) return;
    if (this.#write(encodeFrame(type, flags, stream, payload)) === false) this.#congested = true;
  }

  writeEncoded(frame: Uint8Array): void {
    if (this.closed) return;
    if (this.#write(frame) === false) this.#congested = true;
  }

  writeData(stream: number, flags: number, payload: Uint8Array): void {
    if (this.closed) return;
    let room;
    if (payload.length <= 512) {
      room = this.#write(encodeFrame(FrameType.DATA, flags, stream, payload));
    } else {
      this.#write(frameHeader(FrameType.DATA, flags, stream, payload.length));
      room = this.#write(payload);
    }
    if (room === false) this.#congested = true;
  }

  /** A RESET answering the peer (refusing or failing its stream): owed while congested, and bounded. */
  #replyReset(id: number, code: number, message: string): void {
    if (this.#congested && ++this.#owedResets > this.maxStreams + REPLY_LIMITS.pongs) {
      throw new ProtocolError(`more than ${this.#owedResets - 1} streams refused or failed while the peer did not read the RESETs`);
    }
    this.writeFrame(FrameType.RESET, 0, id, Reset.encode({ code, message }).finish());
  }

  _forget(stream: Stream): void {
    stream.closed = true;
    this.streams.delete(stream.id);
  }

  _resetStream(stream: Stream, code: number, message: string): void {
    this._forget(stream);
    stream._closeQueue();
    this.writeFrame(FrameType.RESET, 0, stream.id, Reset.encode({ code, message }).finish());
  }

  /**
   * A stream-level protocol violation by the peer: reset that stream and tell its owner. The
   * owner hears `localCode` when it differs from what the peer is told (a head we refuse is
   * TOO_LARGE on the wire, but to the owner it is the peer's fault, not a refusal of ours).
   */
  _failStream(stream: Stream, code: number, message: string, localCode = code): void {
    this._forget(stream);
    stream._closeQueue();
    try {
      this.#replyReset(stream.id, code, message);
    } finally {
      stream.handler?.onReset?.(localCode, message);
    }
  }

  /** The message for a head over maxHeadSize. */
  #tooLarge(what: string): string {
    return `${what} over ${this.#opts.maxHeadSizeName ?? 'the limit'} (${this.maxHeadSize} bytes of decoded header fields)`;
  }

  #protocolError(err: unknown): void {
    const error = err instanceof TsgiError ? err
      : new ProtocolError(`malformed frame: ${(err as Error)?.message ?? String(err)}`);
    if (!this.closed) {
      this.writeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({
        lastStreamId: this.#lastPeerStreamId, code: ResetCode.PROTOCOL_ERROR, message: error.message,
      }).finish());
    }
    this.#opts.onError?.(error);
    this.destroy(error.message);
  }

  #handleFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.closed) return;
    if (this.version === 0 && type !== FrameType.HELLO) {
      throw new ProtocolError(`expected HELLO first, got frame type ${type}`);
    }
    const end = (flags & Flags.END_STREAM) !== 0;
    if (payload.length > 2 * this.maxHeadSize + HEAD_FRAME_SLACK && this.role === 'client'
        && (type === FrameType.RESPONSE || type === FrameType.TRAILERS)) {
      // A field costs no fewer bytes decoded than encoded, give or take a few: a head frame this
      // large is over the limit for certain. Refused before protobuf decodes it (300,000 entries
      // of garbage), and for the connection, as skipping it would leave the value tables apart.
      // (Backends only: a front whose --max-header-size is over serve's limit gets a 431 a
      // stream, not a lost connection.)
      throw new ProtocolError(`a head frame of ${payload.length} bytes: its fields cannot fit ${this.#opts.maxHeadSizeName ?? 'the limit'} (${this.maxHeadSize} bytes)`);
    }
    switch (type) {
      case FrameType.DATA: {
        const stream = this.#streamFor(id, type);
        if (stream === undefined) return;
        // A body before its head: the front would answer it with a head of its own making.
        if (this.role === 'client' && !stream.headReceived) {
          this._failStream(stream, ResetCode.PROTOCOL_ERROR, 'DATA before the response head');
          return;
        }
        stream._receiveData(payload, end);
        return;
      }
      case FrameType.REQUEST:
        this.#handleRequest(id, payload, end);
        return;
      case FrameType.RESPONSE: {
        // Every head updates the value table, also one for a stream already gone.
        const head = decodeResponse(payload);
        const fits = this.valueDecoder.decode(head.headers as tsgi.HeaderBlock, this.maxHeadSize);
        const stream = this.#streamFor(id, type);
        if (stream === undefined) return;
        if (!fits && this.role === 'client' && !stream.headReceived) {
          this._failStream(stream, ResetCode.TOO_LARGE, this.#tooLarge('response head'), ResetCode.PROTOCOL_ERROR);
          return;
        }
        if (this.role !== 'client' || stream.headReceived) {
          this._failStream(stream, ResetCode.PROTOCOL_ERROR, 'unexpected RESPONSE');
          return;
        }
        // An interim response (103 Early Hints, say): before the final one, never the end.
        if (head.status >= 100 && head.status < 200 && head.status !== 101) {
          if (end) {
            this._failStream(stream, ResetCode.PROTOCOL_ERROR, `RESPONSE ${head.status} ends the stream`);
            return;
          }
          stream.handler?.onInformational?.(head);
          return;
        }
        // Final statuses travel (the gateway refuses others); 0 is an empty or damaged head.
        // A 101 answers an upgrade request only, and opens a tunnel (it cannot end the stream).
        if (head.status === 101 && stream.upgrade && !end) {
          stream.tunnel = true;
        } else if (head.status < 200 || head.status > 999) {
          this._failStream(stream, ResetCode.PROTOCOL_ERROR, `RESPONSE with status ${head.status}`);
          return;
        }
        // A reason the front could not write (CR/LF, controls): refused here, as the gateway does.
        if (head.reason !== '' && BAD_REASON.test(head.reason)) {
          this._failStream(stream, ResetCode.PROTOCOL_ERROR, 'RESPONSE with a control character in its reason phrase');
          return;
        }
        stream.headReceived = true;
        if (end) {
          stream.remoteEnded = true;
          stream._maybeClose();
        }
        stream.handler?.onHead?.(head, end);
        return;
      }
      case FrameType.WINDOW: {
        const { increment } = Window.decode(payload);
        if (increment === 0) throw new ProtocolError('WINDOW with zero increment');
        const stream = this.#streamFor(id, type);
        if (stream !== undefined) stream._credit(increment);
        return;
      }
      case FrameType.RESET: {
        const stream = this.#streamFor(id, type);
        if (stream === undefined) return;
        const { code, message } = Reset.decode(payload);
        this._forget(stream);
        stream._closeQueue();
        stream.handler?.onReset?.(code, peerText(message) || RESET_CODE_NAMES[code] || `code ${code}`);
        return;
      }
      case FrameType.TRAILERS: {
        const headers = decodeTrailers(payload);
        const fits = this.valueDecoder.decode(headers as tsgi.HeaderBlock, this.maxHeadSize);
        const stream = this.#streamFor(id, type);
        if (stream === undefined) return;
        if (!fits) {
          this._failStream(stream, ResetCode.TOO_LARGE, this.#tooLarge('trailers'), ResetCode.PROTOCOL_ERROR);
          return;
        }
        if (!end || stream.remoteEnded || (this.role === 'client' && !stream.headReceived)) {
          this._failStream(stream, ResetCode.PROTOCOL_ERROR, 'TRAILERS must end a stream that has a head');
          return;
        }
        stream.remoteEnded = true;
        stream._maybeClose();
        stream.handler?.onTrailers?.(headers ?? {});
        stream.handler?.onData?.(Buffer.alloc(0), true);
        return;
      }
      case FrameType.HELLO:
        this.#handleHello(id, payload);
        return;
      case FrameType.GOAWAY: {
        if (id !== 0) throw new ProtocolError('GOAWAY on a stream');
        const { lastStreamId, code, message } = GoAway.decode(payload);
        if (this.role === 'client') {
          // A stream above lastStreamId that already has its head was processed: the peer contradicts
          // itself, and refusing that stream could get its request sent (and run) twice.
          for (const stream of this.streams.values()) {
            if (stream.id > lastStreamId && stream.headReceived) {
              throw new ProtocolError(`GOAWAY says stream ${stream.id} was never processed, but its response head arrived`);
            }
          }
        }
        this.goAwayReceived = true;
        if (this.role === 'client') {
          // Streams above lastStreamId were never processed: refuse them so they can go elsewhere.
          for (const stream of this.streams.values()) {
            if (stream.id > lastStreamId) {
              this._forget(stream);
              stream._closeQueue();
              stream.handler?.onReset?.(ResetCode.REFUSED_STREAM, 'backend is going away');
            }
          }
        }
        this.#opts.onGoAway?.(lastStreamId, code, peerText(message));
        return;
      }
      case FrameType.PING:
        if (id !== 0) throw new ProtocolError('PING on a stream');
        if (this.#congested && ++this.#owedPongs > REPLY_LIMITS.pongs) {
          throw new ProtocolError(`PING flood: more than ${REPLY_LIMITS.pongs} PINGs while the peer did not read the PONGs`);
        }
        this.writeFrame(FrameType.PONG, 0, 0, payload);
        return;
      case FrameType.PONG:
        if (id !== 0) throw new ProtocolError('PONG on a stream');
        this.#opts.onPong?.(Ping.decode(payload).id);
        return;
      default:
        return; // unknown frame types are ignored, so later versions can add some
    }
  }

  #handleHello(id: number, payload: Buffer): void {
    if (id !== 0) throw new ProtocolError('HELLO on a stream');
    if (this.version !== 0) throw new ProtocolError('second HELLO');
    const hello = Hello.decode(payload);
    let version = 0;
    for (const v of hello.versions) if (this.#versions.includes(v) && v > version) version = v;
    if (version === 0) {
      throw new ProtocolError(
        `no common protocol version (peer speaks ${peerText(hello.versions.join(',')) || 'none'}, we speak ${this.#versions.join(',')})`,
        'TSGI_ERR_VERSION');
    }
    if (hello.maxFrameSize < 1024) throw new ProtocolError(`peer max frame size ${hello.maxFrameSize} is below 1024`);
    this.version = version;
    this.valueEncoder.transient = version >= TRANSIENT_VERSION;
    this.peerSoftware = peerText(hello.software);
    // Each size or count the peer declares is taken up to PEER_LIMITS, and one line says what was cut.
    const clamped: string[] = [];
    const clamp = (name: string, value: number, max: number): number => {
      if (value <= max) return value;
      clamped.push(`${name} ${value} to ${max}`);
      return max;
    };
    this.peerMaxFrameSize = clamp('max_frame_size', hello.maxFrameSize, PEER_LIMITS.maxFrameSize);
    this.peerInitialWindow = clamp('initial_window', hello.initialWindow, PEER_LIMITS.initialWindow);
    this.peerMaxStreams = clamp('max_streams', hello.maxStreams, PEER_LIMITS.maxStreams);
    this.peerConnections = clamp('connections', hello.connections, PEER_LIMITS.connections);
    this.peerRequestTimeoutMs = hello.requestTimeoutMs;
    this.dataChunkSize = Math.min(DEFAULTS.dataChunkSize, this.peerMaxFrameSize);
    if (clamped.length > 0) {
      this.#opts.onWarning?.(`peer HELLO (${this.peerSoftware || 'no software named'}) clamped: ${clamped.join(', ')}`);
    }
    this.#opts.onReady?.(this);
  }

  #handleRequest(id: number, payload: Buffer, end: boolean): void {
    if (this.role !== 'server') throw new ProtocolError('REQUEST sent to the client side');
    if ((id & 1) === 0 || id <= this.#lastPeerStreamId) {
      throw new ProtocolError(`REQUEST on stream ${id}, which is not a new odd stream id`);
    }
    this.#lastPeerStreamId = id;
    const head = decodeRequest(payload); // IPv4 addresses come back dotted, in remoteAddr and serverAddr
    // Also for a stream refused below: the table follows every head.
    const fits = this.valueDecoder.decode(head.headers as tsgi.HeaderBlock, this.maxHeadSize);
    if (!fits) {
      const message = this.#tooLarge('request head');
      this.#replyReset(id, ResetCode.TOO_LARGE, message);
      this.#opts.onWarning?.(`stream ${id} refused: ${message}`);
      return;
    }
    const stream = new Stream(this, id, this.peerInitialWindow, this.initialWindow);
    if (end) stream.remoteEnded = true;
    // An upgrade needs a version-2 peer and an open stream; otherwise it is a plain request.
    if (head.upgrade) {
      if (end || this.version < TUNNEL_VERSION) head.upgrade = false;
      else stream.upgrade = true;
    }
    if (this.goAwaySent || this.streams.size >= this.maxStreams) {
      stream.closed = true;
      this.#replyReset(id, ResetCode.REFUSED_STREAM, this.goAwaySent ? 'going away' : 'too many streams');
      return;
    }
    this.streams.set(id, stream);
    this.#opts.onRequest?.(stream, head, end);
  }

  /** The stream a frame names, or undefined for one that recently closed (frames in flight). */
  #streamFor(id: number, type: number): Stream | undefined {
    const stream = this.streams.get(id);
    if (stream !== undefined) return stream;
    if (id === 0) throw new ProtocolError(`frame type ${type} needs a stream id`);
    const highest = this.role === 'server' ? this.#lastPeerStreamId : this.#nextStreamId - 2;
    if (id > highest) throw new ProtocolError(`frame type ${type} on stream ${id}, which was never opened`);
    return undefined;
  }
}
