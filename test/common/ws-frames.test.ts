// The WebSocket frame-boundary tracker and close-frame builders, against the frames of the `ws`
// library: a corpus of real frames (masked and not, every length encoding, fragments, control
// frames between fragments) fed whole, byte by byte, in random splits and glued together.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as wsModule from 'ws';
import {
  CloseCode, FrameTracker, WebSocketCloser, asksForWebSocket, clientCloseFrame, parseClosePayload, serverCloseFrame,
} from '../../src/common/ws-frames.js';

const test = suite('common/ws-frames');

// ws's own codec (exported by its ESM entry, not declared in @types/ws).
const { Receiver, Sender } = wsModule as unknown as {
  Receiver: new (o: object) => import('node:stream').Writable;
  Sender: { frame(d: Buffer, o: object): Buffer[] };
};

type FrameOptions = { opcode: number; fin: boolean; mask: boolean; rsv1?: boolean };

function frame(data: Buffer, o: FrameOptions): Buffer {
  const parts = Sender.frame(data, {
    fin: o.fin, mask: o.mask, opcode: o.opcode, readOnly: false, rsv1: o.rsv1 ?? false,
    maskBuffer: Buffer.alloc(4), generateMask: (b: Buffer) => b.fill(0x5a),
  });
  return Buffer.concat(parts);
}

function fill(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Frames of every shape, each with its length on the wire. */
function corpus(mask: boolean): Buffer[] {
  const out: Buffer[] = [];
  for (const n of [0, 1, 125, 126, 127, 65535, 65536, 70000]) out.push(frame(fill(n, n), { opcode: 2, fin: true, mask }));
  out.push(frame(Buffer.from('héllo'), { opcode: 1, fin: true, mask }));
  // A fragmented message with a ping and a pong between its fragments (§5.4).
  out.push(frame(Buffer.from('frag-1 '), { opcode: 1, fin: false, mask }));
  out.push(frame(Buffer.from('ping'), { opcode: 9, fin: true, mask }));
  out.push(frame(Buffer.from('frag-2 '), { opcode: 0, fin: false, mask }));
  out.push(frame(Buffer.alloc(0), { opcode: 10, fin: true, mask }));
  out.push(frame(Buffer.from('end'), { opcode: 0, fin: true, mask }));
  out.push(frame(fill(300, 7), { opcode: 2, fin: true, mask, rsv1: true }));
  return out;
}

/** Feeds `bytes` in the given pieces; returns the offsets at which the tracker stood between frames. */
function boundaries(bytes: Buffer, cuts: number[]): number[] {
  const t = new FrameTracker();
  const seen: number[] = [];
  let offset = 0;
  let start = 0;
  for (const end of [...cuts, bytes.length]) {
    let chunk = bytes.subarray(start, end);
    start = end;
    while (chunk.length > 0) {
      const n = t.advance(chunk, true);
      offset += n;
      chunk = chunk.subarray(n);
      if (t.atBoundary) seen.push(offset);
    }
  }
  assert.is(t.error, null);
  return seen;
}

function expected(frames: Buffer[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const f of frames) out.push((at += f.length));
  return out;
}

let seed = 12345;
function random(): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
}

for (const mask of [false, true]) {
  test(`every frame boundary is found, ${mask ? 'masked (client to server)' : 'unmasked (server to client)'}: whole, byte by byte, in random splits`, () => {
    const frames = corpus(mask);
    assert.ok(frames.length > 10, 'the corpus is not empty');
    const bytes = Buffer.concat(frames);
    const want = expected(frames);
    assert.equal(boundaries(bytes, []), want, 'glued, fed whole');
    // Byte by byte over the headers and around them (the big payloads in one piece, to stay quick).
    const small = Buffer.concat(frames.filter((f) => f.length < 300));
    assert.equal(boundaries(small, Array.from({ length: small.length - 1 }, (_, i) => i + 1)),
      expected(frames.filter((f) => f.length < 300)), 'byte by byte');
    for (let round = 0; round < 50; round++) {
      const cuts = Array.from({ length: 20 }, () => Math.floor(random() * bytes.length)).sort((a, b) => a - b);
      assert.equal(boundaries(bytes, cuts), want, `random splits ${cuts.join(',')}`);
    }
  });
}

test('advance(chunk) without stopping takes everything and counts frames; a close frame marks the direction closed', () => {
  const frames = corpus(false);
  const t = new FrameTracker();
  const bytes = Buffer.concat([...frames, serverCloseFrame(1000)]);
  assert.is(t.advance(bytes), bytes.length);
  assert.is(t.frames, frames.length + 1);
  assert.ok(t.atBoundary);
  assert.ok(t.closed);
});

test('a frame cut short leaves the tracker inside it; stopAtBoundary then takes exactly its rest', () => {
  const f = frame(fill(1000, 1), { opcode: 2, fin: true, mask: true });
  const t = new FrameTracker();
  assert.is(t.advance(f.subarray(0, 3), true), 3, 'a partial header');
  assert.not.ok(t.atBoundary);
  const next = Buffer.concat([f.subarray(3), frame(Buffer.from('x'), { opcode: 1, fin: true, mask: true })]);
  assert.is(t.advance(next, true), f.length - 3, 'up to the end of the frame, not beyond');
  assert.ok(t.atBoundary);
  assert.is(t.advance(next.subarray(f.length - 3), true), 7, 'from a boundary, the next frame whole (2 + 4 + 1 bytes)');
});

