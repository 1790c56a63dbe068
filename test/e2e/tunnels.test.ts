// End to end: upgraded connections (WebSocket and any other Upgrade token) through the real
// `tsgi front`, against backends written here with the project's own Connection in the server
// role over Unix sockets: one of protocol version 2 that answers 101 and then echoes, floods,
// sinks or resets; one of version 1, which must only ever see plain requests. Clients are raw
// sockets and the `ws` client.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { spawnCli, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import {
  MiB, type Client, type TunnelBackends, closeBackends, fakeBackend, header, newBackends, openTunnel, until, upgradeRequest, within,
} from '../helpers/tunnel-backend.js';

const WINDOW = 256 * 1024;

interface TunnelCtx extends Ctx, TunnelBackends {
  dir: string;
  v2Path: string;
  v1Path: string;
  /** A front with both backends (--admin, --access-log), one with only the version-1 backend, one with tight limits. */
  both?: FrontProc;
  v1only?: FrontProc;
  tight?: FrontProc;
  admin: string;
  accessLog: string;
}

async function status(ctx: TunnelCtx): Promise<{ tunnels: { open: number; opened: number; closed: Record<string, number>; bytesIn: number; bytesOut: number }; inFlight: number;
  requestsInFlight: unknown[] }> {
  const res = await fetch(`${ctx.admin}/status`);
  return await res.json() as never;
}

const test = suite<TunnelCtx>('e2e/tunnels', { ...newCtx(), ...newBackends(), dir: '', v2Path: '', v1Path: '', admin: '', accessLog: '' });

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-tunnels-');
  ctx.v2Path = join(ctx.dir, 'v2.sock');
  ctx.v1Path = join(ctx.dir, 'v1.sock');
  await fakeBackend(ctx, ctx.v2Path, 2);
  await fakeBackend(ctx, ctx.v1Path, 1);
  ctx.accessLog = join(ctx.dir, 'access.log');
  ctx.both = await startFront([ctx.v2Path, ctx.v1Path], ['--admin', '127.0.0.1:0', '--access-log', ctx.accessLog,
    '--log-format', 'json']);
  ctx.extra.push(ctx.both);
  ctx.admin = `http://${(await ctx.both.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
  ctx.v1only = await startFront([ctx.v1Path]);
  ctx.extra.push(ctx.v1only);
  ctx.tight = await startFront([ctx.v2Path], ['--max-tunnels', '1', '--tunnel-idle-timeout', '1', '--response-timeout', '1']);
  ctx.extra.push(ctx.tight);
  await poll(async () => {
    const s = await (await fetch(`${ctx.admin}/status`)).json() as { backends: { state: string }[] };
    return s.backends.length === 2 && s.backends.every((b) => b.state === 'up') ? true : undefined;
  }, 'both backends up');
});

test.after(closeBackends);

test('the 101 and its headers reach the client; bytes sent before it follow it; bytes echo both ways', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo', 'echo'), Buffer.from('early bytes;'));
  assert.match(c.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(c.head, /\r\nUpgrade: echo\r\n/i);
  assert.match(c.head, /\r\nConnection: Upgrade\r\n/i);
  assert.match(c.head, /\r\nX-Tunnel: \/echo(\r\n|$)/);
  assert.not.match(c.head, /keep-alive|content-length|transfer-encoding/i, 'no framing of a response body');
  const seen = ctx.seen.v2.at(-1)!;
  assert.ok(seen.upgrade, 'the REQUEST frame is marked');
  assert.is(header(seen.headers, 'upgrade'), 'echo', 'the Upgrade header is forwarded');
  assert.is(header(seen.headers, 'connection'), 'upgrade');
  c.socket.write('and more');
  await until(() => c.body().length === 'early bytes;and more'.length, 'the echo');
  assert.is(c.body().toString(), 'early bytes;and more');
  c.socket.end();
  await within(c.ended, 'the client socket to end'); // the backend ends its half after the client's FIN
  await within(c.closed, 'the client socket to close');
});

test('16 MiB each way arrive intact', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
  const data = randomBytes(16 * MiB);
  c.socket.end(data);
  await within(c.ended, 'the client socket to end');
  const got = c.body();
  assert.is(got.length, data.length);
  assert.ok(got.equals(data), 'the same bytes, in order');
});

test('a half-close each way: the client\'s FIN reaches the app, which still answers, then ends', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/fin'));
  c.socket.write('12345');
  c.socket.end();
  await within(c.ended, 'the client socket to end');
  assert.is(c.body().toString(), 'got 5 bytes, then FIN');
  await within(c.closed, 'the client socket to close');
});

test('a RESET from the backend destroys the client\'s connection', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/reset'));
  c.socket.write('boom');
  await within(c.closed, 'the client socket to close').catch((e) => { console.log(ctx.both!.stderr()); throw e; });
  assert.is(c.body().length, 0);
  assert.not.ok(c.socket.writable, 'the socket is gone, not half-closed');
});

test('a client that stops reading holds the backend to a window: the front buffers no more', async (ctx) => {
  ctx.flood.written = 0;
  ctx.flood.done = false;
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/flood'));
  c.socket.pause();
  // Wait until the backend is held back (waiting for credit) and stays held.
  let last = -1;
  let steady = 0;
  await until(() => {
    if (ctx.flood.waiting && ctx.flood.written === last) steady++;
    else steady = 0;
    last = ctx.flood.written;
    return steady >= 10;
  }, 'the backend to wait for credit');
  const read = c.socket.bytesRead;
  // What the backend got out: the client's kernel buffers, the front's socket buffer and a window.
  assert.ok(ctx.flood.written < 8 * MiB, `the backend wrote ${ctx.flood.written} bytes of 16 MiB while the client read none`);
  assert.ok(read < 8 * MiB, `the client's socket took ${read}`);
  assert.not.ok(ctx.flood.done);
  c.socket.resume();
  await within(c.ended, 'the client socket to end');
  assert.is(c.body().length, 16 * MiB, 'all of it once the client reads');
  assert.ok(ctx.flood.done);
  c.socket.end();
  await within(c.closed, 'the client socket to close');
});

