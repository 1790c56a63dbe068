// The one errors module: every error tsgi raises on purpose is a TsgiError with a stable
// TSGI_ERR_* code, and this file alone decides which HTTP status each one becomes.

export type TsgiErrorCode =
  | 'TSGI_ERR_PROTOCOL'
  | 'TSGI_ERR_FRAME_TOO_LARGE'
  | 'TSGI_ERR_FLOW_CONTROL'
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
  | 'TSGI_ERR_BODY_TOO_LARGE'
  | 'TSGI_ERR_BAD_REQUEST'
  | 'TSGI_ERR_REQUEST_TIMEOUT'
  | 'TSGI_ERR_HEADERS_TOO_LARGE'
  | 'TSGI_ERR_EXPECTATION_FAILED'
  | 'TSGI_ERR_OVERLOADED'
  | 'TSGI_ERR_CONFIG'
  | 'TSGI_ERR_STATIC_BAD_PATH'
  | 'TSGI_ERR_STATIC_FORBIDDEN'
  | 'TSGI_ERR_STATIC_NOT_FOUND'
  | 'TSGI_ERR_STATIC_METHOD';

const STATUS: Record<TsgiErrorCode, number> = {
  TSGI_ERR_PROTOCOL: 502,
  TSGI_ERR_FRAME_TOO_LARGE: 502,
  TSGI_ERR_FLOW_CONTROL: 502,
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
  TSGI_ERR_CONFIG: 500,
  // Static files at the front: a malformed or hostile path, a refused file, a missing one, a method.
  TSGI_ERR_STATIC_BAD_PATH: 400,
  TSGI_ERR_STATIC_FORBIDDEN: 403,
  TSGI_ERR_STATIC_NOT_FOUND: 404,
  TSGI_ERR_STATIC_METHOD: 405,
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

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  412: 'Precondition Failed',
  416: 'Range Not Satisfiable',
  417: 'Expectation Failed',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A short plain-text body for an error response; never includes internals of the app. */
export function errorBody(status: number): string {
  return `${status} ${REASONS[status] ?? 'Error'}\n`;
}

/**
 * A whole error response as raw HTTP/1.1 text, for a socket that has no ServerResponse (a
 * client error before a request was parsed, a connection over the limit). The connection is
 * always closed after it; a 503 carries Retry-After.
 */
export function rawErrorResponse(status: number): string {
  const body = errorBody(status);
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nconnection: close\r\n`
    + `${status === 503 ? 'retry-after: 1\r\n' : ''}content-type: text/plain; charset=utf-8\r\n`
    + `content-length: ${body.length}\r\n\r\n${body}`;
}
