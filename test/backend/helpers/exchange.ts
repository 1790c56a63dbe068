// Test doubles for the backend runtime: a Responder that records what the gateway sends (and
// can hold it back, as a blocked stream does), a Logger that prints nothing, and a helper that
// runs one application call over them with an environ built from a wire-format request head.
import * as assert from 'uvu/assert';
import { buildEnviron } from '../../../src/backend/environ.js';
import { runApplication, type Responder } from '../../../src/backend/gateway.js';
import { InputStream } from '../../../src/backend/input.js';
import type { Application, Environ } from '../../../src/backend/types.js';
import type { Logger } from '../../../src/common/log.js';
import { packHeaders } from '../../../src/protocol/header-table.js';
import { Request as RequestHead, type tsgi } from '../../../src/protocol/messages.js';

export type Event =
  | { type: 'head'; status: number; reason: string; headers: string[]; end: boolean }
  | { type: 'write'; chunk: Buffer; end: boolean }
  | { type: 'abort'; reason: string }
  | { type: 'informational'; status: number; headers: string[] }
  | { type: 'trailers'; headers: string[] };

export class RecordingResponder implements Responder {
  readonly events: Event[] = [];
  aborted = false;
  /** While true, write() answers false and drain() waits for release(). */
  blocked = false;
  drainCalls = 0;
  #waiters: (() => void)[] = [];

  head(status: number, reason: string, headers: string[], end: boolean): void {
    this.events.push({ type: 'head', status, reason, headers: [...headers], end });
  }

  write(chunk: Uint8Array, end: boolean): boolean {
    this.events.push({ type: 'write', chunk: Buffer.from(chunk), end });
    return !this.blocked;
  }

  informational(status: number, headers: string[]): void {
    this.events.push({ type: 'informational', status, headers: [...headers] });
  }

  trailers(headers: string[]): void {
    this.events.push({ type: 'trailers', headers: [...headers] });
  }

