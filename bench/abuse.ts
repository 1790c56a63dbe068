// `npm run bench:abuse`: hostile clients and peers against real `tsgi front` + `tsgi serve`
// processes, one attack at a time (each against a fresh pair), for a few seconds each. Prints,
// per attack, the RSS (MiB) and open descriptors of the front and of the backend before, at the
// peak (sampled every 100 ms) and after (the attack's sockets closed and a settle period), and
// how a well-behaved probe client fared meanwhile. A measuring program: no figure fails it.
// Flags: --seconds N (4, per attack), --settle N (2), --only NAME[,NAME] (name prefixes).
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLIENT_ATTACKS } from './abuse-clients.js';
import { KILL_MIB, LineCounter, Probe, Sampler, figures, type AttackSpec, type Figures, type World } from './abuse-measure.js';
import { PEER_ATTACKS } from './abuse-peers.js';
import { machineLines } from './machine.js';
import { APPS, CLI, installCleanup, start, stopAll, tempDir, type Proc } from './proc.js';

const APP = join(APPS, 'abuse-app.js');
/** The attacker stops early if its own RSS passes this (MiB). */
const SELF_LIMIT_MIB = 1536;

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

const SECONDS = Number(flag('--seconds') ?? 4);
const SETTLE = Number(flag('--settle') ?? 2);
const ONLY = (flag('--only') ?? '').split(',').filter((s) => s !== '');
if (!(SECONDS > 0 && SETTLE >= 0)) throw new Error('--seconds wants a number above 0 and --settle one of 0 or more');

let base: string | null = null;
installCleanup(() => base);

interface Side { before: Figures; peak: Figures; after: Figures; killed: number | null; exited: boolean }

interface Row {
  name: string;
  front: Side;
  backend: Side | null;
  probe: string;
  notes: string;
}

async function world(spec: AttackSpec): Promise<World> {
  const dir = mkdtempSync(join(base!, `${spec.name}-`));
  const peers = spec.peers ? await spec.peers(dir) : [];
  const backendSocket = join(dir, 'b.sock');
  const backend = start('tsgi serve', process.execPath, [CLI, 'serve', APP, '--socket', backendSocket, '--graceful-timeout', '1']);
  let front: Proc | null = null;
  try {
    await backend.waitFor(/serving on unix:/);
    const backends = [...(spec.realBackend === false ? [] : [`unix:${backendSocket}`]), ...peers];
    front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', '127.0.0.1:0',
      ...backends.flatMap((b) => ['--backend', b]), '--graceful-timeout', '1', ...(spec.frontArgs ?? [])]);
    const m = await front.waitFor(/listening on http \S*:(\d+)/);
    return { dir, port: Number(m[1]), front, backend, backendSocket };
  } catch (err) {
    await Promise.all([backend.stop(), front?.stop()]);
    throw err;
  }
}

/** A few requests first, so the baseline includes the code paths' own memory. */
async function warm(port: number): Promise<void> {
  const probe = new Probe(port, false, 20);
  await sleep(400);
  await probe.stop();
}

