#!/usr/bin/env node
// The `tsgi` command: `front`, `serve`, `run`, `ctl` and `demo`. The only place the command's own process exits
// (worker processes exit by themselves, with the same codes: common/exit-codes.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress } from './common/address.js';
import { ListenError } from './common/listen.js';
import { createLogger, setLogLevel, setLogTag } from './common/log.js';
import { notifyReady } from './common/notify.js';
import { checkLogFile, checkSocketPath, checkStatic } from './common/preflight.js';
import { type Command, configValues, type Options, optionsHelp, type ParsedOptions, parseOptions, readConfigFile } from './common/options.js';
import { controlRequest, type ControlOp, type ControlRequest } from './common/control.js';
import { ConfigError, TsgiError } from './protocol/errors.js';
import { EXIT } from './common/exit-codes.js';
import type { FrontProcess } from './frontend/primary/primary.js';

export { EXIT };

const USAGE: Record<Command, string> = {
  front: `Usage: tsgi front --listen HOST:PORT|unix:PATH --backend unix:PATH|tcp:HOST:PORT [--backend …] [options]

The HTTP front: takes HTTP/1.1 requests and carries them to backends over tsgi frames, or
over the uwsgi protocol to a uWSGI server (a backend address with a uwsgi: prefix).

Examples:
  tsgi front --listen 127.0.0.1:8080 --backend unix:/run/app.sock
  tsgi front --listen unix:/run/front.sock --backend unix:/run/a.sock --backend tcp:10.0.0.2:9000
  tsgi front --listen unix:/run/front.sock --trust-proxy unix --backend uwsgi:unix:/run/uwsgi/app.sock`,
  serve: `Usage: tsgi serve [APP_MODULE] (--socket PATH | --listen HOST:PORT|unix:PATH | --uwsgi-socket PATH) [options]

Runs a gateway application: APP_MODULE is a JS module whose default export (or export
'application') is application(environ, startResponse), or whose default export has a
fetch(request) method. APP_MODULE:name picks another export. A --config file may name it
instead ("app": "app.js"). --check loads the app and checks the options without binding.

With --uwsgi-socket (or --uwsgi-listen) it also speaks the uwsgi protocol, for nginx's
uwsgi_pass.

Examples:
  tsgi serve examples/hello.js --socket /tmp/hello.sock
  tsgi serve app.js --listen 127.0.0.1:9000
  tsgi serve app.js --uwsgi-socket /run/tsgi/app.uwsgi.sock -w 4
  tsgi serve -c /etc/tsgi/app.json --check`,
  run: `Usage: tsgi run APP_MODULE [--port 8000] [--reload]

The development server: serves the app over HTTP on 127.0.0.1:PORT from one process (no front,
no workers), as Python's wsgiref.simple_server does. --reload restarts it when a file under
the app's directory changes. Not for production: use tsgi front and tsgi serve there.

Examples:
  tsgi run app.js
  tsgi run app.js --port 3000 --reload`,
  ctl: `Usage: tsgi ctl --control PATH (list | add ADDR | drain ADDR | remove ADDR | scale +N|-N|N | reload)

Talks to a running front's control socket (tsgi front --control PATH):
  list          each backend with its state, connections, in-flight requests and totals
  add ADDR      route to a backend (unix:PATH or tcp:HOST:PORT) from now on
  drain ADDR    send it no new requests; let in-flight ones finish; then forget it. The address
                stays drained (its own announcements do not bring it back) until add ADDR,
                or until its backend restarts
  remove ADDR   forget it now (requests in flight on it fail with 502)
or to a backend's own control socket (tsgi serve --control PATH):
  list          its workers: pid, generation, state, connections, in-flight requests, totals
  scale +N|-N|N add or remove workers (as SIGTTIN / SIGTTOU do), or have N
  reload        a rolling reload of the workers (as SIGHUP does)

Examples:
  tsgi ctl --control /run/tsgi/front.ctl list
  tsgi ctl --control /run/tsgi/front.ctl add unix:/run/tsgi/app-v2.sock
  tsgi ctl --control /run/tsgi/app.ctl scale +1`,
  demo: `Usage: tsgi demo [--port 8080]

Starts a front on 127.0.0.1:PORT and a backend running the demo app (examples/demo.js):
/ answers the seed's hello page, /environ dumps the environ. Ctrl-C stops both.

Examples:
  tsgi demo
  tsgi demo --port 9000 --log-level debug`,
};

