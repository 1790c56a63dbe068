// End-to-end fuzzing of the front's decoder: a fake backend (a net server in this test) answers
// the front's HELLO properly, then answers each request with a mutated response script and
// closes. A second, real backend stays healthy. The client reads the raw HTTP bytes: exactly one
// well-formed response (the backend's, or a 502 when its head never went out) or a response cut
// at a clean point, never bytes after it; a protocol error is logged. An in-process client
// Connection fed the same bytes is the oracle. FUZZ_RUNS=N cases; FUZZ_SEED=S replays a run.
import fc from 'fast-check';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpResponseParser } from '../../src/protocol/http-response.js';
import { Connection, FrameType, GoAway, ResetCode, encodeFrame, errorBody } from '../../src/protocol/index.js';
import { newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import {
  byteMutationArb, corpus, decodeAll, encodeAll, frameMutationArb, FUZZ_SEED, fuzzRuns, helloFrame, mutateBytes, mutateFrames, rawResponse, rawResponseArb,
  responsePlanArb, serverScript, simpleHead, type Frame,
} from '../helpers/fuzz.js';
import { UwsgiPacketParser } from '../../src/protocol/uwsgi.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';
import { getRequest, rawUntilClose } from '../helpers/raw-http.js';

const SEED = FUZZ_SEED;
const CASES = fuzzRuns(20);
const LIMITS = { window: 256 * 1024, maxFrameSize: 1024 * 1024 };
const HEALTHY_BODY = '<h1>Hello, web</h1>';
const ATTEMPTS = 40;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Case {
  /** Frames after the HELLO, for stream 1 (renumbered to the real stream id when sent). */
  frames: Frame[];
  /** Byte-level damage applied after the frames are encoded. */
  damage: (bytes: Buffer) => Buffer;
}

/** What the front's own Connection makes of the bytes: the oracle. */
interface Model {
  status: number | null;
  body: Buffer;
  ended: boolean;
  refused: boolean;
  error: string | null;
}

/** The bytes a case sends, given the real stream id: mutated frames, then GOAWAY (no new streams here). */
function wire(frames: readonly Frame[], damage: (b: Buffer) => Buffer, id: number): Buffer {
  const renumbered = frames.map((f) => (f.stream === 1 ? { ...f, stream: id } : f));
  const goAway = encodeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: id, code: 0, message: 'one request per connection' }).finish());
  return Buffer.concat([damage(encodeAll(renumbered)), goAway]);
}

/** The model of a stream with id `id` (streams below it opened and left alone) fed `bytes`. */
function runModel(bytes: Buffer, id: number): Model {
  const m: Model = { status: null, body: Buffer.alloc(0), ended: false, refused: false, error: null };
  const conn = new Connection({ role: 'client', write: () => {}, onError: (err) => { m.error ??= err.message; } });
  conn.start();
  conn.receive(helloFrame(LIMITS));
  let stream = conn.open(simpleHead(0), true);
  while (stream.id < id) stream = conn.open(simpleHead(0), true);
  const parts: Buffer[] = [];
  (stream.handler ??= {}).onHead = (head, end) => {
    m.status = head.status;
    if (end) m.ended = true;
  };
  (stream.handler ??= {}).onData = (chunk, end) => {
    parts.push(Buffer.from(chunk));
    stream.consume(chunk.length);
    if (end) m.ended = true;
  };
  (stream.handler ??= {}).onReset = (code) => { if (code === ResetCode.REFUSED_STREAM) m.refused = true; };
  conn.receive(bytes);
  conn.destroy('lost');
  m.body = Buffer.concat(parts);
  return m;
}

function cases(): Case[] {
  const caseArb = fc.tuple(
    responsePlanArb,
    fc.oneof(
      fc.array(frameMutationArb, { minLength: 1, maxLength: 4 }).map((m) => ({ frames: m, bytes: [] as never[] })),
      fc.array(byteMutationArb, { minLength: 1, maxLength: 2 }).map((b) => ({ frames: [] as never[], bytes: b })),
    ),
  );
  return fc.sample(caseArb, { numRuns: CASES, seed: SEED }).map(([plan, m]) => {
    const [, ...rest] = serverScript([plan], [], LIMITS).frames;
    return { frames: mutateFrames(rest, m.frames), damage: (b: Buffer) => mutateBytes(b, m.bytes) };
  });
}

