// Reads the public HTTP/1.1 request corpora in test/fixtures/http-corpus into cases: the bytes
// each project's own harness sends (gunicorn tests/treq.py, llhttp test/md-test.ts, the
// http-garden's TROPHIES.md payloads) and what that project expects of them.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { ROOT } from './procs.js';
import { PyName, type PyValue, evalPy } from './py-literal.js';

export const CORPUS_DIR = join(ROOT, 'test', 'fixtures', 'http-corpus');

/** One request as a corpus states it; a field left null is not stated there. */
export interface CorpusRequest {
  method: string;
  target: string;
  minor: number;
  /** [name, value] with names as the corpus spells them (gunicorn: upper case). */
  headers: [string, string][] | null;
  /** latin1 text of the body bytes. */
  body: string | null;
}

export interface CorpusCase {
  /** `corpus: file: test` — the key the deviation lists use. */
  id: string;
  /** The bytes, in the writes the corpus makes (most have one). */
  writes: Buffer[];
  /**
   * The corpus's verdict: 'accepted' (every request complete, nothing after), 'refused' (an error,
   * or the bytes end inside a request), or null where the corpus records no verdict (http-garden).
   */
  verdict: 'accepted' | 'refused' | null;
  /** The requests delivered before the end or the error, where the corpus states them. */
  requests: CorpusRequest[] | null;
  /** A setting the corpus ran the case with that is not its default (gunicorn cfg.set). */
  config: string | null;
}

// ---- gunicorn tests/requests/{valid,invalid}/*.http + *.py -------------------------------------

