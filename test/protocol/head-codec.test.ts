// The hand-written head codecs against the generated protobufjs code: the same bytes for the
// same message, the same message back from any valid encoding (fields repeated, numbers
// unpacked, unknown fields and groups skipped), and a ProtocolError for what is not one.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FRAME_HEADER_SIZE, FrameType, Flags, ProtocolError, Request, Response, Trailers, type tsgi } from '../../src/protocol/index.js';
import {
  decodeRequest, decodeResponse, decodeTrailers, encodeRequestFrame, encodeResponseFrame, encodeTrailersFrame,
} from '../../src/protocol/head-codec.js';
import { frameHeader } from '../../src/protocol/frame.js';
import { ipv4Bytes } from '../../src/protocol/stream.js';
import { throwsCode } from '../helpers/assert.js';

const test = suite('protocol/head-codec');

const LONG = 'x'.repeat(200);
const BLOCKS: tsgi.HeaderBlock.$Properties[] = [
  {},
  { names: [1], values: ['127.0.0.1:8080'] },
  { names: [1, 0, 8], literalNames: ['X-Custom'], values: ['h', 'v', 'text/html'] },
  { names: [1, 2, 3], refs: [5, 0, 300], values: ['only'] },
  { names: [0, 0], literalNames: ['', LONG], joinedValues: 'a\nb' },
  { names: [200, 16384, 2 ** 21, 2 ** 28, 2 ** 32 - 1], values: ['é', 'ü€', '😀', '', LONG + 'é'], transient: [0, 4] },
  { names: [44], values: ['caf\u00e9 \u00ff latin1 bytes as text'], refs: [0] },
];

const REQUESTS: tsgi.Request.$Properties[] = [
  {},
  { target: '/' },
  { target: '/', headers: BLOCKS[1], remoteIp: ipv4Bytes('127.0.0.1')!, remotePort: 54321, serverIp: ipv4Bytes('10.1.2.3')!, serverPort: 8080 },
  { method: 'POST', target: `/${LONG}?q=é`, headers: BLOCKS[2], remoteAddr: '::1', remotePort: 1, serverAddr: 'unix', scheme: 'https',
    protocol: 'HTTP/1.0', timeoutMs: 30000, upgrade: true, requestId: 'abc-123' },
  { target: '/x', headers: {} },
  ...BLOCKS.map((headers) => ({ target: '/b', headers })),
];

const RESPONSES: tsgi.Response.$Properties[] = [
  {},
  { status: 200 },
  { status: 200, headers: BLOCKS[2] },
  { status: 404, reason: 'Not Here', headers: BLOCKS[5] },
  { status: 999, reason: LONG, headers: {} },
  ...BLOCKS.map((headers) => ({ status: 201, headers })),
];

/** A frame's payload, after checking its header. */
function payloadOf(frame: Buffer, type: number, flags: number, stream: number): Buffer {
  const header = frameHeader(type, flags, stream, frame.length - FRAME_HEADER_SIZE);
  assert.equal([...frame.subarray(0, FRAME_HEADER_SIZE)], [...header], 'frame header');
  return frame.subarray(FRAME_HEADER_SIZE);
}

/** What protobufjs decodes, as plain data with every default filled in (the decoders' shape). */
function plainBlock(b: tsgi.HeaderBlock | null | undefined): unknown {
  if (b === null || b === undefined) return null;
  return { names: [...b.names], literalNames: [...b.literalNames], values: [...b.values], refs: [...b.refs],
    joinedValues: b.joinedValues, transient: [...b.transient] };
}

function plainRequest(r: tsgi.Request): unknown {
  const dotted = (bytes: Uint8Array) => [...bytes].join('.');
  return { method: r.method, target: r.target, headers: plainBlock(r.headers as tsgi.HeaderBlock), remoteAddr: r.remoteIp.length > 0 ? dotted(r.remoteIp) : r.remoteAddr,
    remotePort: r.remotePort, serverAddr: r.serverIp.length > 0 ? dotted(r.serverIp) : r.serverAddr, serverPort: r.serverPort, scheme: r.scheme,
    protocol: r.protocol, timeoutMs: r.timeoutMs, upgrade: r.upgrade, requestId: r.requestId };
}

