// `tsgi run`: the development server, as Python's wsgiref.simple_server.make_server. The app is
// served over HTTP from one process (node:http and toNodeHandler; no front, no tsgi frames).
// With reload, that process is a child restarted whenever a file under the app's directory
// changes (as gunicorn --reload and nodemon do). Never meant for production.
import { type ChildProcess, fork } from 'node:child_process';
import { type FSWatcher, watch } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress } from '../common/address.js';
import { closeListener, listenOn } from '../common/listen.js';
import type { Logger, LogLevel } from '../common/log.js';
import { ConfigError } from '../protocol/errors.js';
import { loadApplication } from './load-app.js';
import { toNodeHandler } from './portable.js';

export interface RunConfig {
  /** APP_MODULE, as for tsgi serve (path, or path:export). */
  app: string;
  listen: Address;
  reload: boolean;
  scriptName: string;
  logLevel: LogLevel;
}

export interface DevServer {
  /** The address served (port 0 resolved). */
  readonly address: Address;
  stop(): Promise<void>;
}

/** Loads the app and serves it on node:http in this process. */
export async function serveHere(config: RunConfig, log: Logger): Promise<DevServer> {
  const app = await loadApplication(config.app);
  const server: Server = createServer(toNodeHandler(app, { scriptName: config.scriptName, log }));
  const address = await listenOn(server, config.listen, 0o600);
  return {
    address,
    async stop() {
      const closed = closeListener(server);
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 1000).unref();
      await closed;
    },
  };
}

/** What a child of `tsgi run --reload` says once it has started, or failed to. */
export type RunChildMessage =
  | { kind: 'ready'; address: Address }
  | { kind: 'failed'; config: boolean; message: string };

/** Files whose changes never restart the app: dependencies, VCS data, editors' swap files. */
function ignored(file: string): boolean {
  return file.split(sep).some((part) => part === 'node_modules' || part.startsWith('.'))
    || /(~|\.swp|\.swx|\.tmp)$/.test(file);
}

/** The module path of APP_MODULE (`app.js:name` → app.js), to watch its directory. */
function moduleDir(spec: string): string {
  const m = /^(.*):([A-Za-z_$][\w$]*)$/.exec(spec);
  return dirname(resolve(m !== null ? m[1]! : spec));
}

/**
 * Serves the app from a child process and restarts it when a file under the app's directory
 * changes. A child that fails to load the app is reported and the next change tries again;
 * a first start that cannot bind is an error (nothing would ever serve).
 */
export async function serveReloading(config: RunConfig, log: Logger): Promise<DevServer> {
  const dir = moduleDir(config.app);
  const entry = fileURLToPath(new URL('./run-child.js', import.meta.url));
  let listen = config.listen;
  let child: ChildProcess | null = null;
  let stopping = false;

  const start = () => new Promise<Address | null>((done, fail) => {
    const c = fork(entry, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    child = c;
    let ready = false;
    c.once('message', (msg: RunChildMessage) => {
      if (msg.kind === 'ready') {
        ready = true;
        done(msg.address);
        return;
      }
      if (msg.config) fail(new ConfigError(msg.message));
      else {
        log.error(`${msg.message}; waiting for a change under ${dir}`);
        done(null);
      }
    });
    c.once('exit', (code, signal) => {
      const current = child === c;
      if (current) child = null;
      done(null);
      if (!current) return;
      if (ready && child === null && !stopping) log.warn(`the app exited (${signal ?? code}); waiting for a change under ${dir}`);
    });
    c.send({ ...config, listen });
  });

  const stopChild = async () => {
    const c = child;
    child = null; // its exit is ours, not news
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const first = await start();
  if (first !== null && listen.kind === 'tcp') listen = { ...listen, port: first.kind === 'tcp' ? first.port : listen.port };
  const address = first ?? listen;

  // Restart after the burst of events one save makes (an editor writes, renames, chmods).
  let timer: NodeJS.Timeout | null = null;
  let restarting: Promise<void> = Promise.resolve();
  const changed = (file: string) => {
    if (stopping || ignored(file)) return;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      restarting = restarting.then(async () => {
        if (stopping) return;
        log.info(`${file} changed; restarting the app`);
        await stopChild();
        if (stopping) return;
        await start().catch((err: Error) => log.error(`${err.message}; waiting for a change under ${dir}`));
      });
    }, 100);
  };
  let watcher: FSWatcher;
  try {
    watcher = watch(dir, { recursive: true }, (_event, file) => changed(file === null ? dir : String(file)));
  } catch (err) {
    await stopChild();
    throw new ConfigError(`--reload: cannot watch ${dir}: ${(err as Error).message}`);
  }
  log.info(`--reload: watching ${dir} (node_modules and dotfiles left out)`);
  return {
    address,
    async stop() {
      stopping = true;
      watcher.close();
      if (timer !== null) clearTimeout(timer);
      await restarting;
      await stopChild();
    },
  };
}

/** The address to print: a URL for TCP. */
export function urlOf(address: Address): string {
  return address.kind === 'tcp' ? `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}/`
    : formatAddress(address);
}
