// The configurations side by side: bare node:http, tsgi (one backend process, or --workers 2; one
// front process, or --processes 2),
// a Node reverse proxy (node:http + undici), and, when installed, nginx in front of node:http,
// of uWSGI and of `tsgi serve --uwsgi-socket`. Each starts one app kind on loopback / Unix
// sockets in the run's directory and is stopped by its processes' PIDs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nginxErrorSummary, startNginx } from './nginx.js';
import { APPS, CLI, ROOT, childPids, freePort, run, start, waitForListen, which, withDescendants, type Proc } from './proc.js';

export type AppKind = 'hello' | 'download' | 'echo';

export interface Running {
  url: string;
  /** The processes that hold the client connections (for RSS): the front, or nginx's workers. */
  frontPids(): number[];
  /** Every process serving (front, backends, workers): their CPU time is the cost per request. */
  serverPids(): number[];
  /** What went wrong, from the configuration's own logs (nginx's error.log), if anything. */
  diagnose?(): string | null;
  stop(): Promise<void>;
}

export interface Config {
  id: string;
  label: string;
  start(app: AppKind, dir: string): Promise<Running>;
}

const TSGI_APPS: Record<AppKind, string> = {
  hello: join(ROOT, 'examples/hello.js'),
  download: join(APPS, 'download.js'),
  echo: join(APPS, 'echo.js'),
};

const node = (args: string[], name: string) => start(name, process.execPath, args);

function running(url: string, procs: Proc[], frontPids: () => number[]): Running {
  return {
    url,
    frontPids,
    serverPids: () => procs.flatMap((p) => withDescendants(p.pid)),
    async stop() {
      // Front first, so the backend is not left answering a front that is going away.
      for (const p of procs) await p.stop();
    },
  };
}

async function nodeBackend(app: AppKind, socket: string): Promise<Proc> {
  const proc = node([join(APPS, 'node-server.js'), app, `unix:${socket}`], `node-server ${app}`);
  await waitForListen({ path: socket }, proc);
  return proc;
}

async function tsgiServe(app: AppKind, socket: string, extra: string[] = []): Promise<Proc> {
  const proc = node([CLI, 'serve', TSGI_APPS[app], '--socket', socket, '--graceful-timeout', '2', ...extra], 'tsgi serve');
  await proc.waitFor(/serving on unix:/);
  return proc;
}

async function tsgiFront(port: number, socket: string, extra: string[] = []): Promise<Proc> {
  const proc = node([CLI, 'front', '--listen', `127.0.0.1:${port}`, '--backend', `unix:${socket}`, '--graceful-timeout', '2', ...extra],
    'tsgi front');
  await proc.waitFor(/listening on http /);
  return proc;
}

function tsgi(id: string, label: string, serveArgs: string[], frontArgs: string[] = []): Config {
  return {
    id, label,
    async start(app, dir) {
      const socket = join(mkdtempSync(join(dir, `${id}-`)), 'app.sock');
      const backend = await tsgiServe(app, socket, serveArgs);
      const port = await freePort();
      const front = await tsgiFront(port, socket, frontArgs);
      // With --processes the front's workers hold the client connections (and the primary too, briefly).
      return running(`http://127.0.0.1:${port}/`, [front, backend], () => withDescendants(front.pid));
    },
  };
}

/**
 * A CA, a backend certificate for 127.0.0.1 and a front certificate, made with openssl in `dir`
 * (the run's temp directory): what a tls: link needs.
 */
