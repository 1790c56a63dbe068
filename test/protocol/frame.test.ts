// The frame decoder against a corpus of valid and invalid frame sequences, each fed whole, byte
// by byte, in seeded random splits and glued to its neighbours: every way must give the same
// frames, and an invalid header must be refused on the very chunk that completes it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DEFAULTS, FRAME_HEADER_SIZE, Flags, FrameDecoder, FrameType, GoAway, Hello, MAX_STREAM_ID, Ping,
  ProtocolError, Request, Reset, ResetCode, Response, Trailers, Window, encodeFrame, frameHeader, packHeaders,
} from '../../src/protocol/index.js';
import type { TsgiErrorCode } from '../../src/protocol/index.js';
import { throwsCode } from '../helpers/assert.js';
import { prng } from '../helpers/split.js';

const test = suite('protocol/frame');

const LIMIT = DEFAULTS.maxFrameSize;

interface Frame { type: number; flags: number; stream: number; payload: Buffer }

interface Case {
  name: string;
  bytes: Buffer;
  /** The frames to expect; for an invalid case, those before the bad header. */
  frames: Frame[];
  /** Invalid cases: the error, and the offset of the byte that completes the bad header. */
  error?: { code: TsgiErrorCode; at: number };
}

function noise(length: number, seed: number): Buffer {
  const next = prng(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (next() * 256) | 0;
  return out;
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Frame {
  return { type, flags, stream, payload: Buffer.from(payload) };
}

function encode(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((f) => encodeFrame(f.type, f.flags, f.stream, f.payload)));
}

function valid(name: string, frames: Frame[]): Case {
  return { name, bytes: encode(frames), frames };
}

/** `before` valid frames, then a bad header, then `after` bytes the decoder must never read. */
function invalid(name: string, code: TsgiErrorCode, before: Frame[], header: Buffer, after: Buffer): Case {
  const prefix = encode(before);
  return {
    name, frames: before, bytes: Buffer.concat([prefix, header, after]),
    error: { code, at: prefix.length + FRAME_HEADER_SIZE - 1 },
  };
}

const { END_STREAM } = Flags;
const seedHeaders = [
  'Host', 'example.com', 'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0',
  'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'Accept-Language', 'zh-cn',
  'Accept-Encoding', 'gzip,deflate', 'DNT', '1', 'Upgrade-Insecure-Requests', '1', 'X-Trace', 'abc',
];
const hello = Hello.encode({
  versions: [1, 2], maxFrameSize: LIMIT, initialWindow: DEFAULTS.initialWindow, maxStreams: 1024, software: 'tsgi/test',
}).finish();
const request = Request.encode({
  method: 'POST', target: '/upload?x=1', headers: packHeaders(seedHeaders), remoteAddr: '192.0.2.1', remotePort: 50123,
  serverAddr: '127.0.0.1', serverPort: 8080, scheme: 'https', protocol: 'HTTP/1.1', timeoutMs: 30000,
}).finish();
const response = Response.encode({ status: 201, headers: packHeaders(['Content-Type', 'text/plain', 'X-Id', '7']) }).finish();

const VALID: Case[] = [
  valid('HELLO', [frame(FrameType.HELLO, 0, 0, hello)]),
  valid('REQUEST with END_STREAM', [frame(FrameType.REQUEST, END_STREAM, 1, request)]),
  valid('REQUEST, body around the 512-byte write split, empty DATA ending it', [
    frame(FrameType.REQUEST, 0, 3, request),
    frame(FrameType.DATA, 0, 3, noise(1, 1)),
    frame(FrameType.DATA, 0, 3, noise(511, 2)),
    frame(FrameType.DATA, 0, 3, noise(512, 3)),
    frame(FrameType.DATA, 0, 3, noise(513, 4)),
    frame(FrameType.DATA, END_STREAM, 3, Buffer.alloc(0)),
  ]),
  valid('DATA around and over 64 KiB', [
    frame(FrameType.DATA, 0, 5, noise(65535, 5)),
    frame(FrameType.DATA, 0, 5, noise(65536, 6)),
    frame(FrameType.DATA, 0, 5, noise(65537, 7)),
    frame(FrameType.DATA, END_STREAM, 5, noise(3 * 65536 + 17, 8)),
  ]),
  valid('RESPONSE, DATA, TRAILERS', [
    frame(FrameType.RESPONSE, 0, 1, response),
    frame(FrameType.DATA, 0, 1, noise(100, 9)),
    frame(FrameType.TRAILERS, END_STREAM, 1, Trailers.encode({ headers: packHeaders(['Server-Timing', 'app;dur=3']) }).finish()),
  ]),
  valid('WINDOW and RESET', [
    frame(FrameType.WINDOW, 0, 1, Window.encode({ increment: 65536 }).finish()),
    frame(FrameType.WINDOW, 0, 3, Window.encode({ increment: MAX_STREAM_ID }).finish()),
    frame(FrameType.RESET, 0, 3, Reset.encode({ code: ResetCode.CANCEL, message: 'client went away' }).finish()),
  ]),
  valid('PING, PONG, GOAWAY', [
    frame(FrameType.PING, 0, 0, Ping.encode({ id: 0xffffffff }).finish()),
    frame(FrameType.PONG, 0, 0, Ping.encode({ id: 0xffffffff }).finish()),
    frame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: 9, code: ResetCode.NO_ERROR, message: 'reload' }).finish()),
  ]),
  valid('empty payloads everywhere', [
    frame(FrameType.PING, 0, 0, Buffer.alloc(0)),
    frame(FrameType.DATA, 0, 7, Buffer.alloc(0)),
    frame(FrameType.DATA, END_STREAM, 7, Buffer.alloc(0)),
  ]),
  valid('streams interleaved, the highest stream id, an unknown type with every flag', [
    frame(FrameType.DATA, 0, 1, noise(30, 10)),
    frame(FrameType.DATA, 0, MAX_STREAM_ID, noise(9, 11)),
    frame(FrameType.DATA, 0, 3, noise(70000, 12)),
    frame(0xee, 0xff, 9, noise(3, 13)),
    frame(FrameType.DATA, END_STREAM, 1, noise(2, 14)),
  ]),
  valid('a frame of exactly the limit', [frame(FrameType.DATA, END_STREAM, 11, noise(LIMIT, 15))]),
];

