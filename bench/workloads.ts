// The workloads each configuration is measured on, and how one cell (configuration ×
// workload) runs: start, warm up, measure with the load generator, read RSS, stop.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AppKind, Config } from './configs.js';
import type { LoadGenerator, LoadResult } from './loadgen.js';
import { cpuUs, rssMiB } from './proc.js';

export interface Workload {
  id: string;
  label: string;
  app: AppKind;
  method: 'GET' | 'POST';
  connections: number;
  /** Bytes uploaded per request (the POST body). */
  uploadBytes: number;
  /** Which byte rate the table shows: none, the responses', or the uploads'. */
  rate: 'none' | 'down' | 'up';
  /** Read the front's RSS before and after the measured run. */
  rss: boolean;
}

export interface Settings {
  seconds: number;
  connections: number;
  warmupSeconds: number;
}

export interface Cell {
  config: Config;
  workload: Workload;
  result: LoadResult | null;
  /** MiB/s of the rate the workload reports. */
  mibps: number | null;
  rss: { before: number; after: number } | null;
  /** CPU time of every serving process (not the load generator) per request, in µs. */
  cpuUs: number | null;
  /** The configuration's own account of errors (nginx's error.log), when there were any. */
  diagnosis: string | null;
  error: string | null;
}

const TEN_MIB = 10 << 20;
/** Uploads of 10 MiB are few and long: fewer connections, or the run measures queueing. */
const UPLOAD_CONNECTIONS = 10;

export function workloads(s: Settings): Workload[] {
  const base = { method: 'GET' as const, uploadBytes: 0, rate: 'none' as const, rss: false };
  return [
    { ...base, id: 'hello', label: 'hello', app: 'hello', connections: s.connections },
    { ...base, id: 'download', label: '1 MiB download', app: 'download', connections: s.connections, rate: 'down' },
    { ...base, id: 'upload', label: '10 MiB upload, echoed', app: 'echo', method: 'POST', uploadBytes: TEN_MIB,
      connections: Math.min(UPLOAD_CONNECTIONS, s.connections), rate: 'up' },
    { ...base, id: 'c1000', label: 'hello, 1000 clients', app: 'hello', connections: 1000, rss: true },
    { ...base, id: 'latency', label: 'latency, 1 connection', app: 'hello', connections: 1 },
  ];
}

/** The upload body, written once into the run's directory. */
export function uploadFile(dir: string): string {
  const path = join(dir, 'upload-10MiB.bin');
  const body = Buffer.allocUnsafe(TEN_MIB);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
  writeFileSync(path, body);
  return path;
}

/** CPU µs used so far by these processes; null if one of them went away meanwhile. */
function sumCpu(pids: number[]): number | null {
  let sum = 0;
  for (const pid of pids) {
    const us = cpuUs(pid);
    if (us === null) return null;
    sum += us;
  }
  return sum;
}

function sumRss(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (rssMiB(pid) ?? 0), 0);
}

/** Runs one cell; a failure to start or to measure is recorded in the cell, not thrown. */
export async function measure(config: Config, w: Workload, gen: LoadGenerator, s: Settings, dir: string, body: string): Promise<Cell> {
  const cell: Cell = { config, workload: w, result: null, mibps: null, rss: null, cpuUs: null, diagnosis: null, error: null };
  let running;
  try {
    running = await config.start(w.app, dir);
  } catch (err) {
    cell.error = `did not start: ${(err as Error).message}`;
    return cell;
  }
  try {
    const spec = { url: running.url, method: w.method, connections: w.connections, bodyFile: w.uploadBytes > 0 ? body : undefined };
    await gen.run({ ...spec, seconds: s.warmupSeconds });
    const before = sumRss(running.frontPids());
    const pids = running.serverPids();
    const cpuBefore = sumCpu(pids);
    const r = await gen.run({ ...spec, seconds: s.seconds });
    const cpuAfter = sumCpu(pids);
    if (r.requests > 0 && cpuBefore !== null && cpuAfter !== null) cell.cpuUs = (cpuAfter - cpuBefore) / r.requests;
    if (w.rss) cell.rss = { before, after: sumRss(running.frontPids()) };
    cell.result = r;
    if (r.errors > 0) cell.diagnosis = running.diagnose?.() ?? null;
    if (w.rate === 'down') cell.mibps = r.bytesIn / r.seconds / (1 << 20);
    if (w.rate === 'up') cell.mibps = (r.requests * w.uploadBytes) / r.seconds / (1 << 20);
  } catch (err) {
    cell.error = (err as Error).message;
  } finally {
    await running.stop();
  }
  return cell;
}
