// This process's CPU share and resident memory, for the status pages' process table: the CPU
// time used since a sample at least a second old, over the wall time between them (100 = one
// core), so that pages polling often do not see the noise of tiny intervals.
import { cpuUsage, memoryUsage } from 'node:process';

export interface ProcessUsage {
  pid: number;
  /** front, front worker, serve, supervisor, worker N. */
  role: string;
  /** CPU % (one core = 100) over the last second or more. */
  cpu: number;
  /** Resident set size, bytes. */
  rss: number;
}

let last = { at: performance.now(), cpu: cpuUsage() };
let previous = last;

/** This process's usage now. */
export function processUsage(role: string): ProcessUsage {
  const now = performance.now();
  const cpu = cpuUsage();
  if (now - last.at >= 1000) {
    previous = last;
    last = { at: now, cpu };
  }
  const base = now - previous.at >= 1000 ? previous : last;
  const wallUs = (now - base.at) * 1000;
  const usedUs = cpu.user + cpu.system - base.cpu.user - base.cpu.system;
  return {
    pid: process.pid, role,
    cpu: wallUs <= 0 ? 0 : Math.round((usedUs / wallUs) * 1000) / 10,
    rss: memoryUsage.rss(),
  };
}
