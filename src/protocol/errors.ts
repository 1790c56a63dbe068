// The one errors module: every error tsgi raises on purpose is a TsgiError with a stable
// TSGI_ERR_* code, and this file alone decides which HTTP response each one becomes: status,
// reason, headers, body and whether the connection closes (errorResponse).

export type TsgiErrorCode =
  | 'TSGI_ERR_PROTOCOL'
  | 'TSGI_ERR_FRAME_TOO_LARGE'
  | 'TSGI_ERR_VERSION'
  | 'TSGI_ERR_BACKEND_UNAVAILABLE'
  | 'TSGI_ERR_BACKEND_LOST'
  | 'TSGI_ERR_BACKEND_RESET'
  | 'TSGI_ERR_BACKEND_TIMEOUT'
  | 'TSGI_ERR_NO_BACKEND'
  | 'TSGI_ERR_STREAM_REFUSED'
  | 'TSGI_ERR_APP'
  | 'TSGI_ERR_APP_LOAD'
  | 'TSGI_ERR_START_RESPONSE'
  | 'TSGI_ERR_HEADER'
  | 'TSGI_ERR_BODY_LENGTH'
  | 'TSGI_ERR_CLIENT_GONE'
  | 'TSGI_ERR_CONNECTION_CUT'
  | 'TSGI_ERR_BODY_TOO_LARGE'
  | 'TSGI_ERR_BAD_REQUEST'
  | 'TSGI_ERR_REQUEST_TIMEOUT'
  | 'TSGI_ERR_HEADERS_TOO_LARGE'
  | 'TSGI_ERR_EXPECTATION_FAILED'
  | 'TSGI_ERR_OVERLOADED'
  | 'TSGI_ERR_TOO_MANY_TUNNELS'
  | 'TSGI_ERR_CONFIG'
  | 'TSGI_ERR_STATIC_BAD_PATH'
  | 'TSGI_ERR_STATIC_FORBIDDEN'
  | 'TSGI_ERR_STATIC_NOT_FOUND'
  | 'TSGI_ERR_STATIC_METHOD'
  | 'TSGI_ERR_NOT_IMPLEMENTED'
  | 'TSGI_ERR_WEBSOCKET';

export const STATUS: Readonly<Record<TsgiErrorCode, number>> = {
  TSGI_ERR_PROTOCOL: 502,
  TSGI_ERR_FRAME_TOO_LARGE: 502,
  TSGI_ERR_VERSION: 502,
  TSGI_ERR_BACKEND_UNAVAILABLE: 502,
  TSGI_ERR_BACKEND_LOST: 502,
  TSGI_ERR_BACKEND_RESET: 502,
  TSGI_ERR_BACKEND_TIMEOUT: 504,
  TSGI_ERR_NO_BACKEND: 503,
  TSGI_ERR_STREAM_REFUSED: 503,
  TSGI_ERR_APP: 500,
  TSGI_ERR_APP_LOAD: 500,
  TSGI_ERR_START_RESPONSE: 500,
  TSGI_ERR_HEADER: 500,
  TSGI_ERR_BODY_LENGTH: 500,
  TSGI_ERR_CLIENT_GONE: 499,
  /**
   * The application cut its connection (a Node app's req.socket.destroy()): no response at all,
   * the client's connection is cut (nginx's 444, "closed without a response").
   */
  TSGI_ERR_CONNECTION_CUT: 444,
  TSGI_ERR_BODY_TOO_LARGE: 413,
  /** Malformed or ambiguous HTTP from a client (smuggling attempts included). */
  TSGI_ERR_BAD_REQUEST: 400,
  /** A client too slow with its head (--headers-timeout) or its body (--body-timeout). */
  TSGI_ERR_REQUEST_TIMEOUT: 408,
  /** A request head over --max-header-size or --max-headers. */
  TSGI_ERR_HEADERS_TOO_LARGE: 431,
  /** An Expect other than 100-continue. */
  TSGI_ERR_EXPECTATION_FAILED: 417,
  /** Over --max-in-flight or --max-connections: shed at once, with Retry-After. */
  TSGI_ERR_OVERLOADED: 503,
  /** An upgrade request over --max-tunnels (upgraded connections open at once): 503 with Retry-After. */
  TSGI_ERR_TOO_MANY_TUNNELS: 503,
  TSGI_ERR_CONFIG: 500,
  // Static files at the front: a malformed or hostile path, a refused file, a missing one, a method.
  TSGI_ERR_STATIC_BAD_PATH: 400,
  TSGI_ERR_STATIC_FORBIDDEN: 403,
  TSGI_ERR_STATIC_NOT_FOUND: 404,
  TSGI_ERR_STATIC_METHOD: 405,
  /** A request the front does not serve at all (CONNECT over HTTP/2). */
  TSGI_ERR_NOT_IMPLEMENTED: 501,
  /** A WebSocket handshake refused (not an upgrade request, a bad Sec-WebSocket-Key or -Version). */
  TSGI_ERR_WEBSOCKET: 400,
};

export class TsgiError extends Error {
  readonly code: TsgiErrorCode;
  constructor(code: TsgiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TsgiError';
    this.code = code;
  }
  /** The HTTP status a client sees when this error ends its request. */
  get status(): number {
    return STATUS[this.code];
  }
}

/** A peer broke the wire protocol; the connection it came on is closed. */
export class ProtocolError extends TsgiError {
  constructor(message: string, code: TsgiErrorCode = 'TSGI_ERR_PROTOCOL') {
    super(code, message);
    this.name = 'ProtocolError';
  }
}

