// The backend's uwsgi listener, in process, over a real Unix socket: pings, malformed packets
// (refused with a log line, the server keeps serving), the 64 KiB vars limit, raw HTTP/1.1
// responses (reason, HEAD/204 without body, 500 before the head, a cut after it), and flow
// control both ways: a body the app does not read and a client that does not read.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputStream } from '../../src/backend/input.js';
import type { Application } from '../../src/backend/types.js';
import { UwsgiServer } from '../../src/backend/uwsgi-server.js';
import type { Logger } from '../../src/common/log.js';
import { eventually, quiescent } from '../helpers/assert.js';
import { dial, exchange, packet, parseRaw, request } from '../helpers/uwsgi.js';

const WINDOW = 64 * 1024;

interface State {
  lines: string[];
  gate: Promise<void>;
  open: () => void;
  input: InputStream | null;
  produced: number;
  aborted: string | null;
  digest: string | null;
}

const state: State = { lines: [], gate: Promise.resolve(), open: () => {}, input: null, produced: 0, aborted: null, digest: null };

function resetGate(): void {
  state.gate = new Promise((resolve) => { state.open = resolve; });
}

const log: Logger = {
  debug: (m) => state.lines.push(`debug: ${m}`),
  info: (m) => state.lines.push(`info: ${m}`),
  warn: (m) => state.lines.push(`warn: ${m}`),
  error: (m) => state.lines.push(`error: ${m}`),
  enabled: () => true,
};

const app: Application = async (environ, startResponse) => {
  const path = environ.PATH_INFO;
  if (path === '/hello') {
    startResponse('200 OK', [['Content-Type', 'text/html']]);
    return ['<h1>Hello, web</h1>'];
  }
  if (path === '/environ') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(environ)) if (typeof v === 'string') out[k] = v;
    startResponse('200 0K', [['Content-Type', 'application/json']]);
    return [JSON.stringify(out)];
  }
  if (path === '/hold-body') {
    state.input = environ['tsgi.input'];
    await state.gate;
    const body = await environ['tsgi.input'].read();
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [`${body.length} ${createHash('sha256').update(body).digest('hex')}`];
  }
  if (path === '/digest') {
    const body = await environ['tsgi.input'].read();
    state.digest = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [state.digest];
  }
  if (path === '/head') {
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return ['this body is not sent for HEAD'];
  }
  if (path === '/nocontent') {
    startResponse('204 No Content', []);
    return ['ignored'];
  }
  if (path === '/wait-abort') {
    const signal = environ['tsgi.signal'];
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return (async function* body() {
      yield 'waiting\n';
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      state.aborted = String((signal.reason as Error)?.message ?? signal.reason);
    })();
  }
  if (path === '/head-first') {
    // PEP 3333: write('') sends the head at once; the body waits for the gate.
    const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
    write('');
    await state.gate;
    return ['after the gate'];
  }
  if (path === '/throw') throw new Error('fails before the head');
  if (path === '/late') {
    startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', '100']]);
    return (async function* body() {
      yield 'first\n';
      await sleep(10);
      throw new Error('fails after the head');
    })();
  }
  if (path === '/big') {
    startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
    return (function* body() {
      for (let i = 0; i < 256; i++) {
        state.produced++;
        yield Buffer.alloc(64 * 1024, i);
      }
    })();
  }
  startResponse('404 Not Found', []);
  return [];
};

interface Ctx { dir: string; path: string; server: UwsgiServer }
const test = suite<Ctx>('backend/uwsgi-server', {} as Ctx);

test.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-uwsgi-'));
  ctx.path = join(ctx.dir, 'app.uwsgi.sock');
  ctx.server = new UwsgiServer({ address: { kind: 'unix', path: ctx.path }, app, log, window: WINDOW });
  await ctx.server.listen();
});

test.after(async (ctx) => {
  await ctx.server.stop({ graceful: false });
  rmSync(ctx.dir, { recursive: true, force: true });
});

const GET = (path: string, extra: [string, string][] = []): [string, string][] => [
  ['REQUEST_METHOD', 'GET'], ['REQUEST_URI', path], ['PATH_INFO', path], ['QUERY_STRING', ''],
  ['SERVER_PROTOCOL', 'HTTP/1.1'], ['HTTP_HOST', 'example.test'], ...extra,
];

