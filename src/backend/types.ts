// The gateway interface: what application authors write, and what tsgi hands them.
// Semantics follow PEP 3333 (WSGI) where they apply; see README "The gateway interface".
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { InputStream } from './input.js';

/** Options of environ['tsgi.websocket'] and upgradeWebSocket(). */
export interface WebSocketOptions {
  /**
   * The subprotocol to answer with: a name (taken if the client offers it), or a function that
   * picks one of those offered (false: none). Default: none.
   */
  protocol?: string | ((offered: ReadonlySet<string>) => string | false);
  /** Largest message accepted, in bytes (ws's default: 100 MiB); a larger one closes with 1009. */
  maxPayload?: number;
  /** Negotiate permessage-deflate when the client offers it (default: no). */
  perMessageDeflate?: boolean;
}

/** The WebSocket tsgi hands apps: ws's, whose messages can also be read with for await. */
export type AppWebSocket = WebSocket & AsyncIterable<string | Buffer>;

export type Chunk = string | Uint8Array;

/**
 * The legacy write() callable returned by startResponse: sends a chunk at once. Its first call
 * sends the head, even with an empty chunk (PEP 3333).
 */
export type Write = (chunk: Chunk) => void;

/**
 * Sets the response status ("200 OK", or a number) and headers. Call it once; again only with
 * `excInfo`, and only before the head went out (then it replaces the pending head).
 */
export type StartResponse = (
  status: string | number,
  headers: ReadonlyArray<readonly [string, string | number]> | Record<string, string | number | readonly string[]>,
  excInfo?: unknown,
) => Write;

export type AppResult = Iterable<Chunk> | AsyncIterable<Chunk> | Chunk | null | undefined;

export type Application = (environ: Environ, startResponse: StartResponse)
  => AppResult | Promise<AppResult>;

/** A fetch-style handler (Hono, Workers, Deno, Bun): `fetch(request) → Response`. */
export interface FetchHandler {
  fetch(request: Request, env?: unknown, ctx?: unknown): Response | Promise<Response>;
}

export interface ErrorStream {
  write(message: string): void;
  flush(): void;
}

export interface Environ {
  REQUEST_METHOD: string;
  SCRIPT_NAME: string;
  PATH_INFO: string;
  QUERY_STRING: string;
  REQUEST_URI: string;
  CONTENT_TYPE?: string;
  CONTENT_LENGTH?: string;
  SERVER_NAME: string;
  SERVER_PORT: string;
  SERVER_PROTOCOL: string;
  REMOTE_ADDR: string;
  REMOTE_PORT: string;
  HTTPS?: string;
  'tsgi.version': readonly [number, number];
  'tsgi.url_scheme': string;
  'tsgi.input': InputStream;
  'tsgi.errors': ErrorStream;
  'tsgi.multithread': boolean;
  'tsgi.multiprocess': boolean;
  'tsgi.run_once': boolean;
  /** Aborts when the client goes away or the request's deadline passes. */
  'tsgi.signal': AbortSignal;
  /** The request headers as received, flat: [name, value, name, value, …]. */
  'tsgi.headers': readonly string[];
  /**
   * Only on an upgrade request (Connection: upgrade, over a front that forwards upgrades): takes
   * the connection. The app writes a raw HTTP response head on the socket (a 101 opens the
   * tunnel); the gateway then sends nothing, whatever the app returns.
   */
  'tsgi.upgrade'?: () => Duplex;
  /**
   * Only on a WebSocket upgrade request (Upgrade: websocket): accepts the handshake (the 101 goes
   * out at once) and returns the WebSocket. Throws TSGI_ERR_WEBSOCKET when the handshake is
   * invalid (a 400 went to the client).
   */
  'tsgi.websocket'?: (options?: WebSocketOptions) => AppWebSocket;
  [key: string]: unknown;
}
