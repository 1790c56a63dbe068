// nginx → tsgi front → tsgi serve, all real: examples/nginx/front.conf as written, the front on a
// Unix socket, and an unchanged ws app (test/fixtures/ws-node-server.js) in `tsgi serve`. The
// ws client and socket.io-client as clients.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { io as ioClient } from 'socket.io-client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { startNginx, type Nginx } from '../helpers/interop.js';
import { fixture, spawnCli, startBackend, tempDir } from '../helpers/procs.js';
import { MiB, within } from '../helpers/tunnel-backend.js';
import { openWs } from '../helpers/ws-client.js';

interface NginxWsCtx extends Ctx {
  nginx?: Nginx;
  sio?: Nginx;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export function nginxWebSocket(): void {
  const test = suite<NginxWsCtx>('interop/nginx-tsgi-front-tsgi-serve-websocket', newCtx());
  setUp(test, async (ctx) => {
    const dir = tempDir('tsgi-interop-ws-');
    for (const [app, key] of [['ws-node-server.js', 'nginx'], ['ws-socketio.js', 'sio']] as const) {
      const backend = await startBackend(fixture(app));
      ctx.extra.push(backend);
      const socket = join(dir, `${key}.sock`);
      const front = spawnCli(['front', '--listen', `unix:${socket}`, '--socket-mode', '660', '--trust-proxy', 'unix',
        '--backend', `unix:${backend.socket}`, '--graceful-timeout', '5']);
      ctx.extra.unshift(front);
      await front.waitForStderr(/backend unix:.* is ready/);
      ctx[key] = await startNginx('front.conf', { '/run/tsgi/front.sock': socket });
    }
  });
  test.after(async (ctx) => {
    await ctx.nginx?.stop('SIGQUIT');
    await ctx.sio?.stop('SIGQUIT');
  });

  test('a ws app in tsgi serve, through nginx and the front: text and binary from 1 byte to 16 MiB intact, fragments, ping, close codes both ways', async ({ nginx }) => {
    const c = await openWs(`ws://127.0.0.1:${nginx!.port}/echo`);
    const sizes = [1, 126, 65536, MiB + 1, 16 * MiB];
    assert.ok(sizes.length > 0);
    for (const size of sizes) {
      const bin = randomBytes(size);
      c.ws.send(bin);
      const got = await c.next(`the echo of ${size} bytes`);
      assert.ok(got.binary);
      assert.is(sha(got.data), sha(bin), `${size} bytes intact`);
    }
    c.ws.send('x'.repeat(100_000));
    assert.is((await c.next('the text echo')).data.toString(), 'x'.repeat(100_000));
    c.ws.send('frag', { fin: false });
    c.ws.send('mented', { fin: true });
    assert.is((await c.next('the reassembled message')).data.toString(), 'fragmented');
    const pong = new Promise<Buffer>((resolve) => c.ws.once('pong', resolve));
    c.ws.ping('p');
    assert.is((await within(pong, 'the pong')).toString(), 'p');
    assert.is((await c.next('the app\'s note of the ping')).data.toString(), 'saw ping p');
    c.ws.close(4001, 'bye');
    assert.equal(await within(c.closed, 'the close'), { code: 4001, reason: 'bye' });
  });

  test('socket.io through nginx and the front: polling, the upgrade to websocket, an event and its ack', async ({ sio }) => {
    const socket = ioClient(sio!.url, { reconnection: false, timeout: 10_000 });
    assert.is(socket.io.engine.transport.name, 'polling');
    const upgraded = new Promise<string>((resolve) => socket.io.engine.once('upgrade', (t: { name: string }) => resolve(t.name)));
    try {
      await within(new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      }), 'the socket.io connection');
      assert.is(await within(upgraded, 'the upgrade'), 'websocket');
      const echoed = new Promise<string>((resolve) => socket.once('echoed', resolve));
      assert.is(await within(socket.timeout(10_000).emitWithAck('echo', 'via nginx'), 'the ack'), 'acked');
      assert.is(await within(echoed, 'the event'), 'echo: via nginx');
    } finally {
      socket.disconnect();
    }
  });

  test('nginx logged no upstream error', async ({ nginx, sio }) => {
    assert.not.match(nginx!.output(), /\[(error|crit|alert|emerg)\]/);
    assert.not.match(sio!.output(), /\[(error|crit|alert|emerg)\]/);
  });

  test.run();
}
