// WebSockets for gateway and fetch-style apps, framed by the `ws` library: environ['tsgi.websocket']()
// accepts the handshake of an upgrade request and returns the WebSocket (ws's, WHATWG-style:
// send, close, addEventListener / onmessage…, plus an async iterator of messages).
//
// `ws` is loaded by the first WebSocket, not when `tsgi serve` starts: with https and tls, which
// it brings, it is most of the 0.7 MiB of heap (6.95 → 6.26 MiB) that a serve process without
// WebSockets or TLS no longer carries, nor marks in each of its major collections.
import type { WebSocket, WebSocketServer, ServerOptions } from 'ws';
import { onFirstUse } from '../common/load-on-use.js';
import { TsgiError } from '../protocol/errors.js';
import { makeRequest } from './node-request.js';
import type { TunnelSocket } from './tunnel.js';
import type { Environ, WebSocketOptions } from './types.js';

export type { WebSocketOptions };

/** The `ws` library (its CommonJS build), loaded by the first WebSocket. */
const wsLibrary = onFirstUse<typeof import('ws')>('ws');

/** Messages queued by an async iterator that is not being read: past this, the socket is paused. */
const ITERATOR_HIGH_WATER = 16;
const EMPTY = Buffer.alloc(0);

/**
 * The WebSocket tsgi hands gateway and fetch-style apps: ws's WebSocket, whose messages can
 * also be read with `for await (const message of ws)`: text as a string, binary as a Buffer.
 * The loop ends when the WebSocket closes.
 */
export interface TsgiWebSocket extends WebSocket {
  [Symbol.asyncIterator](): AsyncIterableIterator<string | Buffer>;
}

type TsgiWebSocketClass = (new (...args: ConstructorParameters<typeof WebSocket>) => TsgiWebSocket) & typeof WebSocket;
let tsgiClass: TsgiWebSocketClass | undefined;

/** The TsgiWebSocket class (ws's WebSocket with the iterator), made when `ws` is first loaded. */
export function tsgiWebSocketClass(): TsgiWebSocketClass {
  return tsgiClass ??= class TsgiWebSocket extends wsLibrary().WebSocket {
    [Symbol.asyncIterator](): AsyncIterableIterator<string | Buffer> {
      return new MessageIterator(this);
    }
  };
}

class MessageIterator implements AsyncIterableIterator<string | Buffer> {
  readonly #ws: TsgiWebSocket;
  #queue: (string | Buffer)[] = [];
  #waiter: ((r: IteratorResult<string | Buffer>) => void) | null = null;
  #done = false;
  readonly #onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    const value = isBinary ? toBuffer(data) : toBuffer(data).toString('utf8');
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w({ value, done: false });
      return;
    }
    // Not read fast enough: stop reading the socket (credit stops going back to the client).
    if (this.#queue.push(value) >= ITERATOR_HIGH_WATER && !this.#ws.isPaused) this.#ws.pause();
  };
  readonly #onClose = () => this.#end();

  constructor(ws: TsgiWebSocket) {
    this.#ws = ws;
    ws.on('message', this.#onMessage);
    ws.on('close', this.#onClose);
    if (ws.readyState === ws.CLOSED) this.#end();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<string | Buffer>> {
    const value = this.#queue.shift();
    if (value !== undefined) {
      if (this.#ws.isPaused && this.#queue.length < ITERATOR_HIGH_WATER / 2) this.#ws.resume();
      return Promise.resolve({ value, done: false });
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => { this.#waiter = resolve; });
  }

  /** The loop was left early: the WebSocket stays open, the messages go to other listeners. */
  async return(): Promise<IteratorResult<string | Buffer>> {
    this.#end();
    return { value: undefined, done: true };
  }

  #end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#ws.off('message', this.#onMessage);
    this.#ws.off('close', this.#onClose);
    if (this.#ws.isPaused) this.#ws.resume();
    const w = this.#waiter;
    this.#waiter = null;
    w?.({ value: undefined, done: true });
  }
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

let shared: WebSocketServer | null = null;

function sharedServer(): WebSocketServer {
  return shared ??= new (wsLibrary().WebSocketServer)({ noServer: true, clientTracking: false, WebSocket: tsgiWebSocketClass(), perMessageDeflate: false });
}

function serverFor(options: WebSocketOptions | undefined, premade: TsgiWebSocket | null): WebSocketServer {
  if (options === undefined && premade === null) return sharedServer();
  const opts: ServerOptions = {
    noServer: true, clientTracking: false, perMessageDeflate: options?.perMessageDeflate === true,
    // A WebSocket made before the handshake (fetch-style upgradeWebSocket) is the one it opens.
    WebSocket: premade === null ? tsgiWebSocketClass() : (function Premade() { return premade; }) as never,
  };
  if (options?.maxPayload !== undefined) opts.maxPayload = options.maxPayload;
  const protocol = options?.protocol;
  if (protocol !== undefined) {
    opts.handleProtocols = typeof protocol === 'function' ? (offered) => protocol(offered)
      : (offered) => (offered.has(protocol) ? protocol : false);
  } else {
    opts.handleProtocols = () => false;
  }
  return new (wsLibrary().WebSocketServer)(opts);
}

/** A WebSocket made ahead of its handshake, CONNECTING until it (fetch-style upgradeWebSocket). */
export function premadeWebSocket(): TsgiWebSocket {
  // ws's server defaults (autoPong, the close timeout), as the handshake would give it.
  const TsgiWebSocket = tsgiWebSocketClass();
  return new TsgiWebSocket(null as never, undefined, (sharedServer() as unknown as { options: object }).options as never);
}

/**
 * environ['tsgi.websocket'](options): takes the connection and completes the handshake (the 101
 * goes out at once). Throws TSGI_ERR_WEBSOCKET when ws refuses it (its 400 went to the client).
 */
export function acceptWebSocket(environ: Environ, socket: TunnelSocket, options?: WebSocketOptions,
  premade: TsgiWebSocket | null = null): TsgiWebSocket {
  if (socket.taken) throw new TsgiError('TSGI_ERR_WEBSOCKET', 'the connection of this request was already taken over');
  socket.takeOver();
  const req = makeRequest(environ, { socket: socket as never, read() {}, cut() { socket.destroy(); } });
  let ws: TsgiWebSocket | null = null;
  serverFor(options, premade).handleUpgrade(req, socket, EMPTY, (w) => { ws = w as TsgiWebSocket; });
  if (ws === null) {
    throw new TsgiError('TSGI_ERR_WEBSOCKET', `WebSocket handshake refused for ${environ.REQUEST_METHOD} ${environ.REQUEST_URI} `
      + '(a GET with Upgrade: websocket, a valid Sec-WebSocket-Key and Sec-WebSocket-Version 13 is needed); answered 400');
  }
  return ws;
}
