// tsgi.input: the request body as an async-iterable stream whose credit goes back to the
// sender only as the application takes chunks.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputStream } from '../../src/backend/input.js';
import { TsgiError } from '../../src/protocol/errors.js';
import { eventually, rejects, throwsCode } from '../helpers/assert.js';
import { turns } from './helpers/exchange.js';

const test = suite('backend/input');
const b = (s: string) => Buffer.from(s);

async function collect(input: InputStream): Promise<string[]> {
  const out: string[] = [];
  for await (const chunk of input) out.push(chunk.toString());
  return out;
}

test('chunks pushed before reading come out in order, then the end', async () => {
  const input = new InputStream();
  input.push(b('one'));
  input.push(b('two'));
  input.end();
  assert.ok(input.complete);
  assert.is(input.received, 6);
  assert.equal(await collect(input), ['one', 'two']);
});

test('a waiting reader gets chunks pushed later, and the end', async () => {
  const input = new InputStream();
  const got = collect(input);
  await turns(1);
  input.push(b('a'));
  await turns(1);
  input.push(b('b'));
  input.push(b('c'));
  await turns(1);
  assert.not.ok(input.complete);
  input.end();
  assert.equal(await got, ['a', 'b', 'c']);
});

test('end() while a reader waits on an empty queue ends its iteration', async () => {
  const input = new InputStream();
  const next = input.next();
  input.end();
  const r = await next;
  assert.ok(r.done);
});

test('empty chunks and pushes after end() are ignored', async () => {
  const input = new InputStream();
  input.push(b('x'));
  input.push(Buffer.alloc(0));
  input.end();
  input.push(b('late'));
  input.end();
  assert.is(input.received, 1);
  assert.equal(await collect(input), ['x']);
});

test('read() returns the whole remaining body; text() and json() decode it', async () => {
  let input = new InputStream();
  input.push(b('hello '));
  input.push(b('world'));
  input.end();
  assert.is((await input.read()).toString(), 'hello world');
  assert.is((await input.read()).length, 0, 'nothing left: an empty buffer');

  input = new InputStream();
  const e = Buffer.from('é');
  input.push(e.subarray(0, 1)); // a UTF-8 sequence split across chunks
  input.push(e.subarray(1));
  input.end();
  assert.is(await input.text(), 'é');

  input = new InputStream();
  const json = input.json();
  input.push(b('{"a":[1,'));
  input.push(b('2]}'));
  input.end();
  assert.equal(await json, { a: [1, 2] });

  input = new InputStream();
  input.push(b('{not json'));
  input.end();
  try {
    await input.json();
    assert.unreachable('json() of invalid JSON resolved');
  } catch (err) {
    assert.instance(err, SyntaxError);
  }
});

test('read(limit): a body over the limit rejects with TSGI_ERR_BODY_TOO_LARGE; at the limit it reads', async () => {
  let input = new InputStream();
  input.push(b('12345'));
  input.push(b('6'));
  input.end();
  const err = await rejects(input.read(5), TsgiError, 'TSGI_ERR_BODY_TOO_LARGE', 'read(5) of 6 bytes');
  assert.is(err.status, 413);

  input = new InputStream();
  input.push(b('123'));
  input.push(b('45'));
  input.end();
  assert.is((await input.read(5)).toString(), '12345');
});

test('fail() rejects a pending reader and every later read', async () => {
  const input = new InputStream();
  const pending = input.next();
  const gone = new TsgiError('TSGI_ERR_CLIENT_GONE', 'client went away');
  input.fail(gone);
  const err = await rejects(pending, TsgiError, 'TSGI_ERR_CLIENT_GONE', 'pending next()');
  assert.is(err, gone, 'the very error given to fail()');
  await rejects(input.read(), TsgiError, 'TSGI_ERR_CLIENT_GONE', 'read() after fail()');
  input.push(b('late'));
  await rejects(input.next(), TsgiError, 'TSGI_ERR_CLIENT_GONE', 'next() after a late push');
});

test('fail() drops chunks not yet read: a body that cannot complete is not half-delivered', async () => {
  let input = new InputStream();
  input.push(b('partial'));
  input.fail(new TsgiError('TSGI_ERR_CLIENT_GONE', 'reset'));
  await rejects(input.next(), TsgiError, 'TSGI_ERR_CLIENT_GONE', 'next() with a chunk queued before fail()');
  input = new InputStream();
  input.push(b('partial'));
  input.fail(new TsgiError('TSGI_ERR_CLIENT_GONE', 'reset'));
  await rejects(input.text(), TsgiError, 'TSGI_ERR_CLIENT_GONE', 'text()');
});

test('fail() after the whole body arrived changes nothing for the reader', async () => {
  const input = new InputStream();
  input.push(b('all of it'));
  input.end();
  input.fail(new TsgiError('TSGI_ERR_CLIENT_GONE', 'reset after the body'));
  assert.is(await input.text(), 'all of it');
});

test('onConsume is called with chunk sizes only as the app takes chunks', async () => {
  const credited: number[] = [];
  const input = new InputStream((n) => credited.push(n));
  input.push(b('abc'));
  input.push(b('defgh'));
  assert.equal(credited, [], 'buffered chunks give no credit back');
  const it = input[Symbol.asyncIterator]();
  assert.is((await it.next()).value?.toString(), 'abc');
  assert.equal(credited, [3]);
  assert.is((await it.next()).value?.toString(), 'defgh');
  assert.equal(credited, [3, 5]);
  const waiting = it.next();
  input.push(b('ij'));
  assert.equal(credited, [3, 5, 2], 'a chunk handed straight to a waiting reader is consumed at once');
  assert.is((await waiting).value?.toString(), 'ij');
  input.push(b('klmn'));
  input.end();
  assert.equal(credited, [3, 5, 2], 'still buffered after end()');
  assert.ok((await it.next()).value);
  assert.ok((await it.next()).done);
  assert.equal(credited, [3, 5, 2, 4]);
  assert.is(credited.reduce((x, y) => x + y, 0), input.received, 'every byte is credited once');
});

test('iterating twice throws TSGI_ERR_APP', async () => {
  const input = new InputStream();
  input.push(b('x'));
  input.end();
  assert.equal(await collect(input), ['x']);
  throwsCode(() => input[Symbol.asyncIterator](), TsgiError, 'TSGI_ERR_APP', 'second iteration');
});

test('two readers at once: the second is refused, the first still gets the chunk', async () => {
  const input = new InputStream();
  let got: string | undefined;
  void input.next().then((r) => { got = r.value?.toString(); });
  let second: unknown = 'pending';
  input.next().then(() => { second = 'resolved'; }, (err) => { second = err; });
  await eventually(() => second !== 'pending', 'an answer to the second reader');
  throwsCode(() => { throw second; }, TsgiError, 'TSGI_ERR_APP', 'concurrent next()');
  input.push(b('x'));
  await eventually(() => got !== undefined, 'the first reader to get the chunk');
  assert.is(got, 'x');
});

test('breaking out of for-await leaves the rest readable with read()', async () => {
  const input = new InputStream();
  input.push(b('head'));
  input.push(b('-rest'));
  input.end();
  for await (const chunk of input) {
    assert.is(chunk.toString(), 'head');
    break;
  }
  assert.is((await input.read()).toString(), '-rest');
});

test.run();
