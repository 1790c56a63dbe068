// `npm run bench:uwsgi`: what one request costs the backend behind nginx's uwsgi_pass (a
// connection per request): `tsgi serve --uwsgi-socket` (one process, and --workers 2), uWSGI
// (Python, 1 worker) and two floors of a Node backend (bench/apps/uwsgi-floor.js with
// net.Sockets, uwsgi-floor-raw.js on libuv handles), each behind the same nginx, driven by wrk
// (hello, 50 connections), in alternating rounds. Prints req/s, the CPU µs and minor page
// faults per request of the backend's processes alone (not nginx's; theirs beside it).
// Env: BENCH_SECONDS (4 per round), BENCH_ROUNDS (3), BENCH_CONNECTIONS (50), BENCH_BACKENDS (a
// comma-separated list of the ids below to run; all of them by default).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startNginx } from './nginx.js';
import { APPS, CLI, ROOT, childPids, cpuUs, freePort, installCleanup, run, start, stopAll, tempDir, waitForListen, which, withDescendants, type Proc } from './proc.js';

interface Backend {
  id: string;
  label: string;
  start(socket: string): Proc;
}

function stat(pid: number): { cpuUs: number; minflt: number } {
  let minflt = 0;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // proc(5): minflt is the 10th field; after the command's ')' it is the 8th.
    minflt = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    // gone: counts nothing
  }
  return { cpuUs: cpuUs(pid) ?? 0, minflt };
}

function sum(pids: number[]): { cpuUs: number; minflt: number } {
  return pids.map(stat).reduce((a, b) => ({ cpuUs: a.cpuUs + b.cpuUs, minflt: a.minflt + b.minflt }), { cpuUs: 0, minflt: 0 });
}

async function wrk(path: string, url: string, seconds: number, connections: number): Promise<number> {
  const { info, output } = await run('wrk', path, ['-t1', '-c', String(connections), '-d', `${seconds}s`, url]);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1]);
  if (info.code !== 0 || !(requests > 0)) throw new Error(`wrk: ${output.slice(-500)}`);
  if (/Non-2xx|Socket errors/.test(output)) process.stderr.write(`bench: errors: ${/(Non-2xx.*|Socket errors.*)/.exec(output)?.[0]}\n`);
  return requests;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 4);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const nginx = which('nginx');
  const wrkPath = which('wrk');
  if (nginx === null || wrkPath === null) throw new Error('bench:uwsgi needs nginx and wrk on PATH');
  let dir: string | null = tempDir('tsgi-bench-uwsgi-');
  installCleanup(() => dir);
  const backends: Backend[] = [
    { id: 'tsgi', label: 'tsgi serve --uwsgi-socket (1 process)',
      start: (socket) => start('tsgi serve', process.execPath, [CLI, 'serve', join(ROOT, 'examples/hello.js'), '--uwsgi-socket', socket, '--graceful-timeout', '2']) },
    { id: 'tsgi-w2', label: 'tsgi serve --uwsgi-socket --workers 2 (a supervisor and 2 workers accepting on its socket)',
      start: (socket) => start('tsgi serve --workers 2', process.execPath, [CLI, 'serve', join(ROOT, 'examples/hello.js'), '--uwsgi-socket', socket,
        '--workers', '2', '--graceful-timeout', '2']) },
    { id: 'floor', label: 'the floor with net.Sockets: a net.Server that writes a fixed response on its first read and closes',
      start: (socket) => start('uwsgi-floor', process.execPath, [join(APPS, 'uwsgi-floor.js'), socket]) },
    { id: 'floor-raw', label: 'the floor on libuv handles (as tsgi takes uwsgi connections): the same, without a net.Socket',
      start: (socket) => start('uwsgi-floor-raw', process.execPath, [join(APPS, 'uwsgi-floor-raw.js'), socket]) },
  ];
  const uwsgi = which('uwsgi');
  if (uwsgi !== null) {
    backends.push({ id: 'uwsgi', label: 'uWSGI python3, --master --processes 1',
      start: (socket) => start('uwsgi', uwsgi, ['--plugin', 'python3', '--uwsgi-socket', socket, '--wsgi-file', join(APPS, 'wsgi_app.py'),
        '--callable', 'hello', '--master', '--processes', '1', '--die-on-term', '--disable-logging', '--listen', '1024', '--buffer-size', '32768']) });
  }
  const only = process.env.BENCH_BACKENDS?.split(',').filter((id) => id !== '');
  if (only !== undefined && only.length > 0) {
    const unknown = only.filter((id) => !backends.some((b) => b.id === id));
    if (unknown.length > 0) throw new Error(`BENCH_BACKENDS: no backend ${unknown.join(', ')} (known: ${backends.map((b) => b.id).join(', ')})`);
    backends.splice(0, backends.length, ...backends.filter((b) => only.includes(b.id)));
  }
  const rows = new Map<string, { rps: number; cpu: number; flt: number; nginxCpu: number }[]>();
  for (let r = 0; r < rounds; r++) {
    for (const b of backends) {
      process.stderr.write(`bench: round ${r + 1}/${rounds}: ${b.id} …\n`);
      const sub = mkdtempSync(join(dir, `${b.id}-`));
      const socket = join(sub, 'app.sock');
      const back = b.start(socket);
      let front: Proc | null = null;
      try {
        await waitForListen({ path: socket }, back);
        const port = await freePort();
        front = await startNginx(nginx, sub, port, { kind: 'uwsgi', socket });
        const url = `http://127.0.0.1:${port}/`;
        await wrk(wrkPath, url, 1, connections);
        const pids = withDescendants(back.pid);
        const workers = childPids(front.pid);
        const b0 = sum(pids);
        const n0 = sum(workers);
        const requests = await wrk(wrkPath, url, seconds, connections);
        const b1 = sum(pids);
        const n1 = sum(workers);
        const list = rows.get(b.id) ?? [];
        list.push({ rps: requests / seconds, cpu: (b1.cpuUs - b0.cpuUs) / requests, flt: (b1.minflt - b0.minflt) / requests,
          nginxCpu: (n1.cpuUs - n0.cpuUs) / requests });
        rows.set(b.id, list);
      } finally {
        await front?.stop();
        await back.stop();
      }
    }
  }
  const out = (s = '') => process.stdout.write(`${s}\n`);
  out(`# nginx uwsgi_pass → backend: cost per request (hello, ${connections} connections, ${rounds} alternating rounds of ${seconds} s)`);
  out();
  for (const b of backends) out(`- ${b.id}: ${b.label}`);
  out();
  out('| backend | req/s | backend CPU per request | backend minor faults per request | nginx CPU per request |');
  out('| --- | ---: | ---: | ---: | ---: |');
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  for (const b of backends) {
    const list = rows.get(b.id) ?? [];
    if (list.length === 0) continue;
    out(`| ${b.id} | ${Math.round(mean(list.map((x) => x.rps))).toLocaleString('en-US')} | ${mean(list.map((x) => x.cpu)).toFixed(1)} µs `
      + `| ${mean(list.map((x) => x.flt)).toFixed(2)} | ${mean(list.map((x) => x.nginxCpu)).toFixed(1)} µs |`);
  }
  out();
  out('CPU is user + system time from /proc/PID/stat of the backend and its children, over the measured seconds.');
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
  dir = null;
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});