async function run(spec: AttackSpec): Promise<Row> {
  const w = await world(spec);
  try {
    await warm(w.port);
    await sleep(300);
    const before = { front: figures(w.front.pid), backend: figures(w.backend.pid) };
    const sampler = new Sampler([w.front.pid, w.backend.pid]);
    const lines = { front: new LineCounter(w.front), backend: new LineCounter(w.backend) };
    const probe = new Probe(w.port, spec.probeFresh === true);
    let notes: string;
    let selfNote = '';
    let end: { front: Figures; backend: Figures };
    try {
      const stop = await spec.start(w);
      const until = Date.now() + SECONDS * 1000;
      while (Date.now() < until) {
        await sleep(100);
        const self = process.memoryUsage().rss / 2 ** 20;
        if (self > SELF_LIMIT_MIB) {
          selfNote = `; stopped early: the attacker reached ${self.toFixed(0)} MiB`;
          break;
        }
      }
      end = { front: figures(w.front.pid), backend: figures(w.backend.pid) };
      // Log lines of the window itself (what the clean-up causes comes after).
      lines.front.stop();
      lines.backend.stop();
      [notes] = await Promise.all([stop(), probe.stop()]);
      await sleep(SETTLE * 1000);
      sampler.sample();
    } finally {
      sampler.stop();
      lines.front.stop();
      lines.backend.stop();
      await probe.stop();
    }
    const side = (pid: number, b: Figures): Side => ({
      before: b, peak: sampler.peak.get(pid)!, after: figures(pid), killed: sampler.killed.get(pid) ?? null,
      exited: figures(pid).rss === null,
    });
    const backendUsed = spec.realBackend !== false;
    return {
      name: spec.name,
      front: side(w.front.pid, before.front),
      backend: backendUsed ? side(w.backend.pid, before.backend) : null,
      probe: probe.summary(),
      notes: `${notes}${selfNote}; at the window's end: front ${num(end.front.rss)} MiB, ${num(end.front.fds)} fds`
        + `${backendUsed ? `, backend ${num(end.backend.rss)} MiB, ${num(end.backend.fds)} fds` : ''}`
        + `; log lines in the window: front ${lines.front.lines}, backend ${lines.backend.lines}`
        + `${lines.front.first === '' ? '' : `; front's first: "${lines.front.first}"`}`
        + `${lines.backend.first === '' ? '' : `; backend's first: "${lines.backend.first}"`}`,
    };
  } finally {
    await Promise.all([w.front.stop(), w.backend.stop()]);
  }
}

const num = (n: number | null, digits = 0) => (n === null ? '-' : n.toFixed(digits));

function cell(s: Side | null, what: 'rss' | 'fds'): string {
  if (s === null) return '-';
  const fig = `${num(s.before[what])} / ${num(s.peak[what])} / ${num(s.after[what])}`;
  if (what === 'rss' && s.killed !== null) return `${fig} (killed at ${s.killed.toFixed(0)} MiB)`;
  if (what === 'rss' && s.exited) return `${fig} (exited)`;
  return fig;
}

async function main(): Promise<void> {
  base = tempDir('tsgi-abuse-');
  const all = [...CLIENT_ATTACKS, ...PEER_ATTACKS];
  const chosen = ONLY.length === 0 ? all : all.filter((a) => ONLY.some((o) => a.name.startsWith(o)));
  if (chosen.length === 0) throw new Error(`--only ${ONLY.join(',')} matches none of: ${all.map((a) => a.name).join(', ')}`);
  for (const line of machineLines()) console.log(line);
  console.log(`${chosen.length} attacks, ${SECONDS} s each, ${SETTLE} s settle; a served process is killed past ${KILL_MIB} MiB RSS\n`);
  const rows: Row[] = [];
  for (const spec of chosen) {
    console.log(`${spec.name}: ${spec.what}`);
    try {
      const row = await run(spec);
      rows.push(row);
      console.log(`  front RSS ${cell(row.front, 'rss')}, fds ${cell(row.front, 'fds')}; backend RSS ${cell(row.backend, 'rss')}; ${row.probe}`);
      console.log(`  ${row.notes}`);
    } catch (err) {
      console.log(`  could not run: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  console.log('\nbefore / peak / after: RSS in MiB, open descriptors (/proc/PID/fd)');
  console.log('| attack | front RSS | front fds | backend RSS | backend fds | probe (GET / every 100 ms) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.name} | ${cell(r.front, 'rss')} | ${cell(r.front, 'fds')} | ${cell(r.backend, 'rss')} | ${cell(r.backend, 'fds')} | ${r.probe} |`);
  }
  console.log('\nNotes');
  for (const r of rows) console.log(`- ${r.name}: ${r.notes}`);
}

main().then(() => stopAll(), async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exitCode = 1;
});
