// WebSockets when a backend drains: open tunnels keep running until the end of the graceful
// timeout nears, then each WebSocket gets a close frame at a frame boundary (1001 Going Away on
// a stop, 1012 Service Restart on a reload) and the app hears the close a client would send,
// also for an unchanged ws app that does nothing about it. A frame half sent either way when the
// close is due is finished first. Clients are real ws WebSockets on tsgi streams.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as wsModule from 'ws';
import { BackendServer } from '../../src/backend/server.js';
import { loadApplication } from '../../src/backend/load-app.js';
import { onDrain } from '../../src/backend/draining.js';
import type { Application } from '../../src/backend/types.js';
import type { Logger } from '../../src/common/log.js';
import { eventually } from '../helpers/assert.js';
import { startBackend, type BackendProc } from '../helpers/procs.js';
import { TunnelClient, clientWebSocket, closed, nextMessage } from './helpers/tunnel-client.js';

const test = suite('backend/websocket-drain');
const dir = mkdtempSync(join(tmpdir(), 'tsgi-ws-drain-'));
const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', name);
const clients: TunnelClient[] = [];
const procs: BackendProc[] = [];
let servers: BackendServer[] = [];

/** A logger that keeps the info and warn lines (the drain says what it does). */
class LineLogger implements Logger {
  readonly lines: string[] = [];
  debug(): void {}
  info(m: string): void { this.lines.push(m); }
  warn(m: string): void { this.lines.push(`warn: ${m}`); }
  error(m: string): void { this.lines.push(`error: ${m}`); }
  enabled(): boolean { return false; }
}

async function serve(name: string, app: Application, log: Logger): Promise<{ server: BackendServer; client: TunnelClient }> {
  const path = join(dir, `${name}.sock`);
  const server = new BackendServer({ address: { kind: 'unix', path }, app, log });
  await server.listen();
  servers.push(server);
  const client = new TunnelClient(path);
  clients.push(client);
  return { server, client };
}

/** A masked client text frame, as ws's Sender frames it. */
function maskedText(text: string): Buffer {
  const { Sender } = wsModule as unknown as { Sender: { frame(d: Buffer, o: object): Buffer[] } };
  return Buffer.concat(Sender.frame(Buffer.from(text), {
    fin: true, mask: true, opcode: 1, readOnly: false, rsv1: false, maskBuffer: Buffer.alloc(4), generateMask: (b: Buffer) => b.fill(0x17),
  }));
}

test.after.each(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers) await s.stop({ graceful: false });
  servers = [];
});