const TOP = `Usage: tsgi <command> [options]

Commands:
  front    HTTP front: listens for HTTP/1.1 and forwards to backends over tsgi frames
  serve    backend: runs a gateway application on a tsgi socket
  run      development server: one process serving an app over HTTP, --reload on changes
  ctl      lists, adds, drains and removes a front's backends; lists, scales and reloads a backend's workers
  demo     a front and a backend with the demo app, on 127.0.0.1:8080

Run 'tsgi <command> --help' for the options of each.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * SIGTERM, SIGQUIT (as nginx's QUIT) and a first SIGINT: graceful stop. A second SIGINT:
 * immediate. SIGUSR1: `reopen` (the log files; without one, a line says so: and Node's
 * inspector does not open). SIGUSR2: ignored, with a line. Every signal is documented in the
 * README ("Signals"); none has Node's default effect.
 */
function onSignals(stop: (graceful: boolean) => Promise<void>, reopen: () => void, log = createLogger('cli')): void {
  let stopping = false;
  const graceful = (signal: string) => {
    if (stopping) {
      if (signal === 'SIGINT') process.exit(EXIT.FAILURE);
      return;
    }
    stopping = true;
    log.info(`${signal}: stopping gracefully${signal === 'SIGINT' ? ' (Ctrl-C again to stop now)' : ''}`);
    stop(true).then(() => process.exit(EXIT.OK), (err: unknown) => {
      log.error('stop failed', err);
      process.exit(err instanceof TsgiError && err.code === 'TSGI_ERR_APP_LOAD' ? EXIT.APP_LOAD : EXIT.FAILURE);
    });
  };
  process.on('SIGTERM', () => graceful('SIGTERM'));
  process.on('SIGQUIT', () => graceful('SIGQUIT'));
  process.on('SIGINT', () => graceful('SIGINT'));
  // logrotate: `postrotate kill -USR1 <pid>` (as for nginx). A listener also keeps Node from
  // opening its inspector on 127.0.0.1:9229, SIGUSR1's default.
  process.on('SIGUSR1', reopen);
  process.on('SIGUSR2', () => log.info('SIGUSR2: ignored (tsgi gives it no meaning; see "Signals" in the README)'));
}

async function runFront(values: Options<'front'>, listen: Address, backendsFromFile: boolean): Promise<void> {
  if (values.check) {
    checkSocketPath('--listen', listen);
    checkSocketPath('--control', values.control);
    checkSocketPath('--admin', values.admin);
    checkStatic(values.static);
    checkLogFile('--access-log', values.accessLog);
    if ((values.tlsCert === undefined) !== (values.tlsKey === undefined)) {
      throw new ConfigError(values.tlsCert === undefined ? '--tls-key needs --tls-cert' : '--tls-cert needs --tls-key');
    }
    if (values.tlsCert !== undefined) {
      // The pair is read and matched as at start (a TLS context, no listener).
      const { TlsEdge } = await import('./frontend/http/tls.js');
      new TlsEdge({ certFile: values.tlsCert, keyFile: values.tlsKey!, minVersion: values.tlsMinVersion as 'TLSv1.2' | 'TLSv1.3',
        http2: values.http2 === 'on', handshakeTimeoutMs: 0, log: createLogger('front') }, () => {});
    }
    process.stdout.write(`tsgi front: the options are valid${values.config ? ` (${values.config})` : ''}; `
      + `would listen on ${formatAddress(listen)}, ${values.backends.length} backend(s) configured\n`);
    return;
  }
  // The front's heap is small and its objects die young, but V8's incremental marking, once
  // its first small old-space limit is reached, kept promoting each scavenge's survivors:
  // ~2.6 KB of old-space garbage per request and a mark-compact every ~300 ms. Without it the
  // front measured 18 µs of CPU per hello request instead of 27 (see README, Performance).
  // Only the front's own process: an embedding app, or tsgi serve with its apps' heaps, keeps
  // V8's default.
  setFlagsFromString('--no-incremental-marking');
  // Under load V8 doubles the young generation from 1 MiB semi-spaces to its 16 MiB maximum, one
  // step per few scavenges; while it is small, scavenges come every few hundred requests and each
  // promotes the requests then waiting on their backends to old space, garbage that stays until a
  // mark-compact (1000 clients: ~1 KB promoted per request, front RSS +45–60 MiB over a 5 s run).
  // Grown in one step, those requests die young (~0.15 KB per request, +7–16 MiB).
  setFlagsFromString('--semi-space-growth-factor=16');
  let front: FrontProcess;
  if (values.processes > 1) {
    // A primary (listener, control socket, admin server, signals) and N front worker processes.
    const { startProcesses } = await import('./frontend/primary/primary.js');
    front = await startProcesses({ ...values, listen });
  } else {
    const { start } = await import('./frontend/index.js');
    front = await start({ ...values, listen });
  }
  const log = createLogger('front');
  void notifyReady(`serving on ${formatAddress(listen)}`, log);
  onSignals((graceful) => front.stop({ graceful }), () => {
    front.reopenLogs();
    log.info(values.accessLog !== undefined ? `SIGUSR1: reopened the access log ${values.accessLog}` : 'SIGUSR1: no log file to reopen (no --access-log; the log goes to stderr)');
  });
  process.on('SIGHUP', () => {
    const path = values.config;
    if (values.tlsCert !== undefined || values.backendTlsCert !== undefined) {
      front.reloadTls();
      if (path === undefined) return; // the backends come from the command line: nothing else to reload
    }
    if (path === undefined || !backendsFromFile) {
      log.warn(`SIGHUP: the backends come from ${path === undefined ? 'the command line (no --config file)' : '--backend or TSGI_BACKENDS, which win over the file'}; nothing to reload`);
      return;
    }
    try {
      const file = configValues('front', readConfigFile(path), path);
      const backends = (file.backends as Address[] | undefined) ?? [];
      front.setBackends(backends);
      log.info(`SIGHUP: backends reloaded from ${path}: ${backends.length} configured`);
    } catch (err) {
      log.error(`SIGHUP: ${(err as Error).message}; keeping the current backends`);
    }
  });
}

async function runServe(values: Options<'serve'>, positionals: string[]): Promise<void> {
  const [given, ...extra] = positionals;
  const app = given ?? values.appModule;
  if (app === undefined) throw new ConfigError('tsgi serve needs APP_MODULE, e.g. tsgi serve examples/hello.js --socket /tmp/app.sock (or "app" in the --config file)');
  if (extra.length > 0) throw new ConfigError(`unexpected arguments: ${extra.join(' ')}`);
  if (values.check) {
    if (values.socket === undefined && values.listen === undefined && values.uwsgiSocket === undefined && values.uwsgiListen === undefined) {
      throw new ConfigError('tsgi serve needs --socket PATH, --listen ADDR, --uwsgi-socket PATH or --uwsgi-listen ADDR');
    }
    checkSocketPath('--socket', values.socket);
    checkSocketPath('--listen', values.listen);
    checkSocketPath('--uwsgi-socket', values.uwsgiSocket);
    checkSocketPath('--uwsgi-listen', values.uwsgiListen);
    checkSocketPath('--admin', values.admin);
    const { loadApplication } = await import('./backend/load-app.js');
    await loadApplication(app);
    process.stdout.write(`tsgi serve: the options are valid${values.config ? ` (${values.config})` : ''} and ${app} loads\n`);
    // The app may have started timers or connections while loading: the check ends here.
    process.exit(EXIT.OK);
  }
  const { start } = await import('./backend/index.js');
  const backend = await start({
    ...values, app,
    onFatal: (err) => {
      createLogger('serve').error(err.message);
      process.exit(EXIT.APP_LOAD);
    },
  });
  const log = createLogger('serve');
  void notifyReady(`serving ${app} on ${formatAddress(backend.address)}`, log);
  onSignals((graceful) => backend.stop({ graceful }),
    () => log.info('SIGUSR1: no log file to reopen (tsgi serve logs to stderr only)'));
  process.on('SIGHUP', () => backend.reload());
  process.on('SIGTTIN', () => backend.scale(1));
  process.on('SIGTTOU', () => backend.scale(-1));
}

async function runRun(values: Options<'run'>, positionals: string[]): Promise<void> {
  const [given, ...extra] = positionals;
  const app = given ?? values.appModule;
  if (app === undefined) throw new ConfigError('tsgi run needs APP_MODULE, e.g. tsgi run app.js');
  if (extra.length > 0) throw new ConfigError(`unexpected arguments: ${extra.join(' ')}`);
  const log = createLogger('run');
  log.warn('a development server: one process, no limits or timeouts worth the name; use tsgi front and tsgi serve in production');
  const { serveHere, serveReloading, urlOf } = await import('./backend/run.js');
  const config = { app, listen: values.listen ?? { kind: 'tcp' as const, host: '127.0.0.1', port: values.port },
    reload: values.reload, scriptName: '', logLevel: values.logLevel };
  const server = await (values.reload ? serveReloading(config, log) : serveHere(config, log));
  log.info(`serving ${app} on ${urlOf(server.address)}${values.reload ? ' (restarted on changes)' : ''}`);
  onSignals(() => server.stop(), () => log.info('SIGUSR1: no log file to reopen (tsgi run logs to stderr only)'), log);
}

async function runDemo(values: Options<'demo'>): Promise<void> {
  const log = createLogger('demo');
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-demo-'));
  const socket = join(dir, 'backend.sock');
  const cli = fileURLToPath(import.meta.url);
  const app = fileURLToPath(new URL('../../examples/demo.js', import.meta.url));
  const level = values.logLevel;
  const children: ChildProcess[] = [];
  const run = (args: string[]) => {
    const child = spawn(process.execPath, [cli, ...args, '--log-level', level], { stdio: ['ignore', 'inherit', 'inherit'] });
    children.push(child);
    child.on('exit', (code, signal) => {
      if (!stopping) {
        log.error(`${args[0]} exited (${signal ?? code}); stopping the demo`);
        shutdown(EXIT.FAILURE);
      }
    });
    return child;
  };
  let stopping = false;
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    // Front first, then the backend: the front never sees its backend vanish while it serves.
    const stopNext = () => {
      const child = children.pop();
      if (child === undefined) {
        rmSync(dir, { recursive: true, force: true });
        process.exit(code);
      }
      if (child.exitCode !== null || child.signalCode !== null) return stopNext();
      child.once('exit', stopNext);
      child.kill('SIGTERM');
    };
    stopNext();
  };
  run(['serve', app, '--socket', socket]);
  run(['front', '--listen', `127.0.0.1:${values.port}`, '--backend', `unix:${socket}`]);
  const url = `http://127.0.0.1:${values.port}/`;
  process.stdout.write(`\ntsgi demo: open ${url} (hello) and ${url}environ (the environ)\nPress Ctrl-C to stop.\n\n`);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) process.on(signal, () => shutdown(EXIT.OK));
  for (const signal of ['SIGUSR1', 'SIGUSR2'] as const) process.on(signal, () => {});
}

