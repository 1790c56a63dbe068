// `npm run bench:h2`: the front facing clients over TLS and HTTP/2, measured with h2load
// (Debian's nghttp2-client) beside nginx (TLS, `http2`) → node:http, in one run: hello over
// HTTP/1.1, h2c, and TLS with each, req/s and the CPU per request of the process(es) facing the
// client (tsgi's front; nginx's workers). One load generator for every cell.
// Env: BENCH_SECONDS (5 per cell), BENCH_CONNECTIONS (50), BENCH_STREAMS (10 per h2 connection).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nginxPreamble } from './nginx.js';
import { APPS, CLI, ROOT, childPids, cpuUs, freePort, installCleanup, run, start, stopAll, tempDir, waitForListen,
  which, type Proc } from './proc.js';

interface Cell {
  name: string;
  url: string;
  /** h2load flags for the protocol: --h1, or none (h2, h2c by prior knowledge for http:). */
  h1: boolean;
  /** The processes whose CPU is the cell's cost (the ones facing the client). */
  pids: () => number[];
}

interface Result {
  rps: number;
  failed: number;
  cpuUsPerReq: number;
}

async function h2load(cell: Cell, seconds: number, connections: number, streams: number): Promise<Result> {
  const args = ['-c', String(connections), '-t', '1', '-D', String(seconds), '--warm-up-time', '1',
    ...(cell.h1 ? ['--h1'] : ['-m', String(streams)]), cell.url];
  const pids = cell.pids();
  const cpu = (): number => pids.reduce((sum, pid) => sum + (cpuUs(pid) ?? 0), 0);
  // The CPU is read around the whole run (the warm-up included), and so are the requests.
  const c0 = cpu();
  const { output } = await run('h2load', 'h2load', args);
  const c1 = cpu();
  const done = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(output)?.[1] ?? 0);
  const failed = Number(/(\d+) failed/.exec(output)?.[1] ?? 0);
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(output)?.[1] ?? 0);
  if (done === 0) throw new Error(`h2load ${args.join(' ')}: no request done\n${output.slice(-600)}`);
  return { rps, failed, cpuUsPerReq: (c1 - c0) / done };
}

function certificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { cert, key };
}

async function main(): Promise<number> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const streams = Number(process.env.BENCH_STREAMS ?? 10);
  for (const tool of ['h2load', 'openssl']) {
    if (which(tool) === null) {
      process.stderr.write(`bench:h2 needs ${tool} (Debian: apt-get install nghttp2-client openssl)\n`);
      return 2;
    }
  }
  const dir = tempDir('tsgi-bench-h2-');
  installCleanup(() => dir);
  const { cert, key } = certificate(dir);
  const out = (text = '') => process.stdout.write(`${text}\n`);

  // tsgi: one backend, one front with TLS and one without (the same build, the same flags).
  const socket = join(dir, 'tsgi.sock');
  const backend = start('tsgi serve', process.execPath, [CLI, 'serve', join(ROOT, 'examples/hello.js'), '--socket', socket]);
  await waitForListen({ path: socket }, backend);
  const clearPort = await freePort();
  const tlsPort = await freePort();
  const front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${clearPort}`, '--backend', `unix:${socket}`]);
  const tlsFront = start('tsgi front tls', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${tlsPort}`,
    '--backend', `unix:${socket}`, '--tls-cert', cert, '--tls-key', key]);
  await waitForListen({ port: clearPort }, front);
  await waitForListen({ port: tlsPort }, tlsFront);

  // nginx (TLS, HTTP/2 and HTTP/1.1 on one port by ALPN) → node:http on a Unix socket.
  const cells: Cell[] = [
    { name: 'tsgi, HTTP/1.1 cleartext', url: `http://127.0.0.1:${clearPort}/`, h1: true, pids: () => [front.pid] },
    { name: 'tsgi, h2c (prior knowledge)', url: `http://127.0.0.1:${clearPort}/`, h1: false, pids: () => [front.pid] },
    { name: 'tsgi, HTTP/1.1 over TLS', url: `https://127.0.0.1:${tlsPort}/`, h1: true, pids: () => [tlsFront.pid] },
    { name: 'tsgi, h2 over TLS', url: `https://127.0.0.1:${tlsPort}/`, h1: false, pids: () => [tlsFront.pid] },
  ];
  const nginx = which('nginx');
  let nginxProc: Proc | null = null;
  if (nginx !== null) {
    const nodeSocket = join(dir, 'node.sock');
    const node = start('node-server', process.execPath, [join(APPS, 'node-server.js'), 'hello', `unix:${nodeSocket}`]);
    await waitForListen({ path: nodeSocket }, node);
    const port = await freePort();
    const prefix = join(dir, 'nginx');
    mkdirSync(prefix, { recursive: true });
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(conf, `${nginxPreamble(prefix, { workers: 1, connections: 4096 })}
  keepalive_requests 1000000;
  upstream backend {
    server unix:${nodeSocket};
    keepalive 1024;
  }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    http2_max_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`);
    nginxProc = start('nginx', nginx, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')]);
    await waitForListen({ port }, nginxProc);
    const workers = (): number[] => childPids(nginxProc!.pid);
    cells.push(
      { name: 'nginx → node:http, HTTP/1.1 over TLS', url: `https://127.0.0.1:${port}/`, h1: true, pids: workers },
      { name: 'nginx → node:http, h2 over TLS', url: `https://127.0.0.1:${port}/`, h1: false, pids: workers },
    );
  }

  out('# tsgi HTTP/2 and TLS benchmark');
  out();
  out(`- h2load, ${connections} connections, ${streams} streams each on h2, ${seconds} s per cell after a 1 s warm-up; hello`);
  out('- CPU: the process(es) facing the client (tsgi\'s front; nginx\'s one worker), per request');
  out(nginx === null ? '- skipped: nginx (not installed)' : '- nginx: one worker, TLS and HTTP/2 (`listen … ssl http2`), upstream keepalive');
  out();
  out('| cell | req/s | failed | front CPU µs/req |');
  out('| --- | ---: | ---: | ---: |');
  const results = new Map<string, Result>();
  for (const cell of cells) {
    const r = await h2load(cell, seconds, connections, streams);
    results.set(cell.name, r);
    out(`| ${cell.name} | ${Math.round(r.rps).toLocaleString('en')} | ${r.failed} | ${r.cpuUsPerReq.toFixed(1)} |`);
  }
  const ratio = (a: string, b: string): string => {
    const x = results.get(a);
    const y = results.get(b);
    return x && y && y.rps > 0 ? `${(x.rps / y.rps).toFixed(2)}×` : 'n/a';
  };
  out();
  out(`- tsgi h2c / tsgi HTTP/1.1: ${ratio('tsgi, h2c (prior knowledge)', 'tsgi, HTTP/1.1 cleartext')}`);
  out(`- tsgi h2 (TLS) / nginx h2 (TLS) → node:http: ${ratio('tsgi, h2 over TLS', 'nginx → node:http, h2 over TLS')}`);
  out(`- tsgi HTTP/1.1 (TLS) / nginx HTTP/1.1 (TLS) → node:http: ${ratio('tsgi, HTTP/1.1 over TLS', 'nginx → node:http, HTTP/1.1 over TLS')}`);
  await stopAll();
  return 0;
}

main().then((code) => process.exit(code), async (err: unknown) => {
  process.stderr.write(`bench:h2: ${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
});
