// The front's limit checks without processes: request targets (absolute-form naming another
// host), Transfer-Encoding and Host problems in a translated head, admission in the pool
// (--max-in-flight), and the statuses the new error codes become.
import type { HttpRequest } from '../../src/frontend/http/server.js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger } from '../../src/common/log.js';
import { Pool } from '../../src/frontend/upstream/pool.js';
import { requestHead, targetProblem } from '../../src/frontend/http/request-head.js';
import { TsgiError, httpStatusFor, rawErrorResponse } from '../../src/protocol/errors.js';

const test = suite('frontend/limits');

/** Just what requestHead reads of an HttpRequest. */
function fakeReq(rawHeaders: string[], httpVersion = '1.1'): HttpRequest {
  return {
    rawHeaders, httpVersion, method: 'POST', url: '/',
    socket: { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 },
  } as unknown as HttpRequest;
}

test('targets: origin-form and * are fine; absolute-form only when it names the Host', () => {
  assert.is(targetProblem('*', 'a.test'), null);
  assert.is(targetProblem('http://a.test/x?y', 'a.test'), null);
  assert.is(targetProblem('HTTP://A.TEST:8080/x', 'a.test:8080'), null);
  assert.match(targetProblem('http://evil.test/x', 'a.test')!, /names "evil.test" but Host is "a.test"/);
  assert.match(targetProblem('http://a.test:81/x', 'a.test')!, /names "a.test:81"/);
  assert.match(targetProblem('http://a.test@evil.test/', 'a.test')!, /userinfo/);
  assert.match(targetProblem('http://a.test/', undefined)!, /Host is ""/);
  assert.match(targetProblem('x/y', 'a.test')!, /neither origin-form nor absolute-form/);
  assert.match(targetProblem('ftp://a.test/', 'a.test')!, /neither/);
});

test('a translated head names its problem: Transfer-Encoding other than chunked, HTTP/1.1 without Host', () => {
  assert.is(requestHead(fakeReq(['Host', 'a', 'Transfer-Encoding', 'chunked'])).problem, null);
  assert.is(requestHead(fakeReq(['Host', 'a', 'Transfer-Encoding', 'Chunked '])).problem, null);
  // trim() also strips U+00A0: '\xa0chunked\xa0' was taken for chunked. Only SP and HTAB are whitespace.
  for (const te of ['\xa0chunked\xa0', '\xa0chunked', 'chunked\xa0', '\ufeffchunked']) {
    assert.match(requestHead(fakeReq(['Host', 'a', 'Transfer-Encoding', te])).problem ?? '', /is not "chunked"/, JSON.stringify(te));
  }
  for (const te of ['xchunked', 'chunked, identity', 'gzip, chunked', 'identity', '']) {
    assert.match(requestHead(fakeReq(['Host', 'a', 'Transfer-Encoding', te])).problem ?? '', /is not "chunked"/, te);
  }
  assert.match(requestHead(fakeReq(['X-A', 'b'])).problem ?? '', /without Host/);
  assert.match(requestHead(fakeReq(['Host', 'a', 'host', 'b'])).problem ?? '', /more than one Host/);
  for (const host of ['a.test', 'a.test:8080', '127.0.0.1:1', '[::1]:80', '[fe80::1]', 'xn--bcher-kva.test', '']) {
    assert.is(requestHead(fakeReq(['Host', host])).problem, null, host);
  }
  for (const host of ['a.test/x', 'u@a.test', 'a test', 'a.test:80x', 'a.test?', '[::1', 'a#b']) {
    assert.match(requestHead(fakeReq(['Host', host])).problem ?? '', /is not host\[:port\]/, host);
  }
  assert.is(requestHead(fakeReq(['X-A', 'b'], '1.0')).problem, null, 'HTTP/1.0 needs no Host');
});

test('a translated head carries its end-to-end fields in order, without holes where hop-by-hop ones were left out', () => {
  const fields = ['Host', 'a', 'Connection', 'keep-alive', 'X-One', '1', 'Keep-Alive', 'timeout=5', 'Accept', '*/*'];
  const { head } = requestHead(fakeReq(fields));
  const { names, values, literalNames } = head.headers as { names: number[]; values: string[]; literalNames?: string[] };
  assert.equal([...values], ['a', '1', '*/*']);
  assert.is(names.length, 3);
  assert.ok(names.every((n) => Number.isInteger(n)), 'every name index is set');
  assert.equal(literalNames, ['X-One']);
  assert.equal([...requestHead(fakeReq([])).head.headers!.values!], []);
});

test('the pool admits up to maxInFlight, sheds beyond with TSGI_ERR_OVERLOADED (503), and admits again after leave()', () => {
  const pool = new Pool({ log: createLogger('test'), queueSize: 10, queueTimeoutMs: 1000, maxInFlight: 2 });
  assert.is(pool.admit(), null);
  assert.is(pool.admit(), null);
  const err = pool.admit();
  assert.instance(err, TsgiError);
  assert.is(err!.code, 'TSGI_ERR_OVERLOADED');
  assert.is(httpStatusFor(err), 503);
  assert.is(pool.shed, 1);
  assert.is(pool.inFlight, 2);
  pool.leave();
  assert.is(pool.admit(), null);
  const unlimited = new Pool({ log: createLogger('test'), queueSize: 10, queueTimeoutMs: 1000 });
  for (let i = 0; i < 1000; i++) assert.is(unlimited.admit(), null);
  pool.stop();
  unlimited.stop();
});

test('client refusals map to 400, 408, 413, 431; a raw 503 carries Retry-After and closes', () => {
  const status = (code: ConstructorParameters<typeof TsgiError>[0]) => httpStatusFor(new TsgiError(code, ''));
  assert.is(status('TSGI_ERR_BAD_REQUEST'), 400);
  assert.is(status('TSGI_ERR_REQUEST_TIMEOUT'), 408);
  assert.is(status('TSGI_ERR_BODY_TOO_LARGE'), 413);
  assert.is(status('TSGI_ERR_HEADERS_TOO_LARGE'), 431);
  const raw = rawErrorResponse(new TsgiError('TSGI_ERR_OVERLOADED', 'over --max-connections'));
  assert.match(raw, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(raw, /\r\nretry-after: 1\r\n/);
  assert.match(raw, /\r\nconnection: close\r\n/);
  assert.match(raw, /\r\ncontent-length: 24\r\n/);
  assert.match(raw, /\r\n\r\n503 Service Unavailable\n$/);
  const tooLarge = rawErrorResponse(new TsgiError('TSGI_ERR_HEADERS_TOO_LARGE', ''));
  assert.not.match(tooLarge, /retry-after/);
  assert.match(tooLarge, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
});

test.run();
