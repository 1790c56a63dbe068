// `npm run bench`: runs tsgi beside its peers on this machine with one load generator and
// prints one markdown table (figures and ratios to tsgi), the latency floor and frame sizes.
// Then the fixed-rate cell (bench/rate.ts). Env: BENCH_SECONDS (5 per cell), BENCH_CONNECTIONS
// (50), BENCH_ONLY (ids of configurations and/or workloads, comma-separated), BENCH_LOADGEN=undici
// (skip wrk), BENCH_WRK_THREADS (1), BENCH_RATE (req/s of the fixed-rate cell).
import { rmSync } from 'node:fs';
import { CONFIG_IDS, configurations, type Config } from './configs.js';
import { latencyFloor } from './floor.js';
import { frameSizeReport } from './frame-size.js';
import { pickGenerator } from './loadgen.js';
import { machineLines } from './machine.js';
import { RATE_CONFIGS, RATE_ID, chooseRate, measureRate, rateTable, type RateCell } from './rate.js';
import { CLI, installCleanup, run, stopAll, tempDir } from './proc.js';
import { connectStormNote, latencySummary, table } from './report.js';
import { measure, uploadFile, workloads, type Cell, type Settings, type Workload } from './workloads.js';

/** A bad BENCH_* value: reported in one line, without a stack. */
class UsageError extends Error {}

function settings(): Settings {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
  if (!(seconds >= 1) || !(connections >= 1)) throw new UsageError('BENCH_SECONDS and BENCH_CONNECTIONS must be numbers ≥ 1');
  return { seconds: Math.round(seconds), connections: Math.round(connections), warmupSeconds: 1 };
}

/** BENCH_ONLY: configuration ids narrow the configurations, workload ids the workloads. */
function select(configs: Config[], all: Workload[]): { configs: Config[]; workloads: Workload[]; rate: boolean } {
  const only = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const known = new Set<string>([...CONFIG_IDS, ...all.map((w) => w.id), RATE_ID]);
  const unknown = only.filter((id) => !known.has(id));
  if (unknown.length > 0) throw new UsageError(`BENCH_ONLY: unknown id(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  const named = (ids: readonly string[]) => only.some((id) => ids.includes(id));
  const anyWorkload = named([...all.map((w) => w.id), RATE_ID]);
  return {
    configs: named(CONFIG_IDS) ? configs.filter((x) => only.includes(x.id)) : configs,
    workloads: anyWorkload ? all.filter((x) => only.includes(x.id)) : all,
    rate: !anyWorkload || only.includes(RATE_ID),
  };
}

async function main(): Promise<number> {
  const began = Date.now();
  const s = settings();
  let dir: string | null = tempDir('tsgi-bench-');
  installCleanup(() => dir);
  const gen = await pickGenerator(dir);
  const available = await configurations();
  const chosen = select(available.configs, workloads(s));
  const out = (text = '') => process.stdout.write(`${text}\n`);
  const tsgiVersion = (await run('tsgi --version', process.execPath, [CLI, '--version'])).output.trim();

  out('# tsgi benchmark');
  out();
  for (const line of machineLines()) out(line);
  out(`- load generator: ${gen.name}, the same for every configuration`);
  out(`- tsgi ${tsgiVersion}; ${s.seconds} s per cell after a ${s.warmupSeconds} s warm-up; connections: `
    + chosen.workloads.map((w) => `${w.id} ${w.connections}`).join(', '));
  if (available.versions.length > 0) out(`- peers: ${available.versions.join(', ')}`);
  for (const note of available.notes) out(`- skipped: ${note}`);
  out();
  out(await frameSizeReport());
  out();

  const body = chosen.workloads.some((w) => w.uploadBytes > 0) ? uploadFile(dir) : '';
  const cells: Cell[] = [];
  for (const w of chosen.workloads) {
    for (const config of chosen.configs) {
      process.stderr.write(`bench: ${config.id} × ${w.id} …\n`);
      const cell = await measure(config, w, gen, s, dir, body);
      if (cell.error !== null) {
        process.stderr.write(`bench: ${config.id} × ${w.id}: ${cell.error}\n`);
        await stopAll(); // whatever a half-started configuration left running
      }
      cells.push(cell);
    }
  }
  const rateConfigs = chosen.rate ? chosen.configs.filter((c) => RATE_CONFIGS.includes(c.id)) : [];
  const rateCells: RateCell[] = [];
  const { rate, why } = rateConfigs.length === 0 ? { rate: 0, why: '' }
    : await chooseRate(rateConfigs.find((c) => c.id === 'tsgi'), s.seconds, dir);
  for (const config of rateConfigs) {
    process.stderr.write(`bench: ${config.id} × ${RATE_ID} (${rate}/s) …\n`);
    const cell = await measureRate(config, rate, s.seconds, dir);
    if (cell.error !== null) {
      process.stderr.write(`bench: ${config.id} × ${RATE_ID}: ${cell.error}\n`);
      await stopAll();
    }
    rateCells.push(cell);
  }
  const wantsFloor = chosen.workloads.some((w) => w.id === 'latency');
  const floor = wantsFloor ? await latencyFloor(dir, s.seconds) : [];

  out('## Throughput and latency');
  out();
  for (const c of chosen.configs) out(`- ${c.id}: ${c.label}`);
  out();
  out(table(cells, floor));
  out();
  out('(×N) is this figure divided by tsgi\'s for the same workload in this run: above 1 is better for req/s and MiB/s, '
    + 'below 1 is better for latencies and CPU. Server CPU per request is the user + system time of every serving process (front, backends, workers; not the load generator) during the cell, divided by its requests: it moves less from run to run than req/s on a shared machine. MiB/s counts response bytes for the download and uploaded bytes for the echo. '
    + 'c1000 RSS: the process(es) holding the client connections, after the 1000-connection warm-up and after the run.');
  for (const note of [connectStormNote(cells), latencySummary(cells, floor)]) {
    if (note === null) continue;
    out();
    out(note);
  }
  if (rateCells.length > 0) {
    out();
    out('## Latency at a fixed rate');
    out();
    out(rateTable(rateCells, why));
  }
  out();
  out(`Finished in ${((Date.now() - began) / 1000).toFixed(0)} s.`);
  await stopAll();
  const failed = cells.filter((c) => c.result === null).length + rateCells.filter((c) => c.error !== null).length;
  rmSync(dir, { recursive: true, force: true });
  dir = null;
  return failed > 0 ? 1 : 0;
}

main().then((code) => {
  process.exitCode = code;
}, async (err: unknown) => {
  process.stderr.write(`bench: ${err instanceof UsageError ? err.message : (err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});
