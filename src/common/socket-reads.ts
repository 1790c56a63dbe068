// Reading an accepted socket with `onread`, as net.connect can: each read goes into a buffer we
// choose, and straight to a callback, without a fresh 64 KiB buffer per read from Node and
// without the Readable's 'data' path.
//
// Node offers `onread` only to sockets it connects (net.connect, tls.connect); a socket a
// net.Server accepts, or one a supervisor hands over, reads into a new 64 KiB buffer per read.
// readInto gives such a socket the same reads: it sets the three fields net.Socket's
// constructor sets for `onread` (found by their symbols' names) and points the handle at the
// first buffer, as net.Socket does. Where those are not found (another Node), or for a TLS
// socket, it returns false and the caller reads with 'data' as before.
import { Socket } from 'node:net';

interface OnreadFields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

let fields: OnreadFields | null | undefined;

function findFields(): OnreadFields | null {
  const symbols = Object.getOwnPropertySymbols(new Socket());
  const named = (name: string) => symbols.find((s) => s.description === name);
  const buffer = named('kBuffer');
  const callback = named('kBufferCb');
  const generator = named('kBufferGen');
  return buffer && callback && generator ? { buffer, callback, generator } : null;
}

type UserBufferHandle = { useUserBuffer?: (buffer: Uint8Array) => void };

/**
 * Makes `socket` read with `onread`: `next()` is the room for each read, and `callback(n, into)`
 * gets the bytes each read put in the buffer `into`; it returns false to stop reading (the
 * socket's resume() starts it again). Returns false, changing nothing, where this cannot be done
 * (a TLS socket, bytes already read the usual way, a Node without these fields).
 */
export function readInto(socket: Socket, next: () => Buffer, callback: (n: number, into: Buffer) => boolean): boolean {
  fields ??= findFields();
  const handle = (socket as unknown as { _handle: UserBufferHandle | null })._handle;
  if (fields === null || handle === null || typeof handle.useUserBuffer !== 'function'
      || (socket as Socket & { encrypted?: boolean }).encrypted === true || socket.readableLength > 0) return false;
  const s = socket as unknown as Record<symbol, unknown>;
  // Already set (a connected socket given onread): leave it alone.
  if (s[fields.buffer] !== null || s[fields.callback] !== null || s[fields.generator] !== null) return false;
  const first = next();
  s[fields.buffer] = first;
  s[fields.callback] = callback;
  s[fields.generator] = next;
  handle.useUserBuffer(first);
  return true;
}

/**
 * One socket's reads into slabs that are never written twice: each read goes into the room
 * after the previous one, and a full slab is left to the views taken of it (the garbage
 * collector frees it with the last one). The bytes handed on are the owner's to keep, as
 * Node's own read buffers are; a view kept holds at most one slab.
 */
export class ReadSlabs {
  readonly #size: number;
  readonly #minRead: number;
  #slab: Buffer | null = null;
  #used = 0;

  /**
   * `size` bytes a slab; a read is offered at least `minRead` (less left, and a new slab is
   * taken). The defaults suit a Unix socket, whose buffer (~208 KiB) then fits in one read.
   */
  constructor(size = 256 * 1024, minRead = 64 * 1024) {
    this.#size = size;
    this.#minRead = minRead;
  }

  next(): Buffer {
    let slab = this.#slab;
    if (slab === null || this.#size - this.#used < this.#minRead) {
      slab = this.#slab = Buffer.allocUnsafeSlow(this.#size);
      this.#used = 0;
    }
    return slab.subarray(this.#used);
  }

  /** `into` is the buffer that next() gave the read that just filled `n` bytes of it. */
  filled(n: number, into: Buffer): Buffer {
    if (this.#slab !== null && into.buffer === this.#slab.buffer) this.#used += n;
    return into.subarray(0, n);
  }
}
