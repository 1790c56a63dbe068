// The environ of a request that came as uwsgi vars (nginx's uwsgi_pass): the CGI keys as nginx
// sends them, the tsgi.* keys as on the tsgi path, and the gaps filled the same way.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildEnvironFromVars } from '../../src/backend/environ.js';
import { InputStream } from '../../src/backend/input.js';
import type { Environ } from '../../src/backend/types.js';

const test = suite('backend/uwsgi-environ');

/** What nginx 1.22 with Debian's uwsgi_params sends for the seed's request. */
const NGINX_VARS: [string, string][] = [
  ['QUERY_STRING', ''], ['REQUEST_METHOD', 'GET'], ['CONTENT_TYPE', ''], ['CONTENT_LENGTH', ''],
  ['REQUEST_URI', '/index.html'], ['PATH_INFO', '/index.html'], ['DOCUMENT_ROOT', '/usr/share/nginx/html'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REQUEST_SCHEME', 'http'], ['REMOTE_ADDR', '172.16.7.1'],
  ['REMOTE_PORT', '40432'], ['SERVER_PORT', '8000'], ['SERVER_NAME', '_'],
  ['HTTP_HOST', '172.16.7.152'], ['HTTP_UPGRADE_INSECURE_REQUESTS', '1'],
  ['HTTP_ACCEPT', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['HTTP_USER_AGENT', 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4'],
  ['HTTP_ACCEPT_LANGUAGE', 'zh-cn'], ['HTTP_ACCEPT_ENCODING', 'gzip,deflate'], ['HTTP_DNT', '1'],
];

function env(vars: [string, string][], scriptName = ''): Environ {
  const input = new InputStream();
  input.end();
  return buildEnvironFromVars(vars, { input, signal: { signal: new AbortController().signal }, scriptName, multiprocess: true });
}

test('the seed request through nginx: the CGI keys as sent, plus the tsgi.* keys', () => {
  const e = env(NGINX_VARS);
  assert.is(e.REQUEST_METHOD, 'GET');
  assert.is(e.SCRIPT_NAME, '');
  assert.is(e.PATH_INFO, '/index.html');
  assert.is(e.QUERY_STRING, '');
  assert.is(e.REQUEST_URI, '/index.html');
  assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.is(e.SERVER_NAME, '172.16.7.152', "nginx's catch-all server_name _ gives way to the Host");
  assert.is(e.SERVER_PORT, '8000');
  assert.is(e.REMOTE_ADDR, '172.16.7.1');
  assert.is(e.REMOTE_PORT, '40432');
  assert.is(e.DOCUMENT_ROOT, '/usr/share/nginx/html', 'keys nginx adds reach the app');
  assert.is(e.REQUEST_SCHEME, 'http');
  assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
  assert.is(e.HTTP_DNT, '1');
  assert.not.ok('CONTENT_TYPE' in e, 'an empty CONTENT_TYPE is left out, as on the tsgi path');
  assert.not.ok('CONTENT_LENGTH' in e);
  assert.not.ok('HTTPS' in e);
  assert.is(e['tsgi.url_scheme'], 'http');
  assert.equal([...e['tsgi.version']], [1, 0]);
  assert.is(e['tsgi.multiprocess'], true);
  assert.instance(e['tsgi.input'], InputStream);
  assert.instance(e['tsgi.signal'], AbortSignal);
  assert.equal(e['tsgi.headers'].slice(0, 4), ['host', '172.16.7.152', 'upgrade-insecure-requests', '1']);
});

test('https: REQUEST_SCHEME, or HTTPS=on, makes the scheme https', () => {
  assert.is(env([['REQUEST_SCHEME', 'https']])['tsgi.url_scheme'], 'https');
  const e = env([['HTTPS', 'on']]);
  assert.is(e['tsgi.url_scheme'], 'https');
  assert.is(e.HTTPS, 'on');
  assert.is(env([['HTTP_HOST', 'h']]).SERVER_PORT, '80');
  assert.is(env([['HTTP_HOST', 'h'], ['HTTPS', 'on']]).SERVER_PORT, '443');
});

test('PATH_INFO bytes are UTF-8 text when valid, else Latin-1; other values stay byte strings', () => {
  assert.is(env([['PATH_INFO', '/caf\xc3\xa9']]).PATH_INFO, '/café');
  assert.is(env([['PATH_INFO', '/caf\xe9']]).PATH_INFO, '/café', 'not UTF-8: Latin-1');
  assert.is(env([['HTTP_X_A', '\xc3\xa9']]).HTTP_X_A, '\xc3\xa9', 'a header value as Node gives it on the tsgi path');
});

test('SCRIPT_NAME from nginx is cut from PATH_INFO; without one, --script-name applies', () => {
  let e = env([['SCRIPT_NAME', '/app'], ['PATH_INFO', '/app/x'], ['REQUEST_URI', '/app/x']]);
  assert.is(e.SCRIPT_NAME, '/app');
  assert.is(e.PATH_INFO, '/x');
  e = env([['PATH_INFO', '/mount/y']], '/mount');
  assert.is(e.SCRIPT_NAME, '/mount');
  assert.is(e.PATH_INFO, '/y');
  e = env([['PATH_INFO', '/mountain']], '/mount');
  assert.is(e.SCRIPT_NAME, '', 'a prefix must end at a path segment');
  assert.is(e.PATH_INFO, '/mountain');
});

test('missing keys are filled: method, path from REQUEST_URI, query, protocol', () => {
  const e = env([['REQUEST_URI', '/a%20b?q=1']]);
  assert.is(e.REQUEST_METHOD, 'GET');
  assert.is(e.PATH_INFO, '/a b');
  assert.is(e.QUERY_STRING, '');
  assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
  const bare = env([]);
  assert.is(bare.PATH_INFO, '/');
  assert.is(bare.REQUEST_URI, '/');
  assert.is(bare.REMOTE_ADDR, '');
});

test('repeated headers are joined (cookies with "; "), and all appear in tsgi.headers', () => {
  const e = env([['HTTP_COOKIE', 'a=1'], ['HTTP_COOKIE', 'b=2'], ['HTTP_ACCEPT', 'x'], ['HTTP_ACCEPT', 'y'], ['CONTENT_TYPE', 'text/plain']]);
  assert.is(e.HTTP_COOKIE, 'a=1; b=2');
  assert.is(e.HTTP_ACCEPT, 'x, y');
  assert.is(e.CONTENT_TYPE, 'text/plain');
  assert.equal(e['tsgi.headers'], ['cookie', 'a=1', 'cookie', 'b=2', 'accept', 'x', 'accept', 'y', 'content-type', 'text/plain']);
});

test('a var can never replace a tsgi.* key or the prototype', () => {
  const e = env([['tsgi.input', 'fake'], ['tsgi.url_scheme', 'https'], ['__proto__', 'x'], ['REQUEST_METHOD', 'POST']]);
  assert.instance(e['tsgi.input'], InputStream);
  assert.is(e['tsgi.url_scheme'], 'http');
  assert.is(Object.getPrototypeOf(e), Object.prototype);
  assert.is(e.REQUEST_METHOD, 'POST');
});

test.run();
