// `npm run bench:slow-clients`: N clients (500) each GET a 20 MiB response and read it at a
// trickle; the RSS of the front and of the backend is sampled (/proc/PID/status) and printed
// as baseline, peak and per client, beside the bound the flow-control windows imply. The same
// load goes, in the same run, to bare node:http serving the bytes from memory and to the
// node:http + undici reverse proxy of bench/configs.ts.
// Env: SLOW_CLIENTS (500), SLOW_MB (20), SLOW_SECONDS (20, per configuration),
// SLOW_READ (bytes per read, 16384), SLOW_EVERY_MS (500).
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { machineLines } from './machine.js';
import { APPS, CLI, freePort, installCleanup, rssMiB, start, stopAll, tempDir, waitForListen, type Proc } from './proc.js';

const CLIENTS = Number(process.env.SLOW_CLIENTS ?? 500);
const MB = Number(process.env.SLOW_MB ?? 20);
const SECONDS = Number(process.env.SLOW_SECONDS ?? 20);
const READ = Number(process.env.SLOW_READ ?? 16384);
const EVERY_MS = Number(process.env.SLOW_EVERY_MS ?? 500);
/** tsgi's default --window (bytes per stream and direction). */
const WINDOW = 256 * 1024;
const APP = join(APPS, 'big-download.js');

interface Target {
  label: string;
  port: number;
  /** The process holding the client connections, and the one producing the bytes (if another). */
  front: Proc;
  backend: Proc | null;
  /** What the windows allow per client in the front and in the backend, in MiB; null: no bound. */
  boundPerClient: { front: number | null; backend: number | null };
}

let dir: string | null = null;
installCleanup(() => dir);

async function tsgi(): Promise<Target> {
  const socket = join(dir!, 'tsgi.sock');
  const backend = start('tsgi serve', process.execPath, [CLI, 'serve', APP, '--socket', socket, '--graceful-timeout', '2']);
  await backend.waitFor(/serving on unix:/);
  const port = await freePort();
  const front = start('tsgi front', process.execPath, [CLI, 'front', '--listen', `127.0.0.1:${port}`, '--backend', `unix:${socket}`,
    '--graceful-timeout', '2', '--max-connections', '0']);
  await front.waitFor(/listening on http /);
  // Front: at most one window per stream not yet acknowledged (bytes given to a client socket
  // that wants a pause). Backend: one window in flight plus the chunk that did not fit.
  return { label: 'tsgi front → tsgi serve', port, front, backend,
    boundPerClient: { front: WINDOW / 2 ** 20, backend: (WINDOW + 2 ** 20) / 2 ** 20 } };
}

async function bare(): Promise<Target> {
  const port = await freePort();
  const front = start('node:http', process.execPath, [APP, `127.0.0.1:${port}`]);
  await waitForListen({ port }, front);
  return { label: 'bare node:http (bytes from memory)', port, front, backend: null, boundPerClient: { front: null, backend: null } };
}

async function nodeProxy(): Promise<Target> {
  const socket = join(dir!, 'node.sock');
  const backend = start('node:http backend', process.execPath, [APP, `unix:${socket}`]);
  await waitForListen({ path: socket }, backend);
  const port = await freePort();
  const front = start('node-proxy', process.execPath, [join(APPS, 'node-proxy.js'), `127.0.0.1:${port}`, socket]);
  await waitForListen({ port }, front);
  return { label: 'node:http + undici proxy → node:http', port, front, backend, boundPerClient: { front: null, backend: null } };
}

/** A client that sends its GET and then takes READ bytes every EVERY_MS. */
class Trickle {
  readonly socket: Socket;
  received = 0;
  error: string | null = null;
  #timer: NodeJS.Timeout;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', (err) => { this.error = err.message; });
    this.socket.write(`GET /big?mb=${MB} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`);
    // Paused mode: read() takes bytes only when asked, so the socket stops pulling from the
    // kernel once its small buffer is full.
    this.#timer = setInterval(() => {
      const chunk = (this.socket.read(READ) ?? this.socket.read()) as Buffer | null;
      if (chunk !== null) this.received += chunk.length;
    }, EVERY_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
    this.socket.destroy();
  }
}

