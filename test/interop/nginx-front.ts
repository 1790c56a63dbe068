// nginx → tsgi front over a Unix socket: examples/nginx/front.conf (proxy_pass to an upstream
// with keepalive) in front of `tsgi front --listen unix:… --trust-proxy unix`, which carries
// the requests to `tsgi serve` over tsgi frames. curl and undici as clients.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { curl, seedCurlArgs, startNginx, type Nginx } from '../helpers/interop.js';
import { fixture, spawnCli, startBackend, tempDir } from '../helpers/procs.js';
import { checkDownload, checkHeadFirst, checkStreaming, checkUpload } from './checks.js';

interface NginxCtx extends Ctx {
  nginx?: Nginx;
  dir?: string;
}

export function nginxToFront(): void {
  const test = suite<NginxCtx>('interop/nginx-proxy_pass-tsgi-front', newCtx());
  setUp(test, async (ctx) => {
    ctx.dir = tempDir('tsgi-interop-');
    ctx.backend = await startBackend(fixture('interop-app.js'));
    const socket = join(ctx.dir, 'front.sock');
    const front = spawnCli(['front', '--listen', `unix:${socket}`, '--socket-mode', '660', '--trust-proxy', 'unix',
      '--backend', `unix:${ctx.backend.socket}`, '--graceful-timeout', '5']);
    ctx.extra.push(front);
    await front.waitForStderr(/listening on http unix:/);
    ctx.nginx = await startNginx('front.conf', { '/run/tsgi/front.sock': socket });
    ctx.agent = newAgent();
  });
  test.after(async (ctx) => {
    await ctx.nginx?.stop('SIGQUIT');
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  test('curl GET with the seed\'s headers; the real client address despite a spoofed X-Forwarded-For', async ({ nginx }) => {
    const r = await curl(`${nginx!.url}/environ?x=1`, [...seedCurlArgs(), '-H', 'X-Forwarded-For: 6.6.6.6', '-H', 'X-Real-IP: 6.6.6.7']);
    assert.is(r.status, 200, r.stderr);
    const e = JSON.parse(r.body) as Record<string, string>;
    assert.is(e.REQUEST_METHOD, 'GET');
    assert.is(e.PATH_INFO, '/environ');
    assert.is(e.QUERY_STRING, 'x=1');
    assert.is(e.HTTP_HOST, '172.16.7.152:8000', 'proxy_set_header Host $http_host');
    assert.is(e.SERVER_NAME, '172.16.7.152');
    assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
    assert.is(e.HTTP_DNT, '1');
    assert.is(e.HTTP_UPGRADE_INSECURE_REQUESTS, '1');
    assert.match(e.HTTP_USER_AGENT!, /^Mozilla\/5\.0\(Macintosh/);
    // nginx appends the address it saw: the rightmost entry is the client; 6.6.6.6 is not trusted.
    assert.is(e.HTTP_X_FORWARDED_FOR, '6.6.6.6, 127.0.0.1');
    assert.is(e.REMOTE_ADDR, '127.0.0.1');
    assert.is(e['tsgi.url_scheme'], 'http', 'X-Forwarded-Proto from nginx');
    assert.is(e.HTTP_CONNECTION, undefined, 'hop-by-hop headers never arrive');
  });

  test('a 20 MB upload (curl) through nginx and the front', async ({ nginx, dir }) => {
    await checkUpload(nginx!.url, dir!);
  });

  test('a 20 MB download (undici) through the front and nginx', async ({ nginx, agent }) => {
    await checkDownload(nginx!.url, agent!);
  });

  test('a streaming response is not buffered on the way', async ({ nginx, agent, dir }) => {
    await checkStreaming(nginx!.url, agent!, dir!);
  });

  test('the head of a stream sent alone (write(\'\')) reaches the client before its first event', async ({ nginx, agent, dir }) => {
    await checkHeadFirst(nginx!.url, agent!, dir!);
  });

  test('an app error is a 500, and the next request is served', async ({ nginx, agent }) => {
    const r = await call(`${nginx!.url}/error`, { dispatcher: agent });
    assert.is(r.status, 500);
    assert.is((await call(`${nginx!.url}/environ`, { dispatcher: agent })).status, 200);
  });

  test('nginx logged no upstream error', async ({ nginx }) => {
    assert.not.match(nginx!.output(), /\[(error|crit|alert|emerg)\]/);
  });

  test.run();
}
