// Upgrade requests and WebSockets on a real backend server, talked to through the tsgi protocol
// as the front talks to it (a client Connection on a Unix socket, streams opened with `upgrade`),
// with a real ws client WebSocket on the tunnel: unchanged node:http apps (ws, @hono/node-ws,
// socket.io), a gateway app (tsgi.websocket), a fetch-style app (upgradeWebSocket), a Hono app
// (tsgi/hono); the raw response heads apps write; a version-1 link.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendServer } from '../../src/backend/server.js';
import { fromNodeHandler } from '../../src/backend/node-adapter.js';
import { loadApplication } from '../../src/backend/load-app.js';
import type { Application } from '../../src/backend/types.js';
import { ResetCode } from '../../src/protocol/index.js';
import { eventually } from '../helpers/assert.js';
import { RecordingLogger } from './helpers/exchange.js';
import { TunnelClient, closed, header, nextMessage } from './helpers/tunnel-client.js';

const test = suite('backend/websocket');
const dir = mkdtempSync(join(tmpdir(), 'tsgi-ws-'));
const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', name);
const servers = new Map<string, { server: BackendServer; path: string }>();
const clients: TunnelClient[] = [];

async function serve(name: string, app?: Application): Promise<string> {
  const path = join(dir, `${name}.sock`);
  const server = new BackendServer({ address: { kind: 'unix', path }, app: app ?? await loadApplication(fixture(`${name}.js`)), log: new RecordingLogger() });
  await server.listen();
  servers.set(name, { server, path });
  return path;
}

function client(name: string, versions?: number[]): TunnelClient {
  const c = new TunnelClient(servers.get(name)!.path, versions);
  clients.push(c);
  return c;
}

/** What the stream carries after its head, until its end (a RESET after the end is no matter). */
function body(answer: { socket: import('node:stream').Duplex }): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    answer.socket.on('data', (c: Buffer) => chunks.push(c));
    answer.socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    answer.socket.on('close', () => (answer.socket.readableEnded ? resolve(Buffer.concat(chunks).toString()) : reject(new Error('cut before its end'))));
  });
}

test.before(async () => {
  for (const name of ['ws-node-server', 'ws-gateway', 'ws-fetch', 'ws-hono', 'ws-hono-node', 'ws-socketio', 'ws-upgrade-export']) await serve(name);
});

test.after(async () => {
  for (const c of clients) c.close();
  for (const { server } of servers.values()) await server.stop({ graceful: false });
  rmSync(dir, { recursive: true, force: true });
});

test('ws WebSocketServer({ server }) on an exported http.Server: text, binary, 1 byte to 16 MiB intact, fragments, ping', async () => {
  const c = client('ws-node-server');
  const { ws, headers } = await c.websocket('/chat?room=1');
  assert.is(header(headers, 'upgrade'), 'websocket');
  ws.send('whoami');
  assert.is(await nextMessage(ws), '/chat?room=1 127.0.0.1 pid ' + process.pid, 'req.url and req.socket.remoteAddress as on node:http');
  ws.send('héllo');
  assert.is(await nextMessage(ws), 'héllo');
  const sizes = [1, 125, 126, 65535, 65536, 300_000, 16 * 1024 * 1024];
  assert.ok(sizes.length > 0);
  for (const n of sizes) {
    const payload = Buffer.alloc(n);
    for (let i = 0; i < n; i++) payload[i] = (i * 7 + n) & 0xff;
    ws.send(payload);
    const echoed = await nextMessage(ws) as Buffer;
    assert.ok(Buffer.isBuffer(echoed), `${n} bytes come back binary`);
    assert.is(echoed.length, n);
    assert.ok(echoed.equals(payload), `${n} bytes intact`);
  }
  // A fragmented text message (three frames) is one message to the app.
  ws.send('frag-', { fin: false });
  ws.send('men-', { fin: false });
  ws.send('ted', { fin: true });
  assert.is(await nextMessage(ws), 'frag-men-ted');
  const pong = new Promise<string>((resolve) => ws.once('pong', (d: Buffer) => resolve(d.toString())));
  const heard = nextMessage(ws);
  ws.ping('p1');
  assert.is(await pong, 'p1', 'ws answers the ping itself');
  assert.is(await heard, 'saw ping p1', 'and the app heard it');
  const done = closed(ws);
  ws.close(4001, 'client done');
  assert.equal(await done, { code: 4001, reason: 'client done' });
  await eventually(() => c.conn.streams.size === 0, 'the stream to close both ways');
  await eventually(() => servers.get('ws-node-server')!.server.tunnels === 0, 'the tunnel to be forgotten');
});

test('the same http.Server answers plain requests through its request listener; an upgrade to a non-WebSocket protocol reaches ws, which refuses it', async () => {
  const c = client('ws-node-server');
  const plain = await c.request('/page', [], { upgrade: false });
  assert.is(plain.head.status, 200);
  assert.is(await body(plain), 'plain GET /page upgrade=-\n');
  // ws's abortHandshake: a raw 400 with a body, then destroy: an ordinary response.
  const refused = await c.request('/chat', ['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Version', '13']);
  assert.is(refused.head.status, 400);
  assert.is(header(refused.headers, 'connection'), undefined, 'hop-by-hop headers of a refusal are dropped');
  assert.is(await body(refused), 'Missing or invalid Sec-WebSocket-Key header');
});

