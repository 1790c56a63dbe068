// CGI spellings both sides need: header name → CGI key, percent-decoding of a path into
// bytes and into text, and host[:port] splitting. Shared by the backend's environ builder and
// the front's uwsgi vars, so a request looks the same to an app whichever way it came.

/** The CGI key of a header name: 'User-Agent' → 'HTTP_USER_AGENT'; Content-Type/-Length unprefixed. */
export function cgiKey(name: string): string {
  const lower = name.toLowerCase();
  if (lower === 'content-type') return 'CONTENT_TYPE';
  if (lower === 'content-length') return 'CONTENT_LENGTH';
  return 'HTTP_' + lower.toUpperCase().replace(/-/g, '_');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes as text: UTF-8 when they are valid UTF-8, else Latin-1 (as WSGI servers do). */
export function bytesToText(bytes: Uint8Array): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  }
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * Percent-decodes a path into bytes: `%XX` becomes that byte, a stray `%` stays, and every
 * other character is one byte (a request target arrives as Latin-1 text, one char per byte).
 */
export function percentDecode(path: string): Buffer {
  if (!path.includes('%')) return Buffer.from(path, 'latin1');
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 && HEX.test(path.slice(i + 1, i + 3))) {
      bytes.push(parseInt(path.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c <= 0xff) bytes.push(c);
    else bytes.push(...Buffer.from(path[i]!, 'utf8'));
  }
  return Buffer.from(bytes);
}

/** Percent-decodes a path: UTF-8 when the bytes are valid UTF-8, else Latin-1 (as WSGI does). */
export function decodePath(path: string): string {
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    // decodeURIComponent also refuses a stray '%' (as in "/100%/caf%C3%A9"): decide on the bytes.
    return bytesToText(percentDecode(path));
  }
}

/** Splits host[:port] and [v6]:port. */
export function splitHost(host: string): [string, string] {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return [host.slice(0, end + 1), host.slice(end + 2)];
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? [host, ''] : [host.slice(0, colon), host.slice(colon + 1)];
}

/** The path and query of a request target; an absolute-form target gives its path part. */
export function splitTarget(target: string): { path: string; query: string } {
  let path = target;
  let query = '';
  const q = target.indexOf('?');
  if (q !== -1) {
    path = target.slice(0, q);
    query = target.slice(q + 1);
  }
  if (path.charCodeAt(0) !== 0x2f /* / */ && path !== '*') {
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*(\/.*)?$/.exec(path);
    path = m?.[1] ?? '/';
  }
  return { path, query };
}
