// The pure half of static files: turning the raw URL path under a mount into a relative file
// path (or a refusal), and reading Accept-Encoding. No I/O here; static.ts does the disk.
import type { TsgiErrorCode } from '../../protocol/errors.js';

/** A path that may be looked up under the root: `rel` is '' or starts with '/', decoded once. */
export interface CheckedPath {
  rel: string;
  /** Some segment starts with '.' (a dotfile or dot-directory). */
  dot: boolean;
}

/** A refused path: the code picks the status, `hostile` asks for a warn line instead of debug. */
export interface PathRefusal {
  code: TsgiErrorCode;
  why: string;
  hostile: boolean;
}

// Encoded '.', '/', '\' or NUL still present after one decoding: a double-encoded path.
const DOUBLE_ENCODED = /%(?:2e|2f|5c|00)/i;

/**
 * Decodes the raw path under a mount exactly once and refuses NUL, malformed or double
 * encoding and any `..` segment (with '/' or '\' as separators, encoded or not).
 */
export function checkPath(rawRel: string): CheckedPath | PathRefusal {
  let rel: string;
  try {
    rel = rawRel.indexOf('%') === -1 ? rawRel : decodeURIComponent(rawRel);
  } catch {
    return { code: 'TSGI_ERR_STATIC_BAD_PATH', why: 'malformed percent-encoding', hostile: true };
  }
  if (rel.indexOf('\0') !== -1) return { code: 'TSGI_ERR_STATIC_BAD_PATH', why: 'NUL in the path', hostile: true };
  if (DOUBLE_ENCODED.test(rel)) return { code: 'TSGI_ERR_STATIC_BAD_PATH', why: 'double-encoded path', hostile: true };
  let dot = false;
  for (const segment of rel.split(/[/\\]/)) {
    if (segment.charCodeAt(0) !== 46 /* . */ || segment === '.') continue;
    if (segment === '..') return { code: 'TSGI_ERR_STATIC_FORBIDDEN', why: 'path traversal (..)', hostile: true };
    dot = true;
  }
  return { rel, dot };
}

export function isRefusal(checked: CheckedPath | PathRefusal): checked is PathRefusal {
  return (checked as PathRefusal).code !== undefined;
}

/** Whether any segment of a relative path ('/a/.b/c') starts with a dot ('.' and '..' aside). */
export function hasDotSegment(rel: string): boolean {
  for (let i = rel.indexOf('/.'); i !== -1; i = rel.indexOf('/.', i + 1)) {
    const next = rel.charCodeAt(i + 2);
    if (Number.isNaN(next) || next === 47) continue; // '/.' alone or '/./'
    return true;
  }
  return false;
}

/** The precompressed encodings a client takes, by q value (0 = refused). */
export interface Accepted {
  br: number;
  gzip: number;
}

/**
 * Reads Accept-Encoding for br and gzip: explicit q values win over '*', q=0 refuses, a
 * malformed q counts as 0. `x-gzip` is gzip's alias (RFC 9110 section 8.4.1.3).
 */
export function acceptedEncodings(header: string | undefined): Accepted {
  const out: Accepted = { br: 0, gzip: 0 };
  if (header === undefined || header === '') return out;
  let star = -1;
  let br = -1;
  let gzip = -1;
  for (const item of header.split(',')) {
    const semi = item.indexOf(';');
    const name = (semi === -1 ? item : item.slice(0, semi)).trim().toLowerCase();
    let q = 1;
    if (semi !== -1) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(item.slice(semi + 1));
      q = m === null ? 0 : Number(m[1]);
      if (!(q >= 0 && q <= 1)) q = 0;
    }
    if (name === 'br') br = q;
    else if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip, q);
    else if (name === '*') star = q;
  }
  out.br = br !== -1 ? br : Math.max(star, 0);
  out.gzip = gzip !== -1 ? gzip : Math.max(star, 0);
  return out;
}
