// Log lines for humans and for grep: one line each, to stderr, with a level and a component.
// `TSGI_LOG_LEVEL` (or --log-level) picks the threshold: debug, info, warn, error, silent.
// A line cannot be forged or flooded: control characters are escaped, a line is capped, and a line
// repeated within TSGI_LOG_REPEAT_WINDOW seconds is printed once, then counted. A write that fails
// (EPIPE, ENOSPC, /dev/full) is counted and dropped: logging never stops the process.
import { writeSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

let threshold = RANK[(process.env.TSGI_LOG_LEVEL as LogLevel) ?? 'info'] ?? RANK.info;

export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string, err?: unknown): void;
  enabled(level: LogLevel): boolean;
}

/** Past this many characters (after escaping), a line is cut and says how much was left out. */
export const MAX_LINE = 4096;

// C0 controls, DEL and C1 controls: none may reach a terminal or split a line.
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const CONTROL_ALL = /[\x00-\x1f\x7f-\x9f]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  return NAMED[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
}

/** The text with \n, \r, \t and every other control character written as an escape (\xNN). */
export function escapeControls(text: string): string {
  return CONTROL.test(text) ? text.replace(CONTROL_ALL, escapeChar) : text;
}

function capped(text: string): string {
  return text.length > MAX_LINE ? `${text.slice(0, MAX_LINE)}… (${text.length - MAX_LINE} more characters)` : text;
}

// --- writing: straight to descriptor 2, synchronously (as process.stderr does for files, pipes
// and terminals on Linux), so that an error comes back here instead of as an 'error' event. ---

let writeErrors = 0;

/** Log writes that failed (and whose lines were dropped) since start. */
export function logWriteErrors(): number {
  return writeErrors;
}

/** process.stderr, once a write would have blocked: later lines queue behind what it holds. */
let queue: NodeJS.WriteStream | null = null;
const counted = (err?: Error | null) => { if (err) writeErrors++; };

/** Writes text to stderr; a failure is counted, never thrown. */
export function writeStderr(text: string): void {
  if (queue !== null && queue.writableLength > 0) {
    queue.write(text, counted);
    return;
  }
  let at = 0;
  let bytes: Buffer | null = null;
  try {
    at = writeSync(2, text);
    const size = Buffer.byteLength(text);
    if (at >= size) return;
    bytes = Buffer.from(text);
    while (at < size) at += writeSync(2, bytes, at);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
      writeErrors++;
      return;
    }
    // A pipe set non-blocking (by process.stderr) and full: let Node queue the rest, as it would.
    queue = process.stderr;
    queue.write(at === 0 ? text : (bytes ?? Buffer.from(text)).subarray(at), counted);
  }
}

// Code that writes to process.stderr itself (an app's tsgi.errors, Node's warnings) must not
// kill the process either when it is a pipe whose reader went away.
process.stderr.on('error', () => {});

// --- collapsing repeats ---

const repeatSeconds = Number(process.env.TSGI_LOG_REPEAT_WINDOW ?? 10);
/** A line seen again within this window is counted, not printed (0: every line is printed). */
const REPEAT_WINDOW_MS = Number.isFinite(repeatSeconds) && repeatSeconds >= 0 ? repeatSeconds * 1000 : 10_000;
/** Distinct lines remembered at once; past this a new line is printed without being remembered. */
const MAX_REMEMBERED = 256;

interface Seen {
  /** The prefix (tag and level) and the message, to name it in the summary. */
  prefix: string;
  message: string;
  until: number;
  repeats: number;
}

const seen = new Map<string, Seen>();
let sweepTimer: NodeJS.Timeout | null = null;

function summary(s: Seen): string {
  const window = REPEAT_WINDOW_MS / 1000;
  return `${new Date().toISOString()} ${s.prefix}… ${s.repeats} more in the last ${window} s: ${s.message.length > 200 ? `${s.message.slice(0, 200)}…` : s.message}\n`;
}

/** Prints the counts of the lines whose window has ended, and forgets them. */
function sweep(now: number): void {
  for (const [key, s] of seen) {
    if (s.until > now) continue;
    if (s.repeats > 0) writeStderr(summary(s));
    seen.delete(key);
  }
}

function scheduleSweep(): void {
  if (sweepTimer !== null) return;
  sweepTimer = setTimeout(() => {
    sweepTimer = null;
    sweep(Date.now());
    for (const s of seen.values()) {
      if (s.repeats > 0) {
        scheduleSweep();
        break;
      }
    }
  }, REPEAT_WINDOW_MS + 10);
  sweepTimer.unref();
}

// The counts still held are printed when the process exits.
process.on('exit', () => sweep(Number.POSITIVE_INFINITY));

/** Whether the line may be printed now: false if it was printed within the window (then counted). */
function fresh(prefix: string, message: string, now: number): boolean {
  if (REPEAT_WINDOW_MS === 0) return true;
  const key = prefix + message;
  const s = seen.get(key);
  if (s !== undefined) {
    if (s.until > now) {
      s.repeats++;
      scheduleSweep();
      return false;
    }
    if (s.repeats > 0) writeStderr(summary(s));
    s.until = now + REPEAT_WINDOW_MS;
    s.repeats = 0;
    return true;
  }
  if (seen.size >= MAX_REMEMBERED) sweep(now);
  if (seen.size < MAX_REMEMBERED) seen.set(key, { prefix, message, until: now + REPEAT_WINDOW_MS, repeats: 0 });
  return true;
}

function errorDetail(err: unknown): string {
  if (!(err instanceof Error)) return `\n  ${capped(escapeControls(String(err)))}`;
  // The message may carry a peer's text: escaped on its line; the stack frames follow, indented.
  let out = `\n  ${capped(escapeControls(`${err.name}: ${err.message}`))}`;
  for (const frame of (err.stack ?? '').split('\n')) {
    if (frame.startsWith('    at ')) out += `\n  ${escapeControls(frame)}`;
  }
  return out;
}

/** The tag every logger of this process uses once set (the command: front, serve, run…). */
let processTag: string | null = null;

/** One log tag per process: from now on every logger here writes `tsgi TAG[pid]`, whatever its component. */
export function setLogTag(tag: string): void {
  processTag = tag;
}

export function createLogger(component: string): Logger {
  let tagged = '';
  const prefixes: Record<string, string> = {};
  const emit = (level: LogLevel, message: string, err?: unknown) => {
    if (RANK[level] < threshold) return;
    const name = processTag ?? component;
    if (name !== tagged) {
      tagged = name;
      for (const l of LOG_LEVELS) prefixes[l] = `tsgi ${name}[${process.pid}] ${l}: `;
    }
    const prefix = prefixes[level]!;
    const text = capped(escapeControls(message));
    const now = Date.now();
    if (!fresh(prefix, text, now)) return;
    let line = `${new Date(now).toISOString()} ${prefix}${text}`;
    if (err !== undefined) line += errorDetail(err);
    writeStderr(line + '\n');
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m, err) => emit('error', m, err),
    enabled: (level) => RANK[level] >= threshold,
  };
}
