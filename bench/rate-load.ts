// The open-loop load generator of the fixed-rate cell, in a child process of its own: requests
// leave at a constant rate whatever the responses do (a slow response never delays the next
// request, as a closed loop's would), over an undici keep-alive Pool. Each latency runs from
// the moment its request is issued. Prints one "BENCHJSON {…}" line.
// A warm-up at the same rate, in the same process (its connections made, its code compiled),
// comes first and is not counted. A fresh server compiles its code during the warm-up and may
// fall behind the rate meanwhile; the measured seconds start once the backlog that left has
// drained (the wait is reported as drainMs), so that they show the steady state, not the start.
//   node dist/bench/rate-load.js '{"url":…,"warmup":1,"seconds":5,"rate":5000,"connections":50}'
import { Pool } from 'undici';

interface Spec {
  url: string;
  seconds: number;
  /** Seconds at the rate before the measured ones. */
  warmup: number;
  /** Requests per second. */
  rate: number;
  connections: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const url = new URL(spec.url);
const pool = new Pool(url.origin, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 60_000 });
const path = url.pathname + url.search;
/** The timer's step: the requests due within it leave together. */
const TICK_MS = 1;

let latencies: number[] = [];
let errors = 0;
/** Responses in the warm-up and the measured run (the server's CPU covers both). */
let answered = 0;
let inFlight = 0;
let maxInFlight = 0;

function one(): void {
  const t0 = performance.now();
  const into = latencies;
  inFlight++;
  if (inFlight > maxInFlight) maxInFlight = inFlight;
  pool.request({ path, method: 'GET' }).then(async (res) => {
    for await (const _ of res.body) { /* drain */ }
    answered++;
    if (res.statusCode >= 400) errors++;
    else into.push((performance.now() - t0) * 1000);
  }, () => { errors++; }).finally(() => { inFlight--; });
}

/** `seconds` at the rate; resolves when the last request has left, with the seconds that took. */
async function atRate(seconds: number): Promise<number> {
  const start = performance.now();
  const total = Math.round(spec.rate * seconds);
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      // Every request due by now leaves now (catching up after a late timer), none ahead of time.
      const due = Math.min(total, Math.floor((performance.now() - start) * spec.rate / 1000));
      for (; sent < due; sent++) one();
      if (sent >= total) resolve();
      else setTimeout(tick, TICK_MS);
    };
    tick();
  });
  return (performance.now() - start) / 1000;
}

await atRate(spec.warmup);
const warmupMaxInFlight = maxInFlight;
const drainStart = performance.now();
while (inFlight > spec.connections) await new Promise((r) => setTimeout(r, 1));
const drainMs = performance.now() - drainStart;
latencies = [];
errors = 0;
maxInFlight = inFlight;
const sendSeconds = await atRate(spec.seconds);
while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
await pool.destroy();
latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length === 0 ? 0 : Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p / 100))]!));
process.stdout.write(`BENCHJSON ${JSON.stringify({
  requests: latencies.length, answered, errors, sendSeconds, p50: pct(50), p99: pct(99), p999: pct(99.9), max: pct(100), maxInFlight,
  warmupMaxInFlight, drainMs: Math.round(drainMs),
})}\n`);
