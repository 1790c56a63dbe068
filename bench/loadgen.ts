// The one load generator every configuration is driven with: wrk when it is on PATH (a Lua
// script prints its figures as JSON), else bench/undici-load.js in a child process of its own.
// Both report the same LoadResult.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, which } from './proc.js';

export interface LoadSpec {
  url: string;
  seconds: number;
  connections: number;
  method: 'GET' | 'POST';
  /** A file holding the POST body. */
  bodyFile?: string;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  /** Response bytes read (heads included). */
  bytesIn: number;
  p50Us: number;
  p99Us: number;
  /** Socket errors, timeouts and responses with status >= 400. */
  errors: number;
  errorDetail: string;
}

export interface LoadGenerator {
  readonly name: string;
  run(spec: LoadSpec): Promise<LoadResult>;
}

/** Prefix of the JSON line with a generator's figures (bench/undici-load.ts prints it too). */
const MARK = 'BENCHJSON ';
/** Per-request timeout: a 10 MiB echo under load can take seconds; wrk's default is 2 s. */
const TIMEOUT_S = 30;

function luaString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** A wrk script: the request (method, body from a file) and a done() that prints JSON. */
function wrkScript(spec: LoadSpec): string {
  const lines = [`wrk.method = ${luaString(spec.method)}`];
  if (spec.bodyFile !== undefined) {
    lines.push(`local f = assert(io.open(${luaString(spec.bodyFile)}, "rb"))`, 'wrk.body = f:read("*a")', 'f:close()',
      'wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format('${MARK}{"requests":%d,"us":%d,"bytes":%d,"p50":%d,"p99":%d,`
      + `"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',`,
    '    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),',
    '    e.connect, e.read, e.write, e.status, e.timeout))',
    'end',
  );
  return lines.join('\n') + '\n';
}

function parseMarked(output: string, what: string): Record<string, number> {
  const line = output.split('\n').find((l) => l.startsWith(MARK));
  if (line === undefined) throw new Error(`${what} printed no figures:\n${output.slice(-2000)}`);
  return JSON.parse(line.slice(MARK.length)) as Record<string, number>;
}

function describeErrors(counts: Record<string, number>): { errors: number; errorDetail: string } {
  const parts = Object.entries(counts).filter(([, n]) => n > 0);
  return { errors: parts.reduce((s, [, n]) => s + n, 0), errorDetail: parts.map(([k, n]) => `${n} ${k}`).join(', ') };
}

class Wrk implements LoadGenerator {
  readonly name: string;
  readonly #path: string;
  readonly #dir: string;
  readonly #threads: number;
  #scripts = 0;

  constructor(path: string, version: string, dir: string, threads: number) {
    this.#path = path;
    this.#dir = dir;
    this.#threads = threads;
    this.name = `wrk (${version}, ${threads} thread${threads === 1 ? '' : 's'}, Lua script for figures and POST bodies)`;
  }

  async run(spec: LoadSpec): Promise<LoadResult> {
    const script = join(this.#dir, `wrk-${this.#scripts++}.lua`);
    writeFileSync(script, wrkScript(spec));
    const threads = Math.min(this.#threads, spec.connections);
    const args = ['-t', String(threads), '-c', String(spec.connections), '-d', `${Math.max(1, Math.round(spec.seconds))}s`,
      '--timeout', `${TIMEOUT_S}s`, '-s', script, spec.url];
    const { info, output } = await run('wrk', this.#path, args);
    if (info.code !== 0) throw new Error(`wrk exited (${info.signal ?? info.code}):\n${output.slice(-2000)}`);
    const r = parseMarked(output, 'wrk');
    return {
      requests: r.requests!, seconds: r.us! / 1e6, bytesIn: r.bytes!, p50Us: r.p50!, p99Us: r.p99!,
      ...describeErrors({ connect: r.connect!, read: r.read!, write: r.write!, 'status>=400': r.status!, timeout: r.timeout! }),
    };
  }
}

class UndiciLoad implements LoadGenerator {
  readonly name = 'undici (bench/undici-load.js in its own process: a keep-alive Pool, pipelining 1)';
  readonly #script = fileURLToPath(new URL('./undici-load.js', import.meta.url));

  async run(spec: LoadSpec): Promise<LoadResult> {
    const { info, output } = await run('undici-load', process.execPath, [this.#script, JSON.stringify({ ...spec, timeoutS: TIMEOUT_S })]);
    if (info.code !== 0) throw new Error(`undici-load exited (${info.signal ?? info.code}):\n${output.slice(-2000)}`);
    const r = parseMarked(output, 'undici-load');
    return {
      requests: r.requests!, seconds: r.us! / 1e6, bytesIn: r.bytes!, p50Us: r.p50!, p99Us: r.p99!,
      ...describeErrors({ socket: r.socket!, 'status>=400': r.status!, timeout: r.timeout! }),
    };
  }
}

/** wrk if it is on PATH (unless BENCH_LOADGEN=undici), else the undici generator. */
export async function pickGenerator(dir: string): Promise<LoadGenerator> {
  const path = process.env.BENCH_LOADGEN === 'undici' ? null : which('wrk');
  if (path === null) return new UndiciLoad();
  const { output } = await run('wrk -v', path, ['-v']);
  const version = /wrk\s+(\S+)/.exec(output)?.[1] ?? 'unknown version';
  return new Wrk(path, version, dir, Math.max(1, Number(process.env.BENCH_WRK_THREADS ?? 1)));
}
