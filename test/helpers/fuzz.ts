// Building blocks of the fuzz suites: mostly-valid tsgi frame scripts written by the real
// encoders (a real client or server Connection), fast-check arbitraries that mutate them
// (framing kept, or byte-level), and the regression corpus under test/fixtures/fuzz-corpus.
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Connection, Flags, FrameDecoder, FrameType, GoAway, Hello, Ping, Reset, Window, encodeFrame, packHeaders,
  type RequestHead,
} from '../../src/protocol/index.js';
import { FIXTURES } from './procs.js';

/**
 * The seed of a fuzz run: `FUZZ_SEED=S` replays one; under CI a fixed seed, so a submission's
 * result does not depend on the draw (new cases come from local runs and FUZZ_RUNS); otherwise
 * a fresh one each run. fast-check's properties use it too.
 */
export const FUZZ_SEED: number = Number(process.env.FUZZ_SEED)
  || (process.env.CI === 'true' || process.env.CI === '1' ? 20261121 : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0);
fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: FUZZ_SEED });

/** fast-check runs: `FUZZ_RUNS=N` overrides every default (to fuzz longer by hand). */
export function fuzzRuns(defaultRuns: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(n) && n > 0 ? n : defaultRuns;
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export const encode = (f: Frame): Buffer => encodeFrame(f.type, f.flags, f.stream, f.payload);
export const encodeAll = (frames: readonly Frame[]): Buffer => Buffer.concat(frames.map(encode));

/** Splits well-formed bytes into frames (payloads copied). */
export function decodeAll(bytes: Buffer, maxFrameSize = 64 * 1024 * 1024): Frame[] {
  const frames: Frame[] = [];
  new FrameDecoder(maxFrameSize).push(bytes, (type, flags, stream, payload) => {
    frames.push({ type, flags, stream, payload: Buffer.from(payload) });
  });
  return frames;
}

// ---- scripts: what one side of a connection sends -----------------------------------------

export interface StreamPlan {
  head: RequestHead;
  /** Body pieces, in order. */
  body: Buffer[];
  /** How the stream ends on the sending side. */
  ending: 'end' | 'trailers' | 'reset' | 'open';
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH'];
const NAMES = ['host', 'user-agent', 'accept', 'content-type', 'cookie', 'x-custom', 'X-Trace-Id', 'set-cookie', 'etag'];

const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });

export const requestHeadArb: fc.Arbitrary<RequestHead> = fc.record({
  method: fc.constantFrom(...METHODS),
  target: fc.string({ unit: fc.constantFrom('/', 'a', 'b', '?', '=', '&', '%', '2', 'F', '.'), minLength: 0, maxLength: 30 })
    .map((s) => `/${s}`),
  headers: fc.array(fc.tuple(fc.constantFrom(...NAMES), headerValue), { maxLength: 6 }),
  remoteAddr: fc.constantFrom('127.0.0.1', '10.1.2.3', '::1', ''),
  remotePort: fc.integer({ min: 0, max: 65535 }),
}).map(({ method, target, headers, remoteAddr, remotePort }) => {
  // Names spelled out (index 0) or from the static table (packHeaders' rule), as a front sends them.
  return {
    method, target, headers: packHeaders(headers.flat()),
    remoteAddr, remotePort, serverAddr: '127.0.0.1', serverPort: 8080, scheme: 'http',
  } satisfies RequestHead;
});

const bodyArb = fc.array(fc.uint8Array({ minLength: 0, maxLength: 700 }).map((a) => Buffer.from(a)), { maxLength: 4 });

export const streamPlanArb: fc.Arbitrary<StreamPlan> = fc.record({
  head: requestHeadArb,
  body: bodyArb,
  ending: fc.constantFrom<StreamPlan['ending']>('end', 'end', 'trailers', 'reset', 'open'),
});

