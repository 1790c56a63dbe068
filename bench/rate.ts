// The fixed-rate cell: hello at one constant request rate (about half of tsgi's peak in the run,
// or BENCH_RATE), open loop (bench/rate-load.ts), through tsgi, nginx → node:http and bare
// node:http, with p50/p99/p99.9 — the tail a user sees at a real rate, not at saturation.
import { fileURLToPath } from 'node:url';
import type { Config } from './configs.js';
import { cpuUs, run } from './proc.js';
import { fmtUs } from './report.js';

export const RATE_ID = 'rate';
/** The configurations compared at a fixed rate. */
export const RATE_CONFIGS = ['tsgi', 'nginx-node', 'bare'];
/** Without BENCH_RATE nor a hello cell of tsgi's in the run. */
const DEFAULT_RATE = 4000;
const CONNECTIONS = 50;

export interface RateCell {
  config: Config;
  rate: number;
  requests: number;
  errors: number;
  /** The rate the generator kept (requests sent / seconds it took to send them). */
  achieved: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  cpuUs: number | null;
  /** The most requests in flight at once during the warm-up, and how long they took to drain after it. */
  warmupBacklog: number;
  drainMs: number;
  error: string | null;
}

/**
 * BENCH_RATE, else half of the peak of `config` (tsgi) with this same generator's client (undici,
 * a closed loop over the same connections): wrk's peak would be too high a rate for undici,
 * which needs more CPU per request on the same cores.
 */
export async function chooseRate(config: Config | undefined, seconds: number, dir: string): Promise<{ rate: number; why: string }> {
  const given = Number(process.env.BENCH_RATE);
  if (given > 0) return { rate: Math.round(given), why: 'BENCH_RATE' };
  if (config === undefined) return { rate: DEFAULT_RATE, why: 'the default; BENCH_RATE sets it' };
  const running = await config.start('hello', dir);
  try {
    const spec = { url: running.url, seconds, connections: CONNECTIONS, method: 'GET', timeoutS: 30 };
    const { output } = await run('undici-load', process.execPath, [peakScript, JSON.stringify({ ...spec, seconds: 1 })]);
    const measured = await run('undici-load', process.execPath, [peakScript, JSON.stringify(spec)]);
    const line = measured.output.split('\n').find((l) => l.startsWith('BENCHJSON '));
    if (line === undefined) throw new Error(`undici-load printed no figures:\n${(measured.output || output).slice(-2000)}`);
    const r = JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>;
    const peak = r.requests! / (r.us! / 1e6);
    return { rate: Math.max(100, Math.round(peak / 2 / 100) * 100),
      why: `half of ${config.id}'s peak with the same client in a closed loop, ${Math.round(peak).toLocaleString('en-US')}/s` };
  } finally {
    await running.stop();
  }
}

const peakScript = fileURLToPath(new URL('./undici-load.js', import.meta.url));
const script = fileURLToPath(new URL('./rate-load.js', import.meta.url));

async function load(url: string, seconds: number, rate: number): Promise<Record<string, number>> {
  const spec = { url, warmup: 1, seconds, rate, connections: CONNECTIONS };
  const { info, output } = await run('rate-load', process.execPath, [script, JSON.stringify(spec)]);
  const line = output.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (info.code !== 0 || line === undefined) throw new Error(`rate-load exited (${info.signal ?? info.code}):\n${output.slice(-2000)}`);
  return JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>;
}

function sumCpu(pids: number[]): number | null {
  let sum = 0;
  for (const pid of pids) {
    const us = cpuUs(pid);
    if (us === null) return null;
    sum += us;
  }
  return sum;
}

/** One configuration at `rate` req/s: a 1 s warm-up at the rate, then `seconds` measured (CPU: both, per request answered in both). */
export async function measureRate(config: Config, rate: number, seconds: number, dir: string): Promise<RateCell> {
  const cell: RateCell = { config, rate, requests: 0, errors: 0, achieved: 0, p50Us: 0, p99Us: 0, p999Us: 0, maxUs: 0, cpuUs: null,
    warmupBacklog: 0, drainMs: 0, error: null };
  let running;
  try {
    running = await config.start('hello', dir);
  } catch (err) {
    cell.error = `did not start: ${(err as Error).message}`;
    return cell;
  }
  try {
    const pids = running.serverPids();
    const before = sumCpu(pids);
    const r = await load(running.url, seconds, rate);
    const after = sumCpu(pids);
    Object.assign(cell, {
      requests: r.requests!, errors: r.errors!, achieved: (r.requests! + r.errors!) / r.sendSeconds!,
      p50Us: r.p50!, p99Us: r.p99!, p999Us: r.p999!, maxUs: r.max!, warmupBacklog: r.warmupMaxInFlight!, drainMs: r.drainMs!,
    });
    if (r.answered! > 0 && before !== null && after !== null) cell.cpuUs = (after - before) / r.answered!;
  } catch (err) {
    cell.error = (err as Error).message;
  } finally {
    await running.stop();
  }
  return cell;
}

export function rateTable(cells: RateCell[], why: string): string {
  const base = cells.find((c) => c.config.id === 'tsgi' && c.error === null);
  const x = (v: number, b: number | undefined, self: boolean) => (self || !b ? '' : ` (${(v / b).toFixed(2)}×)`);
  const lines = [
    `Requests at ${cells[0]?.rate.toLocaleString('en-US') ?? '?'}/s (${why}), open loop over ${CONNECTIONS} keep-alive connections (undici): `
      + 'each request leaves on schedule whatever the earlier ones do; its latency runs from the moment it is issued. '
      + 'Each configuration starts fresh; its 1 s warm-up at the rate is not counted, and the measured seconds start once '
      + 'the requests the warm-up left waiting (its most in flight at once: the last column) are down to one per connection.',
    '',
    '| configuration | rate kept | p50 (× tsgi) | p99 (× tsgi) | p99.9 (× tsgi) | max | server CPU per request | errors | warm-up: most in flight, drained in |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of cells) {
    if (c.error !== null) {
      lines.push(`| ${c.config.id} | — | — | — | — | — | — | **${c.error.split('\n')[0]}** | |`);
      continue;
    }
    const self = c === base;
    lines.push(`| ${c.config.id} | ${Math.round(c.achieved).toLocaleString('en-US')}/s | ${fmtUs(c.p50Us)}${x(c.p50Us, base?.p50Us, self)} `
      + `| ${fmtUs(c.p99Us)}${x(c.p99Us, base?.p99Us, self)} | ${fmtUs(c.p999Us)}${x(c.p999Us, base?.p999Us, self)} | ${fmtUs(c.maxUs)} `
      + `| ${c.cpuUs === null ? '' : `${c.cpuUs.toFixed(1)} µs`} | ${c.errors} | ${c.warmupBacklog}, ${c.drainMs} ms |`);
  }
  return lines.join('\n');
}
