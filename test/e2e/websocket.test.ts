// End to end: WebSockets with real processes on both sides — `tsgi front` and `tsgi serve`
// running unchanged apps (ws on node:http, socket.io, Hono with tsgi/hono, a gateway app with
// tsgi.websocket, a fetch app with upgradeWebSocket) — and real clients (the ws client,
// socket.io-client): messages of every size intact, fragments, ping, close codes both ways, a
// client that stops reading, a thousand sockets on one backend link, and swaps and stops that end
// every WebSocket with a close frame.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io as ioClient } from 'socket.io-client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { ROOT, fixture, startBackend, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import { MiB, within } from '../helpers/tunnel-backend.js';
import { openWs, type WsClient } from '../helpers/ws-client.js';

interface WsCtx extends Ctx {
  admin: string;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function adminOf(front: FrontProc): Promise<string> {
  return `http://${(await front.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
}

interface Status { tunnels: { open: number; opened: number }; backends: { name: string; links: number; state: string }[] }
const status = async (admin: string): Promise<Status> => await (await fetch(`${admin}/status`)).json() as Status;

/** The front's resident set (kB), from /proc. */
function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS in /proc/PID/status');
  return Number(m![1]);
}

async function closeAll(clients: WsClient[]): Promise<void> {
  for (const c of clients) c.ws.terminate();
  await within(Promise.all(clients.map((c) => c.closed)), 'every client socket closed');
}

// 1. An unchanged ws app (WebSocketServer({ server }) on an exported http.Server).
const echo = suite<WsCtx>('e2e/websocket: ws app', { ...newCtx(), admin: '' });
setUp(echo, async (ctx) => {
  await startPair(ctx, fixture('ws-node-server.js'), [], ['--admin', '127.0.0.1:0']);
  ctx.admin = await adminOf(ctx.front!);
});

echo('text and binary messages from 1 byte to 16 MiB echo intact, in order', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.front!.port}/echo`);
  const sizes = [1, 2, 125, 126, 127, 65535, 65536, 65537, 1 * MiB, 4 * MiB + 3, 16 * MiB];
  assert.ok(sizes.length > 0);
  for (const size of sizes) {
    const bin = randomBytes(size);
    const text = 'é'.repeat(Math.floor(size / 2)) + (size % 2 === 1 ? 'x' : ''); // `size` bytes of UTF-8
    assert.is(Buffer.byteLength(text), size);
    c.ws.send(bin);
    c.ws.send(text);
    const a = await c.next(`the binary echo of ${size} bytes`);
    assert.ok(a.binary, 'binary stays binary');
    assert.is(a.data.length, size);
    assert.is(sha(a.data), sha(bin), `${size} binary bytes intact`);
    const b = await c.next(`the text echo of ${size} bytes`);
    assert.not.ok(b.binary, 'text stays text');
    assert.is(sha(b.data), sha(Buffer.from(text)), `${size} bytes of text intact`);
  }
  c.ws.close(1000, 'done');
  assert.equal(await within(c.closed, 'the close'), { code: 1000, reason: 'done' });
});

