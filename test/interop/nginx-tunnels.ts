// nginx → tsgi front → a backend, for upgraded connections: examples/nginx/front.conf passes a
// client's Upgrade through proxy_pass (HTTP/1.1, Upgrade and `Connection: upgrade`), the front
// tunnels it to a version-2 backend written with the project's own Connection
// (helpers/tunnel-backend.ts). The ws client and raw sockets as clients.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { startNginx, type Nginx } from '../helpers/interop.js';
import { spawnCli, tempDir } from '../helpers/procs.js';
import {
  MiB, type TunnelBackends, closeBackends, fakeBackend, header, newBackends, openTunnel, until, upgradeRequest, within,
} from '../helpers/tunnel-backend.js';

interface NginxTunnelCtx extends Ctx, TunnelBackends {
  nginx?: Nginx;
}

export function nginxTunnels(): void {
  const test = suite<NginxTunnelCtx>('interop/nginx-proxy_pass-tsgi-front-upgrade', { ...newCtx(), ...newBackends() });
  setUp(test, async (ctx) => {
    const dir = tempDir('tsgi-interop-');
    const backend = join(dir, 'v2.sock');
    await fakeBackend(ctx, backend, 2);
    const socket = join(dir, 'front.sock');
    const front = spawnCli(['front', '--listen', `unix:${socket}`, '--socket-mode', '660', '--trust-proxy', 'unix',
      '--backend', `unix:${backend}`, '--graceful-timeout', '5']);
    ctx.extra.push(front);
    await front.waitForStderr(/backend unix:.* is ready/);
    ctx.nginx = await startNginx('front.conf', { '/run/tsgi/front.sock': socket });
    ctx.agent = newAgent();
  });
  test.after(async (ctx) => {
    await ctx.nginx?.stop('SIGQUIT');
    await closeBackends(ctx);
  });

  test('the ws client through nginx and the front: text and a 3 MiB binary message echo, the close is clean', async ({ nginx }) => {
    const ws = new WebSocket(`ws://127.0.0.1:${nginx!.port}/ws`);
    await within(new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }), 'the handshake through nginx');
    const got: Buffer[] = [];
    ws.on('message', (m: Buffer) => got.push(m));
    const big = randomBytes(3 * MiB);
    ws.send('hello');
    ws.send(big);
    await until(() => got.length === 2, 'two echoes');
    assert.is(got[0]!.toString(), 'hello');
    assert.ok(got[1]!.equals(big));
    const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
    ws.close(1000);
    assert.is(await within(closed, 'the close'), 1000);
  });

  test('any Upgrade token: the 101 and its headers pass nginx, and 16 MiB echo intact', async (ctx) => {
    const c = await openTunnel(ctx.nginx!.port, upgradeRequest('/echo', 'echo'));
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    assert.match(c.head, /\r\nupgrade: echo\r\n/i);
    const seen = ctx.seen.v2.at(-1)!;
    assert.ok(seen.upgrade);
    assert.is(header(seen.headers, 'upgrade'), 'echo');
    // nginx ends both sides at the client's FIN (no half-close through it): the echo comes first.
    const data = randomBytes(16 * MiB);
    c.socket.write(data);
    await until(() => c.body().length >= data.length, 'the echo of 16 MiB', 30_000);
    assert.ok(c.body().equals(data));
    c.socket.end();
    await within(c.closed, 'the close');
  });

  test('a plain request through the same configuration arrives without Upgrade or Connection', async (ctx) => {
    const r = await call(`${ctx.nginx!.url}/plain`, { dispatcher: ctx.agent });
    assert.is(r.status, 200);
    const seen = ctx.seen.v2.find((s) => s.target === '/plain')!;
    assert.not.ok(seen.upgrade);
    assert.is(header(seen.headers, 'upgrade'), undefined);
    assert.is(header(seen.headers, 'connection'), undefined);
  });

  test('nginx logged no upstream error', async ({ nginx }) => {
    assert.not.match(nginx!.output(), /\[(error|crit|alert|emerg)\]/);
  });

  test.run();
}
