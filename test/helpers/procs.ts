// Starts the real `tsgi serve` and `tsgi front` processes for end-to-end tests, learns their
// addresses from their start-up log lines, collects their stderr, and makes sure none outlives
// the test run (each is ended by its PID; a process 'exit' handler kills any left behind).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/test/helpers). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli.js');
/** The fixture apps, as written (plain ESM JS). */
export const FIXTURES = join(ROOT, 'test/fixtures');
export const fixture = (name: string): string => join(FIXTURES, name);

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  readonly pid: number;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Resolves once stderr matches `pattern` (rejects after `timeoutMs`, or if the process exits first). */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /**
   * Sends `signal` and waits for the exit (SIGKILL if it has not exited within 10 s), then
   * removes the temp directory the helper made for it. Safe to call again, and after kill9().
   */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL, and wait for the exit; unlike stop(), leaves the socket's directory in place. */
  kill9(): Promise<ExitInfo>;
  readonly exited: Promise<ExitInfo>;
}

export interface BackendProc extends Proc {
  readonly socket: string;
}

export interface FrontProc extends Proc {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
}

const live = new Map<number, ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** The environment without the variables tsgi reads (TSGI_*, SCRIPT_NAME, PORT): flags only. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('TSGI_') && key !== 'SCRIPT_NAME' && key !== 'PORT') env[key] = value;
  }
  return env;
}

/** A fresh temp directory for sockets; removed by the process helper that created it. */
export function tempDir(prefix = 'tsgi-e2e-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Spawns `node dist/src/cli.js ...args` and wraps it; `prefix` runs it under a command that execs
 * it in place (e.g. `prlimit --nofile=N:N`), so the PID is still the process's.
 */
export function spawnCli(args: string[], onStopped?: () => void, prefix: string[] = []): Proc & { child: ChildProcess } {
  installExitHook();
  const argv = [...prefix, process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  let err = '';
  child.once('error', (e) => { err += `spawn error: ${e.message}\n`; });
  if (child.pid === undefined) throw new Error(`could not spawn tsgi ${args.join(' ')}`);
  const pid = child.pid;
  live.set(pid, child);
  const listeners = new Set<() => void>();
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    err += s;
    for (const l of listeners) l();
  });
  child.stdout!.resume();
  let exitInfo: ExitInfo | null = null;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(pid);
      exitInfo = { code, signal };
      resolve(exitInfo);
      for (const l of listeners) l();
    });
  });

  const waitForStderr = (pattern: RegExp, timeoutMs = READY_TIMEOUT_MS) => new Promise<RegExpMatchArray>((resolve, reject) => {
    const check = () => {
      const m = err.match(pattern);
      if (m !== null) {
        done();
        resolve(m);
      } else if (exitInfo !== null) {
        done();
        reject(new Error(`tsgi ${args[0]} (pid ${pid}) exited (${exitInfo.signal ?? exitInfo.code}) `
          + `before its stderr matched ${pattern}; stderr:\n${err}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`tsgi ${args[0]} (pid ${pid}): stderr did not match ${pattern} within ${timeoutMs} ms; stderr:\n${err}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      listeners.delete(check);
    };
    listeners.add(check);
    check();
  });

  let ending: Promise<ExitInfo> | null = null;

  /** Sends `signal` once and waits for the exit, with SIGKILL as the fallback. */
  const end = (signal: NodeJS.Signals): Promise<ExitInfo> => {
    ending ??= (async () => {
      if (exitInfo === null) {
        try {
          process.kill(pid, signal);
        } catch {
          // exited meanwhile
        }
        const timer = setTimeout(() => {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // exited meanwhile
          }
        }, STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    })();
    return ending;
  };

  return {
    child,
    pid,
    exited,
    stderr: () => err,
    waitForStderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const info = await end(signal);
      onStopped?.();
      return info;
    },
    kill9: () => end('SIGKILL'),
  };
}

/** Waits for a ready line; on failure the process is ended before the error is passed on. */
async function ready(proc: Proc, pattern: RegExp): Promise<RegExpMatchArray> {
  try {
    return await proc.waitForStderr(pattern);
  } catch (err) {
    await proc.kill9();
    throw err;
  }
}

export interface BackendOptions {
  /** Serve on this socket path (e.g. the path of a backend that died) instead of a fresh one. */
  socket?: string;
}

/**
 * `tsgi serve APP --socket <path>`; resolves once it logs `serving on unix:PATH`. A socket
 * in a fresh temp directory unless `opts.socket` is given; the directory goes on stop().
 */
export async function startBackend(appPath: string, extraArgs: string[] = [], opts: BackendOptions = {}): Promise<BackendProc> {
  const dir = opts.socket === undefined ? tempDir('tsgi-e2e-serve-') : null;
  const socket = opts.socket ?? join(dir!, 'backend.sock');
  const proc = spawnCli(['serve', appPath, '--socket', socket, '--graceful-timeout', '5', ...extraArgs],
    () => { if (dir !== null) rmSync(dir, { recursive: true, force: true }); });
  const m = await ready(proc, /serving on unix:(\S+)/);
  return Object.assign(proc, { socket: m[1]! });
}

/**
 * `tsgi front --listen 127.0.0.1:0 --backend unix:SOCK ...`; resolves once it logs
 * `listening on http(s) 127.0.0.1:PORT`, with the port it bound.
 */
export async function startFront(backendSockets: string[], extraArgs: string[] = []): Promise<FrontProc> {
  const backends = backendSockets.flatMap((s) => ['--backend', s.includes(':') ? s : `unix:${s}`]);
  const proc = spawnCli(['front', '--listen', '127.0.0.1:0', ...backends, '--graceful-timeout', '5', ...extraArgs]);
  const m = await ready(proc, /listening on (https?) 127\.0\.0\.1:(\d+)/);
  const port = Number(m[2]);
  return Object.assign(proc, { port, url: `${m[1]}://127.0.0.1:${port}` });
}

export interface CliResult extends ExitInfo {
  stdout: string;
  stderr: string;
}

/** Runs `tsgi ...args` to completion (SIGKILL after `timeoutMs`) and collects its output. */
export function runCli(args: string[], timeoutMs = 10_000): Promise<CliResult> {
  installExitHook();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) {
      reject(new Error(`could not spawn tsgi ${args.join(' ')}`));
      return;
    }
    const pid = child.pid;
    live.set(pid, child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(pid);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * `tsgi serve APP --uwsgi-socket <path>` (nginx's side of the uwsgi protocol); resolves once it
 * logs `accepting uwsgi on unix:PATH`. `socket` is the uwsgi socket.
 */
export async function startUwsgiBackend(appPath: string, extraArgs: string[] = []): Promise<BackendProc> {
  const dir = tempDir('tsgi-e2e-uwsgi-');
  const socket = join(dir, 'backend.uwsgi.sock');
  const proc = spawnCli(['serve', appPath, '--uwsgi-socket', socket, '--graceful-timeout', '5', ...extraArgs],
    () => rmSync(dir, { recursive: true, force: true }));
  const m = await ready(proc, /accepting uwsgi on unix:(\S+)/);
  return Object.assign(proc, { socket: m[1]! });
}
