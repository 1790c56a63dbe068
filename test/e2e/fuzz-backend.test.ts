// End-to-end fuzzing of a real `tsgi serve`: raw Unix-socket connections send a valid HELLO
// and then mutated frames (several connections at once), and raw uwsgi connections send
// mutated packets, while a healthy connection keeps making real requests. The process must
// never die, the healthy requests must all succeed, and a connection that broke the protocol
// is closed with a log line naming why (the in-process Connection / packet parser fed the same
// bytes is the oracle for which ones must). Each case is bounded in time. FUZZ_RUNS=N sets the
// number of cases; FUZZ_SEED=S replays a run (the seed is in every failure message).
import fc from 'fast-check';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Connection, ProtocolError, Reset, ResetCode, Window, type Stream } from '../../src/protocol/index.js';
import { UwsgiPacketParser } from '../../src/protocol/uwsgi.js';
import { escapeControls } from '../../src/common/log.js';
import { newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import {
  byteMutationArb, clientScript, corpus, decodeAll, encodeAll, frameMutationArb, FUZZ_SEED, fuzzRuns, helloFrame, mutateBytes,
  mutateFrames, splitAt, streamPlanArb,
} from '../helpers/fuzz.js';
import { fixture, startBackend, startUwsgiBackend } from '../helpers/procs.js';
import { packet, request as uwsgiRequest } from '../helpers/uwsgi.js';

const SEED = FUZZ_SEED;
const CASES = fuzzRuns(24);
/** The backend's defaults (tsgi serve without --window / --max-frame-size). */
const BACKEND = { window: 256 * 1024, maxFrameSize: 1024 * 1024 };
const CASE_TIMEOUT_MS = 10_000;

/** Runs `fn` over the items, `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

/** Writes `chunks` (ending our side if `end`), then resolves with all the peer sent once it closed. */
function talk(path: string, chunks: Buffer[], end: boolean, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${what}: the server did not close the connection within ${CASE_TIMEOUT_MS} ms (seed ${SEED})`));
    }, CASE_TIMEOUT_MS);
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => {}); // EPIPE/ECONNRESET once the server closed: what it sent is the answer
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        await sleep(1); // separate reads on the other side, as the cuts say
      }
      if (end && !socket.destroyed) socket.end();
    });
  });
}

/** A real tsgi client connection doing POSTs to the echo app, one after another. */
class HealthyClient {
  ok = 0;
  failures: string[] = [];
  #socket: Socket;
  #conn: Connection;
  #ready: Promise<void>;

  constructor(path: string) {
    this.#socket = connect(path);
    let ready!: () => void;
    this.#ready = new Promise((r) => { ready = r; });
    this.#conn = new Connection({
      role: 'client', write: (c) => this.#socket.write(c), onReady: () => ready(),
      onError: (err) => this.failures.push(`healthy connection: ${err.message}`),
    });
    this.#socket.on('connect', () => this.#conn.start());
    this.#socket.on('data', (c: Buffer) => this.#conn.receive(c));
    this.#socket.on('close', () => this.#conn.destroy('healthy connection closed'));
    this.#socket.on('error', (err) => this.failures.push(`healthy socket: ${err.message}`));
  }

  request(body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const stream: Stream = this.#conn.open({ method: 'POST', target: '/healthy', headers: { names: [9], values: [String(body.length)] } }, false);
      let status = 0;
      const parts: Buffer[] = [];
      (stream.handler ??= {}).onHead = (head) => { status = head.status; };
      (stream.handler ??= {}).onData = (chunk, end) => {
        parts.push(Buffer.from(chunk));
        stream.consume(chunk.length);
        if (end) resolve({ status, body: Buffer.concat(parts).toString() });
      };
      (stream.handler ??= {}).onReset = (code, message) => reject(new Error(`healthy stream reset: ${code} ${message}`));
      stream.write(Buffer.from(body), true);
    });
  }

  /** Requests until `stop()`; each must come back 200 with its body. */
  async loop(stop: () => boolean): Promise<void> {
    await this.#ready;
    for (let i = 0; !stop(); i++) {
      const body = `healthy request ${i} `.repeat(1 + (i % 50));
      try {
        const res = await Promise.race([this.request(body), sleep(CASE_TIMEOUT_MS).then(() => { throw new Error('no answer'); })]);
        if (res.status === 200 && res.body === body) this.ok++;
        else this.failures.push(`request ${i}: ${res.status} ${res.body.slice(0, 60)}`);
      } catch (err) {
        this.failures.push(`request ${i}: ${(err as Error).message}`);
      }
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Whether the process is still running (exited has not resolved). */
async function alive(proc: { exited: Promise<unknown> }): Promise<boolean> {
  return Promise.race([proc.exited.then(() => false), sleep(10).then(() => true)]);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---- tsgi frames --------------------------------------------------------------------------------

const frames = suite<Ctx>('e2e/fuzz-backend-frames', newCtx());
setUp(frames, async (ctx) => {
  ctx.backend = await startBackend(fixture('echo.js'));
});

/** A case: the bytes after our HELLO, and the model's verdict on them. */
function tsgiCases(): { bytes: Buffer; cuts: number[]; error: string | null }[] {
  const caseArb = fc.tuple(
    fc.array(streamPlanArb, { minLength: 1, maxLength: 4 }), fc.array(fc.nat({ max: 16 }), { maxLength: 20 }),
    fc.oneof(
      fc.array(frameMutationArb, { minLength: 1, maxLength: 4 }).map((m) => ({ frames: m, bytes: [] as never[] })),
      fc.array(byteMutationArb, { minLength: 1, maxLength: 3 }).map((b) => ({ frames: [] as never[], bytes: b })),
    ),
    fc.array(fc.nat({ max: 100_000 }), { maxLength: 4 }),
  );
  return fc.sample(caseArb, { numRuns: CASES, seed: SEED }).map(([plans, schedule, m, cuts]) => {
    const script = clientScript(plans, schedule, BACKEND);
    const framed = encodeAll(mutateFrames(script.frames, m.frames, [], true));
    const hello = encodeAll(script.frames.slice(0, 1));
    const bytes = mutateBytes(framed.subarray(hello.length), m.bytes);
    // The oracle: the same bytes through an in-process server Connection with the backend's limits.
    let error: string | null = null;
    const model = new Connection({ role: 'server', write: () => {}, onError: (err) => { error = err.message; } });
    model.receive(hello);
    model.receive(bytes);
    return { bytes: Buffer.concat([hello, bytes]), cuts, error };
  });
}

frames('mutated frames on several connections at once: bad ones are closed and logged, a healthy one keeps serving', async ({ backend }) => {
  const cases = tsgiCases();
  const healthy = new HealthyClient(backend!.socket);
  let done = false;
  const load = healthy.loop(() => done);
  try {
    await pool(cases, 4, async (c, i) => {
      const what = `case ${i} (seed ${SEED})`;
      const reply = await talk(backend!.socket, splitAt(c.bytes, c.cuts), c.error === null, what);
      let out;
      try {
        out = decodeAll(reply);
      } catch (err) {
        assert.unreachable(`${what}: the backend wrote a malformed frame: ${(err as Error).message}`);
      }
      assert.is(out![0]?.type, 0, `${what}: the backend's HELLO comes first`);
      if (c.error !== null) {
        assert.is(out![out!.length - 1]!.type, 7, `${what}: GOAWAY before the close`);
        await backend!.waitForStderr(new RegExp(`closing front connection: ${escape(c.error)}`), CASE_TIMEOUT_MS);
      }
    });
  } finally {
    done = true;
    await load;
    healthy.close();
  }
  assert.ok(await alive(backend!), `the backend is still running (seed ${SEED})`);
  assert.equal(healthy.failures, [], `the healthy connection's requests all succeed (seed ${SEED})`);
  assert.ok(healthy.ok > 0, 'the healthy connection made requests meanwhile');
  assert.ok(cases.some((c) => c.error !== null), 'some cases broke the protocol');
});