echo('a message sent in fragments arrives whole; a ping is answered with a pong', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.front!.port}/fragments`);
  c.ws.send('first ', { fin: false });
  c.ws.send('second ', { fin: false });
  c.ws.send('third', { fin: true });
  const parts = [randomBytes(70_000), randomBytes(3), randomBytes(200_000)];
  parts.forEach((p, i) => c.ws.send(p, { binary: true, fin: i === parts.length - 1 }));
  const t = await c.next('the reassembled text');
  assert.is(t.data.toString(), 'first second third');
  const b = await c.next('the reassembled binary');
  assert.ok(b.binary);
  assert.ok(b.data.equals(Buffer.concat(parts)), 'the fragments joined, in order');
  const pong = new Promise<Buffer>((resolve) => c.ws.once('pong', resolve));
  c.ws.ping('are you there');
  assert.is((await within(pong, 'the pong')).toString(), 'are you there');
  assert.is((await c.next('the app\'s note of the ping')).data.toString(), 'saw ping are you there');
  const closes = JSON.parse((await call(`${ctx.front!.url}/closes`, { dispatcher: ctx.agent })).text) as unknown[];
  c.ws.close(1000);
  await within(c.closed, 'the close');
  await poll(async () => {
    const now = JSON.parse((await call(`${ctx.front!.url}/closes`, { dispatcher: ctx.agent })).text) as { url: string }[];
    return now.length > closes.length && now.some((e) => e.url === '/fragments') ? true : undefined;
  }, 'the app heard the close');
});

echo.run();

// 2. A ws app steered by messages (test/fixtures/ws-control.js): close codes, a flood, many sockets.
const control = suite<WsCtx>('e2e/websocket: close codes, a reader that stops, 1,000 sockets', { ...newCtx(), admin: '' });
setUp(control, async (ctx) => {
  await startPair(ctx, fixture('ws-control.js'), [], ['--admin', '127.0.0.1:0', '--max-tunnels', '1100']);
  ctx.admin = await adminOf(ctx.front!);
});

interface Report { maxBuffered: number; buffered: number; flooded: number; open: number; closes: { code: number; reason: string }[] }
const report = async (ctx: WsCtx): Promise<Report> => JSON.parse((await call(`${ctx.front!.url}/report`, { dispatcher: ctx.agent })).text) as Report;

control('close codes and reasons both ways: the client\'s 4001 reaches the app, the app\'s 4002 reaches the client', async (ctx) => {
  const before = (await report(ctx)).closes.length;
  const a = await openWs(`ws://127.0.0.1:${ctx.front!.port}/a`);
  a.ws.close(4001, 'bye');
  assert.equal(await within(a.closed, 'the client close'), { code: 4001, reason: 'bye' }, 'the app echoes the close');
  await poll(async () => ((await report(ctx)).closes.length > before ? true : undefined), 'the app to hear the close');
  assert.equal((await report(ctx)).closes.slice(before), [{ code: 4001, reason: 'bye' }]);
  const b = await openWs(`ws://127.0.0.1:${ctx.front!.port}/b`);
  b.ws.send('close 4002 the app is done');
  assert.equal(await within(b.closed, 'the app\'s close'), { code: 4002, reason: 'the app is done' });
  await poll(async () => ((await report(ctx)).closes.length === before + 2 ? true : undefined), 'the app to see its close done');
  assert.equal((await report(ctx)).closes.at(-1), { code: 4002, reason: 'the app is done' });
});

control('a client that stops reading: the app\'s bufferedAmount grows while the front\'s memory stays bounded', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.front!.port}/flood`);
  const rss0 = rssKb(ctx.front!.pid);
  c.ws.pause(); // the client's socket stops reading
  const n = 80;
  c.ws.send(`flood ${n}`);
  // Wait until nothing moves (the app's queue the same over ten reports in a row): then nearly
  // everything the app sent is still queued in the app, at most some windows' worth on the way.
  let last = -1;
  let steady = 0;
  const r = await poll(async () => {
    const now = await report(ctx);
    steady = now.flooded === n && now.buffered === last ? steady + 1 : 0;
    last = now.buffered;
    return steady >= 10 ? now : undefined;
  }, 'the flood to stall');
  const rss1 = rssKb(ctx.front!.pid);
  assert.ok(r.buffered >= 64 * MiB, `the app still holds ${r.buffered} of the ${n} MiB it sent`);
  const grew = (rss1 - rss0) * 1024;
  assert.ok(grew < 64 * MiB, `the front's RSS grew by ${(grew / MiB).toFixed(1)} MiB while ${n} MiB were held back`);
  // Reading again: all of it arrives, intact and in order.
  c.ws.resume();
  for (let i = 0; i < n; i++) {
    const m = await c.next(`flood message ${i}`);
    assert.is(m.data.length, MiB);
    assert.ok(m.data[0] === (i & 0xff) && m.data[MiB - 1] === (i & 0xff), `message ${i} in order`);
  }
  assert.ok(rssKb(ctx.front!.pid) * 1024 - rss0 * 1024 < 64 * MiB, 'still bounded after the flood');
  c.ws.close(1000);
  await within(c.closed, 'the close');
});

control('1,000 WebSockets open at once over one backend link; each echoes; all close', async (ctx) => {
  const s0 = await status(ctx.admin);
  assert.is(s0.backends.length, 1);
  const clients: WsClient[] = [];
  for (let batch = 0; batch < 10; batch++) {
    clients.push(...await Promise.all(Array.from({ length: 100 }, (_, i) => openWs(`ws://127.0.0.1:${ctx.front!.port}/many/${batch * 100 + i}`))));
  }
  assert.is(clients.length, 1000);
  const s = await status(ctx.admin);
  assert.is(s.tunnels.open, 1000, 'the front counts 1,000 tunnels open');
  assert.is(s.backends[0]!.links, 1, 'over one connection to the backend');
  const metrics = await (await fetch(`${ctx.admin}/metrics`)).text();
  assert.match(metrics, /^tsgi_tunnels_open 1000$/m);
  assert.match(metrics, /^tsgi_backend_connections\{[^}]*\} 1$/m);
  assert.is((await report(ctx)).open, 1000, 'the app has 1,000 sockets open');
  await Promise.all(clients.map(async (c, i) => {
    c.ws.send(`hello ${i}`);
    assert.is((await c.next(`echo ${i}`)).data.toString(), `hello ${i}`);
  }));
  for (const c of clients) c.ws.close(1000);
  await within(Promise.all(clients.map((c) => c.closed)), 'every close');
  await poll(async () => ((await status(ctx.admin)).tunnels.open === 0 ? true : undefined), 'no tunnel open at the front');
  await poll(async () => ((await report(ctx)).open === 0 ? true : undefined), 'no socket open in the app');
});

