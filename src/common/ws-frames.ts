// WebSocket frames (RFC 6455 §5.2) as far as a proxy in the middle needs them: where each frame
// ends in a byte stream, so that a close frame can be slipped in between two frames, and the
// close frames themselves. Pure: no I/O; payloads are skipped, never copied or unmasked.
//
//   0               1               2               3
//   0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//  +-+-+-+-+-------+-+-------------+-------------------------------+
//  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//  |I|S|S|S|  (4)  |A|     (7)     |  (16 bits if len 126,         |
//  |N|V|V|V|       |S|             |   64 bits if len 127)         |
//  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//  |  masking key (4 bytes, client-to-server frames only)  | payload ...
//
// Control frames (close, ping, pong) may come between the fragments of a message (§5.4), so any
// frame boundary is a place for a close frame.
import { randomBytes } from 'node:crypto';

/** Close codes tsgi sends on its own (RFC 6455 §7.4.1, IANA registry). */
export const CloseCode = {
  NORMAL: 1000,
  /** The server is going down (a graceful stop). */
  GOING_AWAY: 1001,
  /** The service is restarting (a reload, a worker replaced): reconnect. */
  SERVICE_RESTART: 1012,
} as const;

const OP_CLOSE = 0x8;
/** The longest header: 2 bytes, 8 of extended length, 4 of mask. */
const MAX_HEADER = 14;

/**
 * Follows the frame boundaries of one direction of a WebSocket connection. Feed it every byte,
 * in order, with advance(); it reads the headers and skips the payloads.
 */
export class FrameTracker {
  readonly #head = new Uint8Array(MAX_HEADER);
  #headLen = 0;
  /** Header bytes needed so far (2 until the second byte says more). */
  #headNeed = 2;
  /** Payload bytes of the current frame not yet passed. */
  #remaining = 0;
  #opcode = 0;
  #closed = false;
  #error: string | null = null;
  /** Frames whose end has passed. */
  frames = 0;

  /** Between two frames (nothing of a frame passed but not all of it). */
  get atBoundary(): boolean {
    return this.#headLen === 0 && this.#remaining === 0 && this.#error === null;
  }

  /** A whole close frame has passed: this direction says no more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the bytes are not WebSocket frames (null while they are). */
  get error(): string | null {
    return this.#error;
  }

  /**
   * Takes the bytes of `chunk` in order and returns how many it took: all of them, or with
   * `stopAtBoundary`, those up to the first frame end (at least one byte: from a boundary, the
   * next frame is entered).
   * After an error, nothing is tracked: everything is taken, and no boundary is found again.
   */
  advance(chunk: Uint8Array, stopAtBoundary = false): number {
    const len = chunk.length;
    let pos = 0;
    if (this.#error !== null) return len;
    while (pos < len) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, len - pos);
        this.#remaining -= n;
        pos += n;
        if (this.#remaining === 0) {
          this.#frameEnded();
          if (stopAtBoundary) return pos;
        }
        continue;
      }
      // A header: take what it still needs (its length is known after its second byte).
      while (pos < len && this.#headLen < this.#headNeed) {
        this.#head[this.#headLen++] = chunk[pos++]!;
        if (this.#headLen === 2) this.#headNeed = headerLength(this.#head[1]!);
      }
      if (this.#headLen < this.#headNeed) return pos;
      if (!this.#headerDone()) return len;
      if (this.#remaining === 0) {
        this.#frameEnded();
        if (stopAtBoundary) return pos;
      }
    }
    return pos;
  }

  /** A whole header is in: the payload length. False when the header is not a frame's. */
  #headerDone(): boolean {
    const h = this.#head;
    this.#opcode = h[0]! & 0x0f;
    const len7 = h[1]! & 0x7f;
    let length: number;
    if (len7 < 126) {
      length = len7;
    } else if (len7 === 126) {
      length = (h[2]! << 8) | h[3]!;
    } else {
      const high = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
      // §5.2: the most significant bit must be 0; lengths past 2^53 cannot be counted here.
      if (high > 0x1fffff) return this.#fail(`a frame length over 2^53 bytes (header ${Buffer.from(h.subarray(0, 10)).toString('hex')})`);
      length = high * 0x100000000 + (((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!);
    }
    if (this.#opcode >= 8 && (length > 125 || (h[0]! & 0x80) === 0)) {
      return this.#fail(`a control frame (opcode ${this.#opcode}) of ${length} bytes${(h[0]! & 0x80) === 0 ? ', fragmented' : ''}`);
    }
    this.#remaining = length;
    this.#headLen = 0;
    this.#headNeed = 2;
    return true;
  }

  #frameEnded(): void {
    this.frames++;
    if (this.#opcode === OP_CLOSE) this.#closed = true;
  }

  #fail(why: string): false {
    this.#error = why;
    return false;
  }
}

/**
 * Closes a WebSocket from the middle, cleanly both ways (what a server or proxy that stops does
 * for an app that does nothing about it): it follows both directions' frames, and once close()
 * is called, the client gets a close frame at the next frame boundary of the server's bytes and
 * the server one as the client would send it (masked) at the next boundary of the client's.
 * Each side's later bytes (its close reply) are dropped. Feed every byte of both directions.
 */
export class WebSocketCloser {
  /** Server to client, and client to server. */
  readonly toClient = new FrameTracker();
  readonly toServer = new FrameTracker();
  #code = 0;
  #clientDone = false;
  #serverDone = false;
  readonly #sendClient: (bytes: Buffer) => void;
  readonly #sendServer: (bytes: Buffer) => void;