function plainResponse(r: tsgi.Response): unknown {
  return { status: r.status, reason: r.reason, headers: plainBlock(r.headers as tsgi.HeaderBlock) };
}

test('the corpora are not empty', () => {
  assert.ok(REQUESTS.length > 5 && RESPONSES.length > 5 && BLOCKS.length > 5);
});

test('a REQUEST frame carries the bytes protobufjs writes, and decodes to what protobufjs decodes', () => {
  for (const [i, m] of REQUESTS.entries()) {
    const payload = payloadOf(encodeRequestFrame(FrameType.REQUEST, Flags.END_STREAM, 2 * i + 1, m), FrameType.REQUEST, Flags.END_STREAM, 2 * i + 1);
    const expected = Buffer.from(Request.encode(m).finish());
    assert.equal(payload.toString('hex'), expected.toString('hex'), `request ${i}`);
    assert.equal(plainRequest(decodeRequest(expected)), plainRequest(Request.decode(expected)), `request ${i} decoded`);
  }
});

test('a RESPONSE frame carries the bytes protobufjs writes, and decodes to what protobufjs decodes', () => {
  for (const [i, m] of RESPONSES.entries()) {
    const payload = payloadOf(encodeResponseFrame(FrameType.RESPONSE, 0, 7, m), FrameType.RESPONSE, 0, 7);
    const expected = Buffer.from(Response.encode(m).finish());
    assert.equal(payload.toString('hex'), expected.toString('hex'), `response ${i}`);
    assert.equal(plainResponse(decodeResponse(expected)), plainResponse(Response.decode(expected)), `response ${i} decoded`);
  }
});

test('a TRAILERS frame carries the bytes protobufjs writes, and decodes to what protobufjs decodes', () => {
  for (const [i, headers] of [...BLOCKS, null].entries()) {
    const payload = payloadOf(encodeTrailersFrame(FrameType.TRAILERS, Flags.END_STREAM, 3, headers), FrameType.TRAILERS, Flags.END_STREAM, 3);
    const expected = Buffer.from(Trailers.encode({ headers }).finish());
    assert.equal(payload.toString('hex'), expected.toString('hex'), `trailers ${i}`);
    assert.equal(plainBlock(decodeTrailers(expected)), plainBlock(Trailers.decode(expected).headers as tsgi.HeaderBlock), `trailers ${i} decoded`);
  }
});

/** A protobuf field: its tag and bytes. */
const field = (n: number, wireType: number, ...bytes: number[]) => [(n << 3) | wireType, ...bytes];
const str = (n: number, s: string) => { const b = [...Buffer.from(s)]; return field(n, 2, b.length, ...b); };