/** The fake backend: a real HELLO, then for the first request on a connection the case's bytes, then the end. */
function fakeBackend(path: string, all: Case[], answered: Map<string, Model>): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let done = false;
    const conn = new Connection({
      role: 'server', write: (c) => { if (!done) socket.write(c); },
      onRequest: (stream, head) => {
        if (done) return;
        done = true;
        const fixed = /^\/fixed\/([a-z0-9-]+)\//.exec(head.target);
        if (fixed !== null) {
          answered.set(head.target, runModel(Buffer.alloc(0), stream.id));
          socket.end(wire(decodeAll(Buffer.from(FIXED.get(fixed[1]!)!.hex, 'hex')), (b) => b, stream.id));
          return;
        }
        const m = /^\/fuzz\/(\d+)\//.exec(head.target);
        const c = m === null ? undefined : all[Number(m[1])];
        if (c === undefined) {
          socket.destroy();
          return;
        }
        const bytes = wire(c.frames, c.damage, stream.id);
        answered.set(head.target, runModel(bytes, stream.id));
        socket.end(bytes);
      },
      onError: () => socket.destroy(),
    });
    socket.on('data', (chunk: Buffer) => { if (!done) conn.receive(chunk); });
    conn.start();
  });
  server.on('close', () => { for (const s of sockets) s.destroy(); });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

/** The corpus's front cases by name (front-NAME.json): frames for stream 1 a backend sends. */
const FIXED = new Map(corpus('front').map((c) => [c.file.replace(/^front-|\.json$/g, ''), c]));

/** One GET with Connection: close; everything until the front closes (a timeout names the seed). */
async function rawGet(port: number, target: string): Promise<Buffer> {
  return (await rawUntilClose(port, getRequest(target, { host: 'fuzz' }), { note: `seed ${SEED}` })).bytes;
}

interface Received {
  status: number | null;
  body: Buffer;
  complete: boolean;
  /** Bytes after the end of a complete response. */
  extra: number;
  error: string | null;
}

/** Parses raw bytes strictly, byte by byte, noting where the response ended. */
function parseRaw(raw: Buffer): Received {
  const r: Received = { status: null, body: Buffer.alloc(0), complete: false, extra: 0, error: null };
  const parts: Buffer[] = [];
  const parser = new HttpResponseParser({
    onHead: (h) => { r.status = h.status; },
    onBody: (c) => parts.push(Buffer.from(c)),
    onEnd: () => { r.complete = true; },
  });
  try {
    for (let i = 0; i < raw.length; i++) {
      parser.push(raw.subarray(i, i + 1));
      if (r.complete) {
        r.extra = raw.length - i - 1;
        break;
      }
    }
    if (!r.complete && parser.untilClose) parser.finish();
  } catch (err) {
    r.error = (err as Error).message;
  }
  r.body = Buffer.concat(parts);
  return r;
}