  /** `sendClient` / `sendServer` forward bytes on; the close frames go through them too. */
  constructor(sendClient: (bytes: Buffer) => void, sendServer: (bytes: Buffer) => void) {
    this.#sendClient = sendClient;
    this.#sendServer = sendServer;
  }

  /** The close code in use (0 until close()). */
  get closing(): number {
    return this.#code;
  }

  /**
   * Starts closing with `code`. False (and nothing done) when already closing, or when either
   * direction is not WebSocket frames; a side that already sent its close frame gets none.
   */
  close(code: number): boolean {
    if (this.#code !== 0 || this.toClient.error !== null || this.toServer.error !== null) return false;
    this.#code = code;
    if (this.toClient.closed) this.#clientDone = true; // the server closed already: the client has its close
    else if (this.toClient.atBoundary) this.#closeClient();
    if (this.toServer.closed) this.#serverDone = true;
    else if (this.toServer.atBoundary) this.#closeServer();
    return true;
  }

  /** Bytes from the server: forwarded, up to the close frame once it is due. Returns the bytes dropped. */
  fromServer(chunk: Buffer): number {
    return this.#pass(chunk, this.toClient, true);
  }

  /** Bytes from the client: forwarded, up to the close frame once it is due. Returns the bytes dropped. */
  fromClient(chunk: Buffer): number {
    return this.#pass(chunk, this.toServer, false);
  }

  #pass(chunk: Buffer, t: FrameTracker, toClient: boolean): number {
    if (toClient ? this.#clientDone : this.#serverDone) return chunk.length;
    if (this.#code === 0 || t.error !== null) {
      t.advance(chunk);
      (toClient ? this.#sendClient : this.#sendServer)(chunk);
      return 0;
    }
    const n = t.atBoundary ? 0 : t.advance(chunk, true);
    if (n > 0) (toClient ? this.#sendClient : this.#sendServer)(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (t.atBoundary) {
      if (t.closed) {
        // The frame just finished was that side's own close: it goes through, and nothing of ours.
        if (toClient) this.#clientDone = true;
        else this.#serverDone = true;
      } else if (toClient) {
        this.#closeClient();
      } else {
        this.#closeServer();
      }
    }
    return chunk.length - n;
  }

  #closeClient(): void {
    this.#clientDone = true;
    this.#sendClient(serverCloseFrame(this.#code));
  }

  #closeServer(): void {
    this.#serverDone = true;
    this.#sendServer(clientCloseFrame(this.#code));
  }
}

/** Bytes in a header whose second byte is `b1` (length code and mask bit). */
function headerLength(b1: number): number {
  const len7 = b1 & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((b1 & 0x80) !== 0 ? 4 : 0);
}

/** A close payload: the code, then the reason in UTF-8, cut to fit a control frame (125 bytes). */
function closePayload(code: number, reason: string): Buffer {
  let text = Buffer.from(reason, 'utf8');
  if (text.length > 123) text = text.subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return payload;
}

/** A close frame as a server sends it (unmasked). */
export function serverCloseFrame(code: number, reason = ''): Buffer {
  const payload = closePayload(code, reason);
  return Buffer.concat([Buffer.from([0x80 | OP_CLOSE, payload.length]), payload]);
}

/** A close frame as a client sends it (masked with `mask`, 4 random bytes unless given). */
export function clientCloseFrame(code: number, reason = '', mask: Uint8Array = randomBytes(4)): Buffer {
  const payload = closePayload(code, reason);
  const frame = Buffer.allocUnsafe(6 + payload.length);
  frame[0] = 0x80 | OP_CLOSE;
  frame[1] = 0x80 | payload.length;
  for (let i = 0; i < 4; i++) frame[2 + i] = mask[i]!;
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/**
 * The code and reason of a close frame's payload (unmasked), or null for an empty one
 * (a close without a code: 1005 to the application).
 */
export function parseClosePayload(payload: Uint8Array): { code: number; reason: string } | null {
  if (payload.length < 2) return null;
  return { code: (payload[0]! << 8) | payload[1]!, reason: Buffer.from(payload.subarray(2)).toString('utf8') };
}

/** Whether request headers (flat [name, value, …]) ask for a WebSocket (Upgrade: websocket). */
export function asksForWebSocket(flat: readonly string[]): boolean {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i]!.length === 7 && flat[i]!.toLowerCase() === 'upgrade' && /(^|[\s,])websocket($|[\s,])/i.test(flat[i + 1]!)) return true;
  }
  return false;
}