const helloFrame = frame(FrameType.HELLO, 0, 0, hello);
const INVALID: Case[] = [
  invalid('length one over the limit, after a good frame', 'TSGI_ERR_FRAME_TOO_LARGE',
    [helloFrame], frameHeader(FrameType.DATA, 0, 1, LIMIT + 1), noise(4096, 20)),
  invalid('length 2^31 (negative if read as int32)', 'TSGI_ERR_FRAME_TOO_LARGE',
    [], frameHeader(FrameType.DATA, 0, 1, 0x80000000), noise(64, 21)),
  invalid('length 2^32-1', 'TSGI_ERR_FRAME_TOO_LARGE',
    [helloFrame], frameHeader(FrameType.REQUEST, 0, 1, 0xffffffff), Buffer.alloc(0)),
  invalid('stream id with the high bit set', 'TSGI_ERR_PROTOCOL',
    [helloFrame], frameHeader(FrameType.DATA, 0, 0x80000001, 4), noise(4, 22)),
  invalid('stream id 2^32-1 on an empty frame', 'TSGI_ERR_PROTOCOL',
    [], frameHeader(FrameType.PING, 0, 0xffffffff, 0), Buffer.alloc(0)),
  // 'GET ' read as a length is 1195725856: a plain HTTP request sent to a backend by mistake.
  invalid('an HTTP/1.1 request instead of frames', 'TSGI_ERR_FRAME_TOO_LARGE',
    [], Buffer.from('GET / HTTP'), Buffer.from('/1.1\r\nHost: a\r\n\r\n')),
];

/** Cuts `bytes` into consecutive views of random lengths: mostly short, sometimes long. */
function randomSplit(bytes: Buffer, seed: number): Buffer[] {
  const next = prng(seed);
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const r = next();
    const size = r < 0.6 ? 1 + Math.floor(next() * 16) : r < 0.9 ? 1 + Math.floor(next() * 2000) : 1 + Math.floor(next() * 150000);
    chunks.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

function byteByByte(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) chunks.push(bytes.subarray(i, i + 1));
  return chunks;
}

interface Outcome { frames: Frame[]; error: unknown; errorChunk: number; chunkStarts: number[] }

/**
 * Feeds the chunks in order, stopping at the first throw. Payloads are kept as handed out,
 * not copied, so a decoder that reuses a buffer for a later frame is caught when comparing.
 */
function feed(chunks: readonly Buffer[], limit = LIMIT): Outcome {
  const decoder = new FrameDecoder(limit);
  const frames: Frame[] = [];
  const chunkStarts: number[] = [];
  let offset = 0;
  for (let i = 0; i < chunks.length; i++) {
    chunkStarts.push(offset);
    offset += chunks[i]!.length;
    try {
      decoder.push(chunks[i]!, (type, flags, stream, payload) => frames.push({ type, flags, stream, payload }));
    } catch (error) {
      return { frames, error, errorChunk: i, chunkStarts };
    }
  }
  assert.is(decoder.buffered, 0, 'bytes left over after the last frame');
  return { frames, error: undefined, errorChunk: -1, chunkStarts };
}