/** Prints rows as columns padded to their widest cell. */
function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const row of table) process.stdout.write(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}

async function runCtl(values: Options<'ctl'>, positionals: string[]): Promise<void> {
  const path = values.control;
  if (path === undefined) throw new ConfigError('tsgi ctl needs --control PATH (a front\'s or a backend\'s --control socket)');
  const [op, arg, ...extra] = positionals;
  const ops: ControlOp[] = ['list', 'add', 'drain', 'remove', 'scale', 'reload'];
  if (op === undefined || !ops.includes(op as ControlOp)) throw new ConfigError(`tsgi ctl: expected one of ${ops.join(', ')}`);
  const bare = op === 'list' || op === 'reload';
  if (!bare && arg === undefined) {
    throw new ConfigError(op === 'scale' ? 'tsgi ctl scale needs +N, -N or N (workers to add, remove, or have)'
      : `tsgi ctl ${op} needs a backend address (unix:PATH or tcp:HOST:PORT)`);
  }
  if (extra.length > 0 || (bare && arg !== undefined)) throw new ConfigError(`unexpected arguments: ${positionals.slice(bare ? 1 : 2).join(' ')}`);
  const request: ControlRequest = { op: op as ControlOp };
  if (op === 'scale') {
    const m = /^([+-]?)(\d{1,3})$/.exec(arg!);
    if (m === null) throw new ConfigError(`tsgi ctl scale: expected +N, -N or N, got ${JSON.stringify(arg)}`);
    if (m[1] === '') request.workers = Number(m[2]);
    else request.delta = Number(`${m[1]}${m[2]}`);
  } else if (!bare) {
    request.address = arg;
  }
  let answer;
  try {
    answer = await controlRequest(path, request);
  } catch (err) {
    // One line: what failed, why, and which path (no stack: the peer, not ctl, is what is wrong).
    process.stderr.write(`tsgi ctl: ${(err as Error).message}\n`);
    process.exitCode = EXIT.FAILURE;
    return;
  }
  if (!answer.ok) {
    process.stderr.write(`tsgi ctl: ${answer.error}\n`);
    process.exitCode = EXIT.FAILURE;
    return;
  }
  if (answer.workers !== undefined) {
    printTable([['WORKER', 'PID', 'GENERATION', 'STATE', 'CONNS', 'IN-FLIGHT', 'REQUESTS'],
      ...answer.workers.map((w) => [String(w.id), String(w.pid ?? '-'), String(w.generation), w.state, String(w.connections),
        String(w.inFlight), String(w.requests)])]);
    process.stdout.write(`generation ${answer.generation}; target ${answer.target} worker(s)\n`);
    return;
  }
  const rows = answer.backends ?? [];
  printTable([['BACKEND', 'STATE', 'SOURCE', 'CONNS', 'IN-FLIGHT', 'REQUESTS', 'FAILURES'],
    ...rows.map((b) => [b.address, b.state, b.source, String(b.connections), String(b.inFlight), String(b.requests), String(b.failures)])]);
  if (op === 'list' && answer.queued) process.stdout.write(`queued requests: ${answer.queued}\n`);
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(TOP + '\n');
    return;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(version() + '\n');
    return;
  }
  if (!(command in USAGE)) {
    throw new ConfigError(`unknown command '${command}'. ${TOP}`);
  }
  const cmd = command as Command;
  setLogTag(cmd);
  // The command line is parsed once, for the command's own typed options; --help prints them.
  const parse = <C extends Command>(c: C): ParsedOptions<C> | null => {
    const parsed = parseOptions(c, rest);
    if (!parsed.help) return parsed;
    process.stdout.write(`${USAGE[c]}\n\nOptions:\n${optionsHelp(c)}\n`);
    return null;
  };
  if (cmd === 'front') {
    const parsed = parse('front');
    if (parsed === null) return;
    current = parsed.values;
    const { values, origin } = parsed;
    setLogLevel(values.logLevel);
    if (values.listen === undefined) throw new ConfigError('tsgi front needs --listen HOST:PORT or unix:PATH');
    if (values.backends.length === 0 && values.control === undefined && values.controlListen === undefined) {
      throw new ConfigError('tsgi front needs at least one --backend (or a --control socket for backends to register on)');
    }
    return runFront(values, values.listen, origin.backends === 'file');
  }
  if (cmd === 'serve') {
    const parsed = parse('serve');
    if (parsed === null) return;
    current = parsed.values;
    setLogLevel(parsed.values.logLevel);
    return runServe(parsed.values, parsed.positionals);
  }
  if (cmd === 'run') {
    const parsed = parse('run');
    if (parsed === null) return;
    current = parsed.values;
    setLogLevel(parsed.values.logLevel);
    return runRun(parsed.values, parsed.positionals);
  }
  if (cmd === 'ctl') {
    const parsed = parse('ctl');
    return parsed === null ? undefined : runCtl(parsed.values, parsed.positionals);
  }
  const parsed = parse('demo');
  if (parsed === null) return;
  setLogLevel(parsed.values.logLevel);
  return runDemo(parsed.values);
}

