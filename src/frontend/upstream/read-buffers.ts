// Where the front's backend links read into: large slabs that are used again once every body
// byte read into them has gone out to its client, instead of a fresh 64 KiB buffer per read.
//
// Measured on the 1 MiB download (perf, front process): Node's own reads cost ~18 reads per
// MiB, a malloc and a realloc each, and ~90 µs per MiB of page faults on fresh memory; the
// 'data' event path is skipped too. See README, Performance.
//
// Ownership: a link reads into slab.next(); the chunk it gets back is a view of the slab. The
// frame decoder hands DATA payloads on as views of it; everything else the front decodes from
// a link (heads, trailers, resets) becomes strings and numbers at once, so no other view
// outlives the read. Whoever keeps a DATA view past the read (the response write) takes a
// reference with retain() and drops it when the write is done (its callback); the slab goes
// back to the pool when the reader has moved on and no reference is left. A reference that is
// never dropped (a write whose callback never comes) only means that slab is not used again:
// the garbage collector takes it like any other buffer.
import assert from 'node:assert/strict';

/** Size of one slab. A Unix socket's default buffer (~208 KiB) fits in one read. */
const SLAB_SIZE = 512 * 1024;
/** A read is offered at least this much room; less left in a slab, and the next one is taken. */
const MIN_READ = 64 * 1024;
/** Free slabs kept for reuse (all links of the process share them). */
const POOL_MAX = 16;

class Slab {
  readonly buffer: Buffer = Buffer.allocUnsafeSlow(SLAB_SIZE);
  /** Bytes handed out to reads so far. */
  used = 0;
  /** Outstanding references, plus one while a reader is still filling it. */
  refs = 1;
  /** release, bound once: a write's callback costs no closure. */
  readonly release = (): void => {
    const refs = --this.refs;
    if (refs === 0) recycle(this);
    // Released once too often, the slab would be handed to a reader while a write still uses it.
    else if (refs < 0) assert.fail('a read slab was released more often than it was retained');
  };
}

const free: Slab[] = [];
/** The slab, if any, that each slab buffer's memory belongs to. */
const owners = new WeakMap<ArrayBufferLike, Slab>();

function recycle(slab: Slab): void {
  if (free.length >= POOL_MAX) {
    owners.delete(slab.buffer.buffer);
    return;
  }
  slab.used = 0;
  slab.refs = 1;
  free.push(slab);
}

function take(): Slab {
  const slab = free.pop();
  if (slab !== undefined) return slab;
  const fresh = new Slab();
  owners.set(fresh.buffer.buffer, fresh);
  return fresh;
}

/**
 * One link's reads: `next()` is the room for the next read (net's `onread.buffer`), and
 * `filled(n, into)` the bytes that read put there, as a view.
 */
export class ReadBuffers {
  #slab: Slab | null = take();

  next(): Buffer {
    let slab = this.#slab;
    if (slab === null) return Buffer.allocUnsafe(MIN_READ); // closed: a read that races the close
    if (SLAB_SIZE - slab.used < MIN_READ) {
      slab.release(); // the reader's own reference: reused once its writes are done
      slab = this.#slab = take();
    }
    return slab.buffer.subarray(slab.used);
  }

  /** `into` is the buffer that next() gave the read that just filled `n` bytes of it. */
  filled(n: number, into: Buffer): Buffer {
    const slab = this.#slab;
    if (slab !== null && into.buffer === slab.buffer.buffer) slab.used += n;
    return into.subarray(0, n);
  }

  /** The link is closed: its slab goes back once its last write is done. */
  close(): void {
    this.#slab?.release();
    this.#slab = null;
  }
}

/**
 * A reference to the slab that `chunk` is a view of, for as long as a write holds it: returns
 * the function to call when the write is done, or undefined for a chunk from anywhere else.
 */
export function retain(chunk: Uint8Array): (() => void) | undefined {
  const slab = owners.get(chunk.buffer);
  if (slab === undefined) return undefined;
  slab.refs++;
  return slab.release;
}