/** As tests/treq.py: every newline dropped, then the escapes \r\n (CRLF), \0, \n, \t, \xHH. */
export function gunicornBytes(file: Buffer): Buffer {
  const text = file.toString('latin1').replace(/\n/g, '')
    .replace(/\\r\\n/g, '\r\n').replace(/\\0/g, '\0').replace(/\\n/g, '\n').replace(/\\t/g, '\t')
    .replace(/\\x([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(text, 'latin1');
}

function pyRequest(v: PyValue, where: string): CorpusRequest {
  if (!(v instanceof Map)) throw new Error(`${where}: request is not a dict`);
  const uri = v.get('uri');
  const version = v.get('version') as number[];
  const headers = (v.get('headers') as PyValue[]).map((h) => {
    const [name, value] = h as [string, string];
    return [name, value] as [string, string];
  });
  const body = v.get('body');
  return {
    method: v.get('method') as string,
    target: (uri as Map<string, PyValue>).get('raw') as string,
    minor: version[1]!,
    headers,
    body: Buffer.isBuffer(body) ? body.toString('latin1') : String(body ?? ''),
  };
}

export function gunicornCases(): CorpusCase[] {
  const cases: CorpusCase[] = [];
  for (const kind of ['valid', 'invalid'] as const) {
    const dir = join(CORPUS_DIR, 'gunicorn', kind);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.http')).sort()) {
      const base = file.slice(0, -5);
      const id = `gunicorn: ${kind}/${base}`;
      const mod = evalPy(readFileSync(join(dir, `${base}.py`), 'latin1'));
      const expected = mod.vars.get('request');
      if (expected === undefined) throw new Error(`${id}: no request in the .py`);
      const config = mod.config.length === 0 ? null : mod.config.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
      const bytes = gunicornBytes(readFileSync(join(dir, file)));
      if (kind === 'invalid') {
        if (!(expected instanceof PyName)) throw new Error(`${id}: expected an exception class`);
        cases.push({ id, writes: [bytes], verdict: 'refused', requests: null, config: `${expected.name}${config ? `; ${config}` : ''}` });
      } else {
        const list = Array.isArray(expected) ? expected : [expected];
        cases.push({ id, writes: [bytes], verdict: 'accepted', requests: list.map((r, i) => pyRequest(r, `${id} #${i}`)), config });
      }
    }
  }
  return cases;
}

// ---- llhttp test/request/*.md ------------------------------------------------------------------

/** As test/md-test.ts turns a ```http fence into the input string (sent as UTF-8). */
export function llhttpInput(fence: string): Buffer {
  let input = fence.replace(/\n$/, '');
  input = input.replace(/\\(\r\n|\r|\n)/g, '');
  input = input.replace(/\r\n|\r|\n/g, '\r\n');
  input = input.replace(/\\r/g, '\r').replace(/\\n/g, '\n').replace(/\\t/g, '\t').replace(/\\f/g, '\f');
  input = input.replace(/\\x([0-9a-fA-F]+)/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  input = input.replace(/\\([0-7]{1,3})/g, (_, digits: string) => String.fromCharCode(parseInt(digits, 8)));
  input = input.replace(/\$\{(.+?)\}/g, (_, code: string) => String(runInNewContext(code)));
  return Buffer.from(input, 'utf8');
}

/**
 * llhttp codes that end the parse without refusing what came before: HPE_PAUSED,
 * HPE_PAUSED_UPGRADE and HPE_PAUSED_H2_UPGRADE (what follows is another protocol), and
 * HPE_CLOSED_CONNECTION (bytes after a request that closes the connection, which the front
 * reads and drops as well).
 */
const LLHTTP_STOPS = new Set([5, 21, 22, 23]);

/** The requests a log shows complete, and how the parse ended. */
function llhttpLog(log: string): { requests: CorpusRequest[]; error: number | null; at: number | null; open: boolean } {
  const requests: CorpusRequest[] = [];
  let cur: CorpusRequest | null = null;
  let trailers = false;
  // A span is the bytes between the outer quotes, unescaped, as UTF-8 text (the .md file's
  // encoding); the parser under test reads a head as latin1, so it is compared as latin1.
  const unquote = (s: string) => Buffer.from(s.slice(1, -1), 'utf8').toString('latin1');
  for (const line of log.split('\n')) {
    const span = /^off=\d+ len=\d+ span\[(\w+)\]=(".*")$/.exec(line);
    const m = /^off=(\d+) (.*)$/.exec(line);
    if (m === null) continue;
    if (m[2] === 'message begin') {
      cur = { method: '', target: '', minor: -1, headers: [], body: '' };
      trailers = false;
      continue;
    }
    // Header spans after the head are trailer fields, which the parser under test drops.
    if (m[2]!.startsWith('headers complete')) trailers = true;
    if (m[2] === 'message complete') {
      requests.push(cur!);
      cur = null;
      continue;
    }
    const err = /^error code=(\d+)/.exec(m[2]!);
    if (err !== null) return { requests, error: Number(err[1]), at: Number(m[1]), open: cur !== null };
    if (span === null || cur === null || (trailers && span[1]!.startsWith('header_'))) continue;
    const value = unquote(span[2]!);
    switch (span[1]) {
      case 'method': cur.method += value; break;
      case 'url': cur.target += value; break;
      case 'version': cur.minor = Number(value.split('.')[1]); break;
      case 'header_field': cur.headers!.push([value, '']); break;
      case 'header_value': cur.headers!.at(-1)![1] += value; break;
      case 'body': cur.body += value; break;
      default: break;
    }
  }
  return { requests, error: null, at: null, open: cur !== null };
}

export function llhttpCases(): CorpusCase[] {
  const cases: CorpusCase[] = [];
  const dir = join(CORPUS_DIR, 'llhttp');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.md')).sort()) {
    const lines = readFileSync(join(dir, file), 'utf8').split('\n');
    let heading = '';
    let meta: { type?: string; skipBody?: boolean } | null = null;
    let http: string | null = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const h = /^#{1,6} (.*)$/.exec(line);
      if (h !== null) {
        heading = h[1]!.trim();
        meta = null;
        http = null;
        continue;
      }
      const mm = /^<!-- meta=(.*) -->$/.exec(line);
      if (mm !== null) {
        meta = JSON.parse(mm[1]!) as { type?: string; skipBody?: boolean };
        continue;
      }
      const fence = /^```(\w+)\s*$/.exec(line);
      if (fence === null) continue;
      const body: string[] = [];
      for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
      const text = body.map((l) => `${l}\n`).join('');
      if (fence[1] === 'http') http = text;
      if (fence[1] === 'log' && http !== null) {
        // Only the strict request parser's cases count; lenient modes are deliberately absent here.
        // skipBody is a callback of llhttp's harness (a body not read), not something in the bytes.
        if (meta?.type === 'request' && meta.skipBody !== true) {
          const bytes = llhttpInput(http);
          const log = llhttpLog(text.replace(/\\t/g, '\t').replace(/\\f/g, '\f'));
          const paused = log.error !== null && LLHTTP_STOPS.has(log.error);
          const id = `llhttp: ${file}: ${heading}`;
          cases.push({
            id,
            // At an upgrade, a CONNECT or a closed connection llhttp stops: what follows is not read.
            writes: [paused && log.at !== null ? bytes.subarray(0, log.at) : bytes],
            verdict: log.error !== null && !paused ? 'refused' : log.open ? 'refused' : 'accepted',
            requests: log.requests,
            config: null,
          });
        }
        http = null;
      }
    }
  }
  return cases;
}

// ---- http-garden TROPHIES.md ---------------------------------------------------------------------

/** A Python bytes literal's body (\r \n \t \0 \xHH \\ and the quotes). */
function pyBytes(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      out.push(c.charCodeAt(0));
      continue;
    }
    const e = text[++i]!;
    if (e === 'x') {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(({ r: 13, n: 10, t: 9, '0': 0, '\\': 92, "'": 39, '"': 34 } as Record<string, number>)[e] ?? 92);
  }
  return Buffer.from(out);
}

/** Every backquoted payload of the four bug sections, keyed `section N` (N: the bug's number). */
export function gardenCases(): CorpusCase[] {
  const text = readFileSync(join(CORPUS_DIR, 'http-garden', 'TROPHIES.md'), 'utf8');
  const sections: Record<string, string> = {
    '### Server Bugs': 'server', '## Transducer Bugs': 'transducer', '## Bonus bugs': 'bonus', '## Bonus Bonus Bugs': 'bonus-bonus',
  };
  const cases: CorpusCase[] = [];
  let section: string | null = null;
  let bug = 0;
  for (const line of text.split('\n')) {
    const s = sections[line.trim()];
    if (s !== undefined) {
      section = s;
      continue;
    }
    if (section === null) continue;
    const item = /^(\d+)\. /.exec(line);
    if (item !== null) bug = Number(item[1]);
    const p = /^\s*- Payload: (.*)$/.exec(line);
    if (p === null) continue;
    const writes = [...p[1]!.matchAll(/`([^`]*)`/g)].map((m) => pyBytes(m[1]!));
    if (writes.length === 0) continue; // "Any request at all": no bytes to send
    cases.push({ id: `http-garden: ${section} ${bug}`, writes, verdict: null, requests: null, config: null });
  }
  return cases;
}