frames('the corpus\'s server cases, replayed against the real backend', async ({ backend }) => {
  const cases = corpus('server');
  assert.ok(cases.length >= 4, 'the corpus has server cases');
  for (const c of cases) {
    // The server closes the connection itself (no FIN from us), its last frame a GOAWAY.
    const reply = await talk(backend!.socket, [Buffer.from(c.hex, 'hex')], false, c.file);
    assert.is(decodeAll(reply).pop()?.type, 7, `${c.file}: a GOAWAY last`);
    await backend!.waitForStderr(new RegExp(`closing front connection: [^\\n]*${c.expect!.message!}`));
  }
  const hello = helloFrame(BACKEND);
  // The smallest protocol error: a DATA frame on stream 0 right after the HELLO.
  const reply = await talk(backend!.socket, [Buffer.concat([hello, Buffer.from('00000001030000000000ff', 'hex')])], false, 'DATA on stream 0');
  assert.is(decodeAll(reply).pop()?.type, 7);
  await backend!.waitForStderr(/closing front connection: frame type 3 needs a stream id \[TSGI_ERR_PROTOCOL\]/);
  assert.ok(await alive(backend!));
});

/** Writes `bytes`, then reads frames until `until(frames)` holds (bounded); the socket is then closed. */
function converse(path: string, bytes: Buffer, until: (frames: ReturnType<typeof decodeAll>) => boolean): Promise<ReturnType<typeof decodeAll>> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no expected answer within ${CASE_TIMEOUT_MS} ms; got ${JSON.stringify(decodeAll(Buffer.concat(got)).map((f) => [f.type, f.flags, f.stream]))}`));
    }, CASE_TIMEOUT_MS);
    socket.on('error', () => {});
    socket.on('data', (c: Buffer) => {
      got.push(c);
      let frames: ReturnType<typeof decodeAll>;
      try {
        frames = decodeAll(Buffer.concat(got));
      } catch {
        return; // a partial frame: wait for the rest
      }
      if (until(frames)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(frames);
      }
    });
    socket.on('connect', () => socket.write(bytes));
  });
}

frames('DATA past the window or a WINDOW past 2^31-1 resets that stream only: the next request on the connection is answered', async ({ backend }) => {
  const plan = (method: string, end: boolean) => ({
    head: { method, target: '/flow', headers: { names: [], values: [] } }, body: [], ending: end ? 'end' as const : 'open' as const,
  });
  // Stream 1 sends three windows of body in one frame, and grants no credit for the echo coming
  // back (so the app stops reading once it has a window to send); stream 3 grants a window that
  // overflows; stream 5 is an ordinary GET.
  const script = clientScript([plan('POST', false), plan('GET', false), plan('GET', true)], [0, 1, 2], BACKEND);
  const [hello, ...heads] = script.frames;
  const raw = encodeAll([
    hello!, heads[0]!, { type: 3, flags: 0, stream: 1, payload: Buffer.alloc(BACKEND.window * 3, 0x61) },
    heads[1]!, ...[0, 1].map(() => ({ type: 6, flags: 0, stream: 3, payload: Buffer.from(Window.encode({ increment: 0x7fffffff }).finish()) })),
    heads[2]!,
  ]);
  const out = await converse(backend!.socket, raw, (fs) => fs.some((f) => f.stream === 5 && (f.flags & 1) !== 0));
  const reset = (id: number) => out.find((f) => f.type === 5 && f.stream === id) ?? assert.unreachable(`no RESET on stream ${id}: ${JSON.stringify(out.map((f) => [f.type, f.flags, f.stream]))}`);
  assert.is(Reset.decode(reset(1)!.payload).code, ResetCode.FLOW_CONTROL_ERROR, 'stream 1: FLOW_CONTROL_ERROR');
  assert.is(Reset.decode(reset(3)!.payload).code, ResetCode.FLOW_CONTROL_ERROR, 'stream 3: FLOW_CONTROL_ERROR');
  assert.ok(out.some((f) => f.type === 2 && f.stream === 5), 'stream 5 answered');
  assert.not.ok(out.some((f) => f.type === 7), 'no GOAWAY: a stream error, not a connection error');
});

frames.run();

// ---- uwsgi packets --------------------------------------------------------------------------------

const packets = suite<Ctx>('e2e/fuzz-backend-uwsgi', newCtx());
setUp(packets, async (ctx) => {
  ctx.backend = await startUwsgiBackend(fixture('echo.js'));
});

const VARS: [string, string][] = [
  ['REQUEST_METHOD', 'POST'], ['REQUEST_URI', '/fuzz?a=1'], ['PATH_INFO', '/fuzz'], ['QUERY_STRING', 'a=1'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'], ['SERVER_NAME', 'localhost'], ['SERVER_PORT', '80'], ['REMOTE_ADDR', '127.0.0.1'],
  ['HTTP_HOST', 'localhost'],
];

function uwsgiCases(): { bytes: Buffer; cuts: number[]; refused: string | null }[] {
  const caseArb = fc.tuple(
    fc.uint8Array({ maxLength: 300 }),
    // The declared CONTENT_LENGTH: right, too long, too short, not a number.
    fc.constantFrom('right', 'long', 'short', 'junk', 'none'),
    fc.array(fc.oneof(
      byteMutationArb,
      fc.record({ kind: fc.constant('datasize' as const), size: fc.nat({ max: 0xffff }) }),
      fc.record({ kind: fc.constant('modifier1' as const), value: fc.constantFrom(0, 100, 5, 255) }),
    ), { maxLength: 3 }),
    fc.array(fc.nat({ max: 100_000 }), { maxLength: 3 }),
  );
  return fc.sample(caseArb, { numRuns: CASES, seed: SEED }).map(([body, length, mutations, cuts]) => {
    const declared = { right: String(body.length), long: String(body.length + 7), short: String(Math.max(0, body.length - 3)), junk: '12x', none: '' }[length];
    const vars: [string, string][] = declared === '' ? VARS : [...VARS, ['CONTENT_LENGTH', declared]];
    let bytes = packet(vars, Buffer.from(body));
    for (const m of mutations) {
      if (m.kind === 'datasize') { if (bytes.length >= 3) bytes.writeUInt16LE(m.size, 1); } // (a truncation may come first)
      else if (m.kind === 'modifier1') { if (bytes.length >= 1) bytes[0] = m.value; }
      else bytes = mutateBytes(bytes, [m]);
    }
    let refused: string | null = null;
    try {
      const parsed = new UwsgiPacketParser().push(bytes);
      if (parsed !== null && ![0, 100].includes(parsed.packet.modifier1)) refused = `modifier1 ${parsed.packet.modifier1} is not supported`;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      refused = err.message;
    }
    return { bytes, cuts, refused };
  });
}

packets('mutated uwsgi packets on many connections: each is answered or refused and closed, healthy requests keep succeeding', async ({ backend }) => {
  const cases = uwsgiCases();
  let done = false;
  const failures: string[] = [];
  let ok = 0;
  const load = (async () => {
    for (let i = 0; !done; i++) {
      const body = Buffer.from(`healthy ${i}`);
      try {
        const res = await uwsgiRequest(backend!.socket, [...VARS, ['CONTENT_LENGTH', String(body.length)]], body);
        if (res.status === 200 && res.body.equals(body)) ok++;
        else failures.push(`${res.status} ${res.body.toString().slice(0, 60)}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  })();
  try {
    await pool(cases, 4, async (c, i) => {
      const what = `uwsgi case ${i} (seed ${SEED})`;
      const reply = (await talk(backend!.socket, splitAt(c.bytes, c.cuts), true, what)).toString('latin1');
      // One response at most, and never a second status line.
      assert.ok((reply.match(/HTTP\/1\.1 \d{3} /g)?.length ?? 0) <= 1, `${what}: one response at most:\n${reply}`);
      if (c.refused !== null) {
        assert.ok(reply.startsWith('HTTP/1.1 400 Bad Request\r\n'), `${what}: refused with a 400:\n${reply}`);
        await backend!.waitForStderr(new RegExp(`refusing a malformed packet from a unix-socket client: ${escape(escapeControls(c.refused))}`), CASE_TIMEOUT_MS);
      }
    });
  } finally {
    done = true;
    await load;
  }
  assert.ok(await alive(backend!), `the backend is still running (seed ${SEED})`);
  assert.equal(failures, [], `healthy uwsgi requests all succeed (seed ${SEED})`);
  assert.ok(ok > 0);
});

packets.run();
