// Frame layout, the frame-header encoder, and the incremental frame decoder.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |                     payload length (u32 BE)                   |
//  +---------------+---------------+-------------------------------+
//  |   type (u8)   |  flags (u8)   |    stream id (u32 BE) ...     |
//  +---------------+---------------+-------------------------------+
//  |  ... stream id (high bit 0)   |  payload (length bytes) ...
//  +-------------------------------+-------------------------------
//
// The payload of HELLO, REQUEST, RESPONSE, TRAILERS, RESET, WINDOW, GOAWAY and PING/PONG is a
// protobuf message (proto/tsgi.proto); the payload of DATA is raw body bytes. Stream 0 is
// the connection itself (HELLO, GOAWAY, PING, PONG); requests use odd ids chosen by the front.
import { FRAME_HEADER_SIZE, Flags, FrameType, MAX_STREAM_ID } from './constants.js';
import { ProtocolError } from './errors.js';

export type FrameHandler = (type: number, flags: number, stream: number, payload: Buffer) => void;

const EMPTY = Buffer.alloc(0);

/** Writes a frame header into a new 10-byte buffer. */
export function frameHeader(type: number, flags: number, stream: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  writeFrameHeader(h, 0, type, flags, stream, length);
  return h;
}

export function writeFrameHeader(
  target: Uint8Array, offset: number, type: number, flags: number, stream: number, length: number,
): void {
  target[offset] = length >>> 24;
  target[offset + 1] = (length >>> 16) & 0xff;
  target[offset + 2] = (length >>> 8) & 0xff;
  target[offset + 3] = length & 0xff;
  target[offset + 4] = type;
  target[offset + 5] = flags;
  target[offset + 6] = stream >>> 24;
  target[offset + 7] = (stream >>> 16) & 0xff;
  target[offset + 8] = (stream >>> 8) & 0xff;
  target[offset + 9] = stream & 0xff;
}

/** One buffer holding a frame header followed by a (small) payload. */
export function encodeFrame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload.length);
  writeFrameHeader(out, 0, type, flags, stream, payload.length);
  out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

/**
 * Incremental decoder. `push` hands every complete frame in the chunk to the handler, in
 * order, and keeps any partial frame for the next chunk. A payload that lies wholly inside
 * one chunk is passed as a view of it (no copy). A declared length over the limit is
 * refused as soon as the header is complete, before any of the payload is buffered.
 * After it throws, the decoder refuses further input: the connection is finished.
 *
 * With `fragmentData`, a DATA payload split across chunks is not assembled: each piece is
 * handed on at once as a view, as a DATA frame of its own, END_STREAM only on the last piece.
 * Body bytes then cross the decoder without a copy, however the socket cuts them.
 */
export class FrameDecoder {
  readonly maxFrameSize: number;
  #header = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  #headerFill = 0;
  /** Payload length of a frame whose header is read and whose payload has not all arrived; 0 if none. */
  #payloadLength = 0;
  /** Allocated only once a payload turns out to be split across chunks. */
  #payload: Buffer | null = null;
  #payloadFill = 0;
  #type = 0;
  #flags = 0;
  #stream = 0;
  #failed = false;
  readonly #fragmentData: boolean;
  /** Bytes of a fragmented DATA payload still to come (fragmentData only). */
  #dataLeft = 0;

  constructor(maxFrameSize: number, { fragmentData = false }: { fragmentData?: boolean } = {}) {
    this.maxFrameSize = maxFrameSize;
    this.#fragmentData = fragmentData;
  }

  /** Bytes held for a frame that is not complete yet. */
  get buffered(): number {
    return this.#headerFill + this.#payloadFill;
  }

  push(chunk: Buffer, onFrame: FrameHandler): void {
    if (this.#failed) throw new ProtocolError('decoder used after a protocol error');
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      const left = this.#dataLeft;
      if (left > 0) {
        const n = Math.min(left, end - pos);
        this.#dataLeft = left - n;
        const flags = this.#dataLeft === 0 ? this.#flags : this.#flags & ~Flags.END_STREAM;
        onFrame(FrameType.DATA, flags, this.#stream, chunk.subarray(pos, pos + n));
        pos += n;
        continue;
      }
      const want = this.#payloadLength;
      if (want > 0) {
        // The header ended the previous chunk: a payload wholly inside this one is still a view.
        if (this.#payload === null && end - pos >= want) {
          this.#payloadLength = 0;
          onFrame(this.#type, this.#flags, this.#stream, chunk.subarray(pos, pos + want));
          pos += want;
          continue;
        }
        const payload = this.#payload ??= Buffer.allocUnsafe(want);
        const n = Math.min(payload.length - this.#payloadFill, end - pos);
        chunk.copy(payload, this.#payloadFill, pos, pos + n);
        this.#payloadFill += n;
        pos += n;
        if (this.#payloadFill === payload.length) {
          this.#payloadLength = 0;
          this.#payload = null;
          this.#payloadFill = 0;
          onFrame(this.#type, this.#flags, this.#stream, payload);
        }
        continue;
      }
      let length: number;
      if (this.#headerFill === 0 && end - pos >= FRAME_HEADER_SIZE) {
        length = chunk.readUInt32BE(pos);
        this.#type = chunk[pos + 4]!;
        this.#flags = chunk[pos + 5]!;
        this.#stream = chunk.readUInt32BE(pos + 6);
        pos += FRAME_HEADER_SIZE;
      } else {
        const n = Math.min(FRAME_HEADER_SIZE - this.#headerFill, end - pos);
        chunk.copy(this.#header, this.#headerFill, pos, pos + n);
        this.#headerFill += n;
        pos += n;
        if (this.#headerFill < FRAME_HEADER_SIZE) return;
        this.#headerFill = 0;
        const h = this.#header;
        length = h.readUInt32BE(0);
        this.#type = h[4]!;
        this.#flags = h[5]!;
        this.#stream = h.readUInt32BE(6);
      }
      if (this.#stream > MAX_STREAM_ID) {
        this.#failed = true;
        throw new ProtocolError(`stream id ${this.#stream} has the reserved high bit set`);
      }
      if (length > this.maxFrameSize) {
        this.#failed = true;
        throw new ProtocolError(
          `frame of ${length} bytes exceeds the ${this.maxFrameSize}-byte limit`, 'TSGI_ERR_FRAME_TOO_LARGE');
      }
      if (length === 0) {
        onFrame(this.#type, this.#flags, this.#stream, EMPTY);
      } else if (end - pos >= length) {
        onFrame(this.#type, this.#flags, this.#stream, chunk.subarray(pos, pos + length));
        pos += length;
      } else if (this.#fragmentData && this.#type === FrameType.DATA) {
        const n = end - pos;
        this.#dataLeft = length - n;
        if (n > 0) onFrame(FrameType.DATA, this.#flags & ~Flags.END_STREAM, this.#stream, chunk.subarray(pos, end));
        pos = end;
      } else {
        this.#payloadLength = length;
      }
    }
  }
}
