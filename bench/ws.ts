// `npm run bench:ws`: WebSockets through tsgi (front + serve running an unchanged ws app) beside
// the same app on node:http directly and behind nginx, in one run. The load generator is the ws
// client in its own process (bench/ws-load.ts): K connections each sending a small message and
// awaiting its echo, in a loop. Prints echo messages per second and the CPU per message of the
// server side (every process but the generator), then the RSS per idle WebSocket with 1,000 open
// (RSS after opening them minus before, over 1,000) for each process.
// Every cell's processes run from the start; the idle figures come first (fresh processes), then
// BENCH_ROUNDS echo rounds with the cells in turn, and the medians are printed.
// Env: BENCH_SECONDS (5), BENCH_CONNECTIONS (50), BENCH_BYTES (32), BENCH_IDLE (1000), BENCH_ROUNDS (3).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nginxPreamble } from './nginx.js';
import { APPS, CLI, ROOT, childPids, cpuUs, freePort, installCleanup, rssMiB, run, start, stopAll, tempDir, waitForListen,
  which, type Proc } from './proc.js';

const LOAD = join(ROOT, 'dist/bench/ws-load.js');

interface Setup {
  name: string;
  url: string;
  /** The server-side processes, each with its role, whose CPU and RSS are the cell's cost. */
  parts: () => { role: string; pids: number[] }[];
}

interface Measured {
  rate: number;
  /** Over every round. */
  errors: number;
  /** Server-side CPU µs per message, per part and in all. */
  cpu: Map<string, number>;
  /** RSS bytes per idle WebSocket, per part. */
  idle: Map<string, number>;
}

const sum = (pids: number[], f: (pid: number) => number | null): number => pids.reduce((s, pid) => s + (f(pid) ?? 0), 0);

/** RSS per idle WebSocket, per part: `idleCount` opened on fresh processes after one warm-up socket. */
async function measureIdle(setup: Setup, bytes: number, idleCount: number): Promise<Map<string, number>> {
  const warm = await run('ws-load warm-up', process.execPath, [LOAD, 'echo', setup.url, '1', '0.3', String(bytes)]);
  if (warm.info.code !== 0) throw new Error(`warm-up against ${setup.name} failed:\n${warm.output}`);
  const idle = new Map<string, number>();
  const before = setup.parts().map((p) => sum(p.pids, rssMiB));
  const holder = start('ws-load idle', process.execPath, [LOAD, 'idle', setup.url, String(idleCount)]);
  await holder.waitFor(/open \d+/, 60_000);
  setup.parts().forEach((p, i) => idle.set(p.role, (sum(p.pids, rssMiB) - before[i]!) * 1024 * 1024 / idleCount));
  await holder.stop();
  return idle;
}

