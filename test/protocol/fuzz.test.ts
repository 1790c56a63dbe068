// Property-based fuzzing of the pure protocol core: mostly-valid frame scripts written by the
// real encoders, mutated (framing kept, or byte-level) and fed in random splits to a server
// Connection (the backend's side) and a client Connection (the front's decoder). A peer's bytes
// may only ever cause a TsgiError through onError (GOAWAY, then close): never a throw, never a
// malformed frame written back, never bytes of one stream delivered to another. FUZZ_RUNS=N
// runs every property N times; fast-check prints the seed and the shrunk case on failure.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Connection, FrameDecoder, FrameType, GoAway, ProtocolError, ResetCode, Response, TsgiError, encodeFrame,
  type Stream, type tsgi,
} from '../../src/protocol/index.js';
import {
  byteMutationArb, clientScript, corpus, decodeAll, encodeAll, frameMutationArb, fuzzRuns, healthyPlanArb,
  helloFrame, mutateBytes, mutateFrames, responsePlanArb, serverScript, simpleHead, splitAt, streamPlanArb,
  type Frame,
} from '../helpers/fuzz.js';

const LIMITS = { window: 4096, maxFrameSize: 16384 };
/** fast-check parameters: FUZZ_RUNS or the default count; the failing assertion is shown in the report. */
const runs = (n: number): fc.Parameters<unknown> => ({ numRuns: fuzzRuns(n), includeErrorInReport: true });
const cutsArb = fc.array(fc.nat({ max: 100_000 }), { maxLength: 6 });
const scheduleArb = fc.array(fc.nat({ max: 16 }), { maxLength: 24 });

/** Feeds chunks; a throw out of receive() is the bug this suite exists to find. */
function feed(conn: Connection, chunks: readonly Buffer[]): void {
  for (const c of chunks) {
    try {
      conn.receive(c);
    } catch (err) {
      assert.unreachable(`receive() threw ${(err as Error)?.stack ?? String(err)}`);
    }
  }
}

/** What every connection must satisfy, whatever it was fed. */
function checkConnection({ conn, errors, written, violations }: { conn: Connection; errors: unknown[]; written: Buffer[]; violations: string[] }, role: string): Frame[] {
  assert.equal(violations, [], `${role}: what the streams delivered`);
  assert.ok(errors.length <= 1, `${role}: one protocol error at most, got ${errors.length}`);
  for (const e of errors) {
    assert.instance(e, TsgiError, `${role}: the error is a TsgiError (${String(e)})`);
  }
  let out: Frame[] = [];
  try {
    out = decodeAll(Buffer.concat(written));
  } catch (err) {
    assert.unreachable(`${role} wrote a malformed frame: ${(err as Error).message}`);
  }
  if (errors.length === 1) {
    assert.ok(conn.closed, `${role}: closed after a protocol error`);
    const last = out[out.length - 1]!;
    assert.is(last.type, FrameType.GOAWAY, `${role}: GOAWAY is the last frame written after a protocol error`);
    assert.is(GoAway.decode(last.payload).code, ResetCode.PROTOCOL_ERROR, `${role}: the GOAWAY says PROTOCOL_ERROR`);
    assert.is(conn.streams.size, 0, `${role}: every stream ended with the connection`);
  }
  return out;
}

// ---- the backend's side -----------------------------------------------------------------------

interface ServerRun {
  conn: Connection;
  errors: unknown[];
  written: Buffer[];
  /** Body bytes each stream id delivered to the application, and whether it ended. */
  bodies: Map<number, { data: Buffer[]; ended: boolean; reset: string | null }>;
  /** What the stream callbacks saw go wrong (an assertion thrown there would be caught by receive()). */
  violations: string[];
}

