// `npm run bench:swap`: zero-downtime deploys under load. A front with a --control socket, a
// continuous mixed load (undici), then N blue/green swaps (start v(k+1) --register, wait until
// registered, SIGTERM v(k), wait for its exit) and N SIGHUP rolling reloads of a --workers 2
// backend. Prints requests, failures (should be 0) and latency during swaps vs steady state.
// Env: BENCH_SWAPS (5), BENCH_SWAP_CONCURRENCY (8), BENCH_SECONDS (steady window, 3).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { machineLines } from './machine.js';
import { APPS, CLI, alive, freePort, installCleanup, start, stopAll, tempDir, type Proc } from './proc.js';
import { MixedLoad, stats, type Sample } from './swap-load.js';

const APP = join(APPS, 'swap-app.js');
/** Quiet time between two swaps, so each one's effect on latency stands alone. */
const GAP_MS = 500;

async function serve(name: string, socket: string, control: string, extra: string[] = []): Promise<Proc> {
  const proc = start(`tsgi serve ${name}`, process.execPath,
    [CLI, 'serve', APP, '--socket', socket, '--register', control, '--graceful-timeout', '10', ...extra], { BENCH_APP_VERSION: name });
  await proc.waitFor(/registered \S+ with the front/, 20_000);
  return proc;
}

async function stopGracefully(proc: Proc): Promise<void> {
  const info = await proc.stop('SIGTERM');
  if (info.code !== 0) throw new Error(`${proc.name} exited with ${info.signal ?? info.code} after SIGTERM, not 0`);
}

interface Phase {
  label: string;
  from: number;
  to: number;
  steady: [number, number];
  swaps: [number, number][];
}

/** v1 → v2 → … → v(N+1), each by registration and SIGTERM; returns the phase and the last backend. */
async function blueGreen(dir: string, control: string, swaps: number, steadyMs: number, onFirst: () => Promise<void>): Promise<{ phase: Phase; last: Proc }> {
  let current = await serve('v1', join(dir, 'v1.sock'), control);
  await onFirst();
  const from = performance.now();
  await sleep(GAP_MS);
  const steadyFrom = performance.now();
  await sleep(steadyMs);
  const steady: [number, number] = [steadyFrom, performance.now()];
  const windows: [number, number][] = [];
  for (let k = 2; k <= swaps + 1; k++) {
    const t0 = performance.now();
    const next = await serve(`v${k}`, join(dir, `v${k}.sock`), control);
    await stopGracefully(current);
    windows.push([t0, performance.now()]);
    process.stderr.write(`bench:swap: v${k - 1} → v${k} in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
    current = next;
    await sleep(GAP_MS);
  }
  return { phase: { label: 'blue/green: start v(k+1) --register, SIGTERM v(k)', from, to: performance.now(), steady, swaps: windows }, last: current };
}

/** N SIGHUPs to a --workers 2 backend, each awaited until the old generation has exited. */
async function rolling(dir: string, control: string, previous: Proc, reloads: number, steadyMs: number): Promise<{ phase: Phase; last: Proc }> {
  const from = performance.now();
  const backend = await serve('v-workers', join(dir, 'workers.sock'), control, ['--workers', '2']);
  await stopGracefully(previous);
  await sleep(GAP_MS);
  const steadyFrom = performance.now();
  await sleep(steadyMs);
  const steady: [number, number] = [steadyFrom, performance.now()];
  const windows: [number, number][] = [];
  for (let g = 2; g <= reloads + 1; g++) {
    const t0 = performance.now();
    process.kill(backend.pid, 'SIGHUP');
    await backend.waitFor(new RegExp(`generation ${g}\\) ready[\\s\\S]*generation ${g}\\) ready`), 20_000);
    const retired = await backend.waitFor(new RegExp(`pid (\\d+)\\) retiring: replaced by generation ${g}[\\s\\S]*pid (\\d+)\\) retiring: replaced by generation ${g}`), 20_000);
    const old = [Number(retired[1]), Number(retired[2])];
    const deadline = Date.now() + 20_000;
    while (old.some(alive)) {
      if (Date.now() > deadline) throw new Error(`generation ${g - 1} workers ${old.join(', ')} did not exit within 20 s`);
      await sleep(20);
    }
    windows.push([t0, performance.now()]);
    process.stderr.write(`bench:swap: reload to generation ${g} in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
    await sleep(GAP_MS);
  }
  return { phase: { label: 'rolling reload: SIGHUP a --workers 2 backend', from, to: performance.now(), steady, swaps: windows }, last: backend };
}