/** A healthy stream: a body, ended normally. */
export const healthyPlanArb: fc.Arbitrary<StreamPlan> = fc.record({
  head: requestHeadArb.map((h) => ({ ...h, method: 'POST' })),
  body: fc.array(fc.uint8Array({ minLength: 1, maxLength: 500 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 3 }),
  ending: fc.constant<StreamPlan['ending']>('end'),
});

export interface Script {
  /** Every frame the sender wrote, in order (HELLO first). */
  frames: Frame[];
  /** Stream id of each plan, in plan order. */
  ids: number[];
}

export interface Limits {
  window: number;
  maxFrameSize: number;
}

/** Runs `schedule` over the plans: each entry advances one stream by one step (head, a piece, the end). */
function* steps(plans: readonly StreamPlan[], schedule: readonly number[]): Generator<[number, number]> {
  const at = plans.map(() => 0);
  const total = plans.map((p) => 2 + p.body.length);
  let k = 0;
  for (;;) {
    const live = plans.map((_, i) => i).filter((i) => at[i]! < total[i]!);
    if (live.length === 0) return;
    const i = live[(schedule[k++ % Math.max(1, schedule.length)] ?? 0) % live.length]!;
    // A stream's head goes before any other stream opened later (ids must increase).
    const first = plans.findIndex((_, j) => at[j] === 0);
    const pick = at[i] === 0 && first !== -1 ? first : i;
    yield [pick, at[pick]!++];
  }
}

/** What a front writes for these streams: HELLO, REQUEST, DATA, TRAILERS, RESET, by a real client Connection. */
export function clientScript(plans: readonly StreamPlan[], schedule: readonly number[], limits: Limits): Script {
  const chunks: Buffer[] = [];
  const client = new Connection({
    role: 'client', write: (c) => chunks.push(Buffer.from(c)), initialWindow: limits.window, maxFrameSize: limits.maxFrameSize,
  });
  client.start();
  client.receive(helloFrame(limits));
  const streams: (ReturnType<Connection['open']> | null)[] = plans.map(() => null);
  for (const [i, step] of steps(plans, schedule)) {
    const plan = plans[i]!;
    if (step === 0) {
      streams[i] = client.open(plan.head, plan.body.length === 0 && plan.ending === 'end');
    } else if (step <= plan.body.length) {
      streams[i]!.write(plan.body[step - 1]!);
    } else if (plan.ending === 'end') {
      streams[i]!.end();
    } else if (plan.ending === 'trailers') {
      streams[i]!.sendTrailers({ names: [0], literalNames: ['x-checksum'], values: ['abc'] });
    } else if (plan.ending === 'reset') {
      streams[i]!.reset(5, 'client went away');
    }
  }
  return { frames: decodeAll(Buffer.concat(chunks)), ids: streams.map((s) => s!.id) };
}

/** A HELLO frame as a peer with these limits sends it. */
export function helloFrame(limits: Limits, software = 'fuzz'): Buffer {
  return encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({
    versions: [1], maxFrameSize: limits.maxFrameSize, initialWindow: limits.window, maxStreams: 64, software,
  }).finish());
}

export interface ResponsePlan {
  status: number;
  headers: [string, string][];
  body: Buffer[];
  ending: 'end' | 'trailers' | 'reset' | 'open';
}

export const responsePlanArb: fc.Arbitrary<ResponsePlan> = fc.record({
  status: fc.constantFrom(200, 201, 204, 302, 404, 500, 599),
  headers: fc.array(fc.tuple(fc.constantFrom('content-type', 'x-custom', 'set-cookie', 'etag', 'Vary'), headerValue), { maxLength: 5 }),
  body: bodyArb,
  ending: fc.constantFrom<ResponsePlan['ending']>('end', 'end', 'trailers', 'reset', 'open'),
});

/**
 * What a backend writes answering `plans.length` requests (streams 1, 3, 5 …): HELLO, then
 * RESPONSE, DATA, TRAILERS or RESET, by a real server Connection, interleaved by `schedule`.
 */
export function serverScript(plans: readonly ResponsePlan[], schedule: readonly number[], limits: Limits): Script {
  const chunks: Buffer[] = [];
  const opened: ReturnType<Connection['open']>[] = [];
  const server = new Connection({
    role: 'server', write: (c) => chunks.push(Buffer.from(c)), initialWindow: limits.window, maxFrameSize: limits.maxFrameSize,
    onRequest: (stream) => opened.push(stream),
  });
  server.start();
  // The requests it answers, as a client writes them (bodiless GETs).
  const req: Buffer[] = [];
  const client = new Connection({ role: 'client', write: (c) => req.push(Buffer.from(c)), initialWindow: limits.window, maxFrameSize: limits.maxFrameSize });
  client.start();
  client.receive(helloFrame(limits));
  for (let i = 0; i < plans.length; i++) client.open(simpleHead(i), true);
  server.receive(Buffer.concat(req));
  const asPlans = plans.map((p) => ({ head: {} as RequestHead, body: p.body, ending: p.ending }));
  for (const [i, step] of steps(asPlans, schedule)) {
    const plan = plans[i]!;
    const stream = opened[i]!;
    if (step === 0) {
      const flat = plan.headers.flat();
      stream.sendResponse({
        status: plan.status,
        headers: { names: plan.headers.map(() => 0), literalNames: flat.filter((_, k) => k % 2 === 0), values: flat.filter((_, k) => k % 2 === 1) },
      }, plan.body.length === 0 && plan.ending === 'end');
    } else if (step <= plan.body.length) {
      stream.write(plan.body[step - 1]!);
    } else if (plan.ending === 'end') {
      stream.end();
    } else if (plan.ending === 'trailers') {
      stream.sendTrailers({ names: [0], literalNames: ['x-checksum'], values: ['abc'] });
    } else if (plan.ending === 'reset') {
      stream.reset(2, 'app failed');
    }
  }
  return { frames: decodeAll(Buffer.concat(chunks)), ids: opened.map((s) => s.id) };
}