test.after(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('a graceful stop closes an unchanged ws app\'s WebSocket with 1001; a client frame half sent reaches the app whole first', async () => {
  const log = new LineLogger();
  const { server, client } = await serve('stop', await loadApplication(fixture('ws-node-server.js')), log);
  const { received, closes } = await import('../fixtures/ws-node-server.js');
  const { ws, socket } = await client.websocket('/drain-stop');
  ws.send('before');
  assert.is(await nextMessage(ws), 'before', 'the tunnel works');
  const notices: { code: number; closeAt: number }[] = [];
  const off = onDrain((n) => notices.push(n));
  // Half of a frame from the client, then the stop: the close to the app must wait for its end.
  const frame = maskedText('x'.repeat(2000));
  socket.write(frame.subarray(0, 700));
  const clientClosed = closed(ws);
  const stopped = server.stop({ graceful: true, timeoutMs: 2000, closeCode: 1001 });
  await eventually(() => log.lines.some((l) => /closing 1 open tunnel/.test(l)), 'the close phase', 5000);
  off();
  assert.is(notices.length, 1, 'onDrain listeners heard of the stop');
  assert.is(notices[0]!.code, 1001);
  socket.write(frame.subarray(700));
  assert.equal(await clientClosed, { code: 1001, reason: '' }, 'the client got a 1001 close frame');
  await stopped;
  await eventually(() => closes.some((c) => c.url === '/drain-stop'), 'the app to see the close');
  assert.equal(closes.filter((c) => c.url === '/drain-stop'), [{ url: '/drain-stop', code: 1001, reason: '' }],
    'the app heard 1001 as from the client');
  const mine = received.filter((r) => r.url === '/drain-stop');
  assert.equal(mine.map((r) => r.length), [6, 2000], 'the half-sent message reached the app whole, before the close');
  assert.not.ok(log.lines.some((l) => l.startsWith('warn')), `no tunnel was cut: ${log.lines.join(' | ')}`);
});

test('the close to the client waits for the end of a frame the app is writing; nothing is cut', async () => {
  const log = new LineLogger();
  let finish!: () => void;
  let appSocket: Duplex | null = null;
  const app: Application = (environ) => {
    const socket = (environ['tsgi.upgrade'] as () => Duplex)();
    appSocket = socket;
    // A server frame of 1000 bytes, written in two pieces: the second when the test says.
    const payload = Buffer.alloc(1000, 0x41);
    const frame = Buffer.concat([Buffer.from([0x81, 126, 1000 >> 8, 1000 & 0xff]), payload]);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.write(frame.subarray(0, 300));
    finish = () => socket.write(frame.subarray(300));
    socket.on('data', () => {});
    socket.on('end', () => socket.end());
    return [];
  };
  const { server, client } = await serve('half-frame', app, log);
  const answer = await client.request('/raw', ['Upgrade', 'websocket', 'Connection', 'Upgrade']);
  assert.is(answer.head.status, 101);
  const ws = clientWebSocket(answer.socket);
  const message = nextMessage(ws);
  const wsClosed = closed(ws);
  const appData: Buffer[] = [];
  await eventually(() => appSocket !== null, 'the app to take the connection');
  appSocket!.on('data', (d: Buffer) => appData.push(d));
  const stopped = server.stop({ graceful: true, timeoutMs: 2000, closeCode: 1012 });
  await eventually(() => log.lines.some((l) => /closing 1 open tunnel/.test(l)), 'the close phase', 5000);
  finish();
  assert.is(await message, 'A'.repeat(1000), 'the frame in progress arrived whole');
  assert.is((await wsClosed).code, 1012, 'then the close frame');
  await stopped;
  // The app was handed a masked close frame of 1012, as a client would send it.
  const got = Buffer.concat(appData);
  assert.is(got[0], 0x88, 'a close frame');
  assert.is(got[1]! & 0x80, 0x80, 'masked');
  const mask = got.subarray(2, 6);
  const code = ((got[6]! ^ mask[0]!) << 8) | (got[7]! ^ mask[1]!);
  assert.is(code, 1012);
});

test('tsgi serve --workers 1: a reload (SIGHUP) closes the old worker\'s WebSockets with 1012 Service Restart, a stop (SIGTERM) with 1001', async () => {
  const file = join(dir, 'closes.jsonl');
  process.env.WS_CLOSES_FILE = file;
  let backend: BackendProc;
  try {
    backend = await startBackend(fixture('ws-node-server.js'), ['--workers', '1', '--graceful-timeout', '2']);
  } finally {
    delete process.env.WS_CLOSES_FILE;
  }
  procs.push(backend);
  const client = new TunnelClient(backend.socket);
  clients.push(client);
  const { ws } = await client.websocket('/reload');
  ws.send('whoami');
  const before = await nextMessage(ws) as string;
  const wsClosed = closed(ws);
  process.kill(backend.pid, 'SIGHUP');
  assert.is((await wsClosed).code, 1012);
  await eventually(() => {
    try { return readFileSync(file, 'utf8').includes('/reload'); } catch { return false; }
  }, 'the old worker\'s app to record the close', 10_000);
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { url: string; code: number });
  assert.equal(lines.filter((l) => l.url === '/reload'), [{ url: '/reload', code: 1012, reason: '' }]);
  // A new WebSocket reaches the new worker.
  const again = new TunnelClient(backend.socket);
  clients.push(again);
  const second = await again.websocket('/after');
  second.ws.send('whoami');
  const after = await nextMessage(second.ws) as string;
  assert.is.not(after.split(' pid ')[1], before.split(' pid ')[1], 'served by the new worker');
  // SIGTERM: the backend stops, and that WebSocket closes with 1001 Going Away.
  const secondClosed = closed(second.ws);
  await backend.stop();
  assert.is((await secondClosed).code, 1001);
  const all = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { url: string; code: number });
  assert.equal(all.filter((l) => l.url === '/after'), [{ url: '/after', code: 1001, reason: '' }]);
  assert.not.match(backend.stderr(), /tunnel\(s\) still open are cut/);
});

test.run();