/** The options being started with, to name the one a failure comes from. */
let current: Record<string, unknown> = {};

/** The option that gave an address that could not be bound (--listen, --socket, --admin…). */
function flagOf(address: Address): string {
  const text = formatAddress(address);
  const owners: [string, string][] = [['listen', '--listen'], ['socket', '--socket'], ['uwsgiSocket', '--uwsgi-socket'],
    ['uwsgiListen', '--uwsgi-listen'], ['admin', '--admin'], ['control', '--control'], ['port', '--port']];
  for (const [key, flag] of owners) {
    const v = current[key];
    if (v === undefined) continue;
    if (typeof v === 'string' ? address.kind === 'unix' && address.path === v
      : typeof v === 'number' ? address.kind === 'tcp' && address.port === v : formatAddress(v as Address) === text) return flag;
  }
  return formatAddress(address);
}

// A start-up failure is one line: the option and the cause (the stack only at --log-level debug).
main(process.argv.slice(2)).catch((err: unknown) => {
  const log = createLogger('cli');
  const detail = log.enabled('debug') ? (err as Error).cause ?? err : undefined;
  if (err instanceof ListenError) {
    log.error(`${flagOf(err.address)}: ${err.message}`, detail);
    process.exit(EXIT.USAGE);
  }
  if (err instanceof ConfigError) {
    log.error(err.message, detail);
    process.exit(EXIT.USAGE);
  }
  if (err instanceof TsgiError && err.code === 'TSGI_ERR_APP_LOAD') {
    log.error(`APP_MODULE: ${err.message}`, detail);
    process.exit(EXIT.APP_LOAD);
  }
  log.error(`failed to start: ${(err as Error)?.message ?? String(err)}`, log.enabled('debug') ? err : undefined);
  process.exit(EXIT.FAILURE);
});
