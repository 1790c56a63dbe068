// A gateway application on other servers: toNodeHandler(application) is a (req, res) handler
// for node:http (or anything that takes one: Express, a test server), toFetch(application) a
// fetch(request) handler for Bun, Deno and Workers. The same environ, gateway rules and
// tsgi.input as under tsgi serve, so an app written to the interface runs on any of them.
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import { createLogger, type Logger } from '../common/log.js';
import { HOP_BY_HOP } from '../protocol/http-grammar.js';
import type { tsgi } from '../protocol/generated/tsgi.js';
import { buildEnviron, LazySignal } from './environ.js';
import { runApplication, type Responder } from './gateway.js';
import { InputStream } from './input.js';
import type { Application } from './types.js';

export interface PortableOptions {
  /** URL prefix the app is mounted at: becomes SCRIPT_NAME and is cut from PATH_INFO. */
  scriptName?: string;
  /** Where refusals and app errors are logged (default: stderr, tagged `serve`). */
  log?: Logger;
}

/** Request body bytes read from a client and not yet taken by the app before the socket is paused. */
const BODY_HIGH_WATER = 64 * 1024;

/** The head buildEnviron reads, made from what any server knows of a request. */
function head(method: string, target: string, names: string[], values: string[], remoteAddr: string, remotePort: number,
  serverAddr: string, serverPort: number, scheme: string, protocol: string): tsgi.Request {
  return {
    method, target, remoteAddr, remotePort, serverAddr, serverPort, scheme, protocol, timeoutMs: 0,
    headers: { names: names.map(() => 0), values, literalNames: names },
  } as unknown as tsgi.Request;
}

/** End-to-end request headers: hop-by-hop ones, and those Connection names, stay with the server. */
function endToEnd(pairs: Iterable<readonly [string, string]>): { names: string[]; values: string[] } {
  const list = [...pairs];
  const dropped = new Set<string>(HOP_BY_HOP);
  for (const [name, value] of list) {
    if (name.toLowerCase() === 'connection') for (const token of value.split(',')) dropped.add(token.trim().toLowerCase());
  }
  const names: string[] = [];
  const values: string[] = [];
  for (const [name, value] of list) {
    if (dropped.has(name.toLowerCase())) continue;
    names.push(name.toLowerCase());
    values.push(value);
  }
  return { names, values };
}

/** Flat [name, value, …] as an object by lower-case name (a repeated one: its values in a list), as node:http takes them. */
function pairsObject(flat: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase(); // writeEarlyHints looks for 'link'
    const prev = out[name];
    out[name] = prev === undefined ? flat[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), flat[i + 1]!];
  }
  return out;
}

function rawPairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/**
 * The application as a node:http request listener: `http.createServer(toNodeHandler(app))`.
 * The request body reaches tsgi.input with backpressure (the socket pauses while the app has
 * 64 KiB unread); tsgi.signal aborts when the client goes away.
 */