/** A server Connection whose app reads each body to its end and then answers. */
function server(): ServerRun {
  const run: ServerRun = { conn: null as unknown as Connection, errors: [], written: [], bodies: new Map(), violations: [] };
  const respond = (stream: Stream) => {
    stream.sendResponse({ status: 200, headers: { names: [0], literalNames: ['x-n'], values: [String(stream.id)] } }, false);
    stream.write(Buffer.from('ok'));
    stream.end();
  };
  run.conn = new Connection({
    role: 'server',
    write: (c) => run.written.push(Buffer.from(c)),
    initialWindow: LIMITS.window,
    maxFrameSize: LIMITS.maxFrameSize,
    maxStreams: 8,
    onRequest: (stream, _head, end) => {
      const body = { data: [] as Buffer[], ended: end, reset: null as string | null };
      if (run.bodies.has(stream.id)) run.violations.push(`stream ${stream.id} opened twice`);
      run.bodies.set(stream.id, body);
      (stream.handler ??= {}).onData = (chunk, fin) => {
        if (body.ended) run.violations.push(`stream ${stream.id}: DATA delivered after its end`);
        body.data.push(Buffer.from(chunk));
        stream.consume(chunk.length);
        if (fin) {
          body.ended = true;
          respond(stream);
        }
      };
      (stream.handler ??= {}).onReset = (code, message) => { body.reset = `${code} ${message}`; };
      if (end) respond(stream);
    },
    onError: (err) => run.errors.push(err),
  });
  run.conn.start();
  return run;
}

/** The healthy stream got exactly a prefix of its body (all of it, ended, unless the connection failed). */
function checkHealthy(body: { data: Buffer[]; ended: boolean; reset: string | null } | undefined, expected: Buffer, failed: boolean, what: string): void {
  const got = Buffer.concat(body?.data ?? []);
  assert.ok(expected.subarray(0, got.length).equals(got), `${what}: bytes of another stream or forged bytes reached the healthy stream`);
  if (!failed) {
    assert.ok(body !== undefined, `${what}: the healthy stream was opened`);
    assert.is(body!.reset, null, `${what}: the healthy stream was not reset`);
    assert.ok(body!.ended, `${what}: the healthy stream ended`);
    assert.is(got.length, expected.length, `${what}: the healthy stream got its whole body`);
  }
}

const serverSuite = suite('protocol/fuzz-server');

serverSuite('mutated frames (framing kept) never throw and never touch a healthy stream', () => {
  fc.assert(fc.property(
    healthyPlanArb, fc.array(streamPlanArb, { maxLength: 4 }), scheduleArb, fc.array(frameMutationArb, { minLength: 1, maxLength: 5 }), cutsArb,
    (healthy, others, schedule, mutations, cuts) => {
      const script = clientScript([healthy, ...others], schedule, LIMITS);
      const hid = script.ids[0]!;
      const bytes = encodeAll(mutateFrames(script.frames, mutations, [hid], true));
      const run = server();
      feed(run.conn, splitAt(bytes, cuts));
      checkConnection(run, 'server');
      // A frame swallowed by a partial one at the end (cut payloads keep framing: none) leaves nothing pending.
      checkHealthy(run.bodies.get(hid), Buffer.concat(healthy.body), run.errors.length > 0, 'server');
    },
  ), runs(400));
});

serverSuite('byte-level damage (lengths, bit flips, truncation, insertions) only ends in a protocol error', () => {
  fc.assert(fc.property(
    fc.array(streamPlanArb, { minLength: 1, maxLength: 4 }), scheduleArb, fc.array(byteMutationArb, { minLength: 1, maxLength: 4 }), cutsArb,
    (plans, schedule, mutations, cuts) => {
      const script = clientScript(plans, schedule, LIMITS);
      const hello = encodeAll(script.frames.slice(0, 1));
      const bytes = mutateBytes(encodeAll(script.frames.slice(1)), mutations);
      const run = server();
      feed(run.conn, [hello, ...splitAt(bytes, cuts)]);
      checkConnection(run, 'server');
      run.conn.destroy();
    },
  ), runs(400));
});

serverSuite('random bytes, with or without a valid HELLO first', () => {
  fc.assert(fc.property(fc.boolean(), fc.uint8Array({ maxLength: 300 }), cutsArb, (hello, junk, cuts) => {
    const run = server();
    const bytes = Buffer.from(junk);
    feed(run.conn, hello ? [helloFrame(LIMITS), ...splitAt(bytes, cuts)] : splitAt(bytes, cuts));
    checkConnection(run, 'server');
  }), runs(300));
});