/** The request heads serverScript answers (and a client under test must open, in order). */
export function simpleHead(i: number): RequestHead {
  return { method: 'GET', target: `/fuzz/${i}`, headers: { names: [0], literalNames: ['x-n'], values: [String(i)] } };
}

// ---- mutations ------------------------------------------------------------------------------

/**
 * A change that keeps the framing (every frame header stays consistent with its payload), so
 * frames of streams it does not touch must arrive intact.
 */
export type FrameMutation =
  | { kind: 'type'; at: number; type: number }
  | { kind: 'flags'; at: number; flags: number }
  | { kind: 'stream'; at: number; stream: number }
  | { kind: 'duplicate'; at: number }
  | { kind: 'drop'; at: number }
  | { kind: 'swap'; at: number; with: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'payload'; at: number; bytes: Uint8Array }
  | { kind: 'cut-payload'; at: number; keep: number }
  | { kind: 'data-after-end'; at: number }
  | { kind: 'window'; at: number; stream: number; increment: number }
  | { kind: 'overflow'; at: number; stream: number; size: number }
  | { kind: 'forged'; at: number; type: number; stream: number; flags: number }
  | { kind: 'hello'; at: number };

/** A change that may break the framing itself. */
export type ByteMutation =
  | { kind: 'truncate'; keep: number }
  | { kind: 'length'; at: number; length: number }
  | { kind: 'bitflip'; at: number; bit: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };

const idx = fc.nat({ max: 1000 });
const anyStream = fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 7, 99, 0x7fffffff), fc.nat({ max: 0x7fffffff }));
const anyType = fc.oneof(fc.integer({ min: 0, max: 11 }), fc.nat({ max: 255 }));

export const frameMutationArb: fc.Arbitrary<FrameMutation> = fc.oneof(
  fc.record({ kind: fc.constant('type' as const), at: idx, type: anyType }),
  fc.record({ kind: fc.constant('flags' as const), at: idx, flags: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('stream' as const), at: idx, stream: anyStream }),
  fc.record({ kind: fc.constant('duplicate' as const), at: idx }),
  fc.record({ kind: fc.constant('drop' as const), at: idx }),
  fc.record({ kind: fc.constant('swap' as const), at: idx, with: idx }),
  fc.record({ kind: fc.constant('flip' as const), at: idx, bit: fc.nat({ max: 100_000 }) }),
  fc.record({ kind: fc.constant('payload' as const), at: idx, bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('cut-payload' as const), at: idx, keep: fc.nat({ max: 1000 }) }),
  fc.record({ kind: fc.constant('data-after-end' as const), at: idx }),
  fc.record({
    kind: fc.constant('window' as const), at: idx, stream: anyStream,
    increment: fc.oneof(fc.constantFrom(0, 1, 0x7fffffff, 0xffffffff), fc.nat({ max: 0xffffffff })),
  }),
  fc.record({ kind: fc.constant('overflow' as const), at: idx, stream: anyStream, size: fc.integer({ min: 1, max: 70_000 }) }),
  fc.record({ kind: fc.constant('forged' as const), at: idx, type: anyType, stream: anyStream, flags: fc.constantFrom(0, 1) }),
  fc.record({ kind: fc.constant('hello' as const), at: idx }),
);

