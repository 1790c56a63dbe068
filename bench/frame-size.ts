// Bytes on the wire for the request behind the seed's environ example: what tsgi's front sends
// (the head built as the front builds it, sent through a real protocol Connection, first and
// repeated on one connection), beside the same request as nginx's uwsgi packet and as HTTP/1.1.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UWSGI_PARAMS } from './nginx.js';
import { ROOT } from './proc.js';

const METHOD = 'GET';
const TARGET = '/index.html';
const RAW_HEADERS = [
  'Host', '172.16.7.152:8000',
  'Connection', 'keep-alive',
  'Upgrade-Insecure-Requests', '1',
  'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'User-Agent', 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4',
  'Accept-Language', 'zh-cn',
  'Accept-Encoding', 'gzip,deflate',
  'DNT', '1',
];
/** The addresses of the seed's environ: client 172.16.7.1:40432, server 172.16.7.152:8000 ("ubuntu"). */
const PEER = { remoteAddress: '172.16.7.1', remotePort: 40432, localAddress: '172.16.7.152', localPort: 8000 };
const SERVER_NAME = 'ubuntu';
const DOCUMENT_ROOT = '/usr/share/nginx/html';

/** The raw HTTP/1.1 request. */
export function httpBytes(): number {
  let text = `${METHOD} ${TARGET} HTTP/1.1\r\n`;
  for (let i = 0; i < RAW_HEADERS.length; i += 2) text += `${RAW_HEADERS[i]}: ${RAW_HEADERS[i + 1]}\r\n`;
  return Buffer.byteLength(text + '\r\n');
}

/**
 * The uwsgi packet nginx sends with its uwsgi_params: a 4-byte header (modifier1, u16 size,
 * modifier2), then each var as u16 key length, key, u16 value length, value; every request
 * header follows as HTTP_* (Connection included: nginx passes them all to uwsgi).
 */
export function uwsgiBytes(): number {
  const values: Record<string, string> = {
    QUERY_STRING: '', REQUEST_METHOD: METHOD, CONTENT_TYPE: '', CONTENT_LENGTH: '', REQUEST_URI: TARGET,
    PATH_INFO: TARGET, DOCUMENT_ROOT, SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_SCHEME: 'http', HTTPS: '',
    REMOTE_ADDR: PEER.remoteAddress, REMOTE_PORT: String(PEER.remotePort), SERVER_PORT: String(PEER.localPort),
    SERVER_NAME,
  };
  const vars: [string, string][] = [];
  for (const [key, spec] of UWSGI_PARAMS) {
    const value = values[key] ?? '';
    if (spec.endsWith('if_not_empty') && value === '') continue;
    vars.push([key, value]);
  }
  for (let i = 0; i < RAW_HEADERS.length; i += 2) {
    vars.push([`HTTP_${RAW_HEADERS[i]!.toUpperCase().replace(/-/g, '_')}`, RAW_HEADERS[i + 1]!]);
  }
  return 4 + vars.reduce((n, [k, v]) => n + 2 + Buffer.byteLength(k) + 2 + Buffer.byteLength(v), 0);
}

type Protocol = typeof import('../src/protocol/index.js');
type Head = Parameters<InstanceType<Protocol['Connection']>['open']>[0];
type RequestHeadFn = (req: never) => { head: Head };

const dist = (path: string) => pathToFileURL(join(ROOT, 'dist/src', path)).href;

/** The front's own requestHead(), wherever this build keeps it. */
async function frontRequestHead(): Promise<RequestHeadFn | null> {
  for (const path of ['frontend/http/request-head.js', 'frontend/exchange.js']) {
    const mod = (await import(dist(path)).catch(() => ({}))) as { requestHead?: RequestHeadFn };
    if (typeof mod.requestHead === 'function') return mod.requestHead;
  }
  return null;
}

/** The head the front would send: its own requestHead() when exported, else the same rules here. */
async function frontHead(protocol: Protocol): Promise<Head> {
  const requestHead = await frontRequestHead();
  const req = { rawHeaders: RAW_HEADERS, url: TARGET, method: METHOD, httpVersion: '1.1', socket: PEER, headers: {} };
  if (requestHead !== null) return requestHead(req as never).head;
  const hopByHop = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection']);
  return {
    target: TARGET,
    headers: protocol.packHeaders(RAW_HEADERS, (_index, name) => hopByHop.has(name)),
    remoteAddr: PEER.remoteAddress, remotePort: PEER.remotePort, serverAddr: PEER.localAddress, serverPort: PEER.localPort,
  };
}

/**
 * REQUEST frame bytes for the first and the second such request on one connection, measured
 * by sending them through a client Connection joined to a server one in memory — so any
 * per-connection state the protocol keeps (an indexing table) shows in the second figure.
 */
export async function tsgiBytes(): Promise<{ first: number; repeated: number }> {
  const protocol = (await import(dist('protocol/index.js'))) as Protocol;
  const head = await frontHead(protocol);
  let capture: number[] | null = null;
  let server: InstanceType<Protocol['Connection']> | null = null;
  const client = new protocol.Connection({
    role: 'client',
    write: (chunk) => {
      capture?.push(chunk.length);
      server?.receive(Buffer.from(chunk));
    },
  });
  server = new protocol.Connection({ role: 'server', write: (chunk) => client.receive(Buffer.from(chunk)), onRequest: () => {} });
  client.start();
  server.start();
  if (!client.ready) throw new Error('the in-memory tsgi connection did not complete its handshake');
  const send = () => {
    capture = [];
    client.open(structuredClone(head), true);
    const n = capture.reduce((a, b) => a + b, 0);
    capture = null;
    return n;
  };
  return { first: send(), repeated: send() };
}

const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(1)}%`;

/** The frame-size section of the report, as markdown. */
export async function frameSizeReport(): Promise<string> {
  const { first, repeated } = await tsgiBytes();
  const uwsgi = uwsgiBytes();
  const http = httpBytes();
  const note = first === repeated ? ' (no per-connection header indexing in this build: the same bytes)' : '';
  return [
    '## Frame size: the seed\'s environ request (GET /index.html, 8 browser headers)',
    '',
    '| encoding | bytes | vs uwsgi packet | vs raw HTTP/1.1 | target |',
    '| --- | ---: | ---: | ---: | --- |',
    `| tsgi REQUEST frame, first on a connection | ${first} | ${pct(first, uwsgi)} | ${pct(first, http)} | ≤ 40% of uwsgi: ${first <= 0.4 * uwsgi ? 'met' : 'NOT met'} |`,
    `| tsgi REQUEST frame, repeated${note} | ${repeated} | ${pct(repeated, uwsgi)} | ${pct(repeated, http)} | ≤ 10% of uwsgi: ${repeated <= 0.1 * uwsgi ? 'met' : 'NOT met'} |`,
    `| uwsgi packet (nginx uwsgi_params + HTTP_* headers) | ${uwsgi} | 100.0% | ${pct(uwsgi, http)} | |`,
    `| raw HTTP/1.1 request | ${http} | ${pct(http, uwsgi)} | 100.0% | |`,
    '',
    'tsgi bytes: frame header + Request message as `tsgi front` sends them (hop-by-hop Connection dropped; '
      + 'addresses 172.16.7.1:40432 → 172.16.7.152:8000). uwsgi: nginx\'s own uwsgi_params (DOCUMENT_ROOT '
      + `${DOCUMENT_ROOT}, SERVER_NAME ${SERVER_NAME}, empty CONTENT_TYPE/CONTENT_LENGTH sent, HTTPS omitted), then every request header.`,
  ].join('\n');
}
