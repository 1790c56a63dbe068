// What the figures were measured on: CPU model, cores, memory, kernel and Node, plus the
// caveat every reader of a 2-core run needs.
import { readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';

export function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown CPU';
  } catch {
    return 'unknown CPU';
  }
}

export function machineLines(): string[] {
  const cores = availableParallelism();
  const lines = [
    `- machine: ${cpuModel()}, ${cores} core${cores === 1 ? '' : 's'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}`,
    `- node ${process.version}`,
  ];
  if (cores <= 2) {
    lines.push(`- note: on ${cores} core${cores === 1 ? '' : 's'} the load generator competes with the servers for CPU `
      + '(a proxied configuration runs 2–3 busy processes beside it): absolute figures are low; compare the ratios.');
  }
  return lines;
}