export const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat({ max: 100_000 }) }),
  fc.record({ kind: fc.constant('length' as const), at: idx, length: fc.oneof(fc.nat({ max: 0xffffffff }), fc.nat({ max: 300 })) }),
  fc.record({ kind: fc.constant('bitflip' as const), at: fc.nat({ max: 100_000 }), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat({ max: 100_000 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
);

/** A forged frame of a given kind with a plausible payload (the real encoders). */
function forgedFrame(type: number, stream: number, flags: number): Frame {
  let payload: Uint8Array;
  switch (type) {
    case FrameType.WINDOW: payload = Window.encode({ increment: 1024 }).finish(); break;
    case FrameType.RESET: payload = Reset.encode({ code: 1, message: 'forged' }).finish(); break;
    case FrameType.GOAWAY: payload = GoAway.encode({ lastStreamId: 0, code: 0, message: 'forged' }).finish(); break;
    case FrameType.PING: case FrameType.PONG: payload = Ping.encode({ id: 7 }).finish(); break;
    case FrameType.HELLO: payload = Hello.encode({ versions: [1], maxFrameSize: 16384, initialWindow: 4096 }).finish(); break;
    case FrameType.DATA: payload = Buffer.from('forged data'); break;
    default: payload = Buffer.from([0x0a, 0x03, 0x47, 0x45, 0x54]); // field 1 = "GET": a REQUEST/RESPONSE-ish message
  }
  return { type, flags, stream, payload: Buffer.from(payload) };
}

/**
 * Applies frame mutations. Frames of the `protect`ed stream ids stay as they are, in their
 * order, and no mutation sends anything on those ids; frame 0 (HELLO) is kept when keepHello.
 */
export function mutateFrames(frames: readonly Frame[], mutations: readonly FrameMutation[], protect: readonly number[] = [], keepHello = false): Frame[] {
  const out = frames.map((f) => ({ ...f }));
  const safe = (s: number) => !protect.includes(s);
  const mutable = (i: number) => i < out.length && safe(out[i]!.stream) && !(keepHello && i === 0);
  const pick = (at: number): number => (out.length === 0 ? 0 : at % out.length);
  for (const m of mutations) {
    const i = pick(m.at);
    const insertAt = keepHello ? Math.max(1, i) : i;
    switch (m.kind) {
      case 'type': if (mutable(i)) out[i]!.type = m.type; break;
      case 'flags': if (mutable(i)) out[i]!.flags = m.flags; break;
      case 'stream': if (mutable(i) && safe(m.stream)) out[i]!.stream = m.stream; break;
      case 'duplicate': if (mutable(i)) out.splice(i + 1, 0, { ...out[i]! }); break;
      case 'drop': if (mutable(i)) out.splice(i, 1); break;
      case 'swap': {
        const j = pick(m.with);
        if (mutable(i) && mutable(j)) [out[i], out[j]] = [out[j]!, out[i]!];
        break;
      }
      case 'flip':
        if (mutable(i) && out[i]!.payload.length > 0) {
          const p = Buffer.from(out[i]!.payload);
          const bit = m.bit % (p.length * 8);
          p[bit >> 3]! ^= 1 << (bit & 7);
          out[i]!.payload = p;
        }
        break;
      case 'payload': if (mutable(i)) out[i]!.payload = Buffer.from(m.bytes); break;
      case 'cut-payload': if (mutable(i)) out[i]!.payload = out[i]!.payload.subarray(0, m.keep % (out[i]!.payload.length + 1)); break;
      case 'data-after-end': {
        // DATA on a stream just after a frame that ended it.
        const ended = out.findIndex((f, k) => k >= i && (f.flags & Flags.END_STREAM) !== 0 && f.stream !== 0 && safe(f.stream));
        if (ended !== -1) out.splice(ended + 1, 0, { type: FrameType.DATA, flags: 0, stream: out[ended]!.stream, payload: Buffer.from('late') });
        break;
      }
      case 'window':
        if (safe(m.stream)) {
          out.splice(insertAt, 0, { type: FrameType.WINDOW, flags: 0, stream: m.stream, payload: Buffer.from(Window.encode({ increment: m.increment >>> 0 }).finish()) });
        }
        break;
      case 'overflow':
        if (safe(m.stream)) out.splice(insertAt, 0, { type: FrameType.DATA, flags: 0, stream: m.stream, payload: Buffer.alloc(m.size, 0x61) });
        break;
      case 'forged': if (safe(m.stream)) out.splice(insertAt, 0, forgedFrame(m.type, m.stream, m.flags)); break;
      case 'hello': out.splice(insertAt, 0, forgedFrame(FrameType.HELLO, 0, 0)); break;
    }
  }
  return out;
}

export function mutateBytes(bytes: Buffer, mutations: readonly ByteMutation[]): Buffer {
  let out = Buffer.from(bytes);
  for (const m of mutations) {
    if (out.length === 0) break;
    switch (m.kind) {
      case 'truncate': out = out.subarray(0, m.keep % (out.length + 1)); break;
      case 'length': {
        // Rewrites the length field of the frame that starts at the at-th frame boundary, if any.
        let pos = 0;
        for (let k = 0; k < m.at % 8 && pos + 10 <= out.length; k++) pos += 10 + out.readUInt32BE(pos);
        if (pos + 4 <= out.length) out.writeUInt32BE(m.length >>> 0, pos);
        break;
      }
      case 'bitflip': out[m.at % out.length]! ^= 1 << m.bit; break;
      case 'insert': {
        const at = m.at % (out.length + 1);
        out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes), out.subarray(at)]);
        break;
      }
    }
  }
  return out;
}