test('a backend that takes nothing holds the client to a window: the front stops reading', async (ctx) => {
  ctx.sink.received = 0;
  ctx.sink.stream = null;
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/sink'));
  const data = Buffer.alloc(16 * MiB, 0x62);
  c.socket.write(data);
  let last = -1;
  let steady = 0;
  await until(() => {
    const n = ctx.sink.received;
    if (n === last && n > 0) steady++;
    else steady = 0;
    last = n;
    return steady >= 10;
  }, 'the upload to stall');
  assert.ok(ctx.sink.received <= WINDOW, `the backend got ${ctx.sink.received} bytes without granting credit (window ${WINDOW})`);
  assert.ok(c.socket.writableLength > 0, 'the client could not write it all');
  const stream = ctx.sink.stream!;
  stream.handler = {
    onData: (chunk, end) => {
      ctx.sink.received += chunk.length;
      stream.consume(chunk.length);
      if (end) stream.end();
    },
  };
  stream.consume(ctx.sink.received);
  await until(() => ctx.sink.received === data.length, 'the rest of the upload');
  c.socket.end();
  await within(c.closed, 'the client socket to close');
});

test('an upgrade answered with 200 is an ordinary response, and the connection serves the next request', async (ctx) => {
  const c = await openTunnel(ctx.both!.port, `${upgradeRequest('/no')}GET /after HTTP/1.1\r\nHost: front.test\r\n\r\n`);
  assert.match(c.head, /^HTTP\/1\.1 200 /);
  await until(() => (c.body().toString().match(/HTTP\/1\.1 200/g) ?? []).length === 1, 'the second response');
  assert.ok([...ctx.seen.v1, ...ctx.seen.v2].some((s) => s.target === '/after' && !s.upgrade), 'a plain request');
  c.socket.destroy();
});

test('upgrades only go to the backend that can tunnel; a version-1 backend gets them as plain requests, without Upgrade', async (ctx) => {
  const before = ctx.seen.v1.length;
  for (let i = 0; i < 6; i++) {
    const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    c.socket.destroy();
  }
  assert.is(ctx.seen.v1.length, before, 'the version-1 backend saw none of them');
  const c = await openTunnel(ctx.v1only!.port, upgradeRequest('/echo'));
  assert.match(c.head, /^HTTP\/1\.1 200 /);
  await until(() => c.body().length > 0 && c.body().toString().endsWith('}'), 'the body');
  const got = JSON.parse(c.body().toString()) as { upgrade: boolean; headers: string[] };
  assert.is(got.upgrade, false);
  assert.is(header(got.headers, 'upgrade'), undefined, 'no Upgrade header');
  assert.is(header(got.headers, 'connection'), undefined);
  c.socket.destroy();
});

