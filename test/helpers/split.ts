// Seeded randomness for the decoder corpora: a failing split can be replayed from its seed.

/** mulberry32: a small seeded PRNG returning numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts bytes into consecutive views of 1 to `maxPiece` bytes, chosen by the seed. */
export function randomSplit(bytes: Buffer, seed: number, maxPiece: number): Buffer[] {
  const next = prng(seed);
  const parts: Buffer[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const n = 1 + Math.floor(next() * Math.min(maxPiece, bytes.length - pos));
    parts.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  return parts;
}