function makeCerts(dir: string): { ca: string; server: string[]; client: string[] } {
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=bench CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  for (const [name, usage, san] of [['server', 'serverAuth', 'subjectAltName=IP:127.0.0.1'], ['client', 'clientAuth', '']] as const) {
    writeFileSync(join(dir, `${name}.ext`), `extendedKeyUsage=${usage}\n${san}\n`);
    ssl(['req', ...ec, '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    ssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
      '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
  }
  return {
    ca: join(dir, 'ca.pem'),
    server: ['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key'), '--tls-ca', join(dir, 'ca.pem')],
    client: ['--backend-tls-cert', join(dir, 'client.pem'), '--backend-tls-key', join(dir, 'client.key'), '--backend-tls-ca', join(dir, 'ca.pem')],
  };
}

/** tsgi front → tsgi serve over a TCP link on 127.0.0.1, plain or mutual TLS: what the link costs against a Unix socket. */
function tsgiTcp(id: string, label: string, tls: boolean): Config {
  return {
    id, label,
    async start(app, dir) {
      const sub = mkdtempSync(join(dir, `${id}-`));
      const certs = tls ? makeCerts(sub) : null;
      const backendPort = await freePort();
      const backend = node([CLI, 'serve', TSGI_APPS[app], '--listen', `127.0.0.1:${backendPort}`, '--graceful-timeout', '2',
        ...(certs?.server ?? [])], `tsgi serve (${id})`);
      await backend.waitFor(/serving on 127\.0\.0\.1:/);
      const port = await freePort();
      const front = node([CLI, 'front', '--listen', `127.0.0.1:${port}`, '--backend', `${tls ? 'tls:' : 'tcp:'}127.0.0.1:${backendPort}`,
        '--graceful-timeout', '2', ...(certs?.client ?? [])], `tsgi front (${id})`);
      await front.waitFor(/listening on http /);
      return running(`http://127.0.0.1:${port}/`, [front, backend], () => [front.pid]);
    },
  };
}

const bare: Config = {
  id: 'bare', label: 'bare node:http serving the app itself (no proxy)',
  async start(app) {
    const port = await freePort();
    const proc = node([join(APPS, 'node-server.js'), app, `127.0.0.1:${port}`], `node-server ${app}`);
    await waitForListen({ port }, proc);
    return running(`http://127.0.0.1:${port}/`, [proc], () => [proc.pid]);
  },
};

const nodeProxy: Config = {
  id: 'node-proxy', label: 'node:http + undici Pool → node:http (unix)',
  async start(app, dir) {
    const socket = join(mkdtempSync(join(dir, 'node-proxy-')), 'app.sock');
    const backend = await nodeBackend(app, socket);
    const port = await freePort();
    const front = node([join(APPS, 'node-proxy.js'), `127.0.0.1:${port}`, socket], 'node-proxy');
    await waitForListen({ port }, front);
    return running(`http://127.0.0.1:${port}/`, [front, backend], () => [front.pid]);
  },
};

function nginxConfig(nginx: string, id: string, label: string, backend: (app: AppKind, socket: string) => Promise<Proc>,
  kind: 'http' | 'uwsgi'): Config {
  return {
    id, label,
    async start(app, dir) {
      const sub = mkdtempSync(join(dir, `${id}-`));
      const socket = join(sub, 'app.sock');
      const back = await backend(app, socket);
      const port = await freePort();
      let front: Proc;
      try {
        front = await startNginx(nginx, sub, port, { kind, socket });
      } catch (err) {
        await back.stop();
        throw err;
      }
      return { ...running(`http://127.0.0.1:${port}/`, [front, back], () => childPids(front.pid)), diagnose: () => nginxErrorSummary(sub) };
    },
  };
}

async function uwsgiBackend(uwsgi: string, app: AppKind, socket: string): Promise<Proc> {
  const proc = start('uwsgi', uwsgi, ['--plugin', 'python3', '--uwsgi-socket', socket, '--wsgi-file', join(APPS, 'wsgi_app.py'),
    '--callable', app, '--master', '--processes', '1', '--die-on-term', '--disable-logging', '--listen', '1024',
    '--buffer-size', '32768']);
  await waitForListen({ path: socket }, proc);
  return proc;
}

async function tsgiUwsgiBackend(app: AppKind, socket: string): Promise<Proc> {
  const proc = node([CLI, 'serve', TSGI_APPS[app], '--uwsgi-socket', socket, '--graceful-timeout', '2'], 'tsgi serve --uwsgi-socket');
  await waitForListen({ path: socket }, proc);
  return proc;
}

/** Every configuration id, installed or not (BENCH_ONLY accepts them all). */
export const CONFIG_IDS = ['bare', 'tsgi', 'tsgi-tcp', 'tsgi-tls', 'tsgi-w2', 'tsgi-p2', 'node-proxy', 'nginx-node', 'nginx-uwsgi', 'nginx-tsgi-uwsgi'] as const;

export interface Availability {
  configs: Config[];
  /** One line per configuration left out, saying why. */
  notes: string[];
  /** Versions of the peers found (nginx, uWSGI). */
  versions: string[];
}

async function version(name: string, path: string, args: string[], pattern: RegExp): Promise<string> {
  const { output } = await run(`${name} version`, path, args);
  return `${name} ${pattern.exec(output)?.[1] ?? '(unknown version)'}`;
}

/** Every configuration this machine can run; the others get a one-line note. */
export async function configurations(): Promise<Availability> {
  const configs: Config[] = [
    bare,
    tsgi('tsgi', 'tsgi front → tsgi serve', []),
    tsgiTcp('tsgi-tcp', 'tsgi front → tsgi serve over a tcp: link (127.0.0.1)', false),
    tsgi('tsgi-w2', 'tsgi front → tsgi serve --workers 2', ['--workers', '2']),
    tsgi('tsgi-p2', 'tsgi front --processes 2 → tsgi serve --workers 2', ['--workers', '2'], ['--processes', '2']),
    nodeProxy,
  ];
  const notes: string[] = [];
  const versions: string[] = [];
  if (which('openssl') === null) notes.push('openssl is not installed (it makes the certificates): tsgi-tls skipped');
  else configs.splice(3, 0, tsgiTcp('tsgi-tls', 'tsgi front → tsgi serve over a tls: link (mutual TLS, ECDSA P-256, 127.0.0.1)', true));
  const nginx = which('nginx');
  const uwsgi = which('uwsgi');
  if (nginx === null) {
    notes.push('nginx is not installed: nginx-node, nginx-uwsgi and nginx-tsgi-uwsgi skipped');
    return { configs, notes, versions };
  }
  versions.push(await version('nginx', nginx, ['-v'], /nginx\/(\S+)/));
  configs.push(nginxConfig(nginx, 'nginx-node', 'nginx (proxy_pass, upstream keepalive 1024) → node:http (unix)', nodeBackend, 'http'));
  if (uwsgi === null) {
    notes.push('uwsgi is not installed: nginx-uwsgi skipped');
  } else if ((await run('uwsgi --need-plugin python3', uwsgi, ['--need-plugin', 'python3', '--version'])).info.code !== 0) {
    notes.push('uwsgi has no python3 plugin (Debian: uwsgi-plugin-python3): nginx-uwsgi skipped');
  } else {
    versions.push(await version('uWSGI', uwsgi, ['--version'], /^(\S+)/));
    configs.push(nginxConfig(nginx, 'nginx-uwsgi', 'nginx (uwsgi_pass) → uWSGI python3, 1 process',
      (app, socket) => uwsgiBackend(uwsgi, app, socket), 'uwsgi'));
  }
  const help = await run('tsgi serve --help', process.execPath, [CLI, 'serve', '--help']);
  if (!help.output.includes('--uwsgi-socket')) {
    notes.push('tsgi serve has no --uwsgi-socket yet (`tsgi serve --help` does not list it): nginx-tsgi-uwsgi skipped');
  } else {
    configs.push(nginxConfig(nginx, 'nginx-tsgi-uwsgi', 'nginx (uwsgi_pass) → tsgi serve --uwsgi-socket', tsgiUwsgiBackend, 'uwsgi'));
  }
  return { configs, notes, versions };
}