test('least-busy balancing counts open tunnels: six at once split three and three over two backends', async (ctx) => {
  const second = join(ctx.dir, 'v2-second.sock');
  await fakeBackend(ctx, second, 2);
  const front = await startFront([ctx.v2Path, second]);
  ctx.extra.push(front);
  await front.waitForStderr(/v2-second\.sock is ready/);
  await front.waitForStderr(/v2\.sock is ready/);
  const from = ctx.seen.v2.length;
  const clients: Client[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await openTunnel(front.port, upgradeRequest('/echo'));
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    clients.push(c);
  }
  const counts = new Map<string, number>();
  for (const s of ctx.seen.v2.slice(from)) counts.set(s.backend, (counts.get(s.backend) ?? 0) + 1);
  assert.equal([...counts.values()], [3, 3], 'each new tunnel went to the backend with fewer open');
  for (const c of clients) c.socket.destroy();
  await front.stop();
});

test('the ws client: messages echo through the front, and a close ends the tunnel', async (ctx) => {
  const ws = new WebSocket(`ws://127.0.0.1:${ctx.both!.port}/ws`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const big = randomBytes(3 * MiB);
  const got: Buffer[] = [];
  ws.on('message', (m: Buffer) => got.push(m));
  ws.send('hello');
  ws.send(big);
  await until(() => got.length === 2, 'two echoes');
  assert.is(got[0]!.toString(), 'hello');
  assert.ok(got[1]!.equals(big));
  const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
  ws.close(1000);
  assert.is(await within(closed, 'the ws close'), 1000);
});

test('a WebSocket whose app resets it gets a close frame (1011), not a cut', async (ctx) => {
  const ws = new WebSocket(`ws://127.0.0.1:${ctx.both!.port}/ws-reset`);
  const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  }), 'the ws handshake');
  ws.send('fail, please');
  assert.is(await within(closed, 'the close'), 1011);
});

