// Per-connection header value indexing: the encoder and the decoder stay in step through
// inserts and evictions, refuse what the table cannot hold, and shrink repeated heads.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Connection, HeaderBlock, ProtocolError, Request, TABLE_BYTES, TABLE_ENTRIES, ValueDecoder, ValueEncoder, packHeaders,
  unpackHeaders, type tsgi,
} from '../../src/protocol/index.js';
import { ipv4Bytes, ipv4String } from '../../src/protocol/stream.js';
import { eventually } from '../helpers/assert.js';

const test = suite('protocol/value-table');

/** Sends a block through the encoder, the protobuf wire and the decoder; returns the flat headers. */
function roundTrip(enc: ValueEncoder, dec: ValueDecoder, flat: string[]): { flat: string[]; bytes: number } {
  const { block, commit } = enc.encode(packHeaders(flat));
  const wire = HeaderBlock.encode(block ?? {}).finish();
  commit();
  const received = HeaderBlock.decode(wire) as tsgi.HeaderBlock;
  dec.decode(received);
  return { flat: unpackHeaders(received), bytes: wire.length };
}

const SEED = [
  'Host', '172.16.7.152:8000', 'Accept-Language', 'zh-cn', 'Accept-Encoding', 'gzip,deflate', 'DNT', '1',
  'User-Agent', 'Mozilla/5.0(Macintosh;IntelMacOSX10_12_5)AppleWebKit/603.2.4(KHTML,likeGecko)Version/10.1.1Safari/603.2.4',
  'X-Custom', 'value',
];
const lower = (flat: string[]) => flat.map((s, i) => (i % 2 === 0 ? s.toLowerCase() : s));

test('a repeated head travels as references and decodes to the same headers', () => {
  const enc = new ValueEncoder();
  const dec = new ValueDecoder();
  const first = roundTrip(enc, dec, SEED);
  const second = roundTrip(enc, dec, SEED);
  assert.equal(lower(first.flat), lower(SEED));
  assert.equal(lower(second.flat), lower(SEED));
  assert.ok(second.bytes * 4 < first.bytes, `repeated ${second.bytes} B vs first ${first.bytes} B`);
});

test('changed values travel as text, unchanged ones as references, in any order', () => {
  const enc = new ValueEncoder();
  const dec = new ValueDecoder();
  roundTrip(enc, dec, SEED);
  const mixed = ['User-Agent', SEED[9]!, 'Cookie', 'a=1', 'Host', 'other:1', 'DNT', '1', 'dnt', '1'];
  assert.equal(lower(roundTrip(enc, dec, mixed).flat), lower(mixed));
  assert.equal(lower(roundTrip(enc, dec, mixed).flat), lower(mixed));
});

test('thousands of distinct values: evictions stay in step on both sides', () => {
  const enc = new ValueEncoder();
  const dec = new ValueDecoder();
  for (let i = 0; i < TABLE_ENTRIES * 3; i++) {
    const flat = ['X-Id', `id-${i}`, 'X-Old', `id-${Math.max(0, i - 5)}`, 'Accept', 'text/html', 'X-Big', 'v'.repeat(i % 7 === 0 ? 5000 : 10)];
    assert.equal(lower(roundTrip(enc, dec, flat).flat), lower(flat), `round ${i}`);
  }
  // Byte-bound eviction: values large enough that the byte limit, not the count, evicts.
  for (let i = 0; i < 64; i++) {
    const flat = ['X-Large', `${i}-`.padEnd(4000, 'x'), 'X-Earlier', `${Math.max(0, i - 1)}-`.padEnd(4000, 'x')];
    assert.equal(lower(roundTrip(enc, dec, flat).flat), lower(flat));
  }
  assert.ok(TABLE_BYTES < 64 * 4000, 'the byte bound was exercised');
});

