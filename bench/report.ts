// The markdown table: one row per configuration × workload, each figure followed by its ratio
// to tsgi's in the same run; then the latency floor and the memory notes.
import type { PingPong } from './floor.js';
import type { Cell } from './workloads.js';

const BASELINE = 'tsgi';

export function fmtUs(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');
const fmtCpu = (us: number) => (us < 100 ? `${us.toFixed(1)} µs` : fmtUs(us));

function ratio(value: number | null | undefined, base: number | null | undefined, self: boolean): string {
  if (self) return '';
  if (value == null || base == null || base === 0 || value === 0) return '';
  const r = value / base;
  return ` (${r >= 10 ? r.toFixed(0) : r.toFixed(2)}×)`;
}

function row(cell: Cell, base: Cell | undefined): string {
  const { config, workload: w, result: r } = cell;
  const self = base === cell;
  const b = base?.result;
  const cols = [config.id, w.label, String(w.connections)];
  if (r === null) {
    cols.push('—', '—', '—', '—', '—', '—', `**${(cell.error ?? 'no result').split('\n')[0]}**`);
    return `| ${cols.join(' | ')} |`;
  }
  const rps = r.requests / r.seconds;
  const baseRps = b ? b.requests / b.seconds : null;
  cols.push(
    fmtInt(rps) + ratio(rps, baseRps, self),
    fmtUs(r.p50Us) + ratio(r.p50Us, b?.p50Us, self),
    fmtUs(r.p99Us) + ratio(r.p99Us, b?.p99Us, self),
    cell.mibps === null ? '' : cell.mibps.toFixed(1) + ratio(cell.mibps, base?.mibps, self),
    cell.cpuUs === null ? '' : fmtCpu(cell.cpuUs) + ratio(cell.cpuUs, base?.cpuUs, self),
    String(r.errors),
  );
  const notes: string[] = [];
  if (r.errors > 0) notes.push(r.errorDetail);
  if (cell.diagnosis !== null) notes.push(cell.diagnosis);
  if (cell.rss !== null) notes.push(`front RSS ${cell.rss.before.toFixed(1)} → ${cell.rss.after.toFixed(1)} MiB`);
  if (cell.error !== null) notes.push(cell.error.split('\n')[0]!);
  cols.push(notes.join('; '));
  return `| ${cols.join(' | ')} |`;
}

export function table(cells: Cell[], floor: PingPong[]): string {
  const lines = [
    '| configuration | workload | conns | req/s (× tsgi) | p50 (× tsgi) | p99 (× tsgi) | MiB/s (× tsgi) | server CPU per request (× tsgi) | errors | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  const workloadIds = [...new Set(cells.map((c) => c.workload.id))];
  for (const id of workloadIds) {
    const group = cells.filter((c) => c.workload.id === id);
    const base = group.find((c) => c.config.id === BASELINE && c.result !== null);
    for (const cell of group) lines.push(row(cell, base));
    if (id !== 'latency') continue;
    for (const p of floor) {
      lines.push(`| ${p.label} | latency, 1 connection | 1 | ${fmtInt(p.trips / p.seconds)} `
        + `| ${fmtUs(p.p50Us)} | ${fmtUs(p.p99Us)} | | | 0 | the floor: one bare Unix-socket round trip |`);
    }
  }
  return lines.join('\n');
}

/** The sentence the latency test exists for: what tsgi adds over bare node:http, in round trips. */
export function latencySummary(cells: Cell[], floor: PingPong[]): string | null {
  const at = (id: string) => cells.find((c) => c.workload.id === 'latency' && c.config.id === id)?.result;
  const tsgi = at(BASELINE);
  const bare = at('bare');
  if (!tsgi || !bare) return null;
  const added = tsgi.p50Us - bare.p50Us;
  let s = `At 1 connection, tsgi's p50 is ${fmtUs(tsgi.p50Us)} against bare node:http's ${fmtUs(bare.p50Us)}: `
    + `tsgi adds ${fmtUs(Math.max(0, added))} per request`;
  const trips = floor.filter((p) => p.p50Us > 0)
    .map((p) => `${(added / p.p50Us).toFixed(1)}× a round trip ${p.label.replace(/^unix ping-pong,? ?/, '')} (p50 ${fmtUs(p.p50Us)})`);
  if (trips.length > 0) s += `; that is ${trips.join(', or ')}`;
  return `${s}. On a VM, 1-connection latencies are bimodal (a wake-up on the same core or on another), so `
    + 'they move by tens of µs between runs; compare them within one run.';
}

/** A tail of a second or more at 1000 clients comes and goes between runs: say so. */
export function connectStormNote(cells: Cell[]): string | null {
  const slow = cells.filter((c) => c.workload.connections >= 1000 && (c.result?.p99Us ?? 0) >= 1e6).map((c) => c.config.id);
  if (slow.length === 0) return null;
  return `c1000 p99 of a second or more (${slow.join(', ')}): each run opens its 1000 connections at once, and the `
    + 'first requests on some of them wait that long; in our runs the same configuration\'s c1000 p99 moved between '
    + 'tens of ms and seconds from run to run (bare node:http included). Compare req/s and p50 there.';
}