const front = suite<Ctx & { fake?: Server; dir?: string; cases?: Case[]; answered?: Map<string, Model> }>('e2e/fuzz-front', newCtx());
setUp(front, async (ctx) => {
  ctx.cases = cases();
  ctx.answered = new Map();
  ctx.dir = tempDir('tsgi-e2e-fake-');
  const fakePath = join(ctx.dir, 'fake.sock');
  ctx.fake = await fakeBackend(fakePath, ctx.cases, ctx.answered);
  ctx.backend = await startBackend(fixture('hello.js'));
  ctx.front = await startFront([fakePath, ctx.backend.socket], ['--response-timeout', '5']);
});
front.after(async (ctx) => {
  if (process.env.TSGI_DEBUG_STDERR) console.error(ctx.front?.stderr());
  await new Promise<void>((resolve) => (ctx.fake ? ctx.fake.close(() => resolve()) : resolve()));
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

front('fuzzed responses: one well-formed response or a clean cut, a 502 before any head, logged; the healthy backend keeps serving', async (ctx) => {
  const { front: f, cases: all, answered } = ctx;
  const fakeName = `unix:${join(ctx.dir!, 'fake.sock')}`;
  let healthyServed = 0;
  let fuzzed = 0;
  for (let n = 0; n < all!.length; n++) {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const target = `/fuzz/${n}/${attempt}`;
      const raw = await rawGet(f!.port, target);
      const got = parseRaw(raw);
      const m = answered!.get(target);
      const what = `case ${n} (seed ${SEED}), model ${JSON.stringify(m && { ...m, body: m.body.length })}, got:\n${raw.toString('latin1').slice(0, 400)}`;
      assert.is(got.extra, 0, `no bytes after the response: ${what}`);
      if (m === undefined) {
        // The healthy backend (or a request caught on a closing fake connection: a 502).
        assert.ok(got.complete && (got.status === 502 || (got.status === 200 && got.body.toString() === HEALTHY_BODY)), `healthy or 502: ${what}`);
        if (got.status === 200) healthyServed++;
        await sleep(10);
        continue;
      }
      fuzzed++;
      const is502 = got.complete && got.status === 502 && got.body.toString() === errorBody(502);
      if (m.status === null) {
        // Refused, or lost with its connection before any head (and, pool.test checks, before any
        // credit): sent again to the healthy backend.
        const retried = got.complete && got.status === 200 && got.body.toString() === HEALTHY_BODY;
        assert.ok(is502 || retried || (got.complete && got.status === 503), `no head from the backend: a 502 (or a retry elsewhere) — ${what}`);
      } else if (m.ended) {
        const bodyless = m.status === 204 || m.status === 304;
        const same = got.complete && got.status === m.status && got.body.equals(bodyless ? Buffer.alloc(0) : m.body);
        assert.ok(same || is502, `a complete response as the backend sent it, or a 502 for a head the front refused — ${what}`);
      } else {
        const cut = !got.complete && (got.status === null || got.status === m.status) && m.body.subarray(0, got.body.length).equals(got.body);
        const bodylessHead = got.complete && got.status === m.status && (m.status === 204 || m.status === 304) && got.body.length === 0;
        assert.ok(cut || is502 || bodylessHead, `the backend's head then a cut (or a 502) — ${what}`);
        assert.ok(raw.length === 0 || got.status !== null, `a cut is a clean one: a whole head or nothing — ${what}`);
      }
      if (m.error !== null) {
        await f!.waitForStderr(new RegExp(`backend ${escape(fakeName)}: ${escape(m.error)} \\[TSGI_ERR`), 10_000);
      }
      break;
    }
  }
  if (process.env.FUZZ_DEBUG) console.log({ fuzzed, healthyServed, models: [...answered!.values()].map((m) => `${m.status}/${m.ended}/${m.refused}/${m.error}`) });
  assert.ok(fuzzed > 0, 'some cases reached the fake backend');
  assert.ok(healthyServed > 0, 'the healthy backend served meanwhile');
  const exited = await Promise.race([f!.exited.then(() => true), sleep(10).then(() => false)]);
  assert.not.ok(exited, 'the front is still running');
});

front('the corpus\'s front cases (a backend breaking HTTP: Content-Length, CR/LF, hop-by-hop, a reset mid-response): well-formed HTTP, and the front says why', async (ctx) => {
  const f = ctx.front!;
  assert.ok(FIXED.size > 0, 'the corpus has front cases');
  for (const [name, c] of FIXED) {
    let raw: Buffer | null = null;
    let target = '';
    for (let attempt = 0; attempt < ATTEMPTS && raw === null; attempt++) {
      target = `/fixed/${name}/${attempt}`;
      const r = await rawGet(f.port, target);
      if (ctx.answered!.has(target)) raw = r;
      else await sleep(10);
    }
    assert.ok(raw !== null, `${c.file}: never reached the fake backend`);
    const got = parseRaw(raw!);
    const text = raw!.toString('latin1');
    const e = c.expect!;
    const what = `${c.file} (${c.note}), got:\n${text}`;
    assert.is(got.extra, 0, `no bytes after the response: ${what}`);
    if (e.outcome === 'cut') {
      assert.ok(!got.complete && (e.body ?? '').startsWith(got.body.toString('latin1')), `cut: ${what}`);
    } else if (e.outcome === '502') {
      assert.ok(got.complete && got.status === 502 && got.body.toString() === errorBody(502), `a whole 502: ${what}`);
    } else {
      assert.ok(got.complete && got.status === e.status && got.body.toString('latin1') === e.body, `complete: ${what}`);
    }
    if (e.absent !== undefined) assert.not.match(text, new RegExp(e.absent, 'i'), `never on the wire: ${what}`);
    if (e.log !== undefined) await f.waitForStderr(new RegExp(`GET ${escape(target)}: .*${e.log}`), 10_000);
  }
});

front.run();

// ---- the front's uwsgi link: a fake uWSGI answering with damaged raw HTTP ------------------------

/** What the front's response parser makes of the bytes, the connection then closing: the oracle. */
function httpModel(bytes: Buffer): Model {
  const m: Model = { status: null, body: Buffer.alloc(0), ended: false, refused: false, error: null };
  const parts: Buffer[] = [];
  const parser = new HttpResponseParser({
    onHead: (h) => { m.status = h.status; },
    onBody: (c) => parts.push(Buffer.from(c)),
    onEnd: () => { m.ended = true; },
  });
  try {
    parser.push(bytes);
    parser.finish();
  } catch (err) {
    m.error = (err as Error).message;
  }
  if (m.status === 101) m.status = null; // the link refuses a protocol switch: no head goes out
  m.body = Buffer.concat(parts);
  return m;
}

/** A fake uWSGI: reads the request's packet, answers `respond(PATH_INFO)` raw, and closes. */
function fakeUwsgi(path: string, respond: (pathInfo: string) => Buffer | null): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const parser = new UwsgiPacketParser();
    socket.on('data', (chunk: Buffer) => {
      let parsed;
      try {
        parsed = parser.push(chunk);
      } catch {
        return; // bytes after the packet (none for a GET), or a probe: ignored
      }
      if (parsed === null || parsed === undefined) return;
      const pathInfo = parsed.packet.vars.find(([k]) => k === 'PATH_INFO')?.[1] ?? '';
      const bytes = respond(pathInfo);
      if (bytes === null) socket.destroy();
      else socket.end(bytes);
    });
  });
  server.on('close', () => { for (const s of sockets) s.destroy(); });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

