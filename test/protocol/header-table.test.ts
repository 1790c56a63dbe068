// The static header-name table: packing and unpacking header blocks (through their protobuf
// encoding too), the skip predicate, and refusal of malformed blocks from a peer.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HeaderBlock, ProtocolError, STATIC_NAMES, packHeaders, staticIndex, unpackHeaders } from '../../src/protocol/index.js';
import type { HeaderBlockShape } from '../../src/protocol/index.js';
import { throwsCode } from '../helpers/assert.js';

const test = suite('protocol/header-table');

/** Through the wire: encode the block as protobuf and decode it again. */
function wire(block: HeaderBlockShape): HeaderBlockShape {
  return HeaderBlock.decode(HeaderBlock.encode(block).finish());
}

const index = (name: string): number => {
  const i = STATIC_NAMES.indexOf(name);
  assert.ok(i > 0, `${name} is in the table`);
  return i;
};

test('the table: index 0 reserved, every name lower case and listed once', () => {
  assert.is(STATIC_NAMES[0], '');
  const seen = new Set<string>();
  for (const name of STATIC_NAMES.slice(1)) {
    assert.match(name, /^[a-z0-9-]+$/, `"${name}" is a lower-case token`);
    assert.not.ok(seen.has(name), `"${name}" listed twice`);
    seen.add(name);
  }
});

test('round trip keeps order, duplicates, values and literal spellings; table names come back lower case', () => {
  const flat = [
    'Host', 'a.example:8080',
    'X-Custom-Header', 'one',
    'Set-Cookie', 'a=1; Path=/',
    'set-cookie', 'b=2',
    'x-lower', '',
    'ACCEPT', '*/*',
    'X-Custom-Header', 'two, three',
    'Content-Type', 'text/plain; charset=utf-8',
    'X-Ünïcode-Value', 'grüße ✓',
  ];
  const block = packHeaders(flat);
  assert.equal(block.names, [
    index('host'), 0, index('set-cookie'), index('set-cookie'), 0, index('accept'), 0, index('content-type'), 0,
  ]);
  assert.equal(block.literalNames, ['X-Custom-Header', 'x-lower', 'X-Custom-Header', 'X-Ünïcode-Value']);
  const expected = [
    'host', 'a.example:8080',
    'X-Custom-Header', 'one',
    'set-cookie', 'a=1; Path=/',
    'set-cookie', 'b=2',
    'x-lower', '',
    'accept', '*/*',
    'X-Custom-Header', 'two, three',
    'content-type', 'text/plain; charset=utf-8',
    'X-Ünïcode-Value', 'grüße ✓',
  ];
  assert.equal(unpackHeaders(block), expected);
  assert.equal(unpackHeaders(wire(block)), expected, 'after protobuf encode and decode');
});

test('a name in any letter case has the same table index; unknown names have 0', () => {
  for (const spelling of ['host', 'Host', 'HOST', 'hOsT']) assert.is(staticIndex(spelling), index('host'), spelling);
  for (const spelling of ['X-Request-Id', 'x-request-id', 'X-REQUEST-ID']) assert.is(staticIndex(spelling), index('x-request-id'));
  // Asked twice: the second answer comes from the spelling cache and must agree.
  for (const spelling of ['Accept-Encoding', 'Accept-Encoding', 'X-Nope', 'X-Nope', '']) {
    assert.is(staticIndex(spelling), spelling.startsWith('Accept') ? index('accept-encoding') : 0, spelling);
  }
});

test('lookups stay right once the spelling cache is full', () => {
  for (let i = 0; i < 5000; i++) assert.is(staticIndex(`X-Filler-${i}`), 0);
  assert.is(staticIndex('USER-AGENT'), index('user-agent'));
  assert.is(staticIndex('uSeR-aGeNt'), index('user-agent'));
  assert.is(staticIndex('X-Filler-4999'), 0);
  assert.equal(unpackHeaders(packHeaders(['Cookie', 'a=b', 'X-Late-Name', '1'])), ['cookie', 'a=b', 'X-Late-Name', '1']);
});

