// The front's access log (--access-log FILE|-, --log-format combined|common|json): one line per
// response. common/combined follow Apache's `%h %l %u %t "%r" %>s %b` (+ `"%{Referer}i"
// "%{User-agent}i"`), then the request time in seconds (ms precision) and the backend's name.
// Lines are batched and written asynchronously (one write per event-loop turn); SIGUSR1 reopens
// the file for logrotate. A failed write (a full disk, EIO) does not stop the log for good: the
// lines are counted as lost and the path is reopened from the next line on, with backoff.
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { Logger } from '../../common/log.js';
import { ConfigError } from '../../protocol/errors.js';
import { type Observed, statusOf } from './observe.js';

export type LogFormat = 'combined' | 'common' | 'json';

/** Past this much unwritten log, lines are dropped (and counted) rather than buffered without bound. */
const MAX_BUFFERED = 16 * 1024 * 1024;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const UNSAFE = /[\x00-\x1f"\\\x7f-\uffff]/;
const UNSAFE_ALL = /[\x00-\x1f"\\\x7f-\uffff]/g;

function hex(c: string): string {
  if (c === '"') return '\\"';
  if (c === '\\') return '\\\\';
  const code = c.charCodeAt(0);
  return code < 256 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Apache's escaping: a quote, a backslash or a control byte cannot end the field or the line. */
export function escapeField(s: string): string {
  return UNSAFE.test(s) ? s.replace(UNSAFE_ALL, hex) : s;
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** `[10/Oct/2000:13:55:36 +0000]`, in UTC; the string is reused within the same second. */
let clfSecond = -1;
let clfText = '';
export function clfTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== clfSecond) {
    const d = new Date(second * 1000);
    clfSecond = second;
    clfText = `[${pad2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad2(d.getUTCHours())}:`
      + `${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000]`;
  }
  return clfText;
}

/** Characters JSON.stringify escapes in a string. */
const JSON_UNSAFE = /["\\\x00-\x1f\ud800-\udfff]/;

function jsonString(s: string): string {
  return JSON_UNSAFE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

function optional(v: string | string[] | undefined): string {
  return typeof v === 'string' ? jsonString(v) : 'null';
}

/** ISO 8601 in UTC; the string is reused within the same millisecond. */
let isoMs = -1;
let isoText = '';
function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  if (whole !== isoMs) {
    isoMs = whole;
    isoText = new Date(whole).toISOString();
  }
  return isoText;
}

function header(r: Observed, name: string): string {
  const v = r.req.headers[name];
  return typeof v === 'string' && v !== '' ? v : '-';
}

/** One line (with its newline) in the given format. `now` is Date.now(), `ms` the request time. */
export function formatLine(format: LogFormat, r: Observed, now: number, ms: number): string {
  const req = r.req;
  const status = statusOf(r);
  if (format === 'json') {
    // Built by hand (about 3x faster than JSON.stringify of an object); strings go through
    // jsonString, which escapes exactly as JSON.stringify does.
    const id = req.requestId || req.headers['x-request-id'];
    return `{"time":"${isoTime(now - ms)}","remote":${jsonString(r.remote || '-')},"method":${jsonString(req.method ?? '')},`
      + `"target":${jsonString(req.url ?? '')},"protocol":"HTTP/${req.httpVersion}","status":${status},`
      + `"bytes_sent":${r.bytesOut},"bytes_received":${r.bytesIn},"duration_ms":${Math.round(ms * 1000) / 1000},`
      + `"backend":${jsonString(r.backendName)},"user_agent":${optional(req.headers['user-agent'])},`
      + `"referer":${optional(req.headers.referer)},"request_id":${optional(id)}}\n`;
  }
  let line = `${r.remote || '-'} - - ${clfTime(now - ms)} "${escapeField(`${req.method} ${req.url} HTTP/${req.httpVersion}`)}" `
    + `${status} ${r.bytesOut > 0 ? r.bytesOut : '-'}`;
  if (format === 'combined') line += ` "${escapeField(header(r, 'referer'))}" "${escapeField(header(r, 'user-agent'))}"`;
  return `${line} ${(ms / 1000).toFixed(3)} ${escapeField(r.backendName)}\n`;
}

/** After a failed write the log is reopened on the next line at most this soon, then twice as late each time. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 10_000;

export class AccessLog {
  readonly #path: string;
  readonly #format: LogFormat;
  readonly #log: Logger;
  #stream: WriteStream | null;
  #pending = '';
  #pendingLines = 0;
  #scheduled = false;
  /** The line count of each batch written and not yet reported. */
  readonly #batches: number[] = [];
  /** Bound once: the callback of every batch's write. */
  readonly #afterWrite: (err?: Error | null) => void;
  /** Lines dropped while the log was behind (past MAX_BUFFERED). */
  #dropped = 0;
  /** Lines lost since the last failed write (its batch, and every line until a write succeeds again). */
  #lost = 0;
  /** The error code of the failed write; '' while writes succeed. */
  #failure = '';
  #retryAt = 0;
  #retryMs = RETRY_FIRST_MS;
  /** Lines dropped or lost since start, for tsgi_access_log_dropped_total. */
  droppedTotal = 0;
  /** The observer to hand the proxy: `write` bound once. */
  readonly observe: (r: Observed) => void;

  constructor(path: string, format: LogFormat, log: Logger) {
    this.#path = path;
    this.#format = format;
    this.#log = log;
    try {
      this.#stream = this.#open();
    } catch (err) {
      throw new ConfigError(`--access-log: cannot open ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    this.observe = (r) => this.write(r);
    this.#afterWrite = (err) => this.#written(err);
  }

  /** Opens the file now (a bad path fails here, at start-up or on reopen, not later). */
  #open(): WriteStream {
    const stream = this.#path === '-' ? createWriteStream('', { fd: 1, autoClose: false })
      : createWriteStream('', { fd: openSync(this.#path, 'a', 0o640) });
    stream.on('error', (err: NodeJS.ErrnoException) => this.#failed(stream, err.code ?? err.message));
    return stream;
  }

  /**
   * A write failed (ENOSPC, EIO, EPIPE…): the stream is dropped, and lines are counted as lost
   * until the next line at or after the retry time reopens the path.
   */
  #failed(stream: WriteStream, code: string): void {
    if (stream !== this.#stream) return;
    stream.destroy();
    this.#stream = null;
    this.#retryAt = Date.now() + this.#retryMs;
    if (this.#failure === '') {
      this.#log.error(`access log ${this.#path}: write failed (${code}); dropping lines, reopening it from the next line in `
        + `${this.#retryMs} ms on (then less often)`);
    }
    this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
    this.#failure = code;
  }

  /**
   * A batch was written or failed (callbacks come in the order of the writes; a failed one's
   * before its 'error' event): its lines are lost, or, if it is the first since a failure, the
   * log is healed.
   */
  #written(err: Error | null | undefined): void {
    const lines = this.#batches.shift() ?? 0;
    if (err) {
      this.#lose(lines);
      return;
    }
    if (this.#failure === '') return;
    this.#log.warn(`access log ${this.#path}: writing again after ${this.#failure}; ${this.#lost} line(s) lost`);
    this.#failure = '';
    this.#lost = 0;
    this.#retryMs = RETRY_FIRST_MS;
  }

  #lose(lines: number): void {
    this.#lost += lines;
    this.droppedTotal += lines;
  }

  write(r: Observed): void {
    const now = Date.now();
    const line = formatLine(this.#format, r, now, performance.now() - r.started);
    if (this.#stream === null) {
      if (now < this.#retryAt || !this.#reopenAfterFailure()) {
        this.#lose(1);
        return;
      }
    }
    if (this.#stream!.writableLength + this.#pending.length > MAX_BUFFERED) {
      if (this.#dropped++ === 0) this.#log.warn(`access log ${this.#path} is not keeping up; dropping lines`);
      this.droppedTotal++;
      return;
    }
    this.#pending += line;
    this.#pendingLines++;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(flush, this);
    }
  }

  /** Opens the path again after a failed write; false (and a later retry) if it cannot be opened. */
  #reopenAfterFailure(): boolean {
    try {
      this.#stream = this.#open();
      return true;
    } catch {
      this.#retryAt = Date.now() + this.#retryMs;
      this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
      return false;
    }
  }

  /** Writes what is pending now (at the end of each event-loop turn, and on close). */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending === '') return;
    const lines = this.#pendingLines;
    const stream = this.#stream;
    this.#pendingLines = 0;
    if (stream === null) {
      this.#lose(lines);
    } else {
      this.#batches.push(lines);
      stream.write(this.#pending, this.#afterWrite);
    }
    this.#pending = '';
    if (this.#dropped > 0 && stream !== null && stream.writableLength < MAX_BUFFERED / 2) {
      this.#log.warn(`access log ${this.#path}: ${this.#dropped} line(s) dropped`);
      this.#dropped = 0;
    }
  }

  /** logrotate: the file was moved away; write to a new one at the same path. */
  reopen(): void {
    if (this.#path === '-') return;
    this.flush();
    let next: WriteStream;
    try {
      next = this.#open();
    } catch (err) {
      this.#log.error(`access log ${this.#path}: cannot reopen (${(err as Error).message}); still writing to the old file`);
      return;
    }
    this.#stream?.end();
    this.#stream = next;
    this.#log.info(`access log ${this.#path} reopened`);
  }

  async close(): Promise<void> {
    this.flush();
    const stream = this.#stream;
    if (stream === null) return;
    await new Promise<void>((resolve) => {
      if (this.#path === '-') stream.write('', () => resolve());
      else stream.end(() => resolve());
    });
  }
}

function flush(log: AccessLog): void {
  log.flush();
}