test('a version-1 link never carries an upgrade: the request is a plain one (HELLO with [1] works)', async () => {
  const c = client('ws-node-server', [1]);
  const answer = await c.request('/chat', ['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version', '13']);
  assert.is(c.conn.version, 1);
  assert.not.ok(answer.stream.upgrade);
  assert.is(answer.head.status, 200, 'the request listener answered');
  assert.is(await body(answer), 'plain GET /chat upgrade=websocket\n');
});

test('gateway app: environ[\'tsgi.websocket\']() with a subprotocol, for await over messages, the app closes', async () => {
  const c = client('ws-gateway');
  const plain = await c.request('/other', [], { upgrade: false });
  assert.is(await body(plain), 'plain /other websocket=no\n', 'no tsgi.websocket on a plain request');
  const { ws, headers } = await c.websocket('/ws', ['Sec-WebSocket-Protocol', 'chat, echo']);
  assert.is(header(headers, 'sec-websocket-protocol'), 'echo');
  ws.send('shout');
  assert.is(await nextMessage(ws), 'SHOUT');
  const { server } = servers.get('ws-gateway')!;
  assert.is(server.tunnels, 1);
  assert.is(server.inFlight, 0, 'an open WebSocket is not a request in flight, though the app\'s call still runs');
  ws.send(Buffer.from([0, 1, 2, 255]));
  assert.equal([...(await nextMessage(ws) as Buffer)], [0, 1, 2, 255]);
  const done = closed(ws);
  ws.send('bye');
  assert.equal(await done, { code: 4000, reason: 'app says bye' });
  const { closes } = await import('../fixtures/ws-gateway.js');
  await eventually(() => closes.length === 1, 'the app to see its close');
  assert.equal(closes[0], { code: 4000, reason: 'app says bye' });
});

test('gateway app: an upgrade to something else is answered as a plain request (no tsgi.websocket)', async () => {
  const c = client('ws-gateway');
  const answer = await c.request('/ws', ['Upgrade', 'h2c', 'Connection', 'Upgrade']);
  assert.is(answer.head.status, 200);
  assert.is(await body(answer), 'plain /ws websocket=no\n');
  await eventually(() => c.conn.streams.size === 0, 'the stream to end (the front ends it)');
});

test('fetch-style app: upgradeWebSocket(request) as Deno\'s, the socket opens after the response is returned', async () => {
  const c = client('ws-fetch');
  const { ws } = await c.websocket('/live');
  ws.send('ping');
  assert.is(await nextMessage(ws), 'fetch open: ping');
  const done = closed(ws);
  ws.close(1000, 'ok');
  assert.equal(await done, { code: 1000, reason: 'ok' });
  const { closes } = await import('../fixtures/ws-fetch.js');
  await eventually(() => closes.length === 1, 'the app to see the close');
  assert.equal(closes[0], { code: 1000, reason: 'ok' });
  const plain = await c.request('/x', [], { upgrade: false });
  assert.is(await body(plain), 'plain /x\n');
});

test('Hono app with tsgi/hono upgradeWebSocket: onOpen, onMessage (text and binary), onClose; other routes as usual', async () => {
  const c = client('ws-hono');
  const { ws } = await c.websocket('/ws/lobby');
  assert.is(await nextMessage(ws), 'welcome to lobby');
  ws.send('hi');
  assert.is(await nextMessage(ws), 'lobby: hi');
  ws.send(Buffer.from('bin'));
  assert.is((await nextMessage(ws) as Buffer).toString(), 'bin');
  const done = closed(ws);
  ws.close(1000);
  assert.is((await done).code, 1000);
  const { closes } = await import('../fixtures/ws-hono.js');
  await eventually(() => closes.length === 1, 'onClose');
  assert.is(closes[0]!.code, 1000);
  const plain = await c.request('/', [], { upgrade: false });
  assert.is(await body(plain), 'hono plain\n');
});

test('@hono/node-ws on an exported adaptor server: the upgrade runs the Hono route, then ws', async () => {
  const c = client('ws-hono-node');
  const { ws } = await c.websocket('/ws');
  ws.send('x');
  assert.is(await nextMessage(ws), 'node-ws: x');
  const done = closed(ws);
  ws.close(1000);
  assert.is((await done).code, 1000);
  // A route without upgradeWebSocket: @hono/node-ws writes a raw refusal.
  const refused = await c.request('/', ['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version', '13']);
  assert.is(refused.head.status, 200, 'the status of the route\'s response, as @hono/node-ws writes it');
  assert.is(await body(refused), '');
});

