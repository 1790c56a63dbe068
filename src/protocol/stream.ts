// One stream of a tsgi connection: its state (ended each way, closed), its flow-control
// windows in both directions, and the queue of body bytes waiting for credit.
import { FRAME_HEADER_SIZE, Flags, FrameType, MAX_STREAM_ID, ResetCode, TUNNEL_VERSION } from './constants.js';
import { TsgiError } from './errors.js';
import { encodeRequestFrame, encodeResponseFrame, encodeTrailersFrame } from './head-codec.js';
import { Window } from './messages.js';
import type { ValueEncoder } from './value-table.js';
import type { tsgi } from './generated/tsgi.js';

export type RequestHead = tsgi.Request.$Properties;
export type ResponseHead = tsgi.Response.$Properties;
export type HeaderFields = tsgi.HeaderBlock.$Properties;

const EMPTY = new Uint8Array(0);

/** Addresses seen recently, with their bytes (clients repeat): bounded, cleared when full. */
const IPV4_CACHE = new Map<string, Uint8Array | null>();

/** The 4 bytes of a dotted IPv4 address, or null for anything else. */
export function ipv4Bytes(address: string | null | undefined): Uint8Array | null {
  if (!address) return null;
  let bytes = IPV4_CACHE.get(address);
  if (bytes === undefined) {
    bytes = parseIpv4(address);
    if (IPV4_CACHE.size >= 4096) IPV4_CACHE.clear();
    IPV4_CACHE.set(address, bytes);
  }
  return bytes;
}

