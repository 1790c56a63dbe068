// The latency floor: 1-byte ping-pong over a Unix socket between two Node processes
// (pingpong.js). With taskset and 2+ cores it runs twice, both processes pinned to one core
// and then to two: on a VM the two differ by a cross-core wake-up, often 3–4×.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { run, start, waitForListen, which } from './proc.js';

export interface PingPong {
  label: string;
  trips: number;
  seconds: number;
  p50Us: number;
  p99Us: number;
}

const script = () => join(import.meta.dirname, 'pingpong.js');

async function once(dir: string, seconds: number, label: string, cpus: [string, string] | null, taskset: string | null): Promise<PingPong> {
  const path = join(dir, `pingpong-${cpus?.join('-') ?? 'free'}.sock`);
  const cmd = (cpu: string | undefined, args: string[]): [string, string[]] =>
    (cpu !== undefined && taskset !== null ? [taskset, ['-c', cpu, process.execPath, ...args]] : [process.execPath, args]);
  const server = start('pingpong server', ...cmd(cpus?.[0], [script(), 'server', path]));
  try {
    await waitForListen({ path }, server);
    const { info, output } = await run('pingpong client', ...cmd(cpus?.[1], [script(), 'client', path, String(seconds)]));
    const line = output.split('\n').find((l) => l.startsWith('BENCHJSON '));
    if (info.code !== 0 || line === undefined) throw new Error(`pingpong client failed:\n${output}`);
    const r = JSON.parse(line.slice('BENCHJSON '.length)) as { trips: number; p50: number; p99: number };
    return { label, trips: r.trips, seconds, p50Us: r.p50, p99Us: r.p99 };
  } finally {
    await server.stop();
  }
}

export async function latencyFloor(dir: string, seconds: number): Promise<PingPong[]> {
  const taskset = which('taskset');
  if (taskset === null || availableParallelism() < 2) {
    return [await once(dir, seconds, 'unix ping-pong (2 node processes, 1 byte)', null, null)];
  }
  return [
    await once(dir, seconds, 'unix ping-pong, both on one core', ['0', '0'], taskset),
    await once(dir, seconds, 'unix ping-pong, on two cores', ['0', '1'], taskset),
  ];
}
