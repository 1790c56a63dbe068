// Property-based fuzzing of the other decoders a peer feeds: the uwsgi packet parser and vars
// codec (nginx's side of `tsgi serve --uwsgi-socket`), the header value table and name table
// (every head on a tsgi connection), and the raw HTTP response parser (uWSGI's answers to the
// front). Damaged input may only raise ProtocolError; valid input round-trips exactly, however
// the bytes are cut. FUZZ_RUNS=N runs each property N times.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpResponseParser } from '../../src/protocol/http-response.js';
import {
  HeaderBlock, ProtocolError, STATIC_NAMES, TABLE_ENTRIES, ValueDecoder, ValueEncoder, packHeaders, unpackHeaders, type tsgi,
} from '../../src/protocol/index.js';
import { UwsgiPacketParser, decodeVars, encodePacket, encodeVars, wholePacket } from '../../src/protocol/uwsgi.js';
import { byteMutationArb, corpus, fuzzRuns, mutateBytes, rawResponse, rawResponseArb, splitAt } from '../helpers/fuzz.js';

const runs = (n: number): fc.Parameters<unknown> => ({ numRuns: fuzzRuns(n), includeErrorInReport: true });
const cutsArb = fc.array(fc.nat({ max: 100_000 }), { maxLength: 6 });
const latin1 = (max: number, min = 0) => fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), minLength: min, maxLength: max });

/** Runs `fn`; a ProtocolError is an answer, anything else thrown is a bug. */
function refusedOr<T>(fn: () => T): T | ProtocolError {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw new Error(`expected a result or a ProtocolError, got ${(err as Error)?.stack ?? String(err)}`);
  }
}

// ---- uwsgi --------------------------------------------------------------------------------------

const uwsgi = suite('protocol/fuzz-uwsgi');

const varsArb = fc.array(fc.tuple(latin1(20, 1), latin1(60)), { maxLength: 12 });

/** Uwsgi-specific damage: the datasize, a key or value size, modifier1. */
const uwsgiMutationArb = fc.oneof(
  fc.record({ kind: fc.constant('datasize' as const), size: fc.oneof(fc.nat({ max: 0xffff }), fc.nat({ max: 64 })) }),
  fc.record({ kind: fc.constant('varsize' as const), at: fc.nat({ max: 1000 }), size: fc.nat({ max: 0xffff }) }),
  fc.record({ kind: fc.constant('modifier1' as const), value: fc.nat({ max: 255 }) }),
);

function damageUwsgi(packet: Buffer, m: { kind: string; size?: number; at?: number; value?: number }): Buffer {
  const out = Buffer.from(packet);
  if (out.length < 4) return out;
  if (m.kind === 'datasize') out.writeUInt16LE(m.size!, 1);
  else if (m.kind === 'modifier1') out[0] = m.value!;
  else if (out.length >= 6) out.writeUInt16LE(m.size!, 4 + (m.at! % (out.length - 5)));
  return out;
}

/** Feeds chunks to a fresh parser: the packet and what followed it, or the ProtocolError. */
function parse(chunks: Buffer[], maxVarsSize?: number): { vars: [string, string][]; m1: number; rest: Buffer } | ProtocolError | null {
  const parser = new UwsgiPacketParser(maxVarsSize);
  const rest: Buffer[] = [];
  let packet: { vars: [string, string][]; m1: number } | null = null;
  for (const c of chunks) {
    if (packet !== null) {
      rest.push(c);
      continue;
    }
    const r = refusedOr(() => parser.push(c));
    if (r instanceof ProtocolError) return r;
    if (r !== null) {
      packet = { vars: r.packet.vars, m1: r.packet.modifier1 };
      rest.push(r.rest);
    }
    assert.ok(parser.buffered <= 4 + 0xffff + c.length, 'the parser buffers no more than the packet');
  }
  return packet === null ? null : { ...packet, rest: Buffer.concat(rest) };
}

uwsgi('valid packets round-trip, however the bytes are cut', () => {
  fc.assert(fc.property(varsArb, fc.uint8Array({ maxLength: 100 }), cutsArb, (vars, body, cuts) => {
    const bytes = Buffer.concat([encodePacket(vars), body]);
    const r = parse(splitAt(bytes, cuts));
    assert.ok(r !== null && !(r instanceof ProtocolError), `parsed: ${String(r)}`);
    assert.equal((r as { vars: [string, string][] }).vars, vars);
    assert.ok((r as { rest: Buffer }).rest.equals(Buffer.from(body)), 'the body bytes that followed are handed on');
  }), runs(300));
});

