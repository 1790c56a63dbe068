// Derives the environ (CGI keys, HTTP_* keys and tsgi.* keys) from the raw request head that
// the front sends: the front ships method, target, headers and addresses; the CGI view is
// computed here, once, in the process that needs it.
import { STATIC_NAMES } from '../protocol/header-table.js';
import { ProtocolError } from '../protocol/errors.js';
import type { tsgi } from '../protocol/generated/tsgi.js';
import type { InputStream } from './input.js';
import type { Environ, ErrorStream } from './types.js';

const VERSION = Object.freeze([1, 0] as const);

/** CGI key for each static-table name: 'user-agent' → 'HTTP_USER_AGENT'. */
const STATIC_CGI: readonly string[] = STATIC_NAMES.map((n) => cgiKey(n));

function cgiKey(name: string): string {
  const lower = name.toLowerCase();
  if (lower === 'content-type') return 'CONTENT_TYPE';
  if (lower === 'content-length') return 'CONTENT_LENGTH';
  return 'HTTP_' + lower.toUpperCase().replace(/-/g, '_');
}

export const errorStream: ErrorStream = {
  write: (message: string) => { process.stderr.write(message); },
  flush: () => {},
};

export interface EnvironContext {
  input: InputStream;
  signal: AbortSignal;
  scriptName: string;
  multiprocess: boolean;
}

/** Percent-decodes a path: UTF-8 when the bytes are valid UTF-8, else Latin-1 (as WSGI does). */
export function decodePath(path: string): string {
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    const bytes: number[] = [];
    for (let i = 0; i < path.length; i++) {
      const c = path.charCodeAt(i);
      if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(path.slice(i + 1, i + 3))) {
        bytes.push(parseInt(path.slice(i + 1, i + 3), 16));
        i += 2;
      } else if (c < 0x80) bytes.push(c);
      else bytes.push(...Buffer.from(path[i]!, 'utf8'));
    }
    // decodeURIComponent also refuses a stray '%' (as in "/100%/caf%C3%A9"): decide on the bytes.
    const buf = Buffer.from(bytes);
    try {
      return UTF8.decode(buf);
    } catch {
      return buf.toString('latin1');
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Splits host[:port] and [v6]:port. */
function splitHost(host: string): [string, string] {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return [host.slice(0, end + 1), host.slice(end + 2)];
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? [host, ''] : [host.slice(0, colon), host.slice(colon + 1)];
}

export function buildEnviron(head: tsgi.Request, ctx: EnvironContext): Environ {
  const target = head.target;
  let path = target;
  let query = '';
  const q = target.indexOf('?');
  if (q !== -1) {
    path = target.slice(0, q);
    query = target.slice(q + 1);
  }
  if (path.charCodeAt(0) !== 0x2f /* / */ && path !== '*') {
    // absolute-form (http://host/path): the path part only
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*(\/.*)?$/.exec(path);
    path = m?.[1] ?? '/';
  }
  let pathInfo = decodePath(path);
  let scriptName = '';
  if (ctx.scriptName !== '' && (pathInfo === ctx.scriptName || pathInfo.startsWith(ctx.scriptName + '/'))) {
    scriptName = ctx.scriptName;
    pathInfo = pathInfo.slice(scriptName.length);
  }
  const scheme = head.scheme || 'http';
  const environ: Environ = {
    REQUEST_METHOD: head.method || 'GET',
    SCRIPT_NAME: scriptName,
    PATH_INFO: pathInfo,
    QUERY_STRING: query,
    REQUEST_URI: target,
    SERVER_NAME: head.serverAddr,
    SERVER_PORT: head.serverPort === 0 ? '' : String(head.serverPort),
    SERVER_PROTOCOL: head.protocol || 'HTTP/1.1',
    REMOTE_ADDR: head.remoteAddr,
    REMOTE_PORT: head.remotePort === 0 ? '' : String(head.remotePort),
    'tsgi.version': VERSION,
    'tsgi.url_scheme': scheme,
    'tsgi.input': ctx.input,
    'tsgi.errors': errorStream,
    'tsgi.multithread': false,
    'tsgi.multiprocess': ctx.multiprocess,
    'tsgi.run_once': false,
    'tsgi.signal': ctx.signal,
    'tsgi.headers': [],
  };
  if (scheme === 'https') environ.HTTPS = 'on';

  const block = head.headers as tsgi.HeaderBlock | null | undefined; // decoded: arrays always present
  const flat: string[] = [];
  if (block) {
    const { names, values } = block;
    const literal = block.literalNames;
    if (values.length !== names.length) throw new ProtocolError('header block has names and values of different counts');
    let next = 0;
    for (let i = 0; i < names.length; i++) {
      const index = names[i]!;
      const value = values[i]!;
      let name: string | undefined;
      let key: string | undefined;
      if (index === 0) {
        name = literal[next++];
        if (name === undefined) throw new ProtocolError('header block is missing a literal name');
        flat.push(name, value);
        // A name with '_' would collapse onto the CGI key of its '-' twin (X_Foo vs X-Foo):
        // it is dropped from the CGI view, as nginx does by default, so it cannot spoof one.
        if (name.includes('_')) continue;
        key = cgiKey(name);
      } else {
        name = STATIC_NAMES[index];
        if (name === undefined) throw new ProtocolError(`header name index ${index} is not in the table`);
        flat.push(name, value);
        key = STATIC_CGI[index]!;
      }
      const prev = environ[key];
      if (prev === undefined) environ[key] = value;
      else if (key === 'HTTP_COOKIE') environ[key] = `${prev as string}; ${value}`;
      else environ[key] = `${prev as string}, ${value}`;
    }
  }
  environ['tsgi.headers'] = flat;
  const host = environ.HTTP_HOST as string | undefined;
  if (host !== undefined && host !== '') {
    const [name, port] = splitHost(host);
    environ.SERVER_NAME = name;
    if (environ.SERVER_PORT === '') environ.SERVER_PORT = port || (scheme === 'https' ? '443' : '80');
  }
  return environ;
}
