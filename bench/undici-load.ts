// The fallback load generator, run as a child process of its own so it shares an event loop
// with nothing: N closed loops over an undici keep-alive Pool (N connections, pipelining 1),
// each timing its requests. Prints one "BENCHJSON {…}" line, the shape loadgen.ts parses.
//   node dist/bench/undici-load.js '{"url":…,"seconds":5,"connections":50,"method":"GET","bodyFile":…}'
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

interface Spec {
  url: string;
  seconds: number;
  connections: number;
  method: 'GET' | 'POST';
  bodyFile?: string;
  timeoutS: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const url = new URL(spec.url);
const body = spec.bodyFile === undefined ? null : readFileSync(spec.bodyFile);
const pool = new Pool(url.origin, {
  connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000,
  headersTimeout: spec.timeoutS * 1000, bodyTimeout: spec.timeoutS * 1000,
});
const headers = body === null ? {} : { 'content-type': 'application/octet-stream' };
const path = url.pathname + url.search;

const latencies: number[] = [];
let bytes = 0;
let socket = 0;
let status = 0;
let timeout = 0;

async function loop(deadline: number): Promise<void> {
  while (performance.now() < deadline) {
    const t0 = performance.now();
    try {
      const res = await pool.request({ path, method: spec.method, headers, body });
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
      if (res.statusCode >= 400) status++;
      latencies.push((performance.now() - t0) * 1000);
    } catch (err) {
      if (/timeout/i.test((err as Error).name + (err as Error).message)) timeout++;
      else socket++;
    }
  }
}

const start = performance.now();
const deadline = start + spec.seconds * 1000;
await Promise.all(Array.from({ length: spec.connections }, () => loop(deadline)));
const us = (performance.now() - start) * 1000;
await pool.destroy();
latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length === 0 ? 0 : Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p / 100))]!));
process.stdout.write(`BENCHJSON ${JSON.stringify({
  requests: latencies.length, us: Math.round(us), bytes, p50: pct(50), p99: pct(99), socket, status, timeout,
})}\n`);