test('decoding takes fields repeated and out of order, numbers unpacked, and skips unknown fields and groups', () => {
  const block = [
    ...field(1, 0, 1), // names, unpacked
    ...field(1, 2, 2, 0x80, 0x01), // names, packed: 128
    ...str(2, 'X-A'),
    ...field(4, 0, 0), ...field(4, 0, 3), ...field(4, 0, 0), // refs, unpacked
    ...str(3, 'v1'), ...str(3, 'v2'),
    ...field(9, 1, 1, 2, 3, 4, 5, 6, 7, 8), // unknown fixed64
    ...field(10, 5, 1, 2, 3, 4), // unknown fixed32
    ...field(11, 3), ...field(1, 0, 5), ...field(12, 2, 1, 0), ...field(11, 4), // unknown group, with fields inside
    ...field(1, 0, 0),
  ];
  const payload = Buffer.from([
    ...field(15, 0, 0xff, 0xff, 0x03), // unknown varint
    ...str(2, '/first'), ...str(2, '/second'),
    ...field(3, 2, block.length, ...block),
    ...field(3, 2, 3, ...str(3, 'v3').slice(0, 1), 1, 0x7a), // a second head block: merged into the first
    ...field(5, 0, 0xe8, 0x07),
    ...field(11, 2, 4, 192, 168, 0, 1),
    ...field(13, 0, 2),
  ]);
  const mine = decodeRequest(payload);
  assert.equal(plainRequest(mine), plainRequest(Request.decode(payload)));
  assert.is(mine.target, '/second');
  assert.equal(mine.headers!.names, [1, 128, 0]);
  assert.equal(mine.headers!.refs, [0, 3, 0]);
  assert.equal(mine.headers!.values, ['v1', 'v2', 'z']);
  assert.is(mine.remoteAddr, '192.168.0.1');
  assert.is(mine.remotePort, 1000);
  assert.is(mine.upgrade, true);
});

test('request ids decode exactly, one after another, whether or not they share the previous one\'s prefix', () => {
  const ids = ['sPYEFxvSxPkx-1', 'sPYEFxvSxPkx-2', 'sPYEFxvSxPkx-a1', 'sPYEFxvSxPkx-', 'sPYEFxvSxPkx-é', 'sPYEFxvSxPkx-3',
    'other-prefix-1', 'sPYEFxvSxPkx-4', 'my-own-id', 'sPYEFxvSxPkx', 'sPYEFxvSxPky-5', 'x', '', 'sPYEFxvSxPky-6\u00ff', 'sPYEFxvSxPky-7'];
  assert.ok(ids.length > 10);
  for (const requestId of ids) {
    const payload = Buffer.from(Request.encode({ target: '/', requestId }).finish());
    assert.is(decodeRequest(payload).requestId, requestId);
  }
});

test('an address of other than 4 bytes, a bad varint, field number 0, bad UTF-8 and every cut payload are refused', () => {
  const bad = [
    Buffer.from(field(11, 2, 3, 1, 2, 3)),
    Buffer.from(field(12, 2, 16, ...new Array(16).fill(0))),
    Buffer.from([...field(5, 0), ...new Array(10).fill(0xff), 1]),
    Buffer.from([0x02, 0x00]),
    Buffer.from(str(2, 'a').map((b, i) => (i === 2 ? 0xc3 : b))),
    Buffer.from([...field(2, 2, 3), 0xed, 0xa0, 0x80]), // an encoded surrogate
    Buffer.from([...field(2, 3), ...field(1, 4)]), // a group ended by another field's end
    Buffer.from(field(2, 7)),
    Buffer.from([...field(3, 2, 1), ...field(1, 0)]), // a block whose unpacked name has no value
  ];
  for (const [i, payload] of bad.entries()) throwsCode(() => decodeRequest(payload), ProtocolError, 'TSGI_ERR_PROTOCOL', `bad ${i}`);
  const whole = Buffer.from(Request.encode(REQUESTS[3]!).finish());
  let cuts = 0;
  for (let n = 1; n < whole.length; n++) {
    const cut = whole.subarray(0, n);
    let ok = true;
    try {
      Request.decode(cut);
    } catch {
      ok = false;
    }
    if (ok) continue; // a cut between fields is a valid, shorter message
    cuts++;
    throwsCode(() => decodeRequest(cut), ProtocolError, 'TSGI_ERR_PROTOCOL', `cut at ${n}`);
  }
  assert.ok(cuts > 10, 'cuts inside fields were tried');
  throwsCode(() => decodeResponse(Buffer.from([...field(2, 2, 5), 0x41])), ProtocolError, 'TSGI_ERR_PROTOCOL');
  throwsCode(() => decodeTrailers(Buffer.from(field(1, 2, 9, 10))), ProtocolError, 'TSGI_ERR_PROTOCOL');
});

test.run();