/** An option given on the command line, in the environment or a config file is wrong. */
export class ConfigError extends TsgiError {
  constructor(message: string) {
    super('TSGI_ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}

/** The application broke the gateway interface (startResponse misuse, bad headers, a body that contradicts its Content-Length). */
export class GatewayError extends TsgiError {
  constructor(code: 'TSGI_ERR_START_RESPONSE' | 'TSGI_ERR_HEADER' | 'TSGI_ERR_BODY_LENGTH', message: string) {
    super(code, message);
    this.name = 'GatewayError';
  }
}

/** The HTTP status for any error that ends a request: TsgiErrors by code, anything else 500. */
export function httpStatusFor(err: unknown): number {
  return err instanceof TsgiError ? err.status : 500;
}

/** The HTTP status for a code, for refusals that need no error object (static files). */
export function httpStatusForCode(code: TsgiErrorCode): number {
  return STATUS[code];
}

/** Reason phrases (RFC 9110 section 15), the one table for every status line tsgi writes. */
const REASONS: Readonly<Record<number, string>> = {
  100: 'Continue', 101: 'Switching Protocols', 102: 'Processing', 103: 'Early Hints',
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content',
  205: 'Reset Content', 206: 'Partial Content', 207: 'Multi-Status', 208: 'Already Reported', 226: 'IM Used',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified',
  305: 'Use Proxy', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout',
  409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Content Too Large',
  414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed',
  418: "I'm a Teapot", 421: 'Misdirected Request', 422: 'Unprocessable Content', 423: 'Locked', 424: 'Failed Dependency',
  425: 'Too Early', 426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons',
  444: 'Connection Closed Without Response', 499: 'Client Closed Request',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 506: 'Variant Also Negotiates', 507: 'Insufficient Storage',
  508: 'Loop Detected', 510: 'Not Extended', 511: 'Network Authentication Required',
};

/** The standard reason phrase of a status, or '' for one that has none. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? '';
}

/** A short plain-text body for an error response; never includes internals of the app. */
export function errorBody(status: number): string {
  return `${status} ${REASONS[status] ?? 'Error'}\n`;
}

/**
 * Refusals of the client's request itself (malformed, too large, too slow, an unmet Expect):
 * the rest of that connection is not read, or not trusted, so it closes after the answer.
 */
const CLOSES: ReadonlySet<TsgiErrorCode> = new Set<TsgiErrorCode>([
  'TSGI_ERR_BAD_REQUEST', 'TSGI_ERR_REQUEST_TIMEOUT', 'TSGI_ERR_BODY_TOO_LARGE', 'TSGI_ERR_HEADERS_TOO_LARGE',
  'TSGI_ERR_EXPECTATION_FAILED', 'TSGI_ERR_STATIC_BAD_PATH',
  'TSGI_ERR_CONNECTION_CUT', // never answered: the front cuts the connection instead
]);

/** Failures of a backend (lost, reset, timed out, broke the protocol): counted against it. */
const BACKEND_FAULTS: ReadonlySet<TsgiErrorCode> = new Set<TsgiErrorCode>([
  'TSGI_ERR_PROTOCOL', 'TSGI_ERR_FRAME_TOO_LARGE', 'TSGI_ERR_VERSION', 'TSGI_ERR_BACKEND_UNAVAILABLE',
  'TSGI_ERR_BACKEND_LOST', 'TSGI_ERR_BACKEND_RESET', 'TSGI_ERR_BACKEND_TIMEOUT',
]);

/** Whether an error that ended a request is the backend's fault (its failure count). */
export function blamesBackend(err: unknown): boolean {
  return err instanceof TsgiError && BACKEND_FAULTS.has(err.code);
}

/** An error as the response a client gets: the whole policy in one place. */
export interface ErrorResponse {
  status: number;
  reason: string;
  /** Flat [name, value, …], lowercase names: content-type, content-length, and as the error needs retry-after, allow, connection. */
  headers: string[];
  body: string;
  /** The connection closes after it (the headers then say `connection: close`). */
  close: boolean;
}

/**
 * The response for an error that ends a request: its status and reason, a short text body,
 * `retry-after: 1` on a 503, `allow` on a 405, and a close for a refusal of the request itself
 * or when `bodyUnread` (the rest of the request body will not be read).
 */
export function errorResponse(err: unknown, opts: { bodyUnread?: boolean } = {}): ErrorResponse {
  const code = err instanceof TsgiError ? err.code : null;
  const r = statusResponse(code === null ? 500 : STATUS[code]);
  if (code === 'TSGI_ERR_STATIC_METHOD') r.headers.push('allow', 'GET, HEAD');
  if ((code !== null && CLOSES.has(code)) || opts.bodyUnread === true) {
    r.close = true;
    r.headers.push('connection', 'close');
  }
  return r;
}

/** The plain error response for a status alone (a file server's 412 or 416, say): no close. */
export function statusResponse(status: number): ErrorResponse {
  const body = errorBody(status);
  const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(body.length)];
  if (status === 503) headers.push('retry-after', '1');
  return { status, reason: REASONS[status] ?? 'Error', headers, body, close: false };
}

/**
 * A whole error response as raw HTTP/1.1 text, for a socket that has no response object (a
 * client error before a request was parsed, a connection over the limit). The connection is
 * always closed after it.
 */
export function rawErrorResponse(err: unknown): string {
  const r = errorResponse(err);
  let text = `HTTP/1.1 ${r.status} ${r.reason}\r\n`;
  if (!r.close) text += 'connection: close\r\n';
  for (let i = 0; i < r.headers.length; i += 2) text += `${r.headers[i]}: ${r.headers[i + 1]}\r\n`;
  return `${text}\r\n${r.body}`;
}
