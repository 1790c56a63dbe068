// The floor under any bridge: one Unix-socket round trip between two Node processes. The
// server echoes each byte; the client sends 1 byte, waits for it, repeats, and times each trip.
//   node dist/bench/pingpong.js server PATH
//   node dist/bench/pingpong.js client PATH SECONDS   → prints BENCHJSON {"trips":…,"p50":µs,"p99":µs}
import { connect, createServer } from 'node:net';

const [role, path, seconds] = process.argv.slice(2);
const WARMUP_TRIPS = 2_000;

if (role === 'server' && path !== undefined) {
  createServer((socket) => {
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('error', () => {});
  }).listen(path);
  process.on('SIGTERM', () => process.exit(0));
} else if (role === 'client' && path !== undefined) {
  const socket = connect(path);
  const byte = Buffer.from([1]);
  const samples: number[] = [];
  const end = performance.now() + Number(seconds ?? 3) * 1000;
  let warm = 0;
  let t0 = 0;
  socket.on('connect', () => {
    t0 = performance.now();
    socket.write(byte);
  });
  socket.on('data', () => {
    const now = performance.now();
    if (warm < WARMUP_TRIPS) warm++;
    else samples.push((now - t0) * 1000);
    if (now >= end) {
      samples.sort((a, b) => a - b);
      const pct = (p: number) => samples[Math.min(samples.length - 1, Math.floor(samples.length * p / 100))] ?? 0;
      process.stdout.write(`BENCHJSON ${JSON.stringify({ trips: samples.length, p50: pct(50), p99: pct(99) })}\n`);
      socket.destroy();
      return;
    }
    t0 = performance.now();
    socket.write(byte);
  });
} else {
  process.stderr.write('usage: pingpong.js server PATH | client PATH SECONDS\n');
  process.exit(2);
}