test('the skip predicate drops entries by index or by name and sees every entry once', () => {
  const flat = [
    'Connection', 'keep-alive', 'Host', 'h', 'Keep-Alive', 'timeout=5', 'X-Keep', '1',
    'Proxy-Connection', 'close', 'Accept', '*/*',
  ];
  const calls: [number, string][] = [];
  const hopByHop = new Set([index('connection'), index('keep-alive')]);
  const block = packHeaders(flat, (i, name) => {
    calls.push([i, name]);
    return hopByHop.has(i) || name === 'proxy-connection';
  });
  assert.equal(calls.map(([i]) => i), [index('connection'), index('host'), index('keep-alive'), 0, 0, index('accept')]);
  assert.equal(unpackHeaders(wire(block)), ['host', 'h', 'X-Keep', '1', 'accept', '*/*']);
  assert.equal(block.literalNames, ['X-Keep'], 'a skipped literal name leaves no literal behind');
});

// Regression: packHeaders passed the name as spelled while its doc promised lower case, so a
// skip list of lower-case names let 'Proxy-Connection' (not in the table) through.
test('the skip predicate sees names in lower case (a mixed-case literal slipped past a lower-case skip list)', () => {
  const names: string[] = [];
  const skipList = new Set(['proxy-connection', 'x-internal']);
  const block = packHeaders(
    ['Proxy-Connection', 'close', 'X-INTERNAL', 's3cret', 'X-Public', 'ok', 'HOST', 'h'],
    (_i, name) => {
      names.push(name);
      return skipList.has(name);
    });
  assert.equal(names, ['proxy-connection', 'x-internal', 'x-public', 'host']);
  assert.equal(unpackHeaders(block), ['X-Public', 'ok', 'host', 'h'], 'the literal keeps its spelling on the wire');
});

test('the seed request headers all travel as table indexes', () => {
  const seed = [
    'Accept-Language', 'zh-cn',
    'Upgrade-Insecure-Requests', '1',
    'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8',
    'Host', 'localhost:8080',
    'Accept-Encoding', 'gzip,deflate',
    'DNT', '1',
    'User-Agent', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
  ];
  const block = packHeaders(seed);
  assert.is(block.names!.length, 7);
  for (const [i, n] of block.names!.entries()) assert.ok(n > 0, `${seed[2 * i]} has a table index`);
  assert.is(block.literalNames, undefined, 'no literal names at all');
  assert.equal(wire(block).literalNames, []);
  assert.equal(unpackHeaders(wire(block)), seed.map((s, i) => (i % 2 === 0 ? s.toLowerCase() : s)));
});

test('no headers, and no block at all, unpack to an empty list', () => {
  const empty = packHeaders([]);
  assert.equal(empty, { names: [], values: [] });
  assert.equal(unpackHeaders(empty), []);
  assert.equal(unpackHeaders(wire(empty)), []);
  assert.equal(unpackHeaders(null), []);
  assert.equal(unpackHeaders(undefined), []);
  assert.equal(unpackHeaders({}), []);
});

test('malformed blocks from a peer are refused with a ProtocolError', () => {
  const cases: [string, HeaderBlockShape][] = [
    ['index one past the table', { names: [STATIC_NAMES.length], values: ['x'] }],
    ['index far past the table', { names: [index('host'), 999999], values: ['h', 'x'] }],
    ['index 2^32-1', { names: [0xffffffff], values: ['x'] }],
    ['more values than names', { names: [index('host')], values: ['h', 'extra'] }],
    ['more names than values', { names: [index('host'), index('accept')], values: ['h'] }],
    ['values without names', { values: ['x'] }],
    ['names without values', { names: [index('host')] }],
    ['literal index with no literal name', { names: [0], values: ['x'] }],
    ['fewer literal names than literal indexes', { names: [0, 0], literalNames: ['X-A'], values: ['1', '2'] }],
  ];
  for (const [what, block] of cases) {
    throwsCode(() => unpackHeaders(block), ProtocolError, 'TSGI_ERR_PROTOCOL', what);
    throwsCode(() => unpackHeaders(wire(block)), ProtocolError, 'TSGI_ERR_PROTOCOL', `${what}, through protobuf`);
  }
});

test.run();
