// The uwsgi vars the front sends a uWSGI server for a request: the CGI keys nginx's
// `include uwsgi_params;` would send, built from the tsgi request head, plus HTTP_* for each
// header. The environ a Python app sees through tsgi front matches the one behind nginx.
import { createLogger } from '../../common/log.js';
import { percentDecode, splitHost, splitTarget } from '../../protocol/cgi.js';
import type { RequestHead } from '../../protocol/connection.js';
import { unpackHeaders } from '../../protocol/header-table.js';
import type { UwsgiValue } from '../../protocol/uwsgi.js';

const log = createLogger('front');

/** The Content-Length header of a request head, if it has one. */
export function contentLengthOf(head: RequestHead): string | undefined {
  const flat = unpackHeaders(head.headers);
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i]!.toLowerCase() === 'content-length') return flat[i + 1];
  }
  return undefined;
}

/** --request-id-header, lowercase: a request id the front made goes to a uwsgi backend as this header. */
let requestIdHeader = 'x-request-id';

export function setRequestIdHeader(name: string): void {
  requestIdHeader = name.toLowerCase();
}

/**
 * The vars for a request. `contentLength` overrides the header (a chunked body the front
 * buffered). Header names with '_' are left out, as nginx does, so X_Foo cannot pose as X-Foo;
 * repeated headers are joined with ', ' (cookies with '; ').
 */
export function requestVars(head: RequestHead, contentLength?: number): [string, UwsgiValue][] {
  const target = head.target ?? '/';
  const { path, query } = splitTarget(target);
  const scheme = head.scheme || 'http';
  const flat = unpackHeaders(head.headers);
  if (head.requestId) flat.push(requestIdHeader, head.requestId); // a request id the front made
  const http = new Map<string, string>();
  let contentType: string | undefined;
  let length: string | undefined;
  let host = '';
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const value = flat[i + 1]!;
    if (name === 'content-type') contentType = value;
    else if (name === 'content-length') length = value;
    else if (name.includes('_')) {
      if (log.enabled('debug')) log.debug(`header ${JSON.stringify(flat[i])} left out of the uwsgi vars ('_' in its name)`);
    } else {
      if (name === 'host') host = value;
      const key = 'HTTP_' + name.toUpperCase().replace(/-/g, '_');
      const prev = http.get(key);
      http.set(key, prev === undefined ? value : `${prev}${key === 'HTTP_COOKIE' ? '; ' : ', '}${value}`);
    }
  }
  if (contentLength !== undefined) length = String(contentLength);
  const [hostName, hostPort] = host === '' ? ['', ''] : splitHost(host);
  const serverPort = head.serverPort ? String(head.serverPort) : hostPort || (scheme === 'https' ? '443' : '80');
  const vars: [string, UwsgiValue][] = [
    ['QUERY_STRING', query],
    ['REQUEST_METHOD', head.method || 'GET'],
  ];
  if (contentType !== undefined) vars.push(['CONTENT_TYPE', contentType]);
  if (length !== undefined) vars.push(['CONTENT_LENGTH', length]);
  vars.push(
    ['REQUEST_URI', target],
    ['PATH_INFO', percentDecode(path)],
    ['SERVER_PROTOCOL', head.protocol || 'HTTP/1.1'],
    ['REQUEST_SCHEME', scheme],
  );
  if (scheme === 'https') vars.push(['HTTPS', 'on']);
  vars.push(
    ['REMOTE_ADDR', head.remoteAddr ?? ''],
    ['REMOTE_PORT', head.remotePort ? String(head.remotePort) : ''],
    ['SERVER_ADDR', head.serverAddr ?? ''],
    ['SERVER_PORT', serverPort],
    ['SERVER_NAME', hostName || head.serverAddr || 'localhost'],
  );
  for (const entry of http) vars.push(entry);
  return vars;
}
