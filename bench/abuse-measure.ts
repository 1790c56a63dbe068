// What bench:abuse measures while an attack runs: the RSS and open descriptors of the front and
// of the backend (sampled from /proc every 100 ms, with a ceiling past which a process is
// killed), the log lines they print, and a well-behaved probe client's requests.
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { rssMiB, type Proc } from './proc.js';

/** A served process whose RSS passes this is killed (and reported as such). */
export const KILL_MIB = 3 * 1024;
const SAMPLE_MS = 100;

/** The processes and addresses one attack runs against (started afresh for each). */
export interface World {
  dir: string;
  /** The front's HTTP port on 127.0.0.1. */
  port: number;
  front: Proc;
  backend: Proc;
  /** `tsgi serve`'s tsgi socket. */
  backendSocket: string;
}

export interface AttackSpec {
  name: string;
  /** What the attacker does, one line. */
  what: string;
  frontArgs?: string[];
  /** Whether the real backend is one of the front's backends (default true). */
  realBackend?: boolean;
  /** The probe opens a new connection for every request (a lockout shows only there). */
  probeFresh?: boolean;
  /** Before the front starts: fake backends it is to connect to (their --backend addresses). */
  peers?(dir: string): Promise<string[]>;
  /** Starts the attack; the function returned ends it (closes every socket) and says what it saw. */
  start(world: World): Promise<() => Promise<string>>;
}

/** Open descriptors of a process (null once it is gone). */
export function fdCount(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

export interface Figures { rss: number | null; fds: number | null }

export function figures(pid: number): Figures {
  return { rss: rssMiB(pid), fds: fdCount(pid) };
}

/** The peak RSS and descriptors of some processes, sampled until stopped; kills one past KILL_MIB. */
export class Sampler {
  readonly peak = new Map<number, Figures>();
  /** RSS (MiB) at which a process was killed. */
  readonly killed = new Map<number, number>();
  #timer: NodeJS.Timeout;

  constructor(pids: number[]) {
    for (const pid of pids) this.peak.set(pid, figures(pid));
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
  }

  sample(): void {
    for (const [pid, peak] of this.peak) {
      const now = figures(pid);
      if (now.rss !== null) peak.rss = Math.max(peak.rss ?? 0, now.rss);
      if (now.fds !== null) peak.fds = Math.max(peak.fds ?? 0, now.fds);
      if (now.rss !== null && now.rss > KILL_MIB && !this.killed.has(pid)) {
        this.killed.set(pid, now.rss);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Counts the lines a process prints from now on. */
export class LineCounter {
  lines = 0;
  bytes = 0;
  /** The first line printed (without its timestamp), cut at 200 characters. */
  first = '';
  #off: () => void;

  constructor(proc: Proc) {
    const count = (chunk: string) => {
      this.bytes += chunk.length;
      for (let i = chunk.indexOf('\n'); i !== -1; i = chunk.indexOf('\n', i + 1)) this.lines++;
      if (this.first === '' && chunk.trim() !== '') {
        this.first = chunk.trimStart().split('\n', 1)[0]!.replace(/^\S+Z /, '').slice(0, 200);
      }
    };
    proc.child.stdout!.on('data', count);
    proc.child.stderr!.on('data', count);
    this.#off = () => {
      proc.child.stdout!.off('data', count);
      proc.child.stderr!.off('data', count);
    };
  }

  stop(): void {
    this.#off();
  }
}

/** A client that asks GET / (the app answers "ok") about every 100 ms, one request at a time. */
export class Probe {
  attempts = 0;
  ok = 0;
  readonly latencies: number[] = [];
  readonly failures = new Map<string, number>();
  #stopped = false;
  #done: Promise<void>;

  constructor(port: number, fresh: boolean, everyMs = 100, timeoutMs = 2_000) {
    this.#done = this.#loop(port, fresh, everyMs, timeoutMs);
  }

  async #loop(port: number, fresh: boolean, everyMs: number, timeoutMs: number): Promise<void> {
    const client = new Client(`http://127.0.0.1:${port}`, {
      pipelining: 1, connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
    });
    try {
      while (!this.#stopped) {
        const t0 = performance.now();
        this.attempts++;
        try {
          const res = await client.request({ path: '/', method: 'GET', reset: fresh, signal: AbortSignal.timeout(timeoutMs + 500) });
          const body = await res.body.text();
          if (res.statusCode === 200 && body === 'ok\n') {
            this.ok++;
            this.latencies.push(performance.now() - t0);
          } else {
            this.#fail(`${res.statusCode}`);
          }
        } catch (err) {
          // undici's errors have a string code; an abort's DOMException a numeric one.
          const e = err as { code?: unknown; name?: string };
          this.#fail(typeof e.code === 'string' ? e.code : e.name ?? 'error');
        }
        const wait = t0 + everyMs - performance.now();
        if (wait > 0) await sleep(wait);
      }
    } finally {
      await client.destroy().catch(() => {});
    }
  }

  #fail(why: string): void {
    this.failures.set(why, (this.failures.get(why) ?? 0) + 1);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }

  /** E.g. "probe 38/40 ok, p99 12 ms (2 UND_ERR_HEADERS_TIMEOUT)". */
  summary(): string {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const p99 = sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
    const why = [...this.failures].map(([k, n]) => `${n} ${k}`).join(', ');
    return `probe ${this.ok}/${this.attempts} ok${p99 === null ? '' : `, p99 ${p99.toFixed(0)} ms`}${why === '' ? '' : ` (${why})`}`;
  }
}
