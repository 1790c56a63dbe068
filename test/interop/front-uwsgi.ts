// tsgi front → a real uWSGI running a Python WSGI app (test/fixtures/wsgi_app.py): a backend
// address uwsgi:unix:…, one uwsgi connection per request. curl and undici as clients.
import { rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { curl, seedCurlArgs, startUwsgi, type Uwsgi } from '../helpers/interop.js';
import { startFront, tempDir } from '../helpers/procs.js';
import { checkDownload, checkStreaming, checkUpload } from './checks.js';

interface UwsgiCtx extends Ctx {
  uwsgi?: Uwsgi;
  dir?: string;
}

export function frontToUwsgi(): void {
  const test = suite<UwsgiCtx>('interop/tsgi-front-uwsgi-python', newCtx());
  setUp(test, async (ctx) => {
    ctx.dir = tempDir('tsgi-interop-');
    ctx.uwsgi = await startUwsgi();
    ctx.front = await startFront([`uwsgi:unix:${ctx.uwsgi.socket}`]);
    ctx.agent = newAgent();
  });
  test.after(async (ctx) => {
    await ctx.uwsgi?.stop('SIGTERM');
    if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
  });

  test('a Python app\'s environ as seen through tsgi front (the seed\'s headers, curl)', async ({ front }) => {
    const r = await curl(`${front!.url}/environ/caf%C3%A9?x=1`, seedCurlArgs());
    assert.is(r.status, 200, r.stderr);
    const e = JSON.parse(r.body) as Record<string, string>;
    assert.is(e.REQUEST_METHOD, 'GET');
    assert.is(e.PATH_INFO, '/environ/caf\xc3\xa9', 'PEP 3333: the decoded path bytes, as a Latin-1 str');
    assert.is(e.QUERY_STRING, 'x=1');
    assert.is(e.REQUEST_URI, '/environ/caf%C3%A9?x=1');
    assert.is(e.SCRIPT_NAME ?? '', '', 'none sent, as uwsgi_params sends none');
    assert.is(e.SERVER_PROTOCOL, 'HTTP/1.1');
    assert.is(e.REQUEST_SCHEME, 'http');
    assert.is(e['wsgi.url_scheme'], 'http');
    assert.is(e.REMOTE_ADDR, '127.0.0.1');
    assert.ok(/^\d+$/.test(e.REMOTE_PORT!));
    assert.is(e.SERVER_NAME, '172.16.7.152');
    assert.is(e.SERVER_PORT, String(front!.port));
    assert.is(e.HTTP_HOST, '172.16.7.152:8000');
    assert.is(e.HTTP_ACCEPT_LANGUAGE, 'zh-cn');
    assert.is(e.HTTP_DNT, '1');
    assert.is(e.HTTP_UPGRADE_INSECURE_REQUESTS, '1');
    assert.is(e.HTTP_ACCEPT_ENCODING, 'gzip,deflate');
    assert.match(e.HTTP_USER_AGENT!, /^Mozilla\/5\.0\(Macintosh/);
    assert.not.ok('CONTENT_LENGTH' in e, 'no body, no CONTENT_LENGTH');
  });

  test('undici: a POST\'s CONTENT_TYPE and CONTENT_LENGTH reach the Python app', async ({ front, agent }) => {
    const r = await call(`${front!.url}/environ`, { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, dispatcher: agent });
    const e = JSON.parse(r.text) as Record<string, string>;
    assert.is(e.REQUEST_METHOD, 'POST');
    assert.is(e.CONTENT_TYPE, 'application/x-www-form-urlencoded');
    assert.is(e.CONTENT_LENGTH, '3');
  });

  test('a 20 MB upload (curl) into the Python app', async ({ front, dir }) => {
    await checkUpload(front!.url, dir!);
  });

  test('a chunked upload is buffered and sent with its CONTENT_LENGTH', async ({ front, agent }) => {
    const parts = [Buffer.alloc(100_000, 1), Buffer.alloc(50_000, 2)];
    const r = await call(`${front!.url}/upload`, { method: 'POST', body: Readable.from(parts), dispatcher: agent });
    assert.is(r.status, 200);
    assert.is((JSON.parse(r.text) as { size: number }).size, 150_000);
  });

  test('a 20 MB download (undici) from the Python app', async ({ front, agent }) => {
    await checkDownload(front!.url, agent!);
  });

  test('a Python generator streams through the front', async ({ front, agent, dir }) => {
    await checkStreaming(front!.url, agent!, dir!);
  });

  test('a Python app error: uWSGI closes without a response, the client gets 502', async ({ front, agent }) => {
    const r = await call(`${front!.url}/error`, { dispatcher: agent });
    assert.is(r.status, 502);
    await front!.waitForStderr(/502 GET \/error: .*before a complete response head/);
    assert.is((await call(`${front!.url}/environ`, { dispatcher: agent })).status, 200);
  });

  test.run();
}