function parseIpv4(address: string): Uint8Array | null {
  const parts = address.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/**
 * What a stream needs of its connection (connection.ts's Connection is one): the windows, the
 * value table its heads encode with, the frames it writes, and the transitions that end it.
 * Declared here so that the stream imports nothing of the connection.
 */
export interface StreamOwner {
  /** The protocol version agreed (TUNNEL_VERSION and up: upgrade requests, 101 responses). */
  readonly version: number;
  readonly initialWindow: number;
  readonly peerInitialWindow: number;
  readonly peerMaxFrameSize: number;
  readonly dataChunkSize: number;
  readonly valueEncoder: ValueEncoder;
  writeFrame(type: number, flags: number, stream: number, payload: Uint8Array): void;
  /** Writes a whole frame, header included (a head encoded in place by head-codec.ts). */
  writeEncoded(frame: Uint8Array): void;
  writeData(stream: number, flags: number, payload: Uint8Array): void;
  _forget(stream: Stream): void;
  _resetStream(stream: Stream, code: number, message: string): void;
  _failStream(stream: Stream, code: number, message: string, localCode?: number): void;
}

/** The dotted form of 4 address bytes. */
export function ipv4String(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/**
 * What a stream's owner hears (undici's handler objects: methods on a prototype, so a request
 * costs no closures). Each method is optional; DATA nobody listens to is consumed at once.
 */
export interface StreamHandler {
  /** Client role: the response head. */
  onHead?(head: tsgi.Response, endStream: boolean): void;
  /** Client role: an interim (1xx) response before the head, 103 Early Hints say. */
  onInformational?(head: tsgi.Response): void;
  onData?(chunk: Buffer, endStream: boolean): void;
  onTrailers?(headers: HeaderFields): void;
  /** The stream ended abnormally: RESET from the peer, or the connection was lost. */
  onReset?(code: number, message: string): void;
  /** Credit arrived and everything queued was sent: the producer may write again. */
  onDrain?(): void;
}

export class Stream {
  readonly id: number;
  readonly connection: StreamOwner;
  /** Bytes of DATA we may still send before the peer grants more. */
  sendWindow: number;
  /** Bytes of DATA the peer may still send us. */
  #recvWindow: number;
  /** Bytes handed to the consumer and not yet granted back to the peer. */
  #unacked = 0;
  #queue: Uint8Array[] = [];
  #queueEnd = false;
  /** Trailers that end the stream once the queued data has gone. */
  #queuedTrailers: HeaderFields | null = null;
  localEnded = false;
  remoteEnded = false;
  closed = false;
  headReceived = false;
  /** The peer has granted credit (a WINDOW frame): it has taken the stream, as a response head shows. */
  credited = false;
  /** Who hears what arrives on the stream: an object whose methods live on its prototype. */
  handler: StreamHandler | null = null;
  /**
   * The request asked to upgrade (Request.upgrade, on a connection of TUNNEL_VERSION or later):
   * a 101 may answer it.
   */
  upgrade = false;
  /** A 101 went (server) or came (client): DATA carries the upgraded protocol's bytes both ways. */
  tunnel = false;

  constructor(connection: StreamOwner, id: number, sendWindow: number, recvWindow: number) {
    this.connection = connection;
    this.id = id;
    this.sendWindow = sendWindow;
    this.#recvWindow = recvWindow;
  }

  /** True while data waits for credit; a producer should stop until onDrain. */
  get blocked(): boolean {
    return this.#queue.length > 0 || this.sendWindow <= 0;
  }

  sendResponse(head: ResponseHead, endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    if (head.status === 101) {
      if (!this.upgrade || endStream) throw new TsgiError('TSGI_ERR_PROTOCOL', 'a 101 answers only an upgrade request, and opens a tunnel (no END_STREAM)');
      this.tunnel = true;
    }
    const { block, commit } = this.connection.valueEncoder.encode(head.headers);
    const wire: ResponseHead = { status: head.status, reason: head.reason, headers: block };
    this.#sendHead(encodeResponseFrame(FrameType.RESPONSE, endStream ? Flags.END_STREAM : 0, this.id, wire), endStream, commit);
  }

  sendRequest(head: RequestHead, endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    const { block, commit } = this.connection.valueEncoder.encode(head.headers);
    // IPv4 addresses go as their 4 bytes (the receiving Connection turns them back). One
    // object shape for every request keeps the generated encoder monomorphic.
    const remote = ipv4Bytes(head.remoteAddr);
    const server = ipv4Bytes(head.serverAddr);
    // A peer of version 1 knows no tunnels: the request goes as a plain one (the sender strips
    // the Upgrade header, as for any request it does not upgrade).
    const upgrade = head.upgrade === true && this.connection.version >= TUNNEL_VERSION && !endStream;
    this.upgrade = upgrade;
    const wire: RequestHead = {
      method: head.method, target: head.target, headers: block,
      remoteAddr: remote === null ? head.remoteAddr : '', remotePort: head.remotePort,
      serverAddr: server === null ? head.serverAddr : '', serverPort: head.serverPort,
      scheme: head.scheme, protocol: head.protocol, timeoutMs: head.timeoutMs,
      remoteIp: remote ?? undefined, serverIp: server ?? undefined,
      upgrade: upgrade ? true : undefined, // absent (not false) on a plain request: no bytes spent
      requestId: head.requestId,
    };
    this.#sendHead(encodeRequestFrame(FrameType.REQUEST, endStream ? Flags.END_STREAM : 0, this.id, wire), endStream, commit);
  }

  /** Ends the stream with trailer fields; after the body data still waiting for credit, if any. */
  sendTrailers(headers: HeaderFields): void {
    if (this.localEnded || this.closed || this.#queueEnd) return;
    if (this.#queue.length > 0) {
      this.#queuedTrailers = headers;
      this.#queueEnd = true;
      return;
    }
    const { block, commit } = this.connection.valueEncoder.encode(headers);
    this.#sendHead(encodeTrailersFrame(FrameType.TRAILERS, Flags.END_STREAM, this.id, block), true, commit);
  }

  /** Writes a head frame; `commit` records its header values in the table once it is sent. */
  #sendHead(frame: Buffer, endStream: boolean, commit: () => void): void {
    const conn = this.connection;
    const size = frame.length - FRAME_HEADER_SIZE;
    if (size > conn.peerMaxFrameSize) {
      throw new TsgiError('TSGI_ERR_FRAME_TOO_LARGE',
        `head of ${size} bytes exceeds the peer's ${conn.peerMaxFrameSize}-byte frame limit`);
    }
    conn.writeEncoded(frame);
    commit();
    if (endStream) this.#endLocal();
  }

  /**
   * Sends body bytes, as much as the credit allows now; the rest waits for WINDOW frames.
   * Returns false when the producer should pause until `onDrain` (backpressure).
   */
  write(chunk: Uint8Array, endStream = false): boolean {
    if (this.closed || this.localEnded) return false;
    if (this.#queue.length > 0) {
      if (chunk.length > 0) this.#queue.push(chunk);
      if (endStream) this.#queueEnd = true;
      return false;
    }
    const rest = this.#send(chunk, endStream);
    if (rest !== null) {
      this.#queue.push(rest);
      this.#queueEnd = endStream;
      return false;
    }
    return this.sendWindow > 0;
  }

  end(): void {
    this.write(EMPTY, true);
  }

  /** Sends what the credit allows; returns the unsent remainder, or null if all went. */
  #send(chunk: Uint8Array, endStream: boolean): Uint8Array | null {
    const conn = this.connection;
    const max = conn.dataChunkSize;
    let pos = 0;
    const len = chunk.length;
    if (len === 0) {
      if (endStream) {
        conn.writeFrame(FrameType.DATA, Flags.END_STREAM, this.id, EMPTY);
        this.#endLocal();
      }
      return null;
    }
    while (pos < len) {
      const n = Math.min(len - pos, max, this.sendWindow);
      if (n <= 0) return pos === 0 ? chunk : chunk.subarray(pos);
      const last = pos + n === len;
      const piece = pos === 0 && last ? chunk : chunk.subarray(pos, pos + n);
      this.sendWindow -= n;
      pos += n;
      conn.writeData(this.id, last && endStream ? Flags.END_STREAM : 0, piece);
    }
    if (endStream) this.#endLocal();
    return null;
  }

  /** Called by the connection when credit arrives. */
  _credit(increment: number): void {
    this.credited = true;
    this.sendWindow += increment;
    if (this.sendWindow > MAX_STREAM_ID) {
      this.connection._failStream(this, ResetCode.FLOW_CONTROL_ERROR, 'window grew past 2^31-1');
      return;
    }
    const queue = this.#queue;
    while (queue.length > 0 && this.sendWindow > 0) {
      const head = queue[0]!;
      const lastItem = queue.length === 1;
      const rest = this.#send(head, lastItem && this.#queueEnd && this.#queuedTrailers === null);
      if (rest !== null) {
        queue[0] = rest;
        return;
      }
      queue.shift();
    }
    if (queue.length === 0 && this.#queueEnd && !this.localEnded) {
      const trailers = this.#queuedTrailers;
      this.#queuedTrailers = null;
      if (trailers === null) this.#send(EMPTY, true);
      else {
        this.#queueEnd = false;
        this.sendTrailers(trailers);
      }
    }
    if (queue.length === 0 && !this.closed) this.handler?.onDrain?.();
  }

  /** Called by the connection for each DATA frame; enforces the credit we granted. */
  _receiveData(payload: Buffer, endStream: boolean): void {
    if (this.remoteEnded) {
      this.connection._failStream(this, ResetCode.PROTOCOL_ERROR, 'DATA after end of stream');
      return;
    }
    if (payload.length > this.#recvWindow) {
      this.connection._failStream(this, ResetCode.FLOW_CONTROL_ERROR,
        `DATA of ${payload.length} bytes exceeds the ${this.#recvWindow} bytes of credit left`);
      return;
    }
    this.#recvWindow -= payload.length;
    if (endStream) {
      // Closed before the owner hears of the end, so that it sees a finished stream.
      this.remoteEnded = true;
      this._maybeClose();
    }
    const handler = this.handler;
    if (handler !== null && handler.onData !== undefined) handler.onData(payload, endStream);
    else this.consume(payload.length);
  }

  /**
   * The consumer has taken `n` bytes of received DATA: grant the peer that much credit again.
   * Credit is returned in batches of a quarter window, so small bodies cost no WINDOW frames.
   */
  consume(n: number): void {
    if (this.closed || this.remoteEnded || n <= 0) return;
    this.#unacked += n;
    if (this.#unacked >= this.connection.initialWindow >>> 2) {
      const inc = this.#unacked;
      this.#unacked = 0;
      this.#recvWindow += inc;
      this.connection.writeFrame(FrameType.WINDOW, 0, this.id, Window.encode({ increment: inc }).finish());
    }
  }

  /** Cancels the stream: tells the peer (unless the connection is gone) and forgets it. */
  reset(code: number, message = ''): void {
    if (this.closed) return;
    this.connection._resetStream(this, code, message);
  }

  #endLocal(): void {
    this.localEnded = true;
    this.#queue.length = 0;
    this._maybeClose();
  }

  _maybeClose(): void {
    if (this.localEnded && this.remoteEnded) this.connection._forget(this);
  }

  _closeQueue(): void {
    this.#queue.length = 0;
    this.#queueEnd = false;
  }
}