uwsgi('damaged packets: the same verdict whole and cut, and only ProtocolError', () => {
  fc.assert(fc.property(
    varsArb, fc.array(fc.oneof(byteMutationArb, uwsgiMutationArb), { minLength: 1, maxLength: 4 }), cutsArb, fc.constantFrom(undefined, 64, 1024),
    (vars, mutations, cuts, limit) => {
      let bytes = encodePacket(vars);
      for (const m of mutations) {
        bytes = 'size' in m || m.kind === 'modifier1' ? damageUwsgi(bytes, m as never) : mutateBytes(bytes, [m as never]);
      }
      const whole = parse([bytes], limit);
      const cut = parse(splitAt(bytes, cuts), limit);
      const show = (r: typeof whole) => (r === null ? 'incomplete' : r instanceof ProtocolError ? `refused: ${r.message}` : JSON.stringify(r.vars));
      assert.is(show(cut), show(whole));
    },
  ), runs(400));
});

uwsgi('wholePacket (a packet in one chunk, no parser) agrees with the parser, or leaves the chunk to it', () => {
  fc.assert(fc.property(
    varsArb, fc.array(fc.oneof(byteMutationArb, uwsgiMutationArb), { maxLength: 3 }), fc.uint8Array({ maxLength: 50 }), fc.constantFrom(undefined, 64, 1024),
    (vars, mutations, body, limit) => {
      let bytes = encodePacket(vars);
      for (const m of mutations) {
        bytes = 'size' in m || m.kind === 'modifier1' ? damageUwsgi(bytes, m as never) : mutateBytes(bytes, [m as never]);
      }
      bytes = Buffer.concat([bytes, body]);
      const parsed = parse([bytes], limit);
      const fast = refusedOr(() => wholePacket(bytes, limit));
      if (fast === null) {
        // Left to the parser: a packet still incomplete, or one over the limit it refuses.
        assert.ok(parsed === null || (parsed instanceof ProtocolError && /the limit is/.test(parsed.message)), `parser: ${String(parsed)}`);
        return;
      }
      if (fast instanceof ProtocolError) {
        assert.ok(parsed instanceof ProtocolError, 'refused by both');
        assert.is(fast.message, parsed.message);
        return;
      }
      assert.ok(parsed !== null && !(parsed instanceof ProtocolError), 'parsed by both');
      assert.equal(fast.packet.vars, parsed.vars);
      assert.is(fast.packet.modifier1, parsed.m1);
      assert.ok(fast.rest.equals(parsed.rest), 'the same bytes handed on');
    },
  ), runs(400));
});

uwsgi('decodeVars: random bytes are refused or re-encode to exactly the same bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
    const block = Buffer.from(raw);
    const r = refusedOr(() => decodeVars(block));
    if (!(r instanceof ProtocolError)) assert.ok(encodeVars(r).equals(block), 'decode and encode are inverses');
  }), runs(400));
});

uwsgi.run();

// ---- header tables --------------------------------------------------------------------------------

const tables = suite('protocol/fuzz-header-tables');

const headerName = fc.oneof(fc.constantFrom(...STATIC_NAMES.slice(1, 40)), fc.constantFrom('X-A', 'x-b', 'X-Long-Name'));
/** Values that repeat (references), are long (never indexed) or many (eviction). */
const headerValueArb = fc.oneof(
  fc.constantFrom('a', 'b', 'gzip', '1', ''),
  fc.string({ maxLength: 12 }).filter((v) => !v.includes('\n')),
  fc.nat({ max: 2000 }).map((n) => `v${n}`),
  fc.integer({ min: 4090, max: 4100 }).map((n) => 'x'.repeat(n)),
);
const headsArb = fc.array(fc.array(fc.tuple(headerName, headerValueArb), { maxLength: 8 }), { minLength: 1, maxLength: 30 });