serverSuite('after a protocol error the connection ignores all further input', () => {
  const run = server();
  feed(run.conn, [helloFrame(LIMITS), encodeFrame(FrameType.DATA, 0, 0, Buffer.from('x'))]);
  assert.is(run.errors.length, 1);
  const before = run.written.length;
  feed(run.conn, [helloFrame(LIMITS), Buffer.from('anything at all')]);
  assert.is(run.errors.length, 1);
  assert.is(run.written.length, before, 'nothing more is written');
});

serverSuite.run();

// ---- the front's side (the client decoder) ---------------------------------------------------

interface ClientRun {
  conn: Connection;
  errors: unknown[];
  written: Buffer[];
  streams: Map<number, { head: tsgi.Response | null; data: Buffer[]; ended: boolean; reset: string | null }>;
  violations: string[];
}

/** A client Connection, ready after `hello`, with `n` GET streams open (ids 1, 3, 5 …). */
function client(hello: Buffer, n: number): ClientRun {
  const run: ClientRun = { conn: null as unknown as Connection, errors: [], written: [], streams: new Map(), violations: [] };
  run.conn = new Connection({
    role: 'client', write: (c) => run.written.push(Buffer.from(c)), initialWindow: LIMITS.window, maxFrameSize: LIMITS.maxFrameSize,
    onError: (err) => run.errors.push(err),
  });
  run.conn.start();
  feed(run.conn, [hello]);
  for (let i = 0; i < n && run.conn.canOpen; i++) {
    const stream = run.conn.open(simpleHead(i), true);
    const rec = { head: null as tsgi.Response | null, data: [] as Buffer[], ended: false, reset: null as string | null };
    run.streams.set(stream.id, rec);
    (stream.handler ??= {}).onHead = (head, end) => {
      if (rec.head !== null) run.violations.push(`stream ${stream.id}: a second head was delivered`);
      if (!(head.status >= 200 && head.status <= 999)) run.violations.push(`stream ${stream.id}: a head with status ${head.status} was delivered`);
      if (/[^\t\x20-\x7e\x80-\xff]/.test(head.reason)) run.violations.push(`stream ${stream.id}: a reason the front cannot write was delivered`);
      rec.head = head;
      if (end) rec.ended = true;
    };
    (stream.handler ??= {}).onData = (chunk, end) => {
      if (rec.head === null) run.violations.push(`stream ${stream.id}: body bytes were delivered before the response head`);
      if (rec.ended) run.violations.push(`stream ${stream.id}: DATA delivered after its end`);
      rec.data.push(Buffer.from(chunk));
      stream.consume(chunk.length);
      if (end) rec.ended = true;
    };
    (stream.handler ??= {}).onReset = (code, message) => { rec.reset = `${code} ${message}`; };
  }
  return run;
}

const clientSuite = suite('protocol/fuzz-client');

clientSuite('mutated responses (framing kept) never throw and never touch a healthy stream', () => {
  const healthyResponse = responsePlanArb.filter((p) => p.body.some((b) => b.length > 0)).map((p) => ({ ...p, status: 200, ending: 'end' as const }));
  fc.assert(fc.property(
    healthyResponse, fc.array(responsePlanArb, { maxLength: 4 }), scheduleArb, fc.array(frameMutationArb, { minLength: 1, maxLength: 5 }), cutsArb,
    (healthy, others, schedule, mutations, cuts) => {
      const plans = [healthy, ...others];
      const script = serverScript(plans, schedule, LIMITS);
      const hid = script.ids[0]!;
      const [hello, ...rest] = script.frames;
      const run = client(encodeAll([hello!]), plans.length);
      feed(run.conn, splitAt(encodeAll(mutateFrames(rest, mutations, [hid])), cuts));
      checkConnection(run, 'client');
      const rec = run.streams.get(hid)!;
      // A forged GOAWAY may legitimately refuse it (lastStreamId below its id): never processed, nothing delivered.
      const refused = rec.reset?.startsWith(`${ResetCode.REFUSED_STREAM} `) === true && run.conn.goAwayReceived;
      if (refused) assert.is(rec.head, null, 'a refused stream delivered no head');
      checkHealthy(rec, Buffer.concat(healthy.body), run.errors.length > 0 || refused, 'client');
      if (run.errors.length === 0 && !refused) assert.is(rec.head?.status, 200, 'the healthy head arrived');
    },
  ), runs(400));
});

