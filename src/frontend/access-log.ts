// The front's access log (--access-log FILE|-, --log-format combined|common|json): one line per
// response. common/combined follow Apache's `%h %l %u %t "%r" %>s %b` (+ `"%{Referer}i"
// "%{User-agent}i"`), then the request time in seconds (ms precision) and the backend's name.
// Lines are batched and written asynchronously (one write per event-loop turn); SIGUSR1 reopens
// the file for logrotate.
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { Logger } from '../common/log.js';
import { ConfigError } from '../protocol/errors.js';
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
    const id = req.headers['x-request-id'];
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

export class AccessLog {
  readonly #path: string;
  readonly #format: LogFormat;
  readonly #log: Logger;
  #stream: WriteStream;
  #pending = '';
  #scheduled = false;
  #dropped = 0;
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
  }

  /** Opens the file now (a bad path fails here, at start-up or on reopen, not later). */
  #open(): WriteStream {
    const stream = this.#path === '-' ? createWriteStream('', { fd: 1, autoClose: false })
      : createWriteStream('', { fd: openSync(this.#path, 'a', 0o640) });
    stream.on('error', (err) => this.#log.error(`access log ${this.#path}: ${err.message}`));
    return stream;
  }

  write(r: Observed): void {
    const now = Date.now();
    const line = formatLine(this.#format, r, now, performance.now() - r.started);
    if (this.#stream.writableLength + this.#pending.length > MAX_BUFFERED) {
      if (this.#dropped++ === 0) this.#log.warn(`access log ${this.#path} is not keeping up; dropping lines`);
      return;
    }
    this.#pending += line;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(flush, this);
    }
  }

  /** Writes what is pending now (at the end of each event-loop turn, and on close). */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending === '') return;
    this.#stream.write(this.#pending);
    this.#pending = '';
    if (this.#dropped > 0 && this.#stream.writableLength < MAX_BUFFERED / 2) {
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
    this.#stream.end();
    this.#stream = next;
    this.#log.info(`access log ${this.#path} reopened`);
  }

  async close(): Promise<void> {
    this.flush();
    const stream = this.#stream;
    await new Promise<void>((resolve) => {
      if (this.#path === '-') stream.write('', () => resolve());
      else stream.end(() => resolve());
    });
  }
}

function flush(log: AccessLog): void {
  log.flush();
}