/** Cuts bytes into pieces at the given points (as a socket might deliver them). */
export function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let pos = 0;
  for (const p of points) {
    if (p > pos) out.push(bytes.subarray(pos, p));
    pos = Math.max(pos, p);
  }
  if (pos < bytes.length) out.push(bytes.subarray(pos));
  return out;
}

// ---- raw HTTP responses (what a uwsgi server writes back) --------------------------------------

export interface RawResponsePlan {
  status: string;
  headers: [string, string][];
  framing: string;
  body: Uint8Array;
}

export const rawResponseArb: fc.Arbitrary<RawResponsePlan> = fc.record({
  status: fc.constantFrom('200 OK', '204 No Content', '304 Not Modified', '404 Not Found', '100 Continue', '103 Early Hints', '500 Oops'),
  headers: fc.array(fc.tuple(fc.constantFrom('Content-Type', 'X-A', 'Set-Cookie'), fc.string({ maxLength: 10 }).map((s) => s.replace(/[\r\n\0]/g, ''))), { maxLength: 4 }),
  framing: fc.constantFrom('length', 'chunked', 'close', 'double-length', 'te-and-length'),
  body: fc.uint8Array({ maxLength: 80 }),
});

/** The response as bytes: an interim 100 first for a final status, the body framed as planned. */
export function rawResponse(r: RawResponsePlan): Buffer {
  let head = `HTTP/1.1 ${r.status}\r\n${r.headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}`;
  let body = Buffer.from(r.body);
  if (r.framing === 'length' || r.framing === 'te-and-length') head += `Content-Length: ${body.length}\r\n`;
  if (r.framing === 'double-length') head += `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n`;
  if (r.framing === 'chunked' || r.framing === 'te-and-length') {
    head += 'Transfer-Encoding: chunked\r\n';
    body = body.length === 0 ? Buffer.from('0\r\n\r\n') : Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
  }
  const interim = r.status.startsWith('1') ? '' : 'HTTP/1.1 100 Continue\r\n\r\n';
  return Buffer.concat([Buffer.from(`${interim}${head}\r\n`, 'latin1'), body]);
}

// ---- the regression corpus -----------------------------------------------------------------

export const CORPUS_DIR = join(FIXTURES, 'fuzz-corpus');

export interface CorpusCase {
  /** File name, for messages. */
  file: string;
  /** Which target replays it: server / client (a Connection), uwsgi (packet parser), ... */
  target: string;
  /** What broke, and the commit that fixed it. */
  note: string;
  /** The bytes, hex-encoded. */
  hex: string;
  /** For client cases: how many GET streams the client opens before the bytes (default 0). */
  streams?: number;
  /** For front cases (frames a backend sends for stream 1): what the HTTP client must see. */
  /** For front cases: what the HTTP client must see; for uwsgi cases: parsed (vars, rest) or refused (message). */
  expect?: {
    outcome: 'cut' | '502' | 'complete' | 'parsed' | 'refused';
    /** uwsgi: how many vars the packet holds, and the hex of the bytes after it. */
    vars?: number;
    rest?: string;
    /** uwsgi: a regex the refusal's message must match. */
    message?: string;
    status?: number;
    /** The body (complete), or what a cut body may be a prefix of. */
    body?: string;
    /** A regex that must not match the raw bytes. */
    absent?: string;
    /** A regex the front's log line for the request must match. */
    log?: string;
  };
}

/** Every case of the corpus (JSON files), optionally for one target. */
export function corpus(target?: string): CorpusCase[] {
  return readdirSync(CORPUS_DIR).filter((f) => f.endsWith('.json')).sort().map((file) => {
    const c = JSON.parse(readFileSync(join(CORPUS_DIR, file), 'utf8')) as Omit<CorpusCase, 'file'>;
    return { file, ...c };
  }).filter((c) => target === undefined || c.target === target);
}
