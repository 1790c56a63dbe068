// The interop suite's scaffolding: which of nginx, uWSGI (with its python3 plugin) and curl are
// installed; nginx started as the current user on a temporary prefix with an example config
// from examples/nginx/ (placeholders filled in); a real uWSGI running test/fixtures/wsgi_app.py;
// curl as a client. Everything on 127.0.0.1 and Unix sockets in temp dirs; stopped by PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT, tempDir } from './procs.js';
import { accepting } from './raw-http.js';

export interface Programs {
  nginx: boolean;
  uwsgi: boolean;
  curl: boolean;
  /** Why each missing one is missing. */
  missing: string[];
}

/** Which programs the interop suite needs are here (and usable: nginx with uwsgi_pass, uWSGI with python3). */
export function findPrograms(): Programs {
  const missing: string[] = [];
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  const nginxV = run('nginx', ['-V']);
  let nginx = nginxV.status === 0;
  if (!nginx) missing.push('nginx (apt-get install nginx-light)');
  else if (/--without-http_uwsgi_module/.test(nginxV.stderr)) {
    nginx = false;
    missing.push('nginx with the uwsgi module (this nginx was built without it)');
  }
  const uwsgiV = run('uwsgi', ['--plugin', 'python3', '--version']);
  const uwsgi = uwsgiV.status === 0 && !/UNABLE to load/i.test(`${uwsgiV.stdout}${uwsgiV.stderr}`);
  if (!uwsgi) missing.push(uwsgiV.status === 0 ? 'the uWSGI python3 plugin (apt-get install uwsgi-plugin-python3)' : 'uwsgi (apt-get install uwsgi uwsgi-plugin-python3)');
  const curl = run('curl', ['--version']).status === 0;
  if (!curl) missing.push('curl');
  return { nginx, uwsgi, curl, missing };
}

/** A free TCP port on 127.0.0.1 (closed again at once; nginx binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections at the Unix path or 127.0.0.1:PORT. */
export async function waitForListener(where: string | number, proc: ExternalProc, deadlineMs = 15_000): Promise<void> {
  const giveUp = Date.now() + deadlineMs;
  for (;;) {
    if (await accepting(where)) return;
    if (proc.exitCode() !== null) throw new Error(`${proc.name} exited (${proc.exitCode()}) before listening on ${where}:\n${proc.output()}`);
    if (Date.now() > giveUp) throw new Error(`${proc.name} did not listen on ${where} within ${deadlineMs} ms:\n${proc.output()}`);
    await sleep(25);
  }
}