control.run();

// 3. socket.io: long polling first, then the upgrade to a WebSocket.
const sio = suite<WsCtx>('e2e/websocket: socket.io', { ...newCtx(), admin: '' });
setUp(sio, async (ctx) => {
  await startPair(ctx, fixture('ws-socketio.js'), [], ['--admin', '127.0.0.1:0']);
  ctx.admin = await adminOf(ctx.front!);
});

sio('socket.io-client with its default transports: polling, then an upgrade to websocket; events and acks', async (ctx) => {
  const socket = ioClient(ctx.front!.url, { reconnection: false, timeout: 10_000 });
  // The engine exists from the start (autoConnect): its first transport and its upgrade are seen
  // from there, before the upgrade can happen.
  const transports = [socket.io.engine.transport.name];
  const upgraded = new Promise<string>((resolve) => socket.io.engine.once('upgrade', (t: { name: string }) => resolve(t.name)));
  try {
    await within(new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    }), 'the socket.io connection');
    assert.is(await within(upgraded, 'the upgrade'), 'websocket');
    transports.push(socket.io.engine.transport.name);
    assert.equal(transports, ['polling', 'websocket']);
    const echoed = new Promise<string>((resolve) => socket.once('echoed', resolve));
    const ack = await within(socket.timeout(10_000).emitWithAck('echo', 'over the tunnel'), 'the ack') as string;
    assert.is(ack, 'acked');
    assert.is(await within(echoed, 'the echoed event'), 'echo: over the tunnel');
    assert.is((await status(ctx.admin)).tunnels.open, 1, 'the WebSocket is a tunnel at the front');
  } finally {
    socket.disconnect();
  }
  await poll(async () => ((await status(ctx.admin)).tunnels.open === 0 ? true : undefined), 'the tunnel closed');
});

sio.run();

// 4. The APIs of tsgi itself: tsgi/hono, tsgi.websocket, upgradeWebSocket(request).
interface ApisCtx extends Ctx { fronts: Record<string, FrontProc> }
const apis = suite<ApisCtx>('e2e/websocket: tsgi/hono, tsgi.websocket, upgradeWebSocket', { ...newCtx(), fronts: {} });
setUp(apis, async (ctx) => {
  for (const name of ['ws-hono.js', 'ws-gateway.js', 'ws-fetch.js']) {
    // As built into dist/ (these import tsgi's own modules, which are compiled there).
    const backend = await startBackend(join(ROOT, 'dist/test/fixtures', name));
    ctx.extra.push(backend);
    const front = await startFront([backend.socket]);
    ctx.extra.unshift(front);
    ctx.fronts[name] = front;
  }
});

apis('a Hono app with upgradeWebSocket from tsgi/hono: welcome, then echo of text and binary', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.fronts['ws-hono.js']!.port}/ws/lobby`);
  assert.is((await c.next('the welcome')).data.toString(), 'welcome to lobby');
  c.ws.send('hi');
  assert.is((await c.next('the echo')).data.toString(), 'lobby: hi');
  const big = randomBytes(2 * MiB);
  c.ws.send(big);
  assert.ok((await c.next('the binary echo')).data.equals(big));
  c.ws.close(1000);
  assert.is((await within(c.closed, 'the close')).code, 1000);
});

apis('ws and node:tls are loaded by the first WebSocket, not when tsgi serve starts', async (ctx) => {
  const url = `http://127.0.0.1:${ctx.fronts['ws-gateway.js']!.port}/loaded`;
  assert.equal(await (await fetch(url)).json(), { ws: false, tls: false }, 'a serve process without WebSockets or TLS');
  const c = await openWs(`ws://127.0.0.1:${ctx.fronts['ws-gateway.js']!.port}/ws`, ['echo']);
  c.ws.send('hello');
  assert.is((await c.next('the echo')).data.toString(), 'HELLO');
  c.ws.close(1000);
  await within(c.closed, 'the close');
  assert.is(((await (await fetch(url)).json()) as { ws: boolean }).ws, true, 'ws, once a WebSocket was accepted');
});

