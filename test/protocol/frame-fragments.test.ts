// The decoder's fragmentData mode: a DATA payload split across chunks is handed on piece by
// piece, as views of the chunks, with END_STREAM on the last piece only.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Flags, FrameDecoder, FrameType, frameHeader } from '../../src/protocol/index.js';

const test = suite('protocol/frame-fragments');

function frames(): Buffer {
  const body = Buffer.alloc(200_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
  const ping = Buffer.from([1, 2, 3]);
  return Buffer.concat([
    frameHeader(FrameType.DATA, 0, 3, 70_000), body.subarray(0, 70_000),
    frameHeader(FrameType.PING, 0, 0, ping.length), ping,
    frameHeader(FrameType.DATA, Flags.END_STREAM, 3, 130_000), body.subarray(70_000),
  ]);
}

function feed(wire: Buffer, cuts: number[]) {
  const decoder = new FrameDecoder(1 << 20, { fragmentData: true });
  const got: { type: number; flags: number; stream: number; payload: Buffer; chunk: Buffer }[] = [];
  let prev = 0;
  for (const cut of [...cuts, wire.length]) {
    const chunk = wire.subarray(prev, cut);
    prev = cut;
    decoder.push(chunk, (type, flags, stream, payload) => got.push({ type, flags, stream, payload, chunk }));
    assert.ok(decoder.buffered <= 10, 'nothing but a frame header is ever buffered');
  }
  return got;
}

test('split DATA arrives as views, whole in order, END_STREAM once at the very end', () => {
  const wire = frames();
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let round = 0; round < 50; round++) {
    const cuts = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 12) }, () => 1 + Math.floor(rand() * (wire.length - 1))))]
      .sort((a, b) => a - b);
    const got = feed(wire, cuts);
    const data = got.filter((f) => f.type === FrameType.DATA);
    const body = Buffer.concat(data.map((f) => f.payload));
    assert.is(body.length, 200_000);
    const expected = Buffer.concat([wire.subarray(10, 70_010), wire.subarray(70_010 + 13 + 10)]);
    assert.ok(body.equals(expected), `round ${round}: the body arrives whole and in order`);
    assert.is(data.filter((f) => f.flags & Flags.END_STREAM).length, 1);
    assert.ok((data.at(-1)!.flags & Flags.END_STREAM) !== 0, 'END_STREAM on the last piece');
    for (const f of data) assert.ok(f.payload.buffer === f.chunk.buffer, 'a view of the chunk, not a copy');
    assert.equal(got.filter((f) => f.type === FrameType.PING).map((f) => [...f.payload]), [[1, 2, 3]]);
  }
});

test('byte by byte', () => {
  const wire = frames().subarray(0, 70_010 + 13);
  const got = feed(wire, Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
  assert.is(Buffer.concat(got.filter((f) => f.type === FrameType.DATA).map((f) => f.payload)).length, 70_000);
  assert.is(got.filter((f) => f.type === FrameType.PING).length, 1);
});

test.run();