export interface ExternalProc {
  readonly name: string;
  readonly pid: number;
  output(): string;
  exitCode(): number | string | null;
  /** Sends `signal`, waits for the exit (SIGKILL after 10 s), and removes the temp dir. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
});

function external(name: string, cmd: string, args: string[], dir: string, logFile?: string): ExternalProc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  live.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out = (out + s).slice(-20_000); });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { out = (out + s).slice(-20_000); });
  let code: number | string | null = null;
  const exited = new Promise<void>((resolve) => child.once('exit', (c, sig) => {
    code = sig ?? c;
    live.delete(child);
    resolve();
  }));
  let stopping: Promise<void> | null = null;
  return {
    name,
    pid: child.pid,
    output: () => out + (logFile !== undefined && existsSync(logFile) ? `\n--- ${logFile}:\n${readFileSync(logFile, 'utf8').slice(-10_000)}` : ''),
    exitCode: () => code,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      stopping ??= (async () => {
        if (code === null) {
          process.kill(child.pid!, signal);
          const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

export interface Nginx extends ExternalProc {
  readonly port: number;
  readonly url: string;
}

/**
 * A main nginx.conf around a site file from examples/nginx/ (included as it is, or given as
 * text): pid, logs and temp files under `prefix`, as the distribution's nginx.conf sets them.
 */
function mainConf(prefix: string, site: string): string {
  return `pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events {
    worker_connections 1024;
}
http {
    include /etc/nginx/mime.types;
    access_log ${prefix}/access.log;
    client_body_temp_path ${prefix}/client_body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
    include ${site};
}
`;
}

/** `nginx -t` on examples/nginx/NAME as it is, included in a main config; resolves with its output. */
export function nginxCheck(name: string): { ok: boolean; output: string } {
  const prefix = tempDir('tsgi-interop-nginx-t-');
  try {
    writeFileSync(join(prefix, 'nginx.conf'), mainConf(prefix, join(ROOT, 'examples/nginx', name)));
    const r = spawnSync('nginx', ['-t', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')],
      { encoding: 'utf8', timeout: 10_000 });
    return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
}

/**
 * nginx (daemon off, master off, as the current user) with the site examples/nginx/NAME, on a
 * fresh temporary prefix; each key of `replace` (a socket path, `listen 80;`) is replaced, each
 * one required to be in the file. Resolves once it listens on its free port.
 */
export async function startNginx(name: string, replace: Record<string, string>): Promise<Nginx> {
  const port = await freePort();
  let site = readFileSync(join(ROOT, 'examples/nginx', name), 'utf8');
  for (const [from, to] of Object.entries({ 'listen 80;': `listen 127.0.0.1:${port};`, ...replace })) {
    if (!site.includes(from)) throw new Error(`examples/nginx/${name} has no '${from}' to replace`);
    site = site.split(from).join(to);
  }
  const prefix = tempDir('tsgi-interop-nginx-');
  mkdirSync(join(prefix, 'html'));
  writeFileSync(join(prefix, 'site.conf'), site);
  const confPath = join(prefix, 'nginx.conf');
  writeFileSync(confPath, `daemon off;\nmaster_process off;\nworker_processes 1;\n${mainConf(prefix, join(prefix, 'site.conf'))}`);
  const errorLog = join(prefix, 'error.log');
  const proc = external('nginx', 'nginx', ['-p', prefix, '-c', confPath, '-e', errorLog], prefix, errorLog);
  try {
    await waitForListener(port, proc);
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return Object.assign(proc, { port, url: `http://127.0.0.1:${port}` });
}

export interface Uwsgi extends ExternalProc {
  readonly socket: string;
}

/** A real uWSGI (master, two workers) running test/fixtures/wsgi_app.py on a Unix socket. */
export async function startUwsgi(): Promise<Uwsgi> {
  const dir = tempDir('tsgi-interop-uwsgi-');
  const socket = join(dir, 'uwsgi.sock');
  const proc = external('uwsgi', 'uwsgi', [
    '--plugin', 'python3', '--uwsgi-socket', socket, '--wsgi-file', join(ROOT, 'test/fixtures/wsgi_app.py'),
    '--master', '--processes', '2', '--die-on-term', '--need-app', '--buffer-size', '65535', '--disable-logging',
  ], dir);
  try {
    await waitForListener(socket, proc);
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return Object.assign(proc, { socket });
}

export interface CurlResult {
  status: number;
  body: string;
  stderr: string;
}

/** curl as a client: `curl -sS ARGS URL`, with the status code on the last line of stdout. */
export function curl(url: string, args: string[] = []): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--max-time', '30', '-w', '\n%{http_code}', ...args, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    child.once('error', reject);
    child.once('close', () => {
      const nl = out.lastIndexOf('\n');
      resolve({ status: Number(out.slice(nl + 1)), body: out.slice(0, nl), stderr: err });
    });
  });
}

const CHUNK = 64 * 1024;

/** Chunk `index` of the interop pattern: the sha256 of its decimal index, repeated to 64 KiB. */
export function interopChunk(index: number): Buffer {
  const digest = createHash('sha256').update(String(index)).digest();
  return Buffer.concat(Array.from({ length: CHUNK / 32 }, () => digest));
}

/** sha256 of the first `mb` MiB of the interop pattern (what /download?mb=N sends). */
export function interopDigest(mb: number): string {
  const hash = createHash('sha256');
  for (let i = 0; i < mb * 16; i++) hash.update(interopChunk(i));
  return hash.digest('hex');
}

/** A file of `mb` MiB of varied bytes for uploads, with its sha256. */
export function uploadFile(dir: string, mb: number): { path: string; size: number; sha256: string } {
  const data = Buffer.alloc(mb * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const path = join(dir, `upload-${mb}.bin`);
  writeFileSync(path, data);
  return { path, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** The seed's request headers, as curl -H arguments. */
export const SEED_HEADERS: [string, string][] = [
  ['Host', '172.16.7.152:8000'],
  ['Upgrade-Insecure-Requests', '1'],
  ['Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['User-Agent', 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4'],
  ['Accept-Language', 'zh-cn'],
  ['Accept-Encoding', 'gzip,deflate'],
  ['DNT', '1'],
];

export const seedCurlArgs = (): string[] => SEED_HEADERS.flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
