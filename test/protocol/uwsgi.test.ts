// The uwsgi packet codec against a corpus of valid and invalid packets, each fed whole, byte by
// byte and in seeded random splits: every way must give the same packet and the same body bytes
// after it, and a declared vars size over the limit must be refused before the block is buffered.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  Modifier1, PING_REPLY, UWSGI_MAX_VARS_SIZE, UwsgiPacketParser, decodeVars, encodeHeader, encodePacket, encodeVars, wholePacket,
  type UwsgiPacket,
} from '../../src/protocol/uwsgi.js';
import { throwsCode } from '../helpers/assert.js';
import { randomSplit } from '../helpers/split.js';

const test = suite('protocol/uwsgi');

/** A vars block written by hand, so the tests do not only check the encoder against itself. */
function rawVars(pairs: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of pairs) {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    parts.push(Buffer.from([kb.length & 0xff, kb.length >> 8]), kb, Buffer.from([vb.length & 0xff, vb.length >> 8]), vb);
  }
  return Buffer.concat(parts);
}

function rawPacket(modifier1: number, block: Buffer, modifier2 = 0, declared = block.length): Buffer {
  return Buffer.concat([Buffer.from([modifier1, declared & 0xff, declared >> 8, modifier2]), block]);
}

/** The vars nginx sends for the seed's request (uwsgi_params plus the headers). */
const SEED_VARS: [string, string][] = [
  ['QUERY_STRING', ''], ['REQUEST_METHOD', 'GET'], ['CONTENT_TYPE', ''], ['CONTENT_LENGTH', ''],
  ['REQUEST_URI', '/index.html'], ['PATH_INFO', '/index.html'], ['DOCUMENT_ROOT', '/usr/share/nginx/html'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'], ['REQUEST_SCHEME', 'http'], ['REMOTE_ADDR', '172.16.7.1'],
  ['REMOTE_PORT', '40432'], ['SERVER_PORT', '8000'], ['SERVER_NAME', '172.16.7.152'],
  ['HTTP_HOST', '172.16.7.152:8000'], ['HTTP_UPGRADE_INSECURE_REQUESTS', '1'],
  ['HTTP_ACCEPT', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['HTTP_ACCEPT_LANGUAGE', 'zh-cn'], ['HTTP_ACCEPT_ENCODING', 'gzip,deflate'], ['HTTP_DNT', '1'],
];

interface Case {
  name: string;
  bytes: Buffer;
  /** Valid cases: the packet and the bytes after it (the start of the body). */
  packet?: UwsgiPacket;
  rest?: Buffer;
  /** Invalid cases: the error code, and how many bytes the parser may have buffered at most. */
  error?: { code: string; maxBuffered?: number };
  limit?: number;
}

const big = 'x'.repeat(UWSGI_MAX_VARS_SIZE - 4 - 1 - 4); // one var filling the block exactly
const cases: Case[] = [
  { name: 'the seed request, no body', bytes: rawPacket(0, rawVars(SEED_VARS)), packet: { modifier1: 0, modifier2: 0, vars: SEED_VARS }, rest: Buffer.alloc(0) },
  {
    name: 'a POST with the start of its body in the same chunk',
    bytes: Buffer.concat([rawPacket(0, rawVars([['REQUEST_METHOD', 'POST'], ['CONTENT_LENGTH', '5']])), Buffer.from('hello')]),
    packet: { modifier1: 0, modifier2: 0, vars: [['REQUEST_METHOD', 'POST'], ['CONTENT_LENGTH', '5']] },
    rest: Buffer.from('hello'),
  },
  { name: 'a ping: modifier1 100, no vars', bytes: Buffer.from([100, 0, 0, 0]), packet: { modifier1: 100, modifier2: 0, vars: [] }, rest: Buffer.alloc(0) },
  {
    name: 'empty values, bytes above 0x7f, modifier2 kept',
    bytes: rawPacket(0, rawVars([['A', ''], ['PATH_INFO', '/caf\xc3\xa9'], ['B', '\xff\x00\x01']]), 7),
    packet: { modifier1: 0, modifier2: 7, vars: [['A', ''], ['PATH_INFO', '/caf\xc3\xa9'], ['B', '\xff\x00\x01']] },
    rest: Buffer.alloc(0),
  },
  {
    name: 'a vars block of the full 64 KiB',
    bytes: rawPacket(0, rawVars([['K', big]])),
    packet: { modifier1: 0, modifier2: 0, vars: [['K', big]] },
    rest: Buffer.alloc(0),
  },
  { name: 'a key length past the end of the block', bytes: rawPacket(0, Buffer.from([9, 0, 65, 66])), error: { code: 'TSGI_ERR_PROTOCOL' } },
  { name: 'a value length past the end of the block', bytes: rawPacket(0, Buffer.from([1, 0, 65, 9, 0, 66])), error: { code: 'TSGI_ERR_PROTOCOL' } },
  { name: 'a key without a value size', bytes: rawPacket(0, Buffer.from([1, 0, 65])), error: { code: 'TSGI_ERR_PROTOCOL' } },
  { name: 'a stray byte after the last var', bytes: rawPacket(0, Buffer.concat([rawVars([['A', 'b']]), Buffer.from([1])])), error: { code: 'TSGI_ERR_PROTOCOL' } },
  { name: 'an empty key', bytes: rawPacket(0, Buffer.from([0, 0, 1, 0, 66])), error: { code: 'TSGI_ERR_PROTOCOL' } },
  {
    name: 'a declared size over a lower limit is refused on the header, before the block is buffered',
    bytes: Buffer.concat([Buffer.from([0, 0x00, 0x10, 0]), Buffer.alloc(4096, 1)]),
    error: { code: 'TSGI_ERR_FRAME_TOO_LARGE', maxBuffered: 4 },
    limit: 1024,
  },
];

function feed(c: Case, chunks: Buffer[], how: string): void {
  const parser = new UwsgiPacketParser(c.limit);
  let result: ReturnType<UwsgiPacketParser['push']> = null;
  const body: Buffer[] = [];
  let error: unknown = null;
  let fedBeforeError = 0;
  for (const chunk of chunks) {
    if (result !== null) {
      body.push(chunk);
      continue;
    }
    try {
      result = parser.push(chunk);
      fedBeforeError += chunk.length;
      if (result !== null) body.push(result.rest);
    } catch (err) {
      error = err;
      break;
    }
  }
  if (c.error !== undefined) {
    assert.instance(error, ProtocolError, `${c.name} (${how}): refused`);
    assert.is((error as ProtocolError).code, c.error.code, `${c.name} (${how}): error code`);
    if (c.error.maxBuffered !== undefined) {
      assert.ok(fedBeforeError <= c.error.maxBuffered, `${c.name} (${how}): refused after ${fedBeforeError} bytes`);
    }
    return;
  }
  assert.is(error, null, `${c.name} (${how}): ${(error as Error)?.message}`);
  assert.ok(result !== null, `${c.name} (${how}): a packet`);
  assert.equal(result!.packet, c.packet, `${c.name} (${how}): the packet`);
  assert.equal(Buffer.concat(body), c.rest, `${c.name} (${how}): the bytes after it`);
}

for (const c of cases) {
  test(`${c.name}: whole, byte by byte, random splits`, () => {
    feed(c, [c.bytes], 'whole');
    feed(c, [...c.bytes].map((b) => Buffer.from([b])), 'byte by byte');
    for (const seed of [1, 2, 3, 4, 5]) feed(c, randomSplit(c.bytes, seed * 7919, 64), `random split, seed ${seed}`);
  });
}

test('encodePacket writes what a hand-written packet holds, and decodes back', () => {
  const packet = encodePacket(SEED_VARS);
  assert.equal(packet, rawPacket(0, rawVars(SEED_VARS)));
  assert.equal(decodeVars(packet.subarray(4)), SEED_VARS);
  assert.is(packet.readUInt16LE(1), packet.length - 4, 'datasize is little-endian u16');
});

test('values: strings are bytes (Latin-1); a Buffer goes as is; a string beyond Latin-1 goes as UTF-8', () => {
  const block = encodeVars([['A', 'caf\xe9'], ['B', Buffer.from('café', 'utf8')], ['C', '€']]);
  assert.equal(decodeVars(block), [['A', 'caf\xe9'], ['B', 'caf\xc3\xa9'], ['C', '\xe2\x82\xac']]);
});

test('keys are decoded exactly, also when two keys share the cache slot and past the cache size', () => {
  // 'Aa' and 'BB' (and so HTTP_Aa and HTTP_BB) hash alike in decodeVars' key cache.
  const vars: [string, string][] = [['HTTP_Aa', '1'], ['HTTP_BB', '2'], ['HTTP_Aa', '3'], ['HTTP_BB', '4']];
  for (let round = 0; round < 2; round++) assert.equal(decodeVars(encodeVars(vars)), vars);
  const many: [string, string][] = Array.from({ length: 1500 }, (_, i) => [`X_KEY_${i}`, String(i)]);
  for (let round = 0; round < 2; round++) assert.equal(decodeVars(encodeVars(many)), many);
});

test('keys are decoded exactly when a block holds other keys, or the same keys in another order, than the last one', () => {
  // decodeVars first tries the key found at the same place in the last block.
  const blocks: [string, string][][] = [
    [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/a'], ['HTTP_X_AB', '1'], ['HTTP_X_CD', '2']],
    [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/b'], ['HTTP_X_CD', '3'], ['HTTP_X_AB', '4']],
    [['REQUEST_METHODS', 'x'], ['PATH_INF', '/c'], ['HTTP_X_CD', '5']],
    [['REQUEST_METHOD', 'PUT'], ['PATH_INFO', ''], ['HTTP_X_AB', '6'], ['HTTP_X_CD', '7'], ['HTTP_X_EF', '8']],
  ];
  assert.ok(blocks.length > 0);
  for (let round = 0; round < 2; round++) {
    for (const vars of blocks) assert.equal(decodeVars(encodeVars(vars)), vars);
  }
  const block = encodeVars(blocks[0]!);
  assert.equal(wholePacket(Buffer.concat([encodeHeader(0, block.length), block, Buffer.from('body')]))?.packet.vars, blocks[0]);
});

test('a vars block over 64 KiB cannot be encoded', () => {
  throwsCode(() => encodePacket([['K', 'x'.repeat(40_000)], ['L', 'y'.repeat(40_000)]]), ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE');
  throwsCode(() => encodeVars([['K', 'x'.repeat(70_000)]]), ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE');
  throwsCode(() => encodeVars([['', 'x']]), ProtocolError, 'TSGI_ERR_PROTOCOL');
  throwsCode(() => encodeHeader(0, 0x10000), ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE');
});

test('the ping reply is a bare header: modifier1 100, size 0, modifier2 1', () => {
  assert.equal([...PING_REPLY], [Modifier1.PING, 0, 0, 1]);
});

test('the parser takes one packet: pushing after it is a bug, not more input', () => {
  const parser = new UwsgiPacketParser();
  assert.ok(parser.push(Buffer.from([100, 0, 0, 0])) !== null);
  assert.throws(() => parser.push(Buffer.from([1])));
});

test('nothing is buffered beyond the header and the declared block', () => {
  const parser = new UwsgiPacketParser();
  assert.is(parser.push(Buffer.from([0, 10, 0, 0, 1, 0])), null);
  assert.is(parser.buffered, 2, 'the header is not counted once parsed');
});

test.run();