clientSuite('byte-level damage to responses only ends in a protocol error', () => {
  fc.assert(fc.property(
    fc.array(responsePlanArb, { minLength: 1, maxLength: 4 }), scheduleArb, fc.array(byteMutationArb, { minLength: 1, maxLength: 4 }), cutsArb,
    (plans, schedule, mutations, cuts) => {
      const script = serverScript(plans, schedule, LIMITS);
      const [hello, ...rest] = script.frames;
      const run = client(encodeAll([hello!]), plans.length);
      feed(run.conn, splitAt(mutateBytes(encodeAll(rest), mutations), cuts));
      checkConnection(run, 'client');
      run.conn.destroy();
    },
  ), runs(400));
});

clientSuite('regression: DATA before the RESPONSE head resets the stream (the front would answer 200 by itself)', () => {
  const run = client(helloFrame(LIMITS), 2);
  feed(run.conn, [encodeFrame(FrameType.DATA, 1, 1, Buffer.from('HTTP/1.1 200 OK\r\n\r\nforged'))]);
  const rec = run.streams.get(1)!;
  assert.is(rec.data.length, 0, 'no body without a head');
  assert.match(rec.reset ?? '', /^1 /, 'reset with PROTOCOL_ERROR');
  assert.is(run.errors.length, 0, 'a stream error, not a connection error');
  assert.is(run.streams.get(3)!.reset, null, 'the other stream is untouched');
});

clientSuite('regression: a GOAWAY below a stream that already has its head is a protocol error, not a refusal', () => {
  const run = client(helloFrame(LIMITS), 1);
  feed(run.conn, [
    encodeFrame(FrameType.RESPONSE, 0, 1, Response.encode({ status: 200 }).finish()),
    encodeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: 0 }).finish()),
  ]);
  const rec = run.streams.get(1)!;
  assert.is(rec.head?.status, 200);
  assert.not.match(rec.reset ?? '', /^4 /, 'not REFUSED_STREAM, which would let the front send the request again');
  assert.is(run.errors.length, 1);
  assert.match(String(run.errors[0]), /GOAWAY says stream 1 was never processed/);
});

clientSuite('regression: a reason phrase with CR/LF resets the stream (the front hung writing its 502 after Node refused it)', () => {
  const run = client(helloFrame(LIMITS), 1);
  feed(run.conn, [encodeFrame(FrameType.RESPONSE, 0, 1, Response.encode({ status: 200, reason: 'OK\r\nX-Injected: 1' }).finish())]);
  const rec = run.streams.get(1)!;
  assert.is(rec.head, null);
  assert.match(rec.reset ?? '', /^1 RESPONSE with a control character in its reason phrase/);
});

clientSuite.run();

// ---- the decoder alone -------------------------------------------------------------------------

const decoderSuite = suite('protocol/fuzz-decoder');

