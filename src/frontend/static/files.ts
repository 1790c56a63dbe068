// Static files at the front (`--static /PREFIX=DIR`): match() picks a mount by URL prefix,
// serve() checks the path (traversal, NUL, dotfiles, symlink escape), picks a precompressed
// sibling, then hands the file to `send` (ETag, Last-Modified, 304, Range, HEAD, streaming).
import { constants, realpath, realpathSync, stat, statSync, type ReadStream, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import type send from 'send';
import { onFirstUse } from '../../common/load-on-use.js';
import type { Logger } from '../../common/log.js';
import type { StaticMount } from '../../common/options.js';
import { ConfigError, TsgiError, errorResponse, httpStatusForCode, statusResponse, type ErrorResponse, type TsgiErrorCode } from '../../protocol/errors.js';
import type { HttpRequest, HttpResponse } from '../http/server.js';
import { StaticResponse } from './response.js';
import { acceptedEncodings, checkPath, hasDotSegment, isRefusal } from './path.js';

export type Dotfiles = 'ignore' | 'deny' | 'allow';

export interface Mount {
  /** URL prefix, without a trailing '/' unless it is '/'. */
  readonly prefix: string;
  /** The real path of the directory (symlinks resolved at start). */
  readonly root: string;
}

/** What one static response came to, for the access log. */
export interface StaticOutcome {
  mount: Mount;
  status: number;
  /** Body bytes: the Content-Length sent when the response finished, else what was read from disk (an upper bound). */
  bytes: number;
  /** The file sent (a real path, perhaps a .br/.gz sibling), or null for a refusal or redirect. */
  file: string | null;
  /** performance.now() when serving began. */
  started: number;
}

export interface StaticOptions {
  log: Logger;
  dotfiles?: Dotfiles;
  /** Called once per static response when its connection is done with it (finished or cut). */
  onDone?: (req: HttpRequest, res: HttpResponse, outcome: StaticOutcome) => void;
}

/**
 * send and mime-types, loaded when a front has --static mounts, not at every front's start:
 * loading them (mime-types' database especially) was measured to make the front's hello
 * requests cost several µs more CPU (more old-space garbage per request) with no mounts at all.
 */
const sendLibrary = onFirstUse<typeof send>('send');
const mimeTypes = onFirstUse<{ contentType: (type: string) => string | false }>('mime-types');

const SEND_OPTIONS: send.SendOptions & { flags: number } = {
  acceptRanges: true, cacheControl: true, maxAge: 0, etag: true, lastModified: true,
  dotfiles: 'allow', index: false, // checked and done here, on the real path
  // send passes its options on to fs.createReadStream: the real path's last component must not
  // have become a symlink since it was checked.
  flags: constants.O_RDONLY | constants.O_NOFOLLOW,
};

const ENCODINGS = ['br', 'gzip'] as const;
const SUFFIX = { br: '.br', gzip: '.gz' } as const;

/** A file or directory inside the root, by real path and stats, or null when there is none. */
type Found = { file: string; stats: Stats } | null;

export class StaticFiles {
  /** Longest prefix first, so the first match is the most specific. */
  readonly mounts: readonly Mount[];
  onDone: StaticOptions['onDone'];
  readonly #log: Logger;
  readonly #dotfiles: Dotfiles;

  /** null when there are no mounts: the request handler then has nothing to check. */
  static create(mounts: readonly StaticMount[] | undefined, opts: StaticOptions): StaticFiles | null {
    return mounts === undefined || mounts.length === 0 ? null : new StaticFiles(mounts, opts);
  }

  constructor(mounts: readonly StaticMount[], opts: StaticOptions) {
    sendLibrary(); // at start, not on the first request
    mimeTypes();
    const seen = new Set<string>();
    this.mounts = mounts.map(({ prefix, dir }) => {
      if (seen.has(prefix)) throw new ConfigError(`--static: the prefix '${prefix}' is given twice`);
      seen.add(prefix);
      let root: string;
      try {
        root = realpathSync.native(resolve(dir)); // the same realpath(3) as each lookup
        if (!statSync(root).isDirectory()) throw new Error('not a directory');
      } catch (err) {
        throw new ConfigError(`--static ${prefix}=${dir}: ${(err as Error).message}; expected an existing directory`);
      }
      return { prefix, root };
    }).sort((a, b) => b.prefix.length - a.prefix.length);
    this.#log = opts.log;
    this.#dotfiles = opts.dotfiles ?? 'ignore';
    this.onDone = opts.onDone;
  }

  /** The mount whose prefix `url` starts with at a segment boundary ('/static' takes '/static/x', not '/staticky'). */
  match(url: string): Mount | null {
    for (const mount of this.mounts) {
      const prefix = mount.prefix;
      if (!url.startsWith(prefix)) continue;
      if (prefix.length === 1 || url.length === prefix.length) return mount;
      const next = url.charCodeAt(prefix.length);
      if (next === 47 /* / */ || next === 63 /* ? */) return mount;
    }
    return null;
  }

  /**
   * Answers the request from `mount`; never passes it on, a missing file is a 404. A request
   * refused before it is served (`refusal`: a bad head, a limit) gets its status and a close.
   */
  serve(req: HttpRequest, response: HttpResponse, mount: Mount, refusal: TsgiError | null = null): void {
    const state = { mount, file: null as string | null, stream: null as ReadStream | null };
    const res = new StaticResponse(response);
    if (this.onDone !== undefined) {
      const onDone = this.onDone;
      const started = performance.now();
      res.once('close', () => onDone(req, response, {
        mount, status: res.statusCode, bytes: bodyBytes(req, res, state.stream), file: state.file, started,
      }));
    }
    if (refusal !== null) {
      this.#refuse(req, res, refusal.code, refusal.message, true);
      return;
    }
    this.#serve(req, res, state).catch((err: unknown) => {
      this.#log.error(`static ${req.method} ${req.url}: ${(err as Error).message}`, err);
      this.#answer(res, statusResponse(500));
    });
  }

  async #serve(req: HttpRequest, res: StaticResponse, state: { mount: Mount; file: string | null; stream: ReadStream | null }): Promise<void> {
    const { mount } = state;
    const url = req.url;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return this.#refuse(req, res, 'TSGI_ERR_STATIC_METHOD', 'only GET and HEAD are served', false);
    }
    const query = url.indexOf('?');
    const rawPath = query === -1 ? url : url.slice(0, query);
    const checked = checkPath(mount.prefix.length === 1 ? rawPath : rawPath.slice(mount.prefix.length));
    if (isRefusal(checked)) return this.#refuse(req, res, checked.code, checked.why, checked.hostile);
    if (checked.dot && this.#dotfiles !== 'allow') return this.#refuseDotfile(req, res);
    const root = mount.root;
    let found = await this.#lookUp(root, root + checked.rel);
    if (found === null) return this.#refuse(req, res, 'TSGI_ERR_STATIC_NOT_FOUND', 'no such file', false);
    if (found === 'outside') return this.#refuse(req, res, 'TSGI_ERR_STATIC_FORBIDDEN', 'a symlink leads outside the root', true);
    if (this.#dotfiles !== 'allow' && hasDotSegment(below(root, found.file))) return this.#refuseDotfile(req, res);
    let typeName = checked.rel;
    if (found.stats.isDirectory()) {
      if (!rawPath.endsWith('/')) {
        // Redirect to the slash form, so relative links in index.html resolve; one leading slash only.
        const location = `/${rawPath.replace(/^\/+/, '')}/${query === -1 ? '' : url.slice(query)}`;
        res.writeHead(301, { location, 'content-length': 0 });
        res.end();
        return;
      }
      const index = await this.#lookUp(root, `${found.file}/index.html`);
      if (index === 'outside') return this.#refuse(req, res, 'TSGI_ERR_STATIC_FORBIDDEN', 'index.html is a symlink out of the root', true);
      if (index === null || !index.stats.isFile()) {
        return this.#refuse(req, res, 'TSGI_ERR_STATIC_NOT_FOUND', 'directory without index.html (no listings)', false);
      }
      if (this.#dotfiles !== 'allow' && hasDotSegment(below(root, index.file))) return this.#refuseDotfile(req, res);
      found = index;
      typeName = 'index.html';
    } else if (!found.stats.isFile() || rawPath.endsWith('/')) {
      return this.#refuse(req, res, 'TSGI_ERR_STATIC_NOT_FOUND', 'not a regular file', false);
    }
    res.setHeader('Content-Type', mimeTypes().contentType(extension(typeName)) || 'application/octet-stream');
    let file = found.file;
    const acceptEncoding = req.headers['accept-encoding'];
    if (acceptEncoding !== undefined) {
      // Both siblings are looked up: Vary is owed whenever one exists, chosen or not. (Without
      // Accept-Encoding nothing is looked up: an identity answer cached for everyone is still right.)
      const accepted = acceptedEncodings(acceptEncoding);
      const [br, gzip] = await Promise.all([this.#sibling(root, file, 'br'), this.#sibling(root, file, 'gzip')]);
      if (br !== null || gzip !== null) res.setHeader('Vary', 'Accept-Encoding');
      const siblings = { br, gzip };
      let best: (typeof ENCODINGS)[number] | null = null;
      for (const encoding of ENCODINGS) {
        if (siblings[encoding] !== null && accepted[encoding] > 0 && (best === null || accepted[encoding] > accepted[best])) best = encoding;
      }
      if (best !== null) {
        const chosen = siblings[best]!;
        file = chosen.file;
        res.setHeader('Content-Encoding', best);
        // An ETag of its own: a cache must not answer a request for one encoding with the other.
        res.setHeader('ETag', `W/"${chosen.stats.size.toString(16)}-${chosen.stats.mtime.getTime().toString(16)}-${best}"`);
      }
    }
    state.file = file;
    if (res.destroyed) return; // the client left while the disk was asked
    const stream = sendLibrary()(req as never, encodeFilePath(file), SEND_OPTIONS);
    stream.on('error', (err: { status?: number; headers?: Record<string, string>; message: string }) => {
      const status = err.status ?? 500;
      if (status === 500) this.#log.error(`static ${req.method} ${req.url}: ${err.message}`, err);
      else this.#log.debug(`${status} ${req.method} ${req.url}: ${err.message}`);
      this.#answer(res, statusResponse(status), err.headers);
    });
    if (this.onDone !== undefined) stream.on('stream', (s: ReadStream) => { state.stream = s; });
    stream.pipe(res as never);
  }

  /** The real path of `path` if it is inside `root` ('outside' if a symlink leads out), with its stats. */
  #lookUp(root: string, path: string): Promise<Found | 'outside'> {
    // The callback API: about half the CPU of fs/promises for this pair of calls.
    return new Promise((done) => {
      realpath.native(path, (err, file) => {
        if (err !== null) return done(null); // ENOENT, ENOTDIR, ELOOP, EACCES...: nothing to serve
        if (file !== root && !file.startsWith(root.length === 1 ? root : root + '/')) return done('outside');
        stat(file, (statErr, stats) => done(statErr === null ? { file, stats } : null));
      });
    });
  }

  async #sibling(root: string, file: string, encoding: 'br' | 'gzip'): Promise<Found> {
    const found = await this.#lookUp(root, file + SUFFIX[encoding]);
    return found !== null && found !== 'outside' && found.stats.isFile() ? found : null;
  }

  #refuseDotfile(req: HttpRequest, res: StaticResponse): void {
    const deny = this.#dotfiles === 'deny';
    this.#refuse(req, res, deny ? 'TSGI_ERR_STATIC_FORBIDDEN' : 'TSGI_ERR_STATIC_NOT_FOUND', `dotfile (--static-dotfiles ${this.#dotfiles})`, false);
  }

  #refuse(req: HttpRequest, res: StaticResponse, code: TsgiErrorCode, why: string, hostile: boolean): void {
    const status = httpStatusForCode(code);
    const line = `static ${status} ${req.method} ${req.url} from ${req.socket.remoteAddress ?? 'unix client'}: ${why}`;
    if (hostile) this.#log.warn(line);
    else this.#log.debug(line);
    this.#answer(res, errorResponse(new TsgiError(code, why)));
  }

  /** An error answer, replacing any header set so far (a 416 keeps the Content-Range of `extra`). */
  #answer(res: StaticResponse, answer: ErrorResponse, extra?: Record<string, string>): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    if (extra !== undefined) for (const name in extra) res.setHeader(name, extra[name]!);
    const h = answer.headers;
    for (let i = 0; i < h.length; i += 2) res.setHeader(h[i]!, h[i + 1]!);
    res.writeHead(answer.status);
    res.end(Buffer.from(answer.body));
  }
}

/** The part of a real path below the root, '' or starting with '/'. */
function below(root: string, file: string): string {
  return root.length === 1 ? file : file.slice(root.length);
}

function extension(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > name.lastIndexOf('/') ? name.slice(dot) : '';
}

/** `send` decodes the path it is given: hand it the real path percent-encoded, segment by segment. */
function encodeFilePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

function bodyBytes(req: HttpRequest, res: StaticResponse, stream: ReadStream | null): number {
  if (!res.writableFinished) return stream?.bytesRead ?? 0;
  if (req.method === 'HEAD' || res.statusCode === 304) return 0;
  return Number(res.getHeader('content-length') ?? 0);
}