function assertFrames(actual: readonly Frame[], expected: readonly Frame[], how: string): void {
  assert.is(actual.length, expected.length, `${how}: number of frames`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.equal(
      { type: a.type, flags: a.flags, stream: a.stream, length: a.payload.length },
      { type: e.type, flags: e.flags, stream: e.stream, length: e.payload.length },
      `${how}: frame ${i}`);
    assert.ok(a.payload.equals(e.payload), `${how}: payload bytes of frame ${i}`);
  }
}

/** Feeds `c` one way and checks the frames, and for an invalid case where the refusal came. */
function check(c: Case, chunks: readonly Buffer[], how: string, offset = 0, before: readonly Frame[] = [], after: readonly Frame[] = []): void {
  const out = feed(chunks);
  if (c.error === undefined) {
    assert.is(out.error, undefined, `${how}: unexpected ${String(out.error)}`);
    assertFrames(out.frames, [...before, ...c.frames, ...after], how);
    return;
  }
  assertFrames(out.frames, [...before, ...c.frames], how);
  assert.instance(out.error, ProtocolError, `${how}: error class`);
  assert.is((out.error as ProtocolError).code, c.error.code, `${how}: error code`);
  const at = offset + c.error.at;
  const start = out.chunkStarts[out.errorChunk]!;
  assert.ok(start <= at && at < start + chunks[out.errorChunk]!.length,
    `${how}: refused on the chunk at ${start}, not the one holding byte ${at} that completes the header`);
}

function checkEveryWay(c: Case, index: number): void {
  check(c, [c.bytes], 'whole');
  check(c, byteByByte(c.bytes), 'byte by byte');
  for (const seed of [1, 2, 3, 4, 5]) check(c, randomSplit(c.bytes, seed * 7919 + index), `random split, seed ${seed}`);
  // Glued: the previous and next valid cases in one chunk with this one.
  const prev = VALID[(index + VALID.length - 1) % VALID.length]!;
  const next = VALID[(index + 1) % VALID.length]!;
  const glued = Buffer.concat([prev.bytes, c.bytes, next.bytes]);
  check(c, [glued], 'glued to its neighbours', prev.bytes.length, prev.frames, next.frames);
  check(c, randomSplit(glued, 31 + index), 'glued, then split', prev.bytes.length, prev.frames, next.frames);
}

VALID.forEach((c, i) => test(`valid: ${c.name}`, () => checkEveryWay(c, i)));
INVALID.forEach((c, i) => test(`invalid: ${c.name}`, () => checkEveryWay(c, i)));