test('socket.io on an exported http.Server: the long-polling handshake, then the upgrade to a WebSocket', async () => {
  const c = client('ws-socketio');
  const open = await c.request('/socket.io/?EIO=4&transport=polling', [], { upgrade: false });
  assert.is(open.head.status, 200);
  const text = await body(open);
  assert.match(text, /^0\{/, 'an engine.io open packet');
  const { sid } = JSON.parse(text.slice(1)) as { sid: string };
  // The socket.io CONNECT packet, over polling.
  const connect = await c.request(`/socket.io/?EIO=4&transport=polling&sid=${sid}`, ['Content-Type', 'text/plain;charset=UTF-8'],
    { upgrade: false, method: 'POST', body: '40' });
  assert.is(await body(connect), 'ok');
  const ack = await c.request(`/socket.io/?EIO=4&transport=polling&sid=${sid}`, [], { upgrade: false });
  const acked = await body(ack);
  assert.match(acked, /^40\{"sid":/, acked);
  const { ws } = await c.websocket(`/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.send('2probe');
  assert.is(await nextMessage(ws), '3probe');
  ws.send('5'); // upgrade
  ws.send('42["echo","over the websocket"]');
  assert.is(await nextMessage(ws), '42["echoed","echo: over the websocket"]');
  const got: (string | Buffer)[] = [];
  ws.on('message', (d: Buffer) => got.push(d.toString()));
  ws.send('421["echo","with ack"]');
  await eventually(() => got.length >= 2, 'the echo and the ack');
  assert.ok(got.includes('431["acked"]'), `the ack arrives (${got.join(' | ')})`);
  const done = closed(ws);
  ws.close(1000);
  assert.is((await done).code, 1000);
});

test('a nodeHandler with an upgrade export beside it: upgrades go to upgrade(req, socket, head), the rest to the handler', async () => {
  const c = client('ws-upgrade-export');
  const { ws } = await c.websocket('/up?x=1');
  ws.send('m');
  assert.is(await nextMessage(ws), 'upgrade export /up?x=1: m');
  const plain = await c.request('/plain', [], { upgrade: false });
  assert.is(await body(plain), 'handler /plain\n');
  ws.close(1000);
});

test('fromNodeHandler(handler, { upgrade }): an upgrade listener that rejects cuts the connection (no response) and is reported', async () => {
  const errors: string[] = [];
  const app = fromNodeHandler((_req, res) => res.end('plain'), {
    upgrade: async (req) => { throw new Error(`cannot upgrade ${req.url}`); },
  });
  await serve('rejects', (environ, startResponse) => {
    environ['tsgi.errors'] = { write: (m: string) => errors.push(m), flush() {} };
    return app(environ, startResponse);
  });
  const c = client('rejects');
  const err = await c.request('/nope', ['Upgrade', 'websocket', 'Connection', 'Upgrade']).then(() => null, (e: { resetCode: number }) => e);
  assert.is(err?.resetCode, ResetCode.CANCEL);
  assert.is(errors.length, 1);
  assert.match(errors[0]!, /the 'upgrade' listener for GET \/nope failed: Error: cannot upgrade \/nope/);
});

test('an app that takes the connection and writes no response: the stream is reset (CANCEL), no head', async () => {
  await serve('cut', (environ) => {
    const socket = (environ['tsgi.upgrade'] as () => import('node:stream').Duplex)();
    socket.end();
    return [];
  });
  const c = client('cut');
  const err = await c.request('/', ['Upgrade', 'x', 'Connection', 'Upgrade']).then(() => null, (e: { resetCode: number }) => e);
  assert.is(err?.resetCode, ResetCode.CANCEL);
});

test('a raw non-WebSocket tunnel: 101 then bytes both ways, half-closed each way, with backpressure through the windows', async () => {
  let socketSeen: import('node:stream').Duplex | null = null;
  await serve('raw', (environ) => {
    const socket = (environ['tsgi.upgrade'] as () => import('node:stream').Duplex)();
    socketSeen = socket;
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\nhello ');
    socket.once('data', () => {}); // nothing read until the test says so: see below
    socket.pause();
    return [];
  });
  const c = client('raw');
  const answer = await c.request('/', ['Upgrade', 'raw', 'Connection', 'Upgrade']);
  assert.is(answer.head.status, 101);
  assert.is(header(answer.headers, 'upgrade'), 'raw');
  const first = await new Promise<Buffer>((r) => answer.socket.once('data', r));
  assert.is(first.toString(), 'hello ');
  // The app does not read: the client can send no more than the window plus what the socket buffers.
  const big = Buffer.alloc(4 * 1024 * 1024, 1);
  answer.stream.write(big);
  await eventually(() => answer.stream.sendWindow === 0, 'the client to run out of credit');
  const socket = socketSeen! as import('node:stream').Duplex;
  assert.ok(socket.readableLength <= 256 * 1024 + 16 * 1024, `the app's socket holds no more than a window (${socket.readableLength})`);
  // Once it reads, everything arrives, and the client's end reaches it as 'end'.
  let received = 0;
  const ended = new Promise<void>((r) => socket.on('end', r));
  socket.on('data', (d: Buffer) => { received += d.length; });
  socket.resume();
  answer.stream.end();
  await ended;
  assert.is(received, big.length);
  socket.end('bye');
  assert.is(await body(answer), 'bye');
  await eventually(() => c.conn.streams.size === 0, 'the stream closed both ways');
});

test.run();
