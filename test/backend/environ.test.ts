// The environ a backend builds from the request head the front sends: CGI keys, HTTP_* keys
// and tsgi.* keys, with heads that go through the wire format (protobuf encode and decode).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildEnviron, decodePath } from '../../src/backend/environ.js';
import { InputStream } from '../../src/backend/input.js';
import type { Environ } from '../../src/backend/types.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { STATIC_NAMES, packHeaders } from '../../src/protocol/header-table.js';
import { throwsCode } from '../helpers/assert.js';
import { type Head, makeEnviron, wire } from './helpers/exchange.js';

const test = suite('backend/environ');

/** The request behind the environ printed in the seed (uWSGI behind its HTTP router). */
const SEED_HEADERS = [
  'Host', '172.16.7.152:8000',
  'Upgrade-Insecure-Requests', '1',
  'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'User-Agent', 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4',
  'Accept-Language', 'zh-cn',
  'Accept-Encoding', 'gzip,deflate',
  'DNT', '1',
];
const SEED_HEAD: Head = {
  target: '/index.html',
  headers: packHeaders(SEED_HEADERS),
  remoteAddr: '172.16.7.1', remotePort: 40432,
  serverAddr: '172.16.7.152', serverPort: 8000,
};

/** Environ for a head with these flat headers (and the seed's addresses). */
function env(target: string, headers: string[] = ['Host', 'example.test'], extra: Head = {}, scriptName = ''): Environ {
  return makeEnviron({ head: { ...SEED_HEAD, target, ...extra }, headers, scriptName });
}

