// The processes a benchmark starts: each one leads its own process group, and every group is
// ended by its leader's PID — on stop(), on SIGINT/SIGTERM, on a harness error and at exit —
// so nothing (tsgi workers, nginx or uWSGI workers, load generators) outlives the run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** The repository root (this file runs from dist/bench). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli.js');
/** The benchmark's backend apps, as written (plain JS and Python, not compiled). */
export const APPS = join(ROOT, 'bench/apps');

const TAIL_LIMIT = 256 * 1024;
const STOP_GRACE_MS = 5_000;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  /** Whether the leader has exited. */
  readonly done: boolean;
  /** stdout and stderr so far (the last 256 KiB). */
  output(): string;
  /** Resolves once the output matches `pattern`; rejects if the process exits first or on timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Signals the leader; resolves when it exits (SIGKILL to the whole group after 5 s). */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
}

const live = new Map<number, Proc>();

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

/** The environment without the variables tsgi reads, so only our flags configure it. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('TSGI_') && key !== 'SCRIPT_NAME' && key !== 'PORT') env[key] = value;
  }
  return { ...env, ...extra };
}

/** Starts `command args` as the leader of a new process group. */
export function start(name: string, command: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(command, args, { cwd: ROOT, env: cleanEnv(env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let spawnError: Error | null = null;
  const listeners = new Set<() => void>();
  const append = (s: string) => {
    out += s;
    if (out.length > TAIL_LIMIT) out = out.slice(-TAIL_LIMIT / 2);
    for (const l of listeners) l();
  };
  child.stdout!.setEncoding('utf8').on('data', append);
  child.stderr!.setEncoding('utf8').on('data', append);
  let exitInfo: ExitInfo | null = null;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('error', (err) => {
      spawnError = err;
      exitInfo = { code: -1, signal: null };
      resolve(exitInfo);
      for (const l of listeners) l();
    });
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      // Whatever the leader left behind in its group goes with it.
      if (child.pid !== undefined) {
        killGroup(child.pid, 'SIGKILL');
        live.delete(child.pid);
      }
      resolve(exitInfo);
      for (const l of listeners) l();
    });
  });
  const pid = child.pid ?? -1;
  let ending: Promise<ExitInfo> | null = null;
  const proc: Proc = {
    name, pid, child, exited,
    get done() { return exitInfo !== null; },
    output: () => (spawnError ? `spawn error: ${spawnError.message}\n` : '') + out,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const finish = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        const check = () => {
          const m = out.match(pattern);
          if (m !== null) {
            finish();
            resolve(m);
          } else if (exitInfo !== null) {
            finish();
            reject(new Error(`${name} (pid ${pid}) exited (${exitInfo.signal ?? exitInfo.code}) before printing ${pattern}:\n${tail(proc)}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`${name} (pid ${pid}) did not print ${pattern} within ${timeoutMs} ms:\n${tail(proc)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    stop(signal = 'SIGTERM') {
      ending ??= (async () => {
        if (exitInfo === null && pid > 0) {
          // The polite signal goes to the leader alone (a supervisor, nginx's or uWSGI's master
          // stops its own workers); the group gets SIGKILL if the leader is not gone in time.
          try {
            process.kill(pid, signal);
          } catch {
            // exited meanwhile
          }
          const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(timer);
        }
        return exited;
      })();
      return ending;
    },
  };
  if (pid > 0) live.set(pid, proc);
  return proc;
}

/** The last lines a process printed, for error messages. */
export function tail(proc: Proc, lines = 12): string {
  return proc.output().trimEnd().split('\n').slice(-lines).map((l) => `    ${l}`).join('\n');
}

/** Runs a command to completion (tracked like the others) and returns its output. */
export async function run(name: string, command: string, args: string[], env: Record<string, string> = {}): Promise<{ info: ExitInfo; output: string }> {
  const proc = start(name, command, args, env);
  const info = await proc.exited;
  return { info, output: proc.output() };
}

/** Stops every process still running, all at once, each by its own group. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live.values()].map((p) => p.stop()));
}

/** Ends every group on SIGINT/SIGTERM and at exit; the temp directory goes too. */
export function installCleanup(dir: () => string | null): void {
  const removeDir = () => {
    const d = dir();
    if (d !== null) rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', () => {
    for (const pid of live.keys()) killGroup(pid, 'SIGKILL');
    removeDir();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping everything the benchmark started\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A port that was free a moment ago (bound to 0 and closed at once). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export type Endpoint = { path: string } | { port: number };

/** Resolves once `endpoint` accepts a connection; rejects if `proc` exits first or on timeout. */
export async function waitForListen(endpoint: Endpoint, proc: Proc, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const where = 'path' in endpoint ? endpoint.path : `127.0.0.1:${endpoint.port}`;
  for (;;) {
    if (proc.done) throw new Error(`${proc.name} exited (${(await proc.exited).code}) before listening on ${where}:\n${tail(proc)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = 'path' in endpoint ? connect(endpoint.path) : connect(endpoint.port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} is not listening on ${where} after ${timeoutMs} ms:\n${tail(proc)}`);
    await sleep(25);
  }
}

/** VmRSS of a process, in MiB (null if it is gone). */
export function rssMiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]) / 1024;
  } catch {
    return null;
  }
}

/** A process and all its descendants (workers of a supervisor, of nginx, of uWSGI). */
export function withDescendants(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childPids(out[i]!));
  return out;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time (user + system) a process has used so far, in µs; null once it is gone. */
export function cpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state is field 3, utime 14 and stime 15 (1-based, as in proc(5)).
    return (Number(fields[11]) + Number(fields[12])) * 1e6 / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** The PIDs of a process's direct children (from /proc). */
export function childPids(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text === '' ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** The path of `name` on PATH, or null. */
export function which(name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path !== '' && existsSync(path) ? path : null;
}

/** Whether a process is still alive (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