test('a block the decoder cannot resolve is a protocol error', () => {
  const dec = new ValueDecoder();
  const bad: tsgi.HeaderBlock.$Properties[] = [
    { names: [1], refs: [7] },
    { names: [1, 2], refs: [0], values: ['x'] },
    { names: [1], refs: [0] },
    { names: [1], refs: [0], values: ['a', 'b'] },
    { names: [1, 2], values: ['only one'] },
    { names: [1, 2], joinedValues: 'a\nb', values: ['c', 'd'] },
  ];
  for (const block of bad) {
    const decoded = HeaderBlock.decode(HeaderBlock.encode(block).finish()) as tsgi.HeaderBlock;
    assert.throws(() => dec.decode(decoded), (err: unknown) => err instanceof ProtocolError, JSON.stringify(block));
  }
});

test('values that hold LF (never from HTTP, but possible from a peer) fall back to one field each', () => {
  const enc = new ValueEncoder();
  const dec = new ValueDecoder();
  const flat = ['X-A', 'one\ntwo', 'X-B', ''];
  assert.equal(lower(roundTrip(enc, dec, flat).flat), lower(flat));
});

/** Encodes, sends and decodes one block; also returns the positions the wire marked transient. */
function wireTrip(enc: ValueEncoder, dec: ValueDecoder, flat: string[]): { flat: string[]; transient: number[]; refs: number[] } {
  const { block, commit } = enc.encode(packHeaders(flat));
  const wire = HeaderBlock.encode(block ?? {}).finish();
  commit();
  const received = HeaderBlock.decode(wire) as tsgi.HeaderBlock;
  const sent = { transient: [...received.transient], refs: [...received.refs] };
  dec.decode(received);
  return { flat: unpackHeaders(received), ...sent };
}

test('version 3: a per-request trace id travels as transient and never pushes the repeating values out', () => {
  for (const transient of [true, false]) {
    const enc = new ValueEncoder();
    enc.transient = transient;
    const dec = new ValueDecoder();
    let seedAsText = 0;
    let marked = 0;
    for (let i = 0; i < TABLE_ENTRIES * 2; i++) {
      const flat = [...SEED, 'traceparent', `00-${String(i).padStart(32, '0')}-00f067aa0ba902b7-01`];
      const got = wireTrip(enc, dec, flat);
      assert.equal(lower(got.flat), lower(flat), `round ${i}`);
      marked += got.transient.length;
      // SEED's 6 values: after the first round, each one sent as text is one the trace ids pushed out.
      if (i > 0) seedAsText += SEED.length / 2 - got.refs.slice(0, SEED.length / 2).filter((r) => r !== 0).length;
    }
    if (transient) {
      assert.is(marked, TABLE_ENTRIES * 2, 'every trace id went as transient');
      assert.is(seedAsText, 0, 'the repeating values stayed in the table');
    } else {
      assert.is(marked, 0, 'a version-2 peer never sees transient');
      assert.ok(seedAsText >= SEED.length / 2, `without transient, the ids pushed the repeating values out (${seedAsText})`);
    }
  }
});

test('version 3: any name whose values keep missing goes transient after 8 misses, with a probe every 64th', () => {
  const enc = new ValueEncoder();
  enc.transient = true;
  const dec = new ValueDecoder();
  const marks: boolean[] = [];
  for (let m = 1; m <= 200; m++) {
    const flat = ['Accept', 'text/html', 'X-Nonce', `n-${m}`];
    const got = wireTrip(enc, dec, flat);
    assert.equal(lower(got.flat), lower(flat));
    marks.push(got.transient.includes(1));
  }
  const expected = Array.from({ length: 200 }, (_, i) => i + 1 > 8 && (i + 1) % 64 !== 0);
  assert.equal(marks, expected);
  // A hit (the probe n-192 was remembered) makes the name indexable again.
  const hit = wireTrip(enc, dec, ['Accept', 'text/html', 'X-Nonce', 'n-192']);
  assert.ok(hit.refs[1]! > 0, 'the probe is a reference');
  assert.equal(wireTrip(enc, dec, ['Accept', 'text/html', 'X-Nonce', 'fresh']).transient, [], 'indexed again after the hit');
});