test('bytes that are not frames: an error, and no boundary is claimed again', () => {
  const t = new FrameTracker();
  // A ping of 126 bytes (control frames are at most 125) and a fragmented close.
  t.advance(Buffer.from([0x89, 126, 0, 126]));
  assert.match(t.error!, /control frame/);
  assert.not.ok(t.atBoundary);
  assert.is(t.advance(Buffer.alloc(10)), 10);
  const u = new FrameTracker();
  u.advance(Buffer.from([0x08, 0x02, 0x03, 0xe8]));
  assert.match(u.error!, /fragmented/);
  const v = new FrameTracker();
  v.advance(Buffer.from([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]));
  assert.match(v.error!, /2\^53/);
});

function receive(isServer: boolean, bytes: Buffer): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const r = new Receiver({ isServer, maxPayload: 0 });
    r.on('conclude', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
    r.on('error', reject);
    r.write(bytes);
  });
}

test('close frames: a server one read by a client ws Receiver, a client (masked) one by a server Receiver', async () => {
  assert.equal(await receive(false, serverCloseFrame(CloseCode.GOING_AWAY, 'server going down')),
    { code: 1001, reason: 'server going down' });
  const masked = clientCloseFrame(CloseCode.SERVICE_RESTART, 'restart', Buffer.from([1, 2, 3, 4]));
  assert.is(masked[1]! & 0x80, 0x80, 'masked');
  assert.equal(await receive(true, masked), { code: 1012, reason: 'restart' });
  // A reason too long for a control frame is cut to 123 bytes.
  const long = serverCloseFrame(1001, 'x'.repeat(500));
  assert.is(long.length, 2 + 125);
  assert.equal(parseClosePayload(long.subarray(2)), { code: 1001, reason: 'x'.repeat(123) });
  assert.is(parseClosePayload(Buffer.alloc(0)), null);
});

/** Every message and the close a ws Receiver reads from `bytes`. */
function readAll(isServer: boolean, bytes: Buffer): Promise<{ messages: string[]; close: { code: number; reason: string } | null }> {
  return new Promise((resolve, reject) => {
    const r = new Receiver({ isServer, maxPayload: 0 });
    const messages: string[] = [];
    r.on('message', (data: Buffer) => messages.push(data.toString()));
    r.on('conclude', (code: number, reason: Buffer) => resolve({ messages, close: { code, reason: reason.toString() } }));
    r.on('error', reject);
    r.write(bytes);
    setImmediate(() => resolve({ messages, close: null }));
  });
}

test('WebSocketCloser: close() mid-frame both ways: each frame in progress is finished, then the close frames; later bytes dropped', async () => {
  const toClient: Buffer[] = [];
  const toServer: Buffer[] = [];
  const closer = new WebSocketCloser((b) => toClient.push(Buffer.from(b)), (b) => toServer.push(Buffer.from(b)));
  const s1 = frame(Buffer.from('server one'), { opcode: 1, fin: true, mask: false });
  const s2 = frame(Buffer.from('server two'.repeat(20)), { opcode: 1, fin: true, mask: false });
  const c1 = frame(Buffer.from('client one'), { opcode: 1, fin: true, mask: true });
  const c2 = frame(Buffer.from('client two'.repeat(20)), { opcode: 1, fin: true, mask: true });
  assert.is(closer.fromServer(Buffer.concat([s1, s2.subarray(0, 50)])), 0);
  assert.is(closer.fromClient(Buffer.concat([c1, c2.subarray(0, 3)])), 0);
  assert.ok(closer.close(CloseCode.GOING_AWAY));
  assert.not.ok(closer.close(CloseCode.GOING_AWAY), 'once');
  // The rest of each frame, then a reply that must not pass (each side's own close).
  const serverReply = serverCloseFrame(1001);
  const clientReply = clientCloseFrame(1001);
  assert.is(closer.fromServer(Buffer.concat([s2.subarray(50), serverReply])), serverReply.length, 'the server\'s reply is dropped');
  assert.is(closer.fromClient(Buffer.concat([c2.subarray(3), clientReply])), clientReply.length, 'the client\'s reply is dropped');
  assert.equal(await readAll(false, Buffer.concat(toClient)),
    { messages: ['server one', 'server two'.repeat(20)], close: { code: 1001, reason: '' } }, 'the client reads both messages whole, then 1001');
  assert.equal(await readAll(true, Buffer.concat(toServer)),
    { messages: ['client one', 'client two'.repeat(20)], close: { code: 1001, reason: '' } }, 'the server reads both whole, then a masked 1001');
});

test('WebSocketCloser: a side that already sent its close gets no second one; bytes that are not frames are never closed', async () => {
  const toClient: Buffer[] = [];
  const toServer: Buffer[] = [];
  const closer = new WebSocketCloser((b) => toClient.push(b), (b) => toServer.push(b));
  closer.fromServer(serverCloseFrame(1000, 'server done'));
  assert.ok(closer.close(CloseCode.SERVICE_RESTART));
  assert.equal(toClient.map((b) => b.length), [serverCloseFrame(1000, 'server done').length], 'only the server\'s own close went to the client');
  assert.equal((await readAll(true, Buffer.concat(toServer))).close, { code: 1012, reason: '' }, 'the server still hears the client-side close');
  const raw = new WebSocketCloser(() => {}, () => {});
  raw.fromServer(Buffer.from([0x89, 126, 0, 200])); // not a valid frame
  assert.not.ok(raw.close(1001));
  assert.is(raw.closing, 0);
});

test('asksForWebSocket: an Upgrade header naming websocket, in any case, among other tokens', () => {
  assert.ok(asksForWebSocket(['Host', 'a', 'Upgrade', 'websocket']));
  assert.ok(asksForWebSocket(['upgrade', 'h2c, WebSocket']));
  assert.not.ok(asksForWebSocket(['Upgrade', 'h2c']));
  assert.not.ok(asksForWebSocket(['X-Upgrade', 'websocket']));
});

test.run();