  drain(): Promise<void> {
    this.drainCalls++;
    if (this.aborted || !this.blocked) return Promise.resolve();
    return new Promise((resolve) => { this.#waiters.push(resolve); });
  }

  abort(reason: string): void {
    this.events.push({ type: 'abort', reason });
    this.aborted = true;
    this.#wake();
  }

  /** The stream may take more; with `stayBlocked`, write() keeps answering false. */
  release(stayBlocked = false): void {
    this.blocked = stayBlocked;
    this.#wake();
  }

  /** The peer goes away (a RESET from the front): `aborted`, and drain() waiters wake. */
  clientGone(): void {
    this.aborted = true;
    this.#wake();
  }

  /** True while a producer waits in drain(). */
  get waiting(): boolean {
    return this.#waiters.length > 0;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  get heads(): Extract<Event, { type: 'head' }>[] {
    return this.events.filter((e) => e.type === 'head');
  }

  get writes(): Extract<Event, { type: 'write' }>[] {
    return this.events.filter((e) => e.type === 'write');
  }

  get aborts(): string[] {
    return this.events.flatMap((e) => (e.type === 'abort' ? [e.reason] : []));
  }

  /** The one head that went out. */
  get head0(): Extract<Event, { type: 'head' }> {
    const heads = this.heads;
    assert.is(heads.length, 1, 'exactly one response head');
    return heads[0]!;
  }

  /** The non-empty chunks written, as strings. */
  get chunks(): string[] {
    return this.writes.filter((w) => w.chunk.length > 0).map((w) => w.chunk.toString('utf8'));
  }

  get body(): string {
    return Buffer.concat(this.writes.map((w) => w.chunk)).toString('utf8');
  }

  /** Values of a response header, by name in any letter case. */
  header(name: string): string[] {
    const flat = this.head0.headers;
    const out: string[] = [];
    for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === name.toLowerCase()) out.push(flat[i + 1]!);
    return out;
  }
}

/** Checks the exchange was well formed and complete: one head first, one end last, no abort. */
export function assertComplete(out: RecordingResponder): void {
  const ev = out.events;
  assert.ok(ev.length > 0, 'something was sent');
  assert.is(ev[0]!.type, 'head', 'the head goes out first');
  assert.is(out.heads.length, 1, 'exactly one head');
  assert.equal(out.aborts, [], 'no abort');
  const ends = ev.filter(ends_).length;
  assert.is(ends, 1, 'the response is ended exactly once');
  assert.ok(ends_(ev[ev.length - 1]!), 'nothing is sent after the end');
}

/** Checks the exchange was cut after its head: one head, one abort, nothing after it, no end. */
export function assertAborted(out: RecordingResponder): void {
  assert.is(out.heads.length, 1, 'exactly one head: no second (error) head');
  assert.is(out.aborts.length, 1, 'abort() called once');
  assert.is(out.events[out.events.length - 1]!.type, 'abort', 'nothing is sent after abort()');
  assert.not.ok(out.events.some(ends_), 'the response was not ended normally');
}

/** The event ends the response: a head or write with end, or the trailers. */
function ends_(e: Event): boolean {
  return e.type === 'trailers' || ((e.type === 'head' || e.type === 'write') && e.end);
}

export class RecordingLogger implements Logger {
  readonly errors: { message: string; err: unknown }[] = [];
  readonly debugs: string[] = [];
  debug(message: string): void { this.debugs.push(message); }
  info(): void {}
  warn(): void {}
  error(message: string, err?: unknown): void { this.errors.push({ message, err }); }
  enabled(): boolean { return false; }
}

export type Head = tsgi.Request.$Properties;

/** Sends a request head through the wire format, as the front does, and decodes it. */
export function wire(head: Head): tsgi.Request {
  return RequestHead.decode(RequestHead.encode(head).finish());
}

export interface EnvironOptions {
  head?: Head;
  /** Flat request headers [name, value, …], packed as the front packs them. */
  headers?: string[];
  scriptName?: string;
  input?: InputStream;
  signal?: AbortSignal;
  multiprocess?: boolean;
}

/** An environ for a request head (default: GET / with a Host header), built as the backend builds it. */
export function makeEnviron(opts: EnvironOptions = {}): Environ {
  const head: Head = {
    target: '/',
    remoteAddr: '127.0.0.1', remotePort: 50000, serverAddr: '127.0.0.1', serverPort: 8000,
    ...opts.head,
  };
  if (opts.headers !== undefined) head.headers = packHeaders(opts.headers);
  else if (head.headers === undefined) head.headers = packHeaders(['Host', 'example.test:8000']);
  let input = opts.input;
  if (input === undefined) {
    input = new InputStream();
    input.end();
  }
  return buildEnviron(wire(head), {
    input,
    signal: { signal: opts.signal ?? new AbortController().signal },
    scriptName: opts.scriptName ?? '',
    multiprocess: opts.multiprocess ?? false,
  });
}

const DEADLINE_MS = 5000;

export interface Exchange {
  out: RecordingResponder;
  log: RecordingLogger;
  environ: Environ;
  /** Resolves when the gateway reports the exchange done. */
  done: Promise<void>;
  /** How many times the done callback ran (must end up exactly 1). */
  doneCalls(): number;
}

/** Runs `app` for one request through runApplication, over a RecordingResponder. */
export function run(app: Application, opts: EnvironOptions & { out?: RecordingResponder } = {}): Exchange {
  const out = opts.out ?? new RecordingResponder();
  const log = new RecordingLogger();
  const environ = makeEnviron(opts);
  let calls = 0;
  let resolve!: () => void;
  let watchdog: NodeJS.Timeout | undefined;
  // The deadline only keeps a broken gateway (one that never reports done) from hanging the run.
  const done = new Promise<void>((res, reject) => {
    resolve = res;
    watchdog = setTimeout(() => reject(new Error('the exchange never reported done')), DEADLINE_MS);
  });
  done.catch(() => {}); // a test that does not await it still fails on its own assertions
  runApplication(app, environ, out, log, () => {
    calls++;
    clearTimeout(watchdog);
    resolve();
  });
  return { out, log, environ, done, doneCalls: () => calls };
}

/** Lets pending promise callbacks and I/O callbacks run: `n` turns of the event loop. */
export async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}
