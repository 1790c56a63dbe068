// The continuous, bounded load of bench:swap: a fixed number of closed loops over an undici
// keep-alive Pool, three GETs to one POST (1–256 KiB bodies). Every answer is checked (status,
// a version line for GETs, the exact bytes back for POSTs) and timed, so a window of time can
// be cut out afterwards: steady state versus during a swap.
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';

export interface Sample {
  start: number;
  end: number;
  ok: boolean;
}

export interface Failure {
  at: number;
  what: string;
}

const BODY = randomBytes(256 * 1024);

export class MixedLoad {
  readonly samples: Sample[] = [];
  readonly failures: Failure[] = [];
  readonly #pool: Pool;
  readonly #concurrency: number;
  #stopping = false;
  #loops: Promise<void>[] = [];
  #n = 0;

  constructor(url: string, concurrency: number) {
    this.#pool = new Pool(url, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
    this.#concurrency = concurrency;
  }

  start(): void {
    for (let i = 0; i < this.#concurrency; i++) this.#loops.push(this.#loop());
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#loops);
    await this.#pool.close();
  }

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      const n = this.#n++;
      const post = n % 4 === 3;
      const size = post ? 1024 + ((n * 7919) % (BODY.length - 1024)) : 0;
      const start = performance.now();
      let what: string | null = null;
      try {
        const res = await this.#pool.request({
          path: post ? '/echo' : `/get?n=${n}`, method: post ? 'POST' : 'GET',
          body: post ? BODY.subarray(0, size) : null,
          headers: post ? { 'content-type': 'application/octet-stream' } : {},
        });
        const body = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200) what = `status ${res.statusCode}: ${body.toString('utf8', 0, 200).trim()}`;
        else if (post && !body.equals(BODY.subarray(0, size))) what = `echo of ${size} bytes came back as ${body.length} different bytes`;
        else if (!post && !/^v\S* pid=\d+/.test(body.toString())) what = `unexpected body ${JSON.stringify(body.toString().slice(0, 80))}`;
      } catch (err) {
        what = `${(err as Error).name}: ${(err as Error).message}`;
      }
      const end = performance.now();
      this.samples.push({ start, end, ok: what === null });
      if (what !== null) this.failures.push({ at: end, what: `${post ? 'POST' : 'GET'}: ${what}` });
    }
  }
}

export interface WindowStats {
  requests: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
}

/** Requests that started in [from, to), or (overlapping) that were in flight during any window. */
export function stats(samples: Sample[], windows: [number, number][], mode: 'within' | 'overlapping'): WindowStats {
  const picked = samples.filter((s) => windows.some(([a, b]) => (mode === 'within' ? s.start >= a && s.end < b : s.end >= a && s.start < b)));
  const ms = picked.map((s) => s.end - s.start).sort((a, b) => a - b);
  const pct = (p: number) => ms[Math.min(ms.length - 1, Math.floor(ms.length * p / 100))] ?? 0;
  return { requests: picked.length, failed: picked.filter((s) => !s.ok).length, p50Ms: pct(50), p99Ms: pct(99) };
}