test('version 3: transient values, references and evictions stay in step over thousands of heads', () => {
  const enc = new ValueEncoder();
  enc.transient = true;
  const dec = new ValueDecoder();
  for (let i = 0; i < TABLE_ENTRIES * 3; i++) {
    const flat = ['X-Request-Id', `r-${i}`, 'X-Id', `id-${i}`, 'Accept', 'text/html', 'X-Old', `id-${Math.max(0, i - 3)}`,
      'traceparent', `t-${i}`, 'X-Big', 'v'.repeat(i % 7 === 0 ? 5000 : 10), 'Cookie', `c=${i % 600}`];
    assert.equal(lower(wireTrip(enc, dec, flat).flat), lower(flat), `round ${i}`);
  }
});

test('a transient position out of order, out of range or on a reference is a protocol error', () => {
  const dec = new ValueDecoder();
  const bad: tsgi.HeaderBlock.$Properties[] = [
    { names: [1, 2], values: ['a', 'b'], transient: [1, 0] },
    { names: [1, 2], values: ['a', 'b'], transient: [2] },
    { names: [1, 2], values: ['a', 'b'], transient: [0, 0] },
  ];
  for (const block of bad) {
    const decoded = HeaderBlock.decode(HeaderBlock.encode(block).finish()) as tsgi.HeaderBlock;
    assert.throws(() => dec.decode(decoded), (err: unknown) => err instanceof ProtocolError, JSON.stringify(block));
  }
  const enc = new ValueEncoder();
  const withRef = new ValueDecoder();
  roundTrip(enc, withRef, ['Accept', 'text/html']);
  const onRef = HeaderBlock.decode(HeaderBlock.encode({ names: [packHeaders(['Accept', 'x']).names![0]!, 1], refs: [1, 0], values: ['b'], transient: [0] }).finish()) as tsgi.HeaderBlock;
  assert.throws(() => withRef.decode(onRef), (err: unknown) => err instanceof ProtocolError && /reference/.test(err.message));
});

test('IPv4 addresses as 4 bytes, anything else left alone', () => {
  assert.equal([...ipv4Bytes('172.16.7.1')!], [172, 16, 7, 1]);
  assert.is(ipv4String(ipv4Bytes('255.0.10.99')!), '255.0.10.99');
  for (const a of ['::1', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '', 'a.b.c.d']) assert.is(ipv4Bytes(a), null, a);
  const wire = Request.encode({ target: '/', remoteIp: ipv4Bytes('10.0.0.1')! }).finish();
  assert.equal([...Request.decode(wire).remoteIp], [10, 0, 0, 1]);
});

test('a refused request still updates the table: later requests decode right (regression)', async () => {
  const seen: string[][] = [];
  let client!: Connection;
  const deliver = (to: () => Connection) => (chunk: Uint8Array) => {
    const copy = Buffer.from(chunk);
    setImmediate(() => to().receive(copy));
  };
  const server = new Connection({
    role: 'server', write: deliver(() => client), maxStreams: 1,
    onRequest: (stream, head) => {
      seen.push(unpackHeaders(head.headers));
      if (head.target === '/done') stream.sendResponse({ status: 200 }, true);
    },
  });
  client = new Connection({ role: 'client', write: deliver(() => server) });
  server.start();
  client.start();
  await eventually(() => client.ready && server.ready, 'both HELLOs');
  const head = (target: string, value: string) => ({ target, headers: packHeaders(['X-Seq', value, 'Accept', 'text/html']) });
  client.peerMaxStreams = 0; // as if the second request were already on its way: the server refuses it
  const refused: number[] = [];
  const a = client.open(head('/held', 'a'), true); // occupies the only stream slot
  const b = client.open(head('/refused', 'b'), true); // refused, but its values enter the table
  (b.handler ??= {}).onReset = (code) => refused.push(code);
  await eventually(() => refused.length === 1 && seen.length === 1, 'the second stream refused, the first seen');
  assert.equal(refused, [4], 'the second stream was refused');
  a.reset(5);
  client.open(head('/done', 'b'), true); // 'b' and 'text/html' now travel as references
  await eventually(() => seen.length === 2, 'the third request');
  assert.equal(seen, [['X-Seq', 'a', 'accept', 'text/html'], ['X-Seq', 'b', 'accept', 'text/html']]);
  client.destroy();
  server.destroy();
});

test.run();