test('a GET: raw HTTP/1.1 back, status line with its reason, then the connection closes', async ({ path }) => {
  const r = await request(path, GET('/hello'));
  assert.is(r.statusLine, 'HTTP/1.1 200 OK');
  assert.is(r.headers.get('content-type'), 'text/html');
  assert.is(r.headers.get('content-length'), '19');
  assert.is(r.body.toString(), '<h1>Hello, web</h1>');
  const custom = await request(path, GET('/environ'));
  assert.is(custom.statusLine, 'HTTP/1.1 200 0K', 'a custom reason phrase is kept');
  assert.is(JSON.parse(custom.body.toString()).HTTP_HOST, 'example.test');
});

test("write('') sends the head alone at once; the body follows when the app has it", async ({ path }) => {
  resetGate();
  const socket = connect({ path });
  let received = '';
  socket.on('data', (c: Buffer) => { received += c.toString('latin1'); });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(packet(GET('/head-first')));
  await eventually(() => received.includes('\r\n\r\n'), 'the head arrives before the body exists');
  assert.match(received, /^HTTP\/1\.1 200 OK\r\n/);
  assert.not.match(received, /after the gate/);
  state.open();
  await closed;
  assert.ok(received.endsWith('\r\n\r\nafter the gate'), received);
});

test('a response whole in the kernel closes the connection at once, while the client still holds its end', async ({ path }) => {
  const socket = connect({ path, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve) => socket.once('end', resolve));
  const failed = new Promise<NodeJS.ErrnoException>((resolve) => socket.once('error', resolve));
  socket.write(packet(GET('/hello')));
  await ended;
  assert.is(parseRaw(Buffer.concat(chunks)).body.toString(), '<h1>Hello, web</h1>');
  // A server that only shut down its side would still read (and drop) these bytes; one that
  // closed has no socket left to take them.
  socket.write('after the response');
  const timer = setTimeout(() => socket.emit('error', Object.assign(new Error('no error within 10 s'), { code: 'none' })), 10_000);
  const err = await failed;
  clearTimeout(timer);
  assert.ok(err.code === 'EPIPE' || err.code === 'ECONNRESET', `write after the close: ${err.code}`);
  socket.destroy();
});

test('a packet that arrives in pieces is served', async ({ path }) => {
  const bytes = packet(GET('/hello'));
  const socket = dial(path);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  for (const [from, to] of [[0, 2], [2, 7], [7, bytes.length]] as const) {
    socket.write(bytes.subarray(from, to));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await closed;
  assert.is(parseRaw(Buffer.concat(chunks)).body.toString(), '<h1>Hello, web</h1>');
});

test('modifier1 100 (ping) is answered with a bare header', async ({ path }) => {
  const raw = await exchange(path, Buffer.from([100, 0, 0, 0]));
  assert.equal([...raw], [100, 0, 0, 1]);
});

test('malformed packets are refused with a 400 and a log line; the server keeps serving', async ({ path }) => {
  state.lines.length = 0;
  const bad = [
    Buffer.from([0, 3, 0, 0, 9, 0, 65]), // key length past the block
    Buffer.from([0, 5, 0, 0, 1, 0, 65, 9, 0]), // value size past the block
    packet([['CONTENT_LENGTH', '12abc']]),
  ];
  for (const bytes of bad) {
    const r = parseRaw(await exchange(path, bytes));
    assert.is(r.status, 400);
  }
  assert.is(state.lines.filter((l) => l.startsWith('warn: uwsgi: refusing a malformed packet')).length, 3, state.lines.join('\n'));
  const other = await exchange(path, packet([['PATH_INFO', '/hello']], Buffer.alloc(0), 5));
  assert.is(parseRaw(other).status, 400, 'an unknown modifier1 is refused too');
  assert.ok(state.lines.some((l) => l.includes('modifier1 5 is not supported')));
  assert.is((await request(path, GET('/hello'))).status, 200, 'still serving');
});

test('a connection closed in the middle of a packet is logged, never a crash', async ({ path }) => {
  state.lines.length = 0;
  const socket = dial(path);
  socket.write(Buffer.from([0, 100, 0, 0, 1]));
  socket.end();
  await eventually(() => state.lines.some((l) => l.includes('closed the connection in the middle of a packet')), 'the log line');
  assert.is((await request(path, GET('/hello'))).status, 200);
});

test('a vars block of almost the full 64 KiB is accepted', async ({ path }) => {
  const big = 'v'.repeat(65_000);
  const r = await request(path, GET('/environ', [['HTTP_X_BIG', big]]));
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body.toString()).HTTP_X_BIG, big);
});