test('the seed request: the CGI keys a WSGI app would see', () => {
  const input = new InputStream();
  input.end();
  const signal = new AbortController().signal;
  const head = wire(SEED_HEAD);
  assert.is(head.method, '', 'GET travels as the default, no bytes');
  const e = buildEnviron(head, { input, signal: { signal }, scriptName: '', multiprocess: false });
  assert.is(e.REQUEST_METHOD, 'GET');
  assert.is(e.SCRIPT_NAME, '');
  assert.is(e.PATH_INFO, '/index.html');
  assert.is(e.QUERY_STRING, '');
  assert.is(e.REQUEST_URI, '/index.html');
  assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.is(e.SERVER_NAME, '172.16.7.152');
  assert.is(e.SERVER_PORT, '8000');
  assert.is(e.REMOTE_ADDR, '172.16.7.1');
  assert.is(e.REMOTE_PORT, '40432');
  assert.is(e.HTTP_HOST, '172.16.7.152:8000');
  assert.is(e.HTTP_UPGRADE_INSECURE_REQUESTS, '1');
  assert.is(e.HTTP_ACCEPT, 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8');
  assert.is(e.HTTP_USER_AGENT, 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4');
  assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
  assert.is(e.HTTP_ACCEPT_ENCODING, 'gzip,deflate');
  assert.is(e.HTTP_DNT, '1');
  assert.not.ok('CONTENT_TYPE' in e, 'no CONTENT_TYPE without a Content-Type header');
  assert.not.ok('CONTENT_LENGTH' in e, 'no CONTENT_LENGTH without a Content-Length header');
  assert.not.ok('HTTPS' in e, 'no HTTPS for http');
  assert.is(e['tsgi.url_scheme'], 'http');
  assert.equal([...e['tsgi.version']], [1, 0]);
  assert.is(e['tsgi.input'], input);
  assert.is(e['tsgi.signal'], signal);
  assert.type(e['tsgi.errors'].write, 'function');
  assert.type(e['tsgi.errors'].flush, 'function');
  assert.is(e['tsgi.multithread'], false);
  assert.is(e['tsgi.multiprocess'], false);
  assert.is(e['tsgi.run_once'], false);
  // The headers as received: table names in lower case, order and values kept.
  const expected: string[] = [];
  for (let i = 0; i < SEED_HEADERS.length; i += 2) expected.push(SEED_HEADERS[i]!.toLowerCase(), SEED_HEADERS[i + 1]!);
  assert.equal(e['tsgi.headers'], expected);
  // Nothing else was invented: every HTTP_* key comes from one of the seven headers.
  assert.equal(Object.keys(e).filter((k) => k.startsWith('HTTP_')).sort(), [
    'HTTP_ACCEPT', 'HTTP_ACCEPT_ENCODING', 'HTTP_ACCEPT_LANGUAGE', 'HTTP_DNT', 'HTTP_HOST',
    'HTTP_UPGRADE_INSECURE_REQUESTS', 'HTTP_USER_AGENT',
  ]);
});

test('a request id the front made (request_id) reaches the app as the header, in the CGI view and tsgi.headers', () => {
  const e = env('/', ['Host', 'example.test'], { requestId: 'abc-1' });
  assert.is(e.HTTP_X_REQUEST_ID, 'abc-1');
  assert.equal(e['tsgi.headers'], ['host', 'example.test', 'x-request-id', 'abc-1']);
  assert.is(env('/').HTTP_X_REQUEST_ID, undefined, 'none made: none there');
});

test('tsgi.signal: an own enumerable key, copied by a spread, lazily created, one getter shared by every environ', () => {
  const head = { target: '/', serverAddr: '127.0.0.1', serverPort: 80, remoteAddr: '127.0.0.1', remotePort: 1 } as Head;
  let made = 0;
  const source = { get signal() { made++; return new AbortController().signal; } };
  const e1 = buildEnviron(wire(head), { input: new InputStream(), signal: source, scriptName: '', multiprocess: false });
  const e2 = buildEnviron(wire(head), { input: new InputStream(), signal: source, scriptName: '', multiprocess: false });
  assert.is(made, 0, 'no AbortSignal until an app asks');
  assert.ok(Object.keys(e1).includes('tsgi.signal'));
  assert.instance({ ...e1 }['tsgi.signal'], AbortSignal);
  assert.is(made, 1);
  assert.not.match(JSON.stringify(e1), /signalSource/, 'the signal source is not in JSON');
  // A getter written per environ would give each its own V8 map (old-space garbage per request).
  assert.is(Object.getOwnPropertyDescriptor(e1, 'tsgi.signal')!.get, Object.getOwnPropertyDescriptor(e2, 'tsgi.signal')!.get);
});

test('method, protocol and multiprocess pass through', () => {
  const e = makeEnviron({ head: { method: 'DELETE', protocol: 'HTTP/1.0', target: '/x' }, multiprocess: true });
  assert.is(e.REQUEST_METHOD, 'DELETE');
  assert.is(e.SERVER_PROTOCOL, 'HTTP/1.0');
  assert.is(e['tsgi.multiprocess'], true);
});

test('SERVER_NAME / SERVER_PORT: from Host, else the server address; default ports by scheme', () => {
  let e = env('/', ['Host', 'app.example:9000'], { serverPort: 8000 });
  assert.is(e.SERVER_NAME, 'app.example');
  assert.is(e.SERVER_PORT, '8000', 'the port the request came in on');
  e = env('/', ['Host', 'app.example:9000'], { serverPort: 0 });
  assert.is(e.SERVER_PORT, '9000', 'no server port (unix socket front): the Host port');
  e = env('/', ['Host', 'app.example'], { serverPort: 0 });
  assert.is(e.SERVER_PORT, '80');
  e = env('/', ['Host', 'app.example'], { serverPort: 0, scheme: 'https' });
  assert.is(e.SERVER_PORT, '443');
  e = env('/', ['Host', '[::1]:8443'], { serverPort: 0 });
  assert.is(e.SERVER_NAME, '[::1]');
  assert.is(e.SERVER_PORT, '8443');
  e = env('/', [], { serverAddr: '10.0.0.5', serverPort: 8080 });
  assert.is(e.SERVER_NAME, '10.0.0.5', 'no Host (HTTP/1.0): the server address');
  assert.is(e.SERVER_PORT, '8080');
  assert.not.ok('HTTP_HOST' in e);
  e = env('/', [], { remotePort: 0 });
  assert.is(e.REMOTE_PORT, '', 'no remote port (unix socket): empty');
});

test('query strings: split at the first ?, kept raw', () => {
  let e = env('/search?q=tsgi&lang=zh-cn');
  assert.is(e.PATH_INFO, '/search');
  assert.is(e.QUERY_STRING, 'q=tsgi&lang=zh-cn');
  assert.is(e.REQUEST_URI, '/search?q=tsgi&lang=zh-cn');
  e = env('/a?b?c=%20');
  assert.is(e.PATH_INFO, '/a');
  assert.is(e.QUERY_STRING, 'b?c=%20', 'not percent-decoded');
  e = env('/a?');
  assert.is(e.PATH_INFO, '/a');
  assert.is(e.QUERY_STRING, '');
  e = env('/%E4%B8%AD?x=%E4%B8%AD');
  assert.is(e.PATH_INFO, '/中');
  assert.is(e.QUERY_STRING, 'x=%E4%B8%AD');
});

test('PATH_INFO is percent-decoded as UTF-8', () => {
  assert.is(env('/caf%C3%A9/%E4%B8%AD%E6%96%87').PATH_INFO, '/café/中文');
  assert.is(env('/a%20b/c%2Fd').PATH_INFO, '/a b/c/d');
  assert.is(env('/plain/path').PATH_INFO, '/plain/path');
  assert.is(env('/%7euser').PATH_INFO, '/~user', 'lower-case hex digits');
});

test('PATH_INFO: bytes that are not UTF-8 fall back to Latin-1', () => {
  assert.is(env('/caf%E9').PATH_INFO, '/café');
  assert.is(env('/%FF%FE').PATH_INFO, '/\u00ff\u00fe');
  // One bad sequence makes the whole path Latin-1, as a WSGI server decodes it.
  assert.is(env('/%C3%A9/%E9').PATH_INFO, '/\u00c3\u00a9/\u00e9');
  assert.is(decodePath('/caf%E9'), '/café');
});

test('PATH_INFO: a stray % is kept', () => {
  assert.is(env('/100%').PATH_INFO, '/100%');
  assert.is(env('/100%zz/x').PATH_INFO, '/100%zz/x');
});

test('regression: a stray % no longer turns valid UTF-8 in the path into Latin-1', () => {
  // The bytes /100%/\xC3\xA9 are valid UTF-8: the path is "/100%/é", not "/100%/Ã©".
  assert.is(env('/100%/%C3%A9').PATH_INFO, '/100%/é');
  assert.is(decodePath('/50%off/%E4%B8%AD'), '/50%off/中');
  // ... and with bytes that are not UTF-8 it still falls back to Latin-1.
  assert.is(decodePath('/100%/%E9'), '/100%/\u00e9');
});

test('--script-name: a matching prefix moves from PATH_INFO to SCRIPT_NAME', () => {
  let e = env('/app/users/7?full=1', undefined, {}, '/app');
  assert.is(e.SCRIPT_NAME, '/app');
  assert.is(e.PATH_INFO, '/users/7');
  assert.is(e.QUERY_STRING, 'full=1');
  assert.is(e.REQUEST_URI, '/app/users/7?full=1', 'REQUEST_URI stays whole');
  e = env('/app', undefined, {}, '/app');
  assert.is(e.SCRIPT_NAME, '/app');
  assert.is(e.PATH_INFO, '');
  e = env('/app/', undefined, {}, '/app');
  assert.is(e.PATH_INFO, '/');
  e = env('/application/x', undefined, {}, '/app');
  assert.is(e.SCRIPT_NAME, '', 'a prefix only at a segment boundary');
  assert.is(e.PATH_INFO, '/application/x');
  e = env('/other', undefined, {}, '/app');
  assert.is(e.SCRIPT_NAME, '');
  assert.is(e.PATH_INFO, '/other');
  e = env('/%61pp/%C3%A9', undefined, {}, '/app');
  assert.is(e.SCRIPT_NAME, '/app', 'matched after percent-decoding');
  assert.is(e.PATH_INFO, '/é');
});

test('CONTENT_TYPE and CONTENT_LENGTH have no HTTP_ prefix', () => {
  const e = env('/upload', ['Host', 'h', 'Content-Type', 'application/json', 'Content-Length', '42'], { method: 'POST' });
  assert.is(e.CONTENT_TYPE, 'application/json');
  assert.is(e.CONTENT_LENGTH, '42');
  assert.not.ok('HTTP_CONTENT_TYPE' in e);
  assert.not.ok('HTTP_CONTENT_LENGTH' in e);
});

test('a table name spelled out as a literal maps to the same key', () => {
  // A front may send any name literally; Content-Type must still become CONTENT_TYPE.
  const e = makeEnviron({ head: { target: '/', headers: { names: [0, 0], literalNames: ['Content-Type', 'User-Agent'], values: ['text/plain', 'ua/1'] } } });
  assert.is(e.CONTENT_TYPE, 'text/plain');
  assert.is(e.HTTP_USER_AGENT, 'ua/1');
});

test('duplicate headers are joined with ", ", cookies with "; "', () => {
  const e = env('/', [
    'Host', 'h',
    'Accept', 'text/html',
    'Cookie', 'a=1',
    'X-Trace', 'one',
    'accept', 'application/json',
    'Cookie', 'b=2',
    'x-trace', 'two',
    'Cookie', 'c=3',
  ]);
  assert.is(e.HTTP_ACCEPT, 'text/html, application/json');
  assert.is(e.HTTP_X_TRACE, 'one, two', 'literal names join too');
  assert.is(e.HTTP_COOKIE, 'a=1; b=2; c=3');
  const flat = e['tsgi.headers'];
  assert.is(flat.filter((_, i) => i % 2 === 0 && flat[i] === 'cookie').length, 3, 'tsgi.headers keeps every field');
});

test('a header with "_" (X_Foo) cannot spoof HTTP_X_FOO set by X-Foo', () => {
  for (const headers of [
    ['Host', 'h', 'X-Foo', 'real', 'X_Foo', 'spoof'],
    ['Host', 'h', 'X_Foo', 'spoof', 'X-Foo', 'real'],
  ]) {
    const e = env('/', headers);
    assert.is(e.HTTP_X_FOO, 'real', headers.join(' '));
  }
  const e = env('/', ['Host', 'h', 'X_Foo', 'spoof', 'Content_Type', 'evil/x', 'User_Agent', 'evil']);
  assert.not.ok('HTTP_X_FOO' in e, 'X_Foo alone gives no HTTP_X_FOO');
  assert.not.ok('CONTENT_TYPE' in e, 'Content_Type gives no CONTENT_TYPE');
  assert.not.ok('HTTP_USER_AGENT' in e, 'User_Agent gives no HTTP_USER_AGENT');
  assert.ok(e['tsgi.headers'].includes('X_Foo'), 'the field is still in tsgi.headers');
});

test('literal (non-table) header names: HTTP_ key upper-cased, spelling kept in tsgi.headers', () => {
  const block = packHeaders(['Host', 'h', 'X-Custom-Header', 'v1', 'x-MiXeD-case', 'v2']);
  assert.equal(block.literalNames, ['X-Custom-Header', 'x-MiXeD-case'], 'they travel as literals');
  const e = makeEnviron({ head: { target: '/', headers: block } });
  assert.is(e.HTTP_X_CUSTOM_HEADER, 'v1');
  assert.is(e.HTTP_X_MIXED_CASE, 'v2');
  assert.equal(e['tsgi.headers'], ['host', 'h', 'X-Custom-Header', 'v1', 'x-MiXeD-case', 'v2']);
});

test('absolute-form targets: the path and query of the URL', () => {
  let e = env('http://example.com/a/b?x=1');
  assert.is(e.PATH_INFO, '/a/b');
  assert.is(e.QUERY_STRING, 'x=1');
  assert.is(e.REQUEST_URI, 'http://example.com/a/b?x=1');
  e = env('https://example.com:8443');
  assert.is(e.PATH_INFO, '/');
  e = env('http://example.com?x=1');
  assert.is(e.PATH_INFO, '/');
  assert.is(e.QUERY_STRING, 'x=1');
  e = env('http://example.com/caf%C3%A9');
  assert.is(e.PATH_INFO, '/café');
  e = env('*', ['Host', 'h'], { method: 'OPTIONS' });
  assert.is(e.PATH_INFO, '*', 'asterisk-form stays as it is');
});

test('https scheme: url_scheme https and HTTPS=on', () => {
  const e = env('/', ['Host', 'secure.example'], { scheme: 'https' });
  assert.is(e['tsgi.url_scheme'], 'https');
  assert.is(e.HTTPS, 'on');
  assert.not.ok('HTTPS' in env('/'), 'absent for http');
});

test('a head without headers still gives a complete environ', () => {
  const e = makeEnviron({ head: { target: '/', headers: { names: [], values: [] } } });
  assert.equal(e['tsgi.headers'], []);
  assert.is(e.SERVER_NAME, '127.0.0.1');
  const bare = buildEnviron(wire({ target: '/x' }), {
    input: new InputStream(), signal: { signal: new AbortController().signal }, scriptName: '', multiprocess: false,
  });
  assert.is(bare.PATH_INFO, '/x');
  assert.is(bare.REQUEST_METHOD, 'GET');
  assert.is(bare.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.equal(bare['tsgi.headers'], []);
});

test('malformed header blocks throw ProtocolError', () => {
  const cases: [string, Head['headers']][] = [
    ['more names than values', { names: [1, 2], values: ['h'] }],
    ['more values than names', { names: [1], values: ['h', 'x'] }],
    ['a literal index without a literal name', { names: [0], values: ['v'] }],
    ['a second literal index without a name', { names: [0, 0], literalNames: ['X-A'], values: ['a', 'b'] }],
    ['an index past the table', { names: [STATIC_NAMES.length], values: ['v'] }],
    ['a huge index', { names: [4_000_000_000], values: ['v'] }],
  ];
  for (const [what, headers] of cases) {
    throwsCode(() => makeEnviron({ head: { target: '/', headers } }), ProtocolError, 'TSGI_ERR_PROTOCOL', what);
  }
});

test.run();