test('frameHeader writes the layout drawn in frame.ts, lengths and ids unsigned', () => {
  assert.equal([...frameHeader(3, 1, 0x01020304, 0x0a0b0c0d)], [0x0a, 0x0b, 0x0c, 0x0d, 3, 1, 1, 2, 3, 4]);
  assert.equal([...frameHeader(0xff, 0xff, MAX_STREAM_ID, 0xffffffff)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
  const f = encodeFrame(FrameType.PING, 0, 0, Buffer.from([9, 8]));
  assert.equal([...f], [0, 0, 0, 2, FrameType.PING, 0, 0, 0, 0, 0, 9, 8]);
});

test('an oversized length is refused once the 10-byte header is complete, with no payload sent', () => {
  for (const length of [LIMIT + 1, 0x80000000, 0xffffffff]) {
    const decoder = new FrameDecoder(LIMIT);
    const header = frameHeader(FrameType.DATA, 0, 1, length);
    for (let i = 0; i < FRAME_HEADER_SIZE - 1; i++) {
      decoder.push(header.subarray(i, i + 1), () => assert.unreachable('no frame from a partial header'));
      assert.is(decoder.buffered, i + 1, 'header bytes held');
    }
    throwsCode(() => decoder.push(header.subarray(FRAME_HEADER_SIZE - 1), () => assert.unreachable('frame emitted')),
      ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE', `length ${length}, last header byte`);
    assert.ok(decoder.buffered <= FRAME_HEADER_SIZE, `buffered ${decoder.buffered} after the refusal`);

    const whole = new FrameDecoder(LIMIT);
    throwsCode(() => whole.push(header, () => assert.unreachable('frame emitted')),
      ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE', `length ${length}, header in one chunk`);
    assert.ok(whole.buffered <= FRAME_HEADER_SIZE, `buffered ${whole.buffered} after the refusal`);
  }
});

test('the limit is inclusive: maxFrameSize bytes pass, one more is refused', () => {
  const frames: number[] = [];
  new FrameDecoder(1024).push(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(1024)), (_t, _f, _s, p) => frames.push(p.length));
  assert.equal(frames, [1024]);
  throwsCode(() => new FrameDecoder(1024).push(frameHeader(FrameType.DATA, 0, 1, 1025), () => {}),
    ProtocolError, 'TSGI_ERR_FRAME_TOO_LARGE');
});

test('the decoder refuses any input after an error', () => {
  const decoder = new FrameDecoder(LIMIT);
  throwsCode(() => decoder.push(frameHeader(FrameType.DATA, 0, 0x80000000, 0), () => {}), ProtocolError, 'TSGI_ERR_PROTOCOL');
  const good = encodeFrame(FrameType.HELLO, 0, 0, hello);
  throwsCode(() => decoder.push(good, () => assert.unreachable('frame after an error')), ProtocolError, undefined, 'good frame');
  throwsCode(() => decoder.push(Buffer.alloc(0), () => {}), ProtocolError, undefined, 'empty chunk');
});

test('a payload wholly inside one chunk is a view of that chunk, not a copy', () => {
  const frames = [
    frame(FrameType.DATA, 0, 1, noise(5000, 40)),
    frame(FrameType.DATA, 0, 3, noise(7, 41)),
    frame(FrameType.REQUEST, 0, 5, request),
  ];
  // Not from Buffer's shared pool, so "same ArrayBuffer" cannot happen by accident.
  const bytes = encode(frames);
  const chunk = Buffer.from(new ArrayBuffer(bytes.length));
  bytes.copy(chunk);
  const seen: Buffer[] = [];
  new FrameDecoder(LIMIT).push(chunk, (_t, _f, _s, p) => seen.push(p));
  assert.is(seen.length, 3);
  let offset = 0;
  for (let i = 0; i < 3; i++) {
    offset += FRAME_HEADER_SIZE;
    assert.ok(seen[i]!.buffer === chunk.buffer, `frame ${i}: same ArrayBuffer as the chunk`);
    assert.is(seen[i]!.byteOffset, chunk.byteOffset + offset, `frame ${i}: byteOffset`);
    offset += frames[i]!.payload.length;
  }
});

// Regression: a header that ended its chunk made the decoder allocate and copy the payload, even
// when the next chunk held all of it. Connection.writeData sends a header and a body in two
// writes, so on a transport that does not coalesce this was every DATA frame over 512 bytes.
test('a payload in the chunk after its header is a view, not a copy (header ending a chunk forced a copy)', () => {
  const payload = noise(5000, 42);
  const header = frameHeader(FrameType.DATA, 0, 1, payload.length);
  const body = Buffer.from(new ArrayBuffer(payload.length + 20));
  payload.copy(body);
  encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(10)).copy(body, payload.length);
  const decoder = new FrameDecoder(LIMIT);
  const seen: Buffer[] = [];
  decoder.push(header.subarray(0, 4), () => assert.unreachable('no frame yet'));
  decoder.push(header.subarray(4), () => assert.unreachable('no frame yet'));
  assert.is(decoder.buffered, 0, 'nothing held between the header and its payload');
  decoder.push(body, (_t, _f, _s, p) => seen.push(p));
  assert.is(seen.length, 2);
  assert.ok(seen[0]!.equals(payload));
  assert.ok(seen[0]!.buffer === body.buffer, 'same ArrayBuffer as the chunk that held it');
  assert.is(seen[0]!.byteOffset, body.byteOffset);
});

test('a payload split across chunks is assembled into memory of its own', () => {
  const payload = noise(3000, 50);
  const bytes = encodeFrame(FrameType.DATA, 0, 1, payload);
  const a = Buffer.from(bytes.subarray(0, 1000));
  const b = Buffer.from(bytes.subarray(1000));
  const seen: Buffer[] = [];
  const decoder = new FrameDecoder(LIMIT);
  decoder.push(a, () => assert.unreachable('no frame yet'));
  assert.is(decoder.buffered, 1000 - FRAME_HEADER_SIZE, 'payload bytes held');
  decoder.push(b, (_t, _f, _s, p) => seen.push(p));
  a.fill(0);
  b.fill(0);
  assert.is(seen.length, 1);
  assert.ok(seen[0]!.equals(payload), 'payload unaffected when the transport reuses its chunks');
});

test.run();
