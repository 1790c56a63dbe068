// The environ key of the request id (--request-id-header; HTTP_X_REQUEST_ID by default): the
// gateway names it in its log lines about a request. One per process, set at start.

let key = 'HTTP_X_REQUEST_ID';
let header = 'x-request-id';

/** The header whose value is the request id (the front adds one to every request that lacks it). */
export function setRequestIdHeader(name: string): void {
  key = `HTTP_${name.toUpperCase().replace(/-/g, '_')}`;
  header = name.toLowerCase();
}

/** The header's name, lowercase (a request id the front made arrives apart from the headers). */
export function requestIdHeader(): string {
  return header;
}

/** The request's id, or '-'. */
export function requestIdOf(environ: Record<string, unknown>): string {
  const v = environ[key];
  return typeof v === 'string' && v !== '' ? v : '-';
}

/** The environ key it is under. */
export function requestIdKey(): string {
  return key;
}