export function toNodeHandler(application: Application, opts: PortableOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  const log = opts.log ?? createLogger('serve');
  const scriptName = opts.scriptName ?? '';
  return (req, res) => {
    const socket = req.socket;
    const { names, values } = endToEnd(rawPairs(req.rawHeaders));
    let taken = 0;
    const input = new InputStream((n) => {
      taken += n;
      if (req.isPaused() && input.received - taken < BODY_HIGH_WATER) req.resume();
    });
    req.on('data', (chunk: Buffer) => {
      input.push(chunk);
      if (input.received - taken >= BODY_HIGH_WATER) req.pause();
    });
    req.on('end', () => input.end());
    const signal = new LazySignal();
    res.on('close', () => {
      if (res.writableFinished) return;
      const err = new Error('the client went away');
      input.fail(err);
      signal.abort(err);
    });
    const scheme = (socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    let environ;
    try {
      environ = buildEnviron(head(req.method ?? 'GET', req.url ?? '/', names, values, socket.remoteAddress ?? '', socket.remotePort ?? 0,
        socket.localAddress ?? '', socket.localPort ?? 0, scheme, `HTTP/${req.httpVersion}`),
      { input, signal, scriptName, multiprocess: false });
    } catch (err) {
      log.warn(`${req.method} ${req.url}: ${(err as Error).message}; answered 400`);
      res.writeHead(400, { 'content-type': 'text/plain' }).end('400 Bad Request\n');
      return;
    }
    let wrote = false;
    let drained: (() => void) | null = null;
    const wake = () => { const d = drained; drained = null; d?.(); };
    res.on('drain', wake);
    res.on('close', wake);
    const out: Responder = {
      head(status, reason, headers, end) {
        res.writeHead(status, reason || STATUS_CODES[status] || '', headers); // '': the standard phrase
        if (end) res.end();
        // node:http sends a head with the first chunk; one sent alone (write('')) goes now.
        else queueMicrotask(() => { if (!wrote && !res.destroyed) res.flushHeaders(); });
      },
      write(chunk, end) {
        wrote = true;
        if (end) {
          res.end(chunk);
          return true;
        }
        return res.write(chunk);
      },
      drain() {
        if (res.destroyed || !res.writableNeedDrain) return Promise.resolve();
        return new Promise((resolve) => { drained = resolve; });
      },
      abort() {
        res.destroy();
      },
      get aborted() {
        return res.destroyed;
      },
      informational(status, headers) {
        if (status === 103) res.writeEarlyHints(pairsObject(headers));
      },
      trailers(headers) {
        wrote = true;
        res.addTrailers(pairsObject(headers));
        res.end();
      },
    };
    runApplication(application, environ, out, log);
  };
}

/**
 * The application as a fetch handler: `Deno.serve(toFetch(app))`, `Bun.serve({ fetch:
 * toFetch(app) })`, `export default { fetch: toFetch(app) }` on Workers. The response body
 * streams (the app is asked for more only as the server reads); tsgi.signal is the request's.
 */
export function toFetch(application: Application, opts: PortableOptions = {}): (request: Request) => Promise<Response> {
  const log = opts.log ?? createLogger('serve');
  const scriptName = opts.scriptName ?? '';
  return (request) => new Promise<Response>((resolve, reject) => {
    const url = new URL(request.url);
    const scheme = url.protocol === 'https:' ? 'https' : 'http';
    const pairs: [string, string][] = [];
    request.headers.forEach((value, name) => { pairs.push([name, value]); });
    if (!request.headers.has('host')) pairs.unshift(['host', url.host]);
    const { names, values } = endToEnd(pairs);
    let taken = 0;
    let more: (() => void) | null = null;
    const input = new InputStream((n) => {
      taken += n;
      const m = more;
      more = null;
      m?.();
    });
    const room = (): Promise<void> | null => (input.received - taken < BODY_HIGH_WATER ? null
      : new Promise((r) => { more = r; }));
    if (request.body === null) input.end();
    else void pump(request.body, input, room);
    const environ = buildEnviron(head(request.method, url.pathname + url.search, names, values, '', 0, url.hostname,
      Number(url.port) || (scheme === 'https' ? 443 : 80), scheme, 'HTTP/1.1'),
    { input, signal: request, scriptName, multiprocess: false });
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let pulled: (() => void) | null = null;
    let aborted = false;
    const wake = () => { const p = pulled; pulled = null; p?.(); };
    const body = new ReadableStream<Uint8Array>({
      start(c) { controller = c; },
      pull() { wake(); },
      cancel() { aborted = true; wake(); },
    }, { highWaterMark: 1 });
    let sent = false;
    const out: Responder = {
      head(status, reason, headers, end) {
        sent = true;
        const h = new Headers();
        for (let i = 0; i < headers.length; i += 2) h.append(headers[i]!, headers[i + 1]!);
        const nullBody = status === 204 || status === 205 || status === 304 || request.method === 'HEAD';
        if (end || nullBody) controller.close();
        resolve(new Response(nullBody ? null : body, { status, statusText: reason || STATUS_CODES[status] || '', headers: h }));
      },
      write(chunk, end) {
        if (aborted) return false;
        try {
          if (chunk.length > 0) controller.enqueue(chunk);
          if (end) controller.close();
        } catch {
          // closed: a HEAD or null-body response, whose body the server never reads
        }
        return (controller.desiredSize ?? 0) > 0;
      },
      drain() {
        if (aborted || (controller.desiredSize ?? 0) > 0) return Promise.resolve();
        return new Promise((r) => { pulled = r; });
      },
      abort(reason) {
        aborted = true;
        if (!sent) reject(new Error(`the application ended the exchange without a response: ${reason}`));
        else controller.error(new Error(reason));
        wake();
      },
      get aborted() {
        return aborted || request.signal.aborted;
      },
      // A fetch Response carries neither interim responses nor trailers.
      informational() {},
      trailers() {
        try {
          controller.close();
        } catch {
          // already closed
        }
      },
    };
    runApplication(application, environ, out, log);
  });
}

/** Feeds a fetch request's body into tsgi.input, reading on only while the app has little unread. */
async function pump(stream: ReadableStream<Uint8Array>, input: InputStream, room: () => Promise<void> | null): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      await room();
      const { value, done } = await reader.read();
      if (done) break;
      input.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    }
    input.end();
  } catch (err) {
    input.fail(err);
  }
}