const ms = (n: number) => (n < 1 ? `${(n * 1000).toFixed(0)} µs` : `${n.toFixed(2)} ms`);

function row(phase: Phase, samples: Sample[]): string {
  const all = stats(samples, [[phase.from, phase.to]], 'within');
  const steady = stats(samples, [phase.steady], 'within');
  const during = stats(samples, phase.swaps, 'overlapping');
  const perSwap = phase.swaps.reduce((s, [a, b]) => s + (b - a), 0) / Math.max(1, phase.swaps.length) / 1000;
  return `| ${phase.label} | ${phase.swaps.length} | ${perSwap.toFixed(2)} s | ${all.requests} | ${all.failed} | `
    + `${ms(steady.p50Ms)} / ${ms(steady.p99Ms)} | ${ms(during.p50Ms)} / ${ms(during.p99Ms)} |`;
}

async function main(): Promise<number> {
  const swaps = Math.max(1, Number(process.env.BENCH_SWAPS ?? 5));
  const concurrency = Math.max(1, Number(process.env.BENCH_SWAP_CONCURRENCY ?? 8));
  const steadyMs = Math.max(1, Number(process.env.BENCH_SECONDS ?? 3)) * 1000;
  const began = Date.now();
  let dir: string | null = tempDir('tsgi-bench-swap-');
  installCleanup(() => dir);
  const control = join(dir, 'front.ctl');
  const port = await freePort();
  const front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${port}`, '--control', control,
    '--graceful-timeout', '5', '--queue-timeout', '10']);
  await front.waitFor(/listening on http /);

  const load = new MixedLoad(`http://127.0.0.1:${port}`, concurrency);
  let started = false;
  const phases: Phase[] = [];
  try {
    // The load starts once the front has a connection to v1 (before, requests would only queue).
    const bg = await blueGreen(dir, control, swaps, steadyMs, async () => {
      await front.waitFor(/backend \S+ is ready/);
      load.start();
      started = true;
    });
    phases.push(bg.phase);
    const rr = await rolling(dir, control, bg.last, swaps, steadyMs);
    phases.push(rr.phase);
  } finally {
    if (started) await load.stop();
  }

  const out = (text = '') => process.stdout.write(`${text}\n`);
  out('# tsgi swap benchmark');
  out();
  for (const line of machineLines()) out(line);
  out(`- load: undici in the harness process, ${concurrency} closed loops (keep-alive), 3 GET : 1 POST (1–256 KiB bodies, echo checked byte for byte)`);
  out();
  out('| phase | swaps | time per swap | requests | failed | p50 / p99 steady (no swap) | p50 / p99 during swaps |');
  out('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const phase of phases) out(row(phase, load.samples));
  out();
  const total = load.samples.length;
  out(`Requests sent: ${total}; failed: ${load.failures.length}${load.failures.length === 0 ? '' : ' — THESE SHOULD BE 0'}.`);
  for (const f of load.failures.slice(0, 10)) out(`- failed at ${((f.at - phases[0]!.from) / 1000).toFixed(2)} s: ${f.what}`);
  if (load.failures.length > 0) {
    const lines = front.output().split('\n').filter((l) => / (warn|error): /.test(l));
    out(`The front's warnings and errors (${lines.length}; the first 10):`);
    for (const line of lines.slice(0, 10)) out(`    ${line}`);
  }
  out('"during swaps": requests in flight at any moment between the start of a swap and the exit of the old backend '
    + '(or of the old generation\'s workers).');
  out(`Finished in ${((Date.now() - began) / 1000).toFixed(0)} s.`);
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
  dir = null;
  return 0;
}

main().then((code) => {
  process.exitCode = code;
}, async (err: unknown) => {
  process.stderr.write(`bench:swap: ${(err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});