tables('value references: every head decodes to exactly what was encoded, through inserts and evictions', () => {
  fc.assert(fc.property(headsArb, fc.nat({ max: 600 }), (heads, filler) => {
    const enc = new ValueEncoder();
    const dec = new ValueDecoder();
    // Push the tables near their entry bound first, so that evictions happen in the run.
    const pre = Array.from({ length: Math.min(filler, TABLE_ENTRIES) }, (_, i) => ['x-fill', `f${i}`]).flat();
    for (const flat of [pre, ...heads.map((h) => h.flat())]) {
      const { block, commit } = enc.encode(packHeaders(flat));
      const wire = HeaderBlock.encode(block ?? {}).finish();
      commit();
      const received = HeaderBlock.decode(wire) as tsgi.HeaderBlock;
      dec.decode(received);
      const got = unpackHeaders(received);
      assert.equal(got.filter((_, i) => i % 2 === 1), flat.filter((_, i) => i % 2 === 1), 'the same values');
    }
  }), runs(150));
});

tables('damaged header blocks (refs, counts, name indices) are refused with ProtocolError only', () => {
  const blockArb = fc.record({
    names: fc.array(fc.oneof(fc.nat({ max: STATIC_NAMES.length + 5 }), fc.nat({ max: 0xffffffff })), { maxLength: 6 }),
    literalNames: fc.array(fc.string({ maxLength: 5 }), { maxLength: 4 }),
    values: fc.array(fc.string({ maxLength: 5 }), { maxLength: 6 }),
    joinedValues: fc.oneof(fc.constant(''), fc.string({ maxLength: 10 })),
    refs: fc.array(fc.oneof(fc.nat({ max: 8 }), fc.nat({ max: 0xffffffff })), { maxLength: 6 }),
  });
  fc.assert(fc.property(fc.array(blockArb, { minLength: 1, maxLength: 5 }), (blocks) => {
    const dec = new ValueDecoder();
    for (const b of blocks) {
      const received = HeaderBlock.decode(HeaderBlock.encode(b).finish()) as tsgi.HeaderBlock;
      const r = refusedOr(() => {
        dec.decode(received);
        return unpackHeaders(received);
      });
      if (!(r instanceof ProtocolError)) {
        assert.is(r.length, received.names.length * 2, 'a name and a value per entry');
        for (const s of r) assert.type(s, 'string');
      }
    }
  }), runs(400));
});

tables.run();

// ---- raw HTTP responses (uWSGI → front) -------------------------------------------------------------

const http = suite('protocol/fuzz-http-response');

function parseHttp(chunks: Buffer[]): string {
  const events: string[] = [];
  const parser = new HttpResponseParser({
    onHead: (h) => events.push(`head ${h.status} ${h.framing} ${h.headers.length}`),
    onBody: (c) => events.push(`body ${c.toString('hex')}`),
    onEnd: () => events.push('end'),
  }, { maxHeadSize: 512 });
  const r = refusedOr(() => {
    for (const c of chunks) parser.push(c);
    parser.finish();
  });
  // Adjacent body pieces are joined: cuts may split a body differently.
  return `${events.join('|').replace(/\|body /g, '')}${r instanceof ProtocolError ? ` refused: ${r.message}` : ''}`;
}

http('damaged responses: the same events whole and cut, and only ProtocolError', () => {
  fc.assert(fc.property(rawResponseArb, fc.array(byteMutationArb, { maxLength: 3 }), cutsArb, (r, mutations, cuts) => {
    const bytes = mutateBytes(rawResponse(r), mutations);
    assert.is(parseHttp(splitAt(bytes, cuts)), parseHttp([bytes]));
  }), runs(400));
});

http.run();

// ---- the corpus's uwsgi cases ------------------------------------------------------------------------

const replay = suite('protocol/fuzz-corpus-uwsgi');

replay('every uwsgi case of test/fixtures/fuzz-corpus is parsed or refused as it says, whole and byte by byte', () => {
  const cases = corpus('uwsgi');
  assert.ok(cases.length >= 5, 'the corpus has uwsgi cases');
  for (const c of cases) {
    const bytes = Buffer.from(c.hex, 'hex');
    for (const chunks of [[bytes], [...bytes].map((b) => Buffer.of(b))]) {
      const r = parse(chunks);
      if (c.expect!.outcome === 'refused') {
        assert.instance(r, ProtocolError, `${c.file}: refused`);
        assert.match((r as ProtocolError).message, new RegExp(c.expect!.message!), c.file);
      } else {
        assert.ok(r !== null && !(r instanceof ProtocolError), `${c.file}: parsed`);
        const packet = r as { vars: [string, string][]; rest: Buffer };
        assert.is(packet.vars.length, c.expect!.vars, `${c.file}: vars`);
        assert.is(packet.rest.toString('hex'), c.expect!.rest ?? '', `${c.file}: the bytes after the packet`);
      }
    }
  }
});

replay.run();
