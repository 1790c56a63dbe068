// `npm run build --silent && node dist/bench/static.js`: static files at the front beside nginx
// (one 1 KiB file), and the proxied hello page through a front without and with --static (that
// the static check costs proxied requests nothing), as req/s and CPU µs per request of the
// process holding the client connections. Env: BENCH_SECONDS (5), BENCH_CONNECTIONS (50).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pickGenerator, type LoadGenerator } from './loadgen.js';
import { nginxPreamble } from './nginx.js';
import { CLI, ROOT, childPids, cpuUs, freePort, installCleanup, start, stopAll, tempDir, waitForListen, which, type Proc } from './proc.js';

const seconds = Math.max(1, Math.round(Number(process.env.BENCH_SECONDS ?? 5)));
const connections = Math.max(1, Math.round(Number(process.env.BENCH_CONNECTIONS ?? 50)));

/** utime + stime of the processes, in µs. */
const totalCpuUs = (pids: number[]): number => pids.reduce((sum, pid) => sum + (cpuUs(pid) ?? 0), 0);

interface Row { label: string; rps: number; cpuPerReq: number; errors: number }

async function cell(gen: LoadGenerator, label: string, url: string, pids: () => number[]): Promise<Row> {
  await gen.run({ url, method: 'GET', connections, seconds: 1 }); // warm-up
  const before = totalCpuUs(pids());
  const r = await gen.run({ url, method: 'GET', connections, seconds });
  const cpu = totalCpuUs(pids()) - before;
  return { label, rps: r.requests / r.seconds, cpuPerReq: cpu / r.requests, errors: r.errors };
}

function nginxStaticConf(prefix: string, port: number, publicDir: string): string {
  return `${nginxPreamble(prefix, { workers: 1, connections: 4096 })}
  include /etc/nginx/mime.types;
  sendfile on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    location /static/ { alias ${publicDir}/; }
  }
}
`;
}

async function main(): Promise<void> {
  let dir: string | null = tempDir('tsgi-bench-static-');
  installCleanup(() => dir);
  const gen = await pickGenerator(dir);
  const publicDir = join(dir, 'public');
  mkdirSync(publicDir);
  writeFileSync(join(publicDir, 'file.txt'), 'x'.repeat(1023) + '\n');
  const socket = join(dir, 'app.sock');
  const node = (args: string[], name: string) => start(name, process.execPath, args);
  const backend = node([CLI, 'serve', join(ROOT, 'examples/hello.js'), '--socket', socket, '--graceful-timeout', '2'], 'tsgi serve');
  await backend.waitFor(/serving on unix:/);
  const front = async (extra: string[]): Promise<{ proc: Proc; url: string }> => {
    const port = await freePort();
    const proc = node([CLI, 'front', '--listen', `127.0.0.1:${port}`, '--backend', `unix:${socket}`, '--graceful-timeout', '2', ...extra], 'tsgi front');
    await proc.waitFor(/listening on http /);
    return { proc, url: `http://127.0.0.1:${port}` };
  };
  const plain = await front([]);
  const withStatic = await front(['--static', `/static=${publicDir}`, '--static', `/assets=${publicDir}`]);
  const rows: Row[] = [];
  // Alternated, twice, so drift on a shared machine falls on both sides.
  for (let round = 1; round <= 2; round++) {
    rows.push(await cell(gen, `hello proxied, front without --static (round ${round})`, `${plain.url}/`, () => [plain.proc.pid]));
    rows.push(await cell(gen, `hello proxied, front with 2 --static mounts (round ${round})`, `${withStatic.url}/`, () => [withStatic.proc.pid]));
  }
  rows.push(await cell(gen, '1 KiB file, tsgi front --static', `${withStatic.url}/static/file.txt`, () => [withStatic.proc.pid]));
  const nginx = which('nginx');
  if (nginx !== null) {
    const prefix = join(dir, 'nginx');
    mkdirSync(prefix);
    const port = await freePort();
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(conf, nginxStaticConf(prefix, port, publicDir));
    const proc = start('nginx', nginx, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')]);
    await waitForListen({ port }, proc);
    rows.push(await cell(gen, '1 KiB file, nginx (1 worker, sendfile)', `http://127.0.0.1:${port}/static/file.txt`, () => childPids(proc.pid)));
  }
  const out = (s = '') => process.stdout.write(`${s}\n`);
  out(`# static files and the proxied path (${gen.name}; ${connections} connections, ${seconds} s per cell)`);
  out();
  out('| cell | req/s | CPU µs/req (front or nginx workers) | errors |');
  out('| --- | ---: | ---: | ---: |');
  for (const r of rows) out(`| ${r.label} | ${r.rps.toFixed(0)} | ${r.cpuPerReq.toFixed(1)} | ${r.errors} |`);
  if (nginx === null) out('\nnginx is not installed: no nginx row.');
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
  dir = null;
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench/static: ${(err as Error).stack ?? String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});