decoderSuite('any bytes in any splits: the same frames as fed whole, or a ProtocolError', () => {
  fc.assert(fc.property(
    fc.array(streamPlanArb, { minLength: 1, maxLength: 3 }), scheduleArb, fc.array(byteMutationArb, { maxLength: 3 }), cutsArb,
    (plans, schedule, mutations, cuts) => {
      const bytes = mutateBytes(encodeAll(clientScript(plans, schedule, LIMITS).frames), mutations);
      const plain = decode([bytes], false, bytes.length);
      const plainSplit = decode(splitAt(bytes, cuts), false, bytes.length);
      const frag = decode([bytes], true, bytes.length);
      const fragSplit = decode(splitAt(bytes, cuts), true, bytes.length);
      for (const r of [plain, plainSplit, frag, fragSplit]) {
        if (r.error !== null) assert.instance(r.error, ProtocolError, String(r.error));
      }
      assert.equal(plainSplit.frames, plain.frames, 'the same frames, however the bytes were cut');
      assert.equal(fragSplit.frames, frag.frames, 'the same DATA bytes, however the bytes were cut (fragmentData)');
      assert.is(plainSplit.error === null, plain.error === null, 'the cuts do not change whether the bytes are refused');
      if (plain.error === null && plain.buffered === 0) {
        assert.equal(frag.frames, plain.frames, 'fragmentData delivers the same bytes as whole frames');
      }
    },
  ), runs(400));
});

/**
 * Decodes chunks; frames shown as text, consecutive DATA frames of a stream merged (fragments of
 * one frame and whole frames then compare equal). Throws if the decoder delivers more frames
 * than there are bytes (a loop).
 */
function decode(chunks: Buffer[], fragmentData: boolean, total: number): { frames: string[]; error: unknown; buffered: number } {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder(LIMITS.maxFrameSize, { fragmentData });
  let error: unknown = null;
  let delivered = 0;
  try {
    for (const c of chunks) {
      decoder.push(c, (type, flags, stream, payload) => {
        assert.ok(++delivered <= total + 1, 'more frames than bytes: the decoder is looping');
        const prev = frames[frames.length - 1];
        if (type === FrameType.DATA && prev?.type === FrameType.DATA && prev.stream === stream) {
          prev.payload = Buffer.concat([prev.payload, payload]);
          prev.flags = flags;
        } else {
          frames.push({ type, flags, stream, payload: Buffer.from(payload) });
        }
      });
    }
  } catch (err) {
    error = err;
  }
  return { frames: frames.map((f) => `${f.type}/${f.flags}/${f.stream}/${f.payload.toString('hex')}`), error, buffered: decoder.buffered };
}

decoderSuite('a declared length over the limit is refused at the header, before its payload arrives', () => {
  fc.assert(fc.property(fc.integer({ min: LIMITS.maxFrameSize + 1, max: 0xffffffff }), fc.nat({ max: 255 }), (length, type) => {
    const header = Buffer.alloc(10);
    header.writeUInt32BE(length, 0);
    header[4] = type;
    const decoder = new FrameDecoder(LIMITS.maxFrameSize);
    let err: unknown = null;
    try {
      decoder.push(header, () => assert.unreachable('no frame'));
    } catch (e) {
      err = e;
    }
    assert.instance(err, ProtocolError);
    assert.is((err as ProtocolError).code, 'TSGI_ERR_FRAME_TOO_LARGE');
    assert.is(decoder.buffered, 0);
  }), runs(100));
});

decoderSuite.run();

// ---- the regression corpus ---------------------------------------------------------------------

const corpusSuite = suite('protocol/fuzz-corpus');

corpusSuite('every case of test/fixtures/fuzz-corpus replays without a throw, whole and byte by byte', () => {
  const cases = corpus().filter((c) => c.target === 'server' || c.target === 'client');
  assert.ok(cases.length > 0, 'the corpus has connection cases');
  for (const c of cases) {
    const bytes = Buffer.from(c.hex, 'hex');
    for (const chunks of [[bytes], [...bytes].map((b) => Buffer.of(b))]) {
      if (c.target === 'server') {
        const run = server();
        feed(run.conn, chunks);
        checkConnection(run, `${c.file} (server)`);
      } else {
        const helloLength = 10 + bytes.readUInt32BE(0);
        const run = client(bytes.subarray(0, helloLength), c.streams ?? 0);
        feed(run.conn, chunks.length === 1 ? [bytes.subarray(helloLength)] : [...bytes.subarray(helloLength)].map((b) => Buffer.of(b)));
        checkConnection(run, `${c.file} (client)`);
      }
    }
  }
});

corpusSuite.run();