/** One echo round: messages per second, errors, and server-side CPU µs per message, per part. */
async function measureEcho(setup: Setup, seconds: number, k: number, bytes: number): Promise<{ rate: number; errors: number; cpu: Map<string, number> }> {
  const parts = setup.parts();
  const c0 = parts.map((p) => sum(p.pids, cpuUs));
  const { info, output } = await run('ws-load echo', process.execPath, [LOAD, 'echo', setup.url, String(k), String(seconds), String(bytes)]);
  const c1 = parts.map((p) => sum(p.pids, cpuUs));
  const m = /messages (\d+) errors (\d+) seconds ([\d.]+)/.exec(output);
  if (info.code !== 0 || m === null) throw new Error(`ws-load against ${setup.name} failed:\n${output}`);
  const messages = Number(m[1]);
  const cpu = new Map<string, number>();
  parts.forEach((p, i) => cpu.set(p.role, (c1[i]! - c0[i]!) / messages));
  return { rate: messages / Number(m[3]), errors: Number(m[2]), cpu };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<number> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const k = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const bytes = Number(process.env.BENCH_BYTES ?? 32);
  const idleCount = Number(process.env.BENCH_IDLE ?? 1000);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const dir = tempDir('tsgi-bench-ws-');
  installCleanup(() => dir);
  const out = (text = '') => process.stdout.write(`${text}\n`);
  const app = join(APPS, 'ws-echo.js');
  const setups: { setup: () => Promise<Setup> }[] = [];

  setups.push({ setup: async () => {
    const socket = join(dir, 'tsgi.sock');
    const serve = start('tsgi serve', process.execPath, [CLI, 'serve', app, '--socket', socket]);
    await waitForListen({ path: socket }, serve);
    const port = await freePort();
    const front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${port}`, '--backend', `unix:${socket}`,
      '--max-tunnels', String(idleCount + k + 100)]);
    await waitForListen({ port }, front);
    await front.waitFor(/is ready/);
    return { name: 'tsgi front → tsgi serve (ws app)', url: `ws://127.0.0.1:${port}/`,
      parts: () => [{ role: 'front', pids: [front.pid] }, { role: 'app', pids: [serve.pid] }] };
  } });

  setups.push({ setup: async () => {
    const port = await freePort();
    const node = start('node ws', process.execPath, [app, `127.0.0.1:${port}`]);
    await waitForListen({ port }, node);
    return { name: 'node:http + ws directly', url: `ws://127.0.0.1:${port}/`, parts: () => [{ role: 'app', pids: [node.pid] }] };
  } });

  const nginx = which('nginx');
  if (nginx !== null) {
    setups.push({ setup: async () => {
      const nodeSocket = join(dir, 'node.sock');
      const node = start('node ws (nginx)', process.execPath, [app, `unix:${nodeSocket}`]);
      await waitForListen({ path: nodeSocket }, node);
      const port = await freePort();
      const prefix = join(dir, 'nginx');
      mkdirSync(prefix, { recursive: true });
      const conf = join(prefix, 'nginx.conf');
      writeFileSync(conf, `${nginxPreamble(prefix, { workers: 1, connections: 2 * (idleCount + k) + 256 })}
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream backend { server unix:${nodeSocket}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
    }
  }
}
`);
      const proc: Proc = start('nginx', nginx, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')]);
      await waitForListen({ port }, proc);
      return { name: 'nginx → node:http + ws', url: `ws://127.0.0.1:${port}/`,
        parts: () => [{ role: 'front', pids: childPids(proc.pid) }, { role: 'app', pids: [node.pid] }] };
    } });
  }

  out('# tsgi WebSocket benchmark');
  out();
  out(`- echo: the ws client in its own process, ${k} connections each sending ${bytes} bytes and awaiting the echo, in a loop, ${seconds} s per cell; ${rounds} rounds with the cells in turn, medians`);
  out('- CPU: every server-side process (the front — tsgi\'s front, nginx\'s one worker — and the app), per message echoed');
  out(`- idle: RSS after opening ${idleCount.toLocaleString('en')} WebSockets minus before (fresh processes, after one warm-up socket), over ${idleCount.toLocaleString('en')}`);
  out(nginx === null ? '- skipped: nginx (not installed)' : '- nginx: one worker, proxy_pass with Upgrade/Connection set from a map, upstream over a Unix socket');
  out();
  out('| cell | messages/s | errors | CPU µs/msg: front | app | total | idle bytes/socket: front | app | total |');
  out('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const results = new Map<string, Measured>();
  const started: Setup[] = [];
  for (const s of setups) started.push(await s.setup());
  const idles = new Map<string, Map<string, number>>();
  for (const setup of started) idles.set(setup.name, await measureIdle(setup, bytes, idleCount));
  const echoes = new Map<string, { rate: number; errors: number; cpu: Map<string, number> }[]>(started.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const setup of started) echoes.get(setup.name)!.push(await measureEcho(setup, seconds, k, bytes));
  }
  for (const setup of started) {
    const runs = echoes.get(setup.name)!;
    const cpu = new Map<string, number>();
    for (const role of runs[0]!.cpu.keys()) cpu.set(role, median(runs.map((r) => r.cpu.get(role)!)));
    const r: Measured = { rate: median(runs.map((x) => x.rate)), errors: runs.reduce((a, x) => a + x.errors, 0), cpu, idle: idles.get(setup.name)! };
    results.set(setup.name, r);
    const cpuTotal = [...r.cpu.values()].reduce((a, b) => a + b, 0);
    const idleTotal = [...r.idle.values()].reduce((a, b) => a + b, 0);
    const f = (v: number | undefined, d = 1) => (v === undefined ? '–' : v.toFixed(d));
    const kb = (v: number | undefined) => (v === undefined ? '–' : Math.round(v).toLocaleString('en'));
    out(`| ${setup.name} | ${Math.round(r.rate).toLocaleString('en')} | ${r.errors} | ${f(r.cpu.get('front'))} | ${f(r.cpu.get('app'))} | ${f(cpuTotal)} `
      + `| ${kb(r.idle.get('front'))} | ${kb(r.idle.get('app'))} | ${kb(idleTotal)} |`);
  }
  await stopAll();
  const tsgi = results.get('tsgi front → tsgi serve (ws app)');
  const viaNginx = results.get('nginx → node:http + ws');
  out();
  if (tsgi !== undefined && viaNginx !== undefined) {
    const idleOf = (r: Measured) => [...r.idle.values()].reduce((a, b) => a + b, 0);
    out(`- messages/s, tsgi / nginx → node: ${(tsgi.rate / viaNginx.rate).toFixed(2)}× (goal: at least 0.80×)`);
    out(`- idle bytes per socket, tsgi's front: ${Math.round(tsgi.idle.get('front')!).toLocaleString('en')}; nginx + node together: `
      + `${Math.round(idleOf(viaNginx)).toLocaleString('en')} (goal: the front below nginx + node); tsgi's front + app: ${Math.round(idleOf(tsgi)).toLocaleString('en')}`);
  }
  return 0;
}

main().then((code) => process.exit(code), async (err: unknown) => {
  process.stderr.write(`bench:ws: ${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
});
