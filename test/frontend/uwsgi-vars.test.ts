// The uwsgi vars the front sends a uWSGI server: what nginx's uwsgi_params would send for the
// same request, built from the tsgi request head.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { contentLengthOf, requestVars } from '../../src/frontend/upstream/uwsgi-vars.js';
import type { RequestHead } from '../../src/protocol/connection.js';
import { packHeaders } from '../../src/protocol/header-table.js';
import { decodeVars, encodeVars } from '../../src/protocol/uwsgi.js';

const test = suite('frontend/uwsgi-vars');

const SEED: RequestHead = {
  target: '/index.html',
  headers: packHeaders([
    'Host', '172.16.7.152:8000', 'Upgrade-Insecure-Requests', '1', 'Accept-Language', 'zh-cn', 'DNT', '1',
  ]),
  remoteAddr: '172.16.7.1', remotePort: 40432, serverAddr: '172.16.7.152', serverPort: 8000,
};

/** The vars as the uWSGI server decodes them: Latin-1 strings, in a map. */
function sent(head: RequestHead, contentLength?: number): Map<string, string> {
  const pairs = decodeVars(encodeVars(requestVars(head, contentLength)));
  const keys = pairs.map(([k]) => k);
  assert.is(new Set(keys).size, keys.length, 'each key once');
  return new Map(pairs);
}

test('a request id the front made goes to a uwsgi backend as the header\'s var', () => {
  assert.is(sent({ ...SEED, requestId: 'r-7' }).get('HTTP_X_REQUEST_ID'), 'r-7');
  assert.is(sent(SEED).get('HTTP_X_REQUEST_ID'), undefined);
});

test('the seed request: the CGI keys of uwsgi_params and one HTTP_* per header', () => {
  const v = sent(SEED);
  assert.is(v.get('REQUEST_METHOD'), 'GET');
  assert.is(v.get('REQUEST_URI'), '/index.html');
  assert.is(v.get('PATH_INFO'), '/index.html');
  assert.is(v.get('QUERY_STRING'), '');
  assert.is(v.get('SERVER_PROTOCOL'), 'HTTP/1.1');
  assert.is(v.get('REQUEST_SCHEME'), 'http');
  assert.not.ok(v.has('HTTPS'));
  assert.is(v.get('REMOTE_ADDR'), '172.16.7.1');
  assert.is(v.get('REMOTE_PORT'), '40432');
  assert.is(v.get('SERVER_ADDR'), '172.16.7.152');
  assert.is(v.get('SERVER_PORT'), '8000');
  assert.is(v.get('SERVER_NAME'), '172.16.7.152');
  assert.is(v.get('HTTP_HOST'), '172.16.7.152:8000');
  assert.is(v.get('HTTP_UPGRADE_INSECURE_REQUESTS'), '1');
  assert.is(v.get('HTTP_ACCEPT_LANGUAGE'), 'zh-cn');
  assert.is(v.get('HTTP_DNT'), '1');
  assert.not.ok(v.has('CONTENT_LENGTH'), 'no body, no length');
  assert.not.ok(v.has('CONTENT_TYPE'));
});

test('PATH_INFO is the percent-decoded bytes; the query and REQUEST_URI stay as sent', () => {
  const v = sent({ ...SEED, method: 'POST', target: '/caf%C3%A9/a%2Fb?x=%41' });
  assert.is(v.get('PATH_INFO'), '/caf\xc3\xa9/a/b', 'bytes, as Python reads PATH_INFO (Latin-1)');
  assert.is(v.get('QUERY_STRING'), 'x=%41');
  assert.is(v.get('REQUEST_URI'), '/caf%C3%A9/a%2Fb?x=%41');
  assert.is(v.get('REQUEST_METHOD'), 'POST');
});

test('Content-Type and Content-Length become CGI keys, not HTTP_*; a buffered length overrides', () => {
  const head: RequestHead = { ...SEED, method: 'POST', headers: packHeaders(['Content-Type', 'text/plain', 'Content-Length', '5']) };
  assert.is(contentLengthOf(head), '5');
  let v = sent(head);
  assert.is(v.get('CONTENT_TYPE'), 'text/plain');
  assert.is(v.get('CONTENT_LENGTH'), '5');
  assert.not.ok(v.has('HTTP_CONTENT_TYPE'));
  assert.not.ok(v.has('HTTP_CONTENT_LENGTH'));
  v = sent({ ...SEED, method: 'POST', headers: packHeaders(['Transfer-Encoding', 'chunked']) }, 1234);
  assert.is(v.get('CONTENT_LENGTH'), '1234');
  assert.is(contentLengthOf(SEED), undefined);
});

test('https, repeated headers, and names with "_" (left out, as nginx does)', () => {
  const v = sent({
    ...SEED, scheme: 'https', serverPort: 0,
    headers: packHeaders(['Host', 'example.test', 'Cookie', 'a=1', 'Cookie', 'b=2', 'X-A', '1', 'X-A', '2', 'X_Real_Thing', 'spoof']),
  });
  assert.is(v.get('REQUEST_SCHEME'), 'https');
  assert.is(v.get('HTTPS'), 'on');
  assert.is(v.get('SERVER_PORT'), '443', 'a front on a Unix socket: the port the scheme implies');
  assert.is(v.get('SERVER_NAME'), 'example.test');
  assert.is(v.get('HTTP_COOKIE'), 'a=1; b=2');
  assert.is(v.get('HTTP_X_A'), '1, 2');
  assert.not.ok(v.has('HTTP_X_REAL_THING'));
});

test('header values keep their bytes (Latin-1 strings as Node parsed them)', () => {
  const v = sent({ ...SEED, headers: packHeaders(['X-Name', 'caf\xc3\xa9']) });
  assert.is(v.get('HTTP_X_NAME'), 'caf\xc3\xa9');
});

test.run();
