// The front's request id: kept when the request has one, made when not (unique, from a
// per-process prefix and a counter), added to the head the backend gets under the configured
// name (a static-table index for X-Request-Id, a literal name for another), refused at start-up
// when the name is not a header name.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HttpRequest } from '../../src/frontend/http/server.js';
import { RequestIds } from '../../src/frontend/observe/request-id.js';
import type { RequestHead } from '../../src/protocol/connection.js';
import { ConfigError } from '../../src/protocol/errors.js';

const test = suite('frontend/request-id');
const req = (headers: string[]) => ({ rawHeaders: headers, requestId: '' }) as unknown as HttpRequest;
const head = (): RequestHead => ({ target: '/', headers: { names: [1], values: ['example.com'] } });

test('an id the request carries is kept, whatever the case of its name; an empty one is not', () => {
  const ids = new RequestIds('X-Request-Id');
  const r = req(['Host', 'a', 'x-REQUEST-id', 'abc-1']);
  assert.is(ids.assign(r), false);
  assert.is(r.requestId, 'abc-1');
  const empty = req(['X-Request-Id', '']);
  assert.is(ids.assign(empty), true);
  assert.match(empty.requestId, /^[A-Za-z0-9_-]{12}-1$/);
});

test('made ids are unique and share the process prefix; a made id goes in the REQUEST\'s request_id, the header block untouched', () => {
  const ids = new RequestIds('x-request-id');
  const made = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const r = req(['Host', 'a']);
    assert.ok(ids.assign(r));
    made.add(r.requestId);
  }
  assert.is(made.size, 1000);
  assert.is(new Set([...made].map((id) => id.slice(0, 13))).size, 1);
  const h = head();
  ids.addTo(h, 'id-9');
  assert.is(h.requestId, 'id-9');
  assert.equal(h.headers!.values, ['example.com'], 'a value new on every request stays out of the value tables');
  assert.is(h.headers!.names!.length, 1);
});

test('another header name is kept lowercase for the backend and uwsgi vars', () => {
  const ids = new RequestIds('X-Correlation-Id');
  assert.is(ids.header, 'x-correlation-id');
});

test('a name that is not a header name stops start-up, naming the flag', () => {
  try {
    new RequestIds('x request id');
    assert.unreachable('accepted');
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.match((err as Error).message, /--request-id-header "x request id" is not a header name/);
  }
});

test.run();