interface Row {
  label: string;
  base: { front: number; backend: number | null };
  peak: { front: number; backend: number | null };
  received: number;
  errors: number;
  bound: Target['boundPerClient'];
}

async function measure(target: Target): Promise<Row> {
  // Warm-up: a few whole downloads, so the baseline includes the code paths' own memory.
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const s = connect(target.port, '127.0.0.1');
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
      s.write(`GET /big?mb=${MB} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`);
    });
  }
  await sleep(1000);
  const rssOf = (p: Proc | null) => (p === null ? null : rssMiB(p.pid) ?? NaN);
  const base = { front: rssOf(target.front)!, backend: rssOf(target.backend) };
  const peak = { ...base };
  const clients: Trickle[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    clients.push(new Trickle(target.port));
    if (i % 50 === 49) await sleep(20);
  }
  const until = Date.now() + SECONDS * 1000;
  while (Date.now() < until) {
    await sleep(250);
    peak.front = Math.max(peak.front, rssOf(target.front)!);
    if (peak.backend !== null) peak.backend = Math.max(peak.backend, rssOf(target.backend)!);
  }
  const received = clients.reduce((n, c) => n + c.received, 0);
  const errors = clients.filter((c) => c.error !== null).length;
  for (const c of clients) c.close();
  return { label: target.label, base, peak, received, errors, bound: target.boundPerClient };
}

const mib = (n: number | null) => (n === null ? '-' : n.toFixed(1));
const kib = (n: number | null) => (n === null ? '-' : (n * 1024).toFixed(0));

async function main(): Promise<void> {
  dir = tempDir('tsgi-slow-clients-');
  for (const line of machineLines()) console.log(line);
  console.log(`${CLIENTS} clients, each GET ${MB} MiB and read ${READ} bytes every ${EVERY_MS} ms, for ${SECONDS} s per configuration\n`);
  const rows: Row[] = [];
  for (const make of [tsgi, bare, nodeProxy]) {
    const target = await make();
    try {
      rows.push(await measure(target));
    } finally {
      await target.front.stop();
      await target.backend?.stop();
    }
    const r = rows[rows.length - 1]!;
    console.log(`${r.label}: done (${(r.received / 2 ** 20).toFixed(0)} MiB read by the clients, ${r.errors} client errors)`);
  }
  console.log('\nRSS (MiB): baseline → peak; growth per client (KiB); bound per client the windows imply (KiB)');
  console.log('| configuration | front base | front peak | front / client | front bound | backend base | backend peak | backend / client | backend bound |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const perFront = (r.peak.front - r.base.front) / CLIENTS;
    const perBackend = r.peak.backend === null ? null : (r.peak.backend - r.base.backend!) / CLIENTS;
    console.log(`| ${r.label} | ${mib(r.base.front)} | ${mib(r.peak.front)} | ${kib(perFront)} | ${kib(r.bound.front)} `
      + `| ${mib(r.base.backend)} | ${mib(r.peak.backend)} | ${kib(perBackend)} | ${kib(r.bound.backend)} |`);
  }
  const tsgiRow = rows[0]!;
  if (tsgiRow.bound.front !== null) {
    console.log(`\ntsgi bound: front ${mib(tsgiRow.base.front)} + ${CLIENTS} x ${kib(tsgiRow.bound.front)} KiB = `
      + `${mib(tsgiRow.base.front + CLIENTS * tsgiRow.bound.front)} MiB; backend ${mib(tsgiRow.base.backend)} + ${CLIENTS} x `
      + `${kib(tsgiRow.bound.backend)} KiB = ${mib(tsgiRow.base.backend! + CLIENTS * tsgiRow.bound.backend!)} MiB `
      + `(a body of ${MB} MiB per client would be ${(CLIENTS * MB).toLocaleString('en')} MiB)`);
  }
}

main().then(() => stopAll(), async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exitCode = 1;
});