apis('a gateway app with tsgi.websocket: the subprotocol, upper-cased echo, the app\'s close 4000', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.fronts['ws-gateway.js']!.port}/ws`, ['echo']);
  assert.is(c.ws.protocol, 'echo');
  c.ws.send('quiet words');
  assert.is((await c.next('the echo')).data.toString(), 'QUIET WORDS');
  const big = randomBytes(MiB + 1);
  c.ws.send(big);
  assert.ok((await c.next('the binary echo')).data.equals(big));
  c.ws.send('bye');
  assert.equal(await within(c.closed, 'the app\'s close'), { code: 4000, reason: 'app says bye' });
});

apis('a fetch app with upgradeWebSocket(request): open, then echo with its prefix', async (ctx) => {
  const c = await openWs(`ws://127.0.0.1:${ctx.fronts['ws-fetch.js']!.port}/socket`);
  c.ws.send('one');
  assert.is((await c.next('the echo')).data.toString(), 'fetch open: one');
  c.ws.send('two');
  assert.is((await c.next('the second echo')).data.toString(), 'fetch open: two');
  c.ws.close(1000);
  assert.is((await within(c.closed, 'the close')).code, 1000);
});

apis.run();

// 5. A swap under WebSocket load, then a graceful stop of the front.
interface SwapCtx extends Ctx { control: string; admin: string }
const swap = suite<SwapCtx>('e2e/websocket: swap and stop', { ...newCtx(), control: '', admin: '' });
setUp(swap, async (ctx) => {
  const dir = tempDir('tsgi-ws-swap-');
  ctx.control = join(dir, 'front.ctl');
  ctx.front = await startFront([], ['--control', ctx.control, '--admin', '127.0.0.1:0']);
  ctx.admin = await adminOf(ctx.front);
  ctx.backend = await startBackend(fixture('ws-control.js'), ['--register', ctx.control]);
  await ctx.backend.waitForStderr(/registered .* with the front/);
  await poll(async () => ((await status(ctx.admin)).backends.some((b) => b.state === 'up') ? true : undefined), 'A up');
});

const whoami = async (c: WsClient): Promise<number> => {
  c.ws.send('whoami');
  return Number(/^pid (\d+)$/.exec((await c.next('whoami')).data.toString())![1]);
};

swap('backend B registers, A stops (SIGTERM): every WebSocket on A gets 1001 or 1012, never 1006; new ones go to B', async (ctx) => {
  const a = ctx.backend!;
  const url = `ws://127.0.0.1:${ctx.front!.port}/swap`;
  const onA = await Promise.all(Array.from({ length: 20 }, () => openWs(url)));
  for (const c of onA) assert.is(await whoami(c), a.pid);
  // Keep messages flowing on A's sockets while the swap happens.
  let chatting = true;
  const chatter = Promise.all(onA.map(async (c, i) => {
    for (let k = 0; chatting && c.ws.readyState === c.ws.OPEN; k++) {
      c.ws.send(`m ${i} ${k}`);
      let m: { data: Buffer };
      try {
        m = await c.next('a chat echo');
      } catch {
        return; // closed while waiting: the close is checked below
      }
      assert.is(m.data.toString(), `m ${i} ${k}`, 'every echo before the close, in order');
    }
  }));
  const b = await startBackend(fixture('ws-control.js'), ['--register', ctx.control]);
  ctx.extra.push(b);
  await b.waitForStderr(/registered .* with the front/);
  await poll(async () => ((await status(ctx.admin)).backends.filter((x) => x.state === 'up').length === 2 ? true : undefined), 'B up');
  const exit = a.stop('SIGTERM');
  const codes = await within(Promise.all(onA.map((c) => c.closed)), 'every WebSocket on A closed', 30_000);
  chatting = false;
  await chatter;
  assert.is((await exit).code, 0, 'A exits cleanly');
  assert.ok(codes.length === 20);
  for (const c of codes) assert.ok(c.code === 1001 || c.code === 1012, `closed with ${c.code} (${c.reason})`);
  const onB = await Promise.all(Array.from({ length: 5 }, () => openWs(url)));
  for (const c of onB) assert.is(await whoami(c), b.pid, 'a new WebSocket goes to B');
  await closeAll(onB);
});

swap('a graceful stop of the front: every open WebSocket gets 1001 and the front exits 0', async (ctx) => {
  const clients = await Promise.all(Array.from({ length: 10 }, () => openWs(`ws://127.0.0.1:${ctx.front!.port}/stop`)));
  for (const c of clients) {
    c.ws.send('still here');
    assert.is((await c.next('an echo')).data.toString(), 'still here');
  }
  const exit = ctx.front!.stop('SIGTERM');
  const codes = await within(Promise.all(clients.map((c) => c.closed)), 'every WebSocket closed');
  for (const c of codes) assert.is(c.code, 1001, `closed with ${c.code} (${c.reason})`);
  assert.is((await exit).code, 0);
});

swap.run();