const uwsgiFront = suite<Ctx & { fake?: Server; dir?: string; responses?: Buffer[] }>('e2e/fuzz-front-uwsgi', newCtx());
setUp(uwsgiFront, async (ctx) => {
  const plans = fc.sample(fc.tuple(rawResponseArb, fc.array(byteMutationArb, { maxLength: 2 })), { numRuns: CASES, seed: SEED });
  ctx.responses = plans.map(([plan, mutations]) => mutateBytes(rawResponse(plan), mutations));
  ctx.dir = tempDir('tsgi-e2e-fake-uwsgi-');
  const fakePath = join(ctx.dir, 'uwsgi.sock');
  ctx.fake = await fakeUwsgi(fakePath, (pathInfo) => {
    const m = /^\/uwsgi\/(\d+)$/.exec(pathInfo);
    if (m !== null) return ctx.responses![Number(m[1])] ?? null;
    return Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfine!');
  });
  ctx.front = await startFront([`uwsgi:unix:${fakePath}`], ['--response-timeout', '5']);
});
uwsgiFront.after(async (ctx) => {
  await new Promise<void>((resolve) => (ctx.fake ? ctx.fake.close(() => resolve()) : resolve()));
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

uwsgiFront('damaged raw responses from a uwsgi backend: one well-formed response, a 502 before any head, or a clean cut', async (ctx) => {
  const f = ctx.front!;
  for (let n = 0; n < ctx.responses!.length; n++) {
    const m = httpModel(ctx.responses![n]!);
    const raw = await rawGet(f.port, `/uwsgi/${n}`);
    const got = parseRaw(raw);
    const what = `uwsgi case ${n} (seed ${SEED}), model ${JSON.stringify({ ...m, body: m.body.length })}, sent ${JSON.stringify(ctx.responses![n]!.toString('latin1').slice(0, 300))}, got:\n${raw.toString('latin1').slice(0, 400)}`;
    assert.is(got.extra, 0, `no bytes after the response: ${what}`);
    const is502 = got.complete && got.status === 502 && got.body.toString() === errorBody(502);
    if (m.status === null) {
      assert.ok(is502, `no head from the backend: a 502 — ${what}`);
    } else if (m.ended && m.error === null) {
      const bodyless = m.status === 204 || m.status === 304;
      assert.ok((got.complete && got.status === m.status && got.body.equals(bodyless ? Buffer.alloc(0) : m.body)) || is502,
        `the response as the backend sent it (or a 502) — ${what}`);
    } else {
      const cut = !got.complete && (got.status === null || got.status === m.status) && m.body.subarray(0, got.body.length).equals(got.body);
      const bodylessHead = got.complete && got.status === m.status && (m.status === 204 || m.status === 304);
      assert.ok(cut || is502 || bodylessHead, `the backend's head then a cut (or a 502) — ${what}`);
    }
  }
  const after = parseRaw(await rawGet(f.port, '/fine'));
  assert.ok(after.complete && after.status === 200 && after.body.toString() === 'fine!', 'the front still serves');
  const exited = await Promise.race([f.exited.then(() => true), sleep(10).then(() => false)]);
  assert.not.ok(exited, 'the front is still running');
});

uwsgiFront.run();