test('HEAD and 204 go without a body', async ({ path }) => {
  const head = await request(path, [['REQUEST_METHOD', 'HEAD'], ['PATH_INFO', '/head']]);
  assert.is(head.status, 200);
  assert.is(head.body.length, 0);
  assert.ok(head.headers.has('content-length'), 'HEAD keeps the length GET would have');
  const none = await request(path, GET('/nocontent'));
  assert.is(none.status, 204);
  assert.is(none.body.length, 0);
});

test('an app error before the head is a 500; after it, the connection is cut short of its length', async ({ path }) => {
  const r = await request(path, GET('/throw'));
  assert.is(r.status, 500);
  assert.ok(state.lines.some((l) => l.includes('GET /throw: application error before the response head')));
  const late = await request(path, GET('/late'));
  assert.is(late.status, 200);
  assert.is(late.headers.get('content-length'), '100');
  assert.ok(late.body.length < 100, 'the client can tell the body is incomplete');
});

test('a packet and body already waiting at the accept are read at once; the body past that read arrives whole', async ({ path }) => {
  // spawnSync holds this process's loop until the child has written everything and exited, so
  // the server accepts a connection whose first 64 KiB (the packet and the start of the body)
  // are already there: the read at accept time, then the handle's reads into slabs.
  const body = Buffer.alloc(100 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >> 8)) & 0xff;
  const bytes = packet([['REQUEST_METHOD', 'POST'], ['PATH_INFO', '/digest'], ['CONTENT_LENGTH', String(body.length)]], body);
  state.digest = null;
  const client = 'const net = require("node:net"); const bytes = require("node:fs").readFileSync(0);'
    + ' const s = net.connect(process.argv[1], () => s.end(bytes, () => process.exit(0)));';
  const child = spawnSync(process.execPath, ['-e', client, path], { input: bytes, timeout: 20_000 });
  assert.is(child.status, 0, `the client wrote the whole packet: ${child.error} ${child.signal} ${child.stderr}`);
  await eventually(() => state.digest !== null, 'the app read the whole body');
  assert.is(state.digest, `${body.length} ${createHash('sha256').update(body).digest('hex')}`);
});

test('the request body streams in with backpressure: an app that does not read it stops the socket', async ({ path }) => {
  resetGate();
  state.input = null;
  const body = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4096) body.writeUInt32LE(i, i);
  const pending = exchange(path, packet([['REQUEST_METHOD', 'POST'], ['PATH_INFO', '/hold-body'], ['CONTENT_LENGTH', String(body.length)]], body));
  await eventually(() => state.input !== null && state.input.received >= WINDOW, 'the app to get the first window of the body');
  // A server without backpressure would read on: wait until the reading settles.
  const received = await quiescent(() => state.input!.received, 'the bytes read');
  assert.ok(received < 4 * WINDOW, `read ${received} bytes ahead of an app that reads nothing (window ${WINDOW})`);
  state.open();
  const r = parseRaw(await pending);
  assert.is(r.body.toString(), `${body.length} ${createHash('sha256').update(body).digest('hex')}`);
});

test('the response streams out with backpressure: a client that does not read stops the app', async ({ path }) => {
  state.produced = 0;
  const socket = dial(path);
  socket.pause();
  socket.write(packet(GET('/big')));
  await eventually(() => state.produced > 0, 'the app to start');
  const produced = await quiescent(() => state.produced, 'the chunks produced');
  assert.ok(produced < 128, `produced ${produced} of 256 chunks of 64 KiB for a client that reads nothing`);
  let total = 0;
  socket.on('data', (c: Buffer) => { total += c.length; });
  socket.resume();
  await new Promise((resolve) => socket.on('close', resolve));
  assert.is(state.produced, 256);
  assert.ok(total > 256 * 64 * 1024, 'everything arrived once the client read');
});

test('a client that goes away aborts tsgi.signal', async ({ path }) => {
  state.aborted = null;
  const socket = dial(path);
  socket.write(packet(GET('/wait-abort')));
  await new Promise((resolve) => socket.once('data', resolve));
  socket.destroy();
  await eventually(() => state.aborted !== null, 'the app to see tsgi.signal abort');
  assert.match(state.aborted!, /closed the uwsgi connection/);
  assert.is((await request(path, GET('/hello'))).status, 200);
});

test('requests are counted, and none is left in flight', async ({ server }) => {
  assert.ok(server.served >= 10);
  await eventually(() => server.inFlight === 0, 'no request in flight');
});

test.run();