test('metrics, /status and the access log count tunnels: open, opened, closed by reason, bytes each way', async (ctx) => {
  await poll(async () => ((await status(ctx)).tunnels.open === 0 ? true : undefined), 'every tunnel closed');
  const before = await status(ctx);
  const c = await openTunnel(ctx.both!.port, upgradeRequest('/echo'));
  c.socket.write('x'.repeat(1000));
  await until(() => c.body().length === 1000, 'the echo');
  const during = await status(ctx);
  assert.is(during.tunnels.open, 1);
  assert.is(during.tunnels.opened, before.tunnels.opened + 1);
  assert.is(during.inFlight, 0, 'a tunnel is not a request in flight');
  assert.equal(during.requestsInFlight, [], 'nor listed among them');
  c.socket.end();
  await within(c.closed, 'the client socket to close');
  const after = await poll(async () => {
    const s = await status(ctx);
    return s.tunnels.open === 0 ? s : undefined;
  }, 'the tunnel closed');
  assert.is(after.tunnels.bytesIn - before.tunnels.bytesIn, 1000);
  assert.is(after.tunnels.bytesOut - before.tunnels.bytesOut, 1000);
  assert.is((after.tunnels.closed.closed ?? 0) - (before.tunnels.closed.closed ?? 0), 1);
  const metrics = await (await fetch(`${ctx.admin}/metrics`)).text();
  assert.match(metrics, /^tsgi_tunnels_open 0$/m);
  assert.match(metrics, /^tsgi_tunnels_opened_total \d+$/m);
  assert.match(metrics, /^tsgi_tunnels_closed_total\{reason="closed"\} \d+$/m);
  assert.match(metrics, /^tsgi_tunnels_closed_total\{reason="backend_reset"\} 2$/m);
  assert.match(metrics, /^tsgi_tunnel_bytes_total\{direction="in"\} \d+$/m);
  const line = await poll(async () => {
    const lines = readFileSync(ctx.accessLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    return lines.reverse().find((l) => l.status === 101 && l.bytes_received === 1000);
  }, 'the access log line of the tunnel');
  assert.is(line.bytes_sent, 1000);
  assert.is(line.target, '/echo');
  assert.is(line.backend, `unix:${ctx.v2Path}`);
  assert.type(line.duration_ms, 'number');
});

test('--processes 2: the primary\'s /status and /metrics sum the tunnels of its processes', async (ctx) => {
  const front = spawnCli(['front', '--listen', '127.0.0.1:0', '--processes', '2', '--graceful-timeout', '5',
    '--backend', `unix:${ctx.v2Path}`, '--admin', '127.0.0.1:0']);
  ctx.extra.push(front);
  const port = Number((await front.waitForStderr(/listening on http 127\.0\.0\.1:(\d+) with 2 processes/))[1]);
  const admin = `http://${(await front.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
  const clients: Client[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await openTunnel(port, upgradeRequest('/echo'));
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    c.socket.write('12345');
    clients.push(c);
  }
  await until(() => clients.every((c) => c.body().length === 5), 'the echoes');
  const open = await poll(async () => {
    const s = await (await fetch(`${admin}/status`)).json() as { tunnels: { open: number; opened: number; bytesIn: number } };
    return s.tunnels.open === 4 ? s : undefined;
  }, 'four tunnels open in the sum');
  assert.is(open.tunnels.opened, 4);
  assert.is(open.tunnels.bytesIn, 20);
  assert.match(await (await fetch(`${admin}/metrics`)).text(), /^tsgi_tunnels_open 4$/m);
  for (const c of clients) c.socket.end();
  for (const c of clients) await within(c.closed, 'the client socket to close');
  await poll(async () => {
    const s = await (await fetch(`${admin}/status`)).json() as { tunnels: { open: number; closed: Record<string, number> } };
    return s.tunnels.open === 0 && s.tunnels.closed.closed === 4 ? true : undefined;
  }, 'four closed in the sum');
  await front.stop();
});

test('--max-tunnels: one over gets 503 with a log line; --response-timeout ends at the 101; --tunnel-idle-timeout closes an idle tunnel', async (ctx) => {
  const front = ctx.tight!;
  const c = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(c.head, /^HTTP\/1\.1 101 /);
  const refused = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(refused.head, /^HTTP\/1\.1 503 /);
  await front.waitForStderr(/503 GET \/echo: over --max-tunnels 1: 1 upgraded connections open/);
  refused.socket.destroy();
  // Bytes every 300 ms for 2.5 s: past --response-timeout 1 s, never idle for 1 s.
  for (let i = 1; i <= 8; i++) {
    c.socket.write('.');
    await until(() => c.body().length === i, `echo ${i}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.not.match(front.stderr(), /--response-timeout/);
  // Then nothing: the idle limit closes it.
  await within(c.closed, 'the client socket to close');
  await front.waitForStderr(/closed the upgraded connection of 127\.0\.0\.1 \(GET \/echo\): no byte either way for --tunnel-idle-timeout \(1 s\)/);
  const next = await openTunnel(front.port, upgradeRequest('/echo'));
  assert.match(next.head, /^HTTP\/1\.1 101 /, 'the slot is free again');
  next.socket.destroy();
});

test('a graceful stop closes a WebSocket between two frames: 1001 to the client, a client close to the app', async (ctx) => {
  const front = await startFront([ctx.v2Path]);
  ctx.extra.push(front);
  const ws = new WebSocket(`ws://127.0.0.1:${front.port}/ws-slow`);
  const messages: Buffer[] = [];
  ws.on('message', (m: Buffer) => messages.push(m));
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code: number, reason: Buffer) => r({ code, reason: reason.toString() })));
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  }), 'the ws handshake');
  await until(() => ctx.slow.stream !== null, 'the app to start its message');
  const exited = front.stop('SIGTERM');
  await front.waitForStderr(/closing 1 upgraded connection/);
  // The app receives its close frame (the client's direction is between frames) …
  await until(() => ctx.slow.ws!.closeCodes.length === 1, 'a close frame at the app');
  assert.equal(ctx.slow.ws!.closeCodes, [1001]);
  // … and the client's waits for the end of the message in flight.
  assert.is(messages.length, 0);
  ctx.slow.stream!.write(Buffer.alloc(128 * 1024, 0x32));
  const { code } = await within(closed, 'the client\'s close');
  assert.is(code, 1001);
  assert.is(messages.length, 1, 'the message in flight arrived whole');
  assert.is(messages[0]!.length, 256 * 1024);
  assert.is(messages[0]![256 * 1024 - 1], 0x32);
  ctx.slow.stream!.end();
  const exit = await within(exited, 'the front to exit');
  assert.is(exit.code, 0);
  assert.not.match(front.stderr(), /graceful-timeout|closing .* connections? by force/i);
});

test.run();
