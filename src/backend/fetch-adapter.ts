// Runs a fetch-style handler (`fetch(request) → Response`, as Hono, Workers, Deno and Bun apps
// export) as a gateway application: the environ becomes a Request (body streamed from
// tsgi.input, signal from tsgi.signal), the Response becomes startResponse + body chunks.
import { STATUS_CODES } from 'node:http';
import { TsgiError } from '../protocol/errors.js';
import { HOP_BY_HOP } from './gateway.js';
import type { Application, Chunk, Environ, FetchHandler, Write } from './types.js';
import { type TsgiWebSocket, type WebSocketOptions, premadeWebSocket } from './websocket.js';

/** environ['tsgi.websocket'], with the WebSocket made ahead of the handshake. */
type Accept = (options?: WebSocketOptions, premade?: TsgiWebSocket) => TsgiWebSocket;

/** The environ of each upgrade request turned into a Request (plain requests are not recorded). */
const UPGRADES = new WeakMap<Request, Environ>();
/** The responses upgradeWebSocket() made, and what accepting them takes. */
const ACCEPTS = new WeakMap<Response, { accept: Accept; socket: TsgiWebSocket; options: WebSocketOptions | undefined }>();

/**
 * Deno.upgradeWebSocket for fetch-style handlers served by tsgi: `socket` is a WebSocket
 * (CONNECTING until the handshake; 'open' then fires), and `response` is what the handler
 * returns; tsgi then completes the handshake (the 101) instead of sending that response.
 * Throws TSGI_ERR_WEBSOCKET for a request that is not a WebSocket upgrade served by tsgi.
 */
export function upgradeWebSocket(request: Request, options?: WebSocketOptions): { socket: TsgiWebSocket; response: Response } {
  const environ = UPGRADES.get(request);
  const accept = environ?.['tsgi.websocket'] as Accept | undefined;
  if (accept === undefined) {
    throw new TsgiError('TSGI_ERR_WEBSOCKET', `upgradeWebSocket: ${request.method} ${request.url} is not a WebSocket upgrade request`
      + ' (Upgrade: websocket, over a front that forwards upgrades)');
  }
  const socket = premadeWebSocket();
  const response = new Response(null, { status: 200 });
  ACCEPTS.set(response, { accept, socket, options });
  return { socket, response };
}

const NO_BODY = new Set(['GET', 'HEAD']);
const EMPTY = new Uint8Array(0);
/** scheme://authority of an absolute-form request-target. */
const ABSOLUTE_FORM = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?]*/;

export function requestFromEnviron(environ: Environ): Request {
  const scheme = environ['tsgi.url_scheme'];
  const server = environ.SERVER_NAME.includes(':') && !environ.SERVER_NAME.startsWith('[')
    ? `[${environ.SERVER_NAME}]` : environ.SERVER_NAME; // an IPv6 address, when there is no Host
  const host = (environ.HTTP_HOST as string | undefined)
    ?? `${server}${environ.SERVER_PORT ? `:${environ.SERVER_PORT}` : ''}`;
  let target = environ.REQUEST_URI.replace(ABSOLUTE_FORM, ''); // absolute-form: its path and query
  if (!target.startsWith('/')) target = `/${target}`;
  const url = `${scheme}://${host || 'localhost'}${target}`;
  const headers = new Headers();
  const flat = environ['tsgi.headers'];
  for (let i = 0; i < flat.length; i += 2) {
    try {
      headers.append(flat[i]!, flat[i + 1]!);
    } catch {
      // a header the Fetch API refuses to carry: the handler does not see it
    }
  }
  const method = environ.REQUEST_METHOD;
  const input = environ['tsgi.input'];
  const hasBody = !NO_BODY.has(method) && !(input.complete && input.received === 0);
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: environ['tsgi.signal'] };
  if (hasBody) {
    init.body = ReadableStream.from(input) as unknown as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  const request = new Request(url, init);
  if (environ['tsgi.websocket'] !== undefined) UPGRADES.set(request, environ);
  return request;
}

/** Wraps a fetch-style handler as a gateway Application. */
export function fromFetch(handler: FetchHandler): Application {
  return async (environ, startResponse) => {
    const ctx = { waitUntil: (p: Promise<unknown>) => { p.catch(() => {}); }, passThroughOnException: () => {} };
    const response = await handler.fetch(requestFromEnviron(environ), environ, ctx);
    if (!(response instanceof Response)) {
      throw new TypeError(`fetch handler returned ${response === null ? 'null' : typeof response}, not a Response`);
    }
    const upgrade = ACCEPTS.get(response);
    if (upgrade !== undefined) {
      try {
        upgrade.accept(upgrade.options, upgrade.socket);
      } catch (err) {
        upgrade.socket.emit('close', 1006, Buffer.alloc(0)); // the handshake was refused (a 400 went out)
        throw err;
      }
      return null;
    }
    const headers: [string, string][] = [];
    response.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.has(name) && name !== 'set-cookie') headers.push([name, value]);
    });
    for (const cookie of response.headers.getSetCookie()) headers.push(['set-cookie', cookie]);
    const write = startResponse(`${response.status} ${response.statusText || STATUS_CODES[response.status] || ''}`.trimEnd(), headers);
    if (response.body === null) return [];
    return new BodyIterator(response.body.getReader(), environ['tsgi.signal'], write);
  };
}

/**
 * A Response body as the gateway's async iterator. When the client goes away the body is
 * cancelled at once, even while a read is pending (a stream waiting for its next event): the
 * handler's cancel() runs (Hono's stream.onAbort), and the gateway's pending next() ends.
 *
 * The head goes out with the first chunk when that is at hand; when the first read is still
 * pending a turn of the event loop later (a stream waiting for its first event), the head goes
 * out alone, as Deno and Bun send it once the Response is returned: a client's EventSource
 * opens without waiting for an event.
 */
class BodyIterator implements AsyncIterator<Chunk>, AsyncIterable<Chunk> {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #signal: AbortSignal;
  #done = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal, write: Write) {
    this.#reader = reader;
    this.#signal = signal;
    // The gateway reads the first chunk before this turn ends; one that was at hand has taken
    // the head with it by then, and write('') does nothing.
    if (pendingHeads.push(write) === 1) setImmediate(sendHeads);
    if (signal.aborted) this.#cancel(signal.reason);
    else signal.addEventListener('abort', this, { once: true });
  }

  /** The signal's 'abort' (this object is the listener: no closure per response). */
  handleEvent(): void {
    this.#cancel(this.#signal.reason);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Chunk>> {
    const r = await this.#reader.read();
    if (r.done) this.#release();
    return r as IteratorResult<Chunk>;
  }

  async return(): Promise<IteratorResult<Chunk>> {
    this.#cancel(undefined);
    return { value: undefined, done: true };
  }

  #release(): void {
    if (this.#done) return;
    this.#done = true;
    this.#signal.removeEventListener('abort', this);
  }

  #cancel(reason: unknown): void {
    if (this.#done) return;
    this.#release();
    this.#reader.cancel(reason).catch(() => {});
  }
}

/** The write() of each streamed body begun this turn: one setImmediate for all of them. */
let pendingHeads: Write[] = [];

/** write(''): each head, alone, unless it went out already (then it does nothing). */
function sendHeads(): void {
  const list = pendingHeads;
  pendingHeads = [];
  for (const write of list) {
    try {
      write(EMPTY);
    } catch {
      // the exchange failed meanwhile: the gateway has answered it
    }
  }
}
