// nginx → tsgi serve over uwsgi: examples/nginx/uwsgi.conf (uwsgi_pass unix:…; include
// /etc/nginx/uwsgi_params;) in front of `tsgi serve --uwsgi-socket … --workers 2`, curl and undici as clients.
import { rmSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { curl, seedCurlArgs, startNginx, type Nginx } from '../helpers/interop.js';
import { fixture, startUwsgiBackend, tempDir } from '../helpers/procs.js';
import { checkDownload, checkHeadFirst, checkStreaming, checkUpload } from './checks.js';

interface NginxCtx extends Ctx {
  nginx?: Nginx;
  dir?: string;
}

export function nginxToBackend(): void {
  const test = suite<NginxCtx>('interop/nginx-uwsgi_pass-tsgi-serve', newCtx());
  setUp(test, async (ctx) => {
    ctx.dir = tempDir('tsgi-interop-');
    ctx.backend = await startUwsgiBackend(fixture('interop-app.js'), ['--workers', '2']);
    ctx.nginx = await startNginx('uwsgi.conf', { '/run/tsgi/app.uwsgi.sock': ctx.backend.socket });
    ctx.agent = newAgent();
  });
  test.after(async (ctx) => {
    await ctx.nginx?.stop('SIGQUIT');
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  test('curl GET with the seed\'s headers: the environ nginx sends reaches the app', async ({ nginx }) => {
    const r = await curl(`${nginx!.url}/environ/caf%C3%A9?x=1&y=%20`, seedCurlArgs());
    assert.is(r.status, 200, r.stderr);
    const e = JSON.parse(r.body) as Record<string, string>;
    assert.is(e.REQUEST_METHOD, 'GET');
    assert.is(e.PATH_INFO, '/environ/café', 'nginx decodes the path; tsgi reads its bytes as UTF-8');
    assert.is(e.SCRIPT_NAME, '');
    assert.is(e.QUERY_STRING, 'x=1&y=%20');
    assert.is(e.REQUEST_URI, '/environ/caf%C3%A9?x=1&y=%20');
    assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
    assert.is(e.REQUEST_SCHEME, 'http');
    assert.is(e['tsgi.url_scheme'], 'http');
    assert.type(e.DOCUMENT_ROOT, 'string', 'DOCUMENT_ROOT from uwsgi_params');
    assert.is(e.REMOTE_ADDR, '127.0.0.1');
    assert.ok(/^\d+$/.test(e.REMOTE_PORT!), 'REMOTE_PORT');
    assert.is(e.SERVER_PORT, String(nginx!.port));
    assert.is(e.SERVER_NAME, '172.16.7.152', 'from the Host header (server_name is _)');
    assert.ok(e.HTTP_HOST!.startsWith('172.16.7.152'));
    assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
    assert.is(e.HTTP_DNT, '1');
    assert.is(e.HTTP_UPGRADE_INSECURE_REQUESTS, '1');
    assert.is(e.HTTP_ACCEPT_ENCODING, 'gzip,deflate');
    assert.is(e.HTTP_ACCEPT, 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8');
    assert.match(e.HTTP_USER_AGENT!, /^Mozilla\/5\.0\(Macintosh/);
    assert.not.ok('CONTENT_LENGTH' in e, 'nginx sends an empty CONTENT_LENGTH for a GET; the app sees none');
  });

  test('a location mounted under a prefix: SCRIPT_NAME from nginx, cut from PATH_INFO', async ({ nginx, agent }) => {
    const r = await call(`${nginx!.url}/mounted/environ`, { dispatcher: agent });
    assert.is(r.status, 200);
    const e = JSON.parse(r.text) as Record<string, string>;
    assert.is(e.SCRIPT_NAME, '/mounted');
    assert.is(e.PATH_INFO, '/environ');
  });

  test('a 20 MB upload (curl) streams into the app', async ({ nginx, dir }) => {
    await checkUpload(nginx!.url, dir!);
  });

  test('a 20 MB download (undici) streams out of the app', async ({ nginx, agent }) => {
    await checkDownload(nginx!.url, agent!);
  });

  test('a streaming response is not buffered on the way (uwsgi_buffering off)', async ({ nginx, agent, dir }) => {
    await checkStreaming(nginx!.url, agent!, dir!);
  });

  test('the head of a stream sent alone (write(\'\')) reaches the client before its first event', async ({ nginx, agent, dir }) => {
    await checkHeadFirst(nginx!.url, agent!, dir!);
  });

  test('an app error is a 500 from the app, and the backend keeps serving', async ({ nginx, agent, backend }) => {
    const r = await call(`${nginx!.url}/error`, { dispatcher: agent });
    assert.is(r.status, 500);
    assert.is(r.text, '500 Internal Server Error\n');
    await backend!.waitForStderr(/GET \/error: application error before the response head; answered 500/);
    assert.is((await call(`${nginx!.url}/environ`, { dispatcher: agent })).status, 200);
  });

  test('nginx logged no upstream error', async ({ nginx }) => {
    assert.not.match(nginx!.output(), /\[(error|crit|alert|emerg)\]/);
  });

  test.run();
}
