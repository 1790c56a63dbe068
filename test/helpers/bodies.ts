// Request and response bodies for the e2e suites: a deterministic upload with its sha256, the
// byte count and sha256 of a body read as it streams in, and a reader for a response that is
// still being written.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import * as assert from 'uvu/assert';

const CHUNK = 64 * 1024;

/**
 * `n` bytes in 64 KiB chunks, each chunk filled by `fill(i)` for its i-th byte, and their sha256;
 * body() makes a fresh stream of them for each request.
 */
export function upload(n: number, fill: (i: number) => number = (i) => (i * 13 + 5) & 0xff): { body: () => Readable; sha256: string } {
  const chunk = Buffer.alloc(CHUNK);
  for (let i = 0; i < chunk.length; i++) chunk[i] = fill(i);
  const parts = function* () {
    for (let sent = 0; sent < n; sent += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, n - sent));
  };
  const hash = createHash('sha256');
  for (const p of parts()) hash.update(p);
  return { sha256: hash.digest('hex'), body: () => Readable.from(parts()) };
}

/** Reads `body` to its end, hashing as it streams in: how many bytes came, and their sha256. */
export async function digestOf(body: AsyncIterable<Uint8Array>): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * A reader of a response body still being written: until(text) reads until `text` has arrived
 * (fails if the body ends first), seen() is everything so far, next() the next raw chunk.
 */
export function streamReader(body: AsyncIterable<unknown>): {
  until(text: string): Promise<void>;
  seen(): string;
  next(): Promise<IteratorResult<unknown>>;
} {
  const it = body[Symbol.asyncIterator]();
  let seen = '';
  return {
    async until(text) {
      while (!seen.includes(text)) {
        const r = await it.next();
        assert.not.ok(r.done, `the stream ended before ${JSON.stringify(text)}; got ${JSON.stringify(seen)}`);
        seen += String(r.value);
      }
    },
    seen: () => seen,
    next: () => it.next(),
  };
}
