// Mutual TLS on the link between a real front and a real backend over TCP: bytes arrive whole
// (one process and under a supervisor), a certificate from the wrong CA or for the wrong name is
// refused with a warn line on both sides and the backend marked down (tried once, not in a loop),
// and SIGHUP reloads the certificates on both sides. Certificates are made by openssl in a temp dir.
import { copyFileSync } from 'node:fs';
import { connect as connectTls } from 'node:tls';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { makePki, type CertFiles, type Pki } from '../helpers/certs.js';
import { fixture, runCli, spawnCli, type FrontProc, type Proc } from '../helpers/procs.js';
import { pattern } from '../fixtures/download.js';

interface TlsCtx extends Ctx {
  pki: Pki;
  other: Pki;
  server: CertFiles;
  client: CertFiles;
  stranger: CertFiles;
}

const test = suite<TlsCtx>('tls links', newCtx() as TlsCtx);

setUp(test, async (ctx) => {
  ctx.pki = makePki();
  ctx.other = makePki('another CA');
  ctx.server = ctx.pki.issue('backend', ['IP:127.0.0.1', 'DNS:app.test'], 'serverAuth');
  ctx.client = ctx.pki.issue('front', [], 'clientAuth');
  ctx.stranger = ctx.other.issue('front', [], 'clientAuth');
  ctx.agent = newAgent();
});

test.after((ctx) => {
  ctx.pki?.remove();
  ctx.other?.remove();
});

/** `tsgi serve APP --listen 127.0.0.1:0` with TLS; resolves with its port once it serves. */
async function tlsBackend(ctx: TlsCtx, app: string, extra: string[] = [], server = ctx.server): Promise<Proc & { port: number }> {
  const proc = spawnCli(['serve', app, '--listen', '127.0.0.1:0', '--graceful-timeout', '5',
    '--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', ctx.pki.ca, ...extra]);
  ctx.extra.push(proc);
  const m = await proc.waitForStderr(/serving on 127\.0\.0\.1:(\d+)/);
  return Object.assign(proc, { port: Number(m[1]) });
}

/** `tsgi front` to one tls: backend, with the given client certificate and CA. */
async function tlsFront(ctx: TlsCtx, port: number, client: CertFiles, ca: string, extra: string[] = []): Promise<FrontProc> {
  const proc = spawnCli(['front', '--listen', '127.0.0.1:0', '--backend', `tls:127.0.0.1:${port}`, '--graceful-timeout', '5',
    '--backend-tls-ca', ca, '--backend-tls-cert', client.cert, '--backend-tls-key', client.key, ...extra]);
  ctx.extra.push(proc);
  const m = await proc.waitForStderr(/listening on http 127\.0\.0\.1:(\d+)/);
  return Object.assign(proc, { port: Number(m[1]), url: `http://127.0.0.1:${m[1]}` });
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const count = (text: string, re: RegExp) => text.match(new RegExp(re.source, 'g'))?.length ?? 0;

test('a tls: link carries a hello page and a 1 MiB download byte for byte', async (ctx) => {
  const backend = await tlsBackend(ctx, fixture('download.js'));
  const front = await tlsFront(ctx, backend.port, ctx.client, ctx.pki.ca);
  const res = await fetch(`${front.url}/?bytes=${1024 * 1024}`);
  assert.is(res.status, 200);
  const body = new Uint8Array(await res.arrayBuffer());
  const expected = Buffer.concat([...pattern(1024 * 1024)]);
  assert.is(body.length, expected.length);
  assert.is(sha(body), sha(expected));
  await front.waitForStderr(/backend tls:127\.0\.0\.1:\d+ is ready/);
  assert.not.match(backend.stderr(), /refused|failed/);
});

test('under a supervisor (--workers 2) each worker speaks TLS on the connections it is handed', async (ctx) => {
  const backend = await tlsBackend(ctx, fixture('hello.js'), ['--workers', '2']);
  const front = await tlsFront(ctx, backend.port, ctx.client, ctx.pki.ca);
  for (let i = 0; i < 20; i++) {
    const { status, text } = await call(`${front.url}/`, { dispatcher: ctx.agent });
    assert.is(status, 200);
    assert.is(text, '<h1>Hello, web</h1>');
  }
});

test('a front whose certificate another CA signed is refused; both sides say why; the backend is marked down and not retried in a loop', async (ctx) => {
  const backend = await tlsBackend(ctx, fixture('hello.js'));
  const front = await tlsFront(ctx, backend.port, ctx.stranger, ctx.pki.ca, ['--queue-timeout', '0.3']);
  await front.waitForStderr(/warn: backend tls:127\.0\.0\.1:\d+: TLS: the backend closed the connection right after the handshake: it refused the front's certificate .*marked down/);
  await backend.waitForStderr(/warn: TLS: refused front 127\.0\.0\.1:\d+: certificate not accepted: \w+ \(the front's --backend-tls-cert must be signed by --tls-ca /);
  for (let i = 0; i < 3; i++) {
    const { status } = await call(`${front.url}/`, { dispatcher: ctx.agent });
    assert.is(status, 503);
  }
  await front.waitForStderr(/503 GET \/: no connection to tls:127\.0\.0\.1:\d+ is ready \(down: TLS: /);
  // Three requests later, still the one attempt: the address waits 30 s or a SIGHUP.
  assert.is(count(backend.stderr(), /TLS: refused front/), 1, backend.stderr() + front.stderr());
  assert.is(count(front.stderr(), /marked down/), 1, front.stderr());
  const list = front.stderr();
  assert.not.match(list, /unreachable/);
});

test('a backend whose certificate does not carry --backend-tls-servername is refused by the front, and the backend says so', async (ctx) => {
  const backend = await tlsBackend(ctx, fixture('hello.js'));
  const front = await tlsFront(ctx, backend.port, ctx.client, ctx.pki.ca, ['--backend-tls-servername', 'other.test', '--queue-timeout', '0.3']);
  await front.waitForStderr(/warn: backend tls:127\.0\.0\.1:\d+: TLS handshake failed: .*other\.test.*ERR_TLS_CERT_ALTNAME_INVALID.*marked down/);
  await backend.waitForStderr(/warn: TLS handshake with front 127\.0\.0\.1:\d+ failed: /);
  assert.is((await call(`${front.url}/`, { dispatcher: ctx.agent })).status, 503);
  // The name the certificate does carry is accepted.
  const good = await tlsFront(ctx, backend.port, ctx.client, ctx.pki.ca, ['--backend-tls-servername', 'app.test']);
  const { status, text } = await call(`${good.url}/`, { dispatcher: ctx.agent });
  assert.is(status, 200);
  assert.is(text, '<h1>Hello, web</h1>');
});

test('a backend signed by a CA the front does not trust is refused at the front', async (ctx) => {
  const foreign = ctx.other.issue('backend', ['IP:127.0.0.1'], 'serverAuth');
  const backend = await tlsBackend(ctx, fixture('hello.js'), [], foreign);
  const front = await tlsFront(ctx, backend.port, ctx.client, ctx.pki.ca, ['--queue-timeout', '0.3']);
  await front.waitForStderr(/warn: backend tls:127\.0\.0\.1:\d+: TLS handshake failed: .*marked down/);
  assert.is((await call(`${front.url}/`, { dispatcher: ctx.agent })).status, 503);
});

test('SIGHUP: the front reads its certificate again and retries the backend at once; the backend serves a new certificate', async (ctx) => {
  const dir = ctx.pki.dir;
  // The front starts with the stranger's files at paths it will be told to read again.
  const client = { cert: join(dir, 'reload-client.pem'), key: join(dir, 'reload-client.key') };
  copyFileSync(ctx.stranger.cert, client.cert);
  copyFileSync(ctx.stranger.key, client.key);
  const server = { cert: join(dir, 'reload-server.pem'), key: join(dir, 'reload-server.key') };
  copyFileSync(ctx.server.cert, server.cert);
  copyFileSync(ctx.server.key, server.key);
  const backend = await tlsBackend(ctx, fixture('hello.js'), [], server);
  const front = await tlsFront(ctx, backend.port, client, ctx.pki.ca);
  await front.waitForStderr(/marked down/);
  copyFileSync(ctx.client.cert, client.cert);
  copyFileSync(ctx.client.key, client.key);
  process.kill(front.pid, 'SIGHUP');
  await front.waitForStderr(/TLS: certificates reloaded from /);
  await front.waitForStderr(/backend tls:127\.0\.0\.1:\d+ is ready/);
  const { status, text } = await call(`${front.url}/`, { dispatcher: ctx.agent });
  assert.is(status, 200);
  assert.is(text, '<h1>Hello, web</h1>');

  // The backend: a new certificate under the same paths, shown to new connections after SIGHUP.
  const renewed = ctx.pki.issue('backend-renewed', ['IP:127.0.0.1'], 'serverAuth');
  copyFileSync(renewed.cert, server.cert);
  copyFileSync(renewed.key, server.key);
  process.kill(backend.pid, 'SIGHUP');
  await backend.waitForStderr(/TLS: certificates reloaded from /);
  const subject = await new Promise<string>((resolve, reject) => {
    const s = connectTls({
      host: '127.0.0.1', port: backend.port, ca: readFileSync(ctx.pki.ca),
      cert: readFileSync(ctx.client.cert), key: readFileSync(ctx.client.key),
    }, () => {
      resolve(String(s.getPeerCertificate().subject.CN));
      s.destroy();
    });
    s.once('error', reject);
  });
  assert.is(subject, 'backend-renewed');
});

test('start-up refuses half a TLS configuration, naming the flags', async () => {
  const front = await runCli(['front', '--listen', '127.0.0.1:0', '--backend', 'tls:127.0.0.1:9']);
  assert.is(front.code, 2, front.stderr);
  assert.match(front.stderr, /tls:127\.0\.0\.1:9: a tls: backend needs --backend-tls-ca, --backend-tls-cert and --backend-tls-key/);
  const serve = await runCli(['serve', fixture('hello.js'), '--listen', '127.0.0.1:0', '--tls-cert', '/nonexistent.pem']);
  assert.is(serve.code, 2, serve.stderr);
  assert.match(serve.stderr, /--tls-cert given without --tls-key and --tls-ca/);
  const unix = await runCli(['serve', fixture('hello.js'), '--socket', '/tmp/x.sock', '--tls-cert', 'a', '--tls-key', 'b', '--tls-ca', 'c']);
  assert.is(unix.code, 2, unix.stderr);
  assert.match(unix.stderr, /secure a TCP link: give --listen HOST:PORT/);
  const missing = await runCli(['serve', fixture('hello.js'), '--listen', '127.0.0.1:0', '--tls-cert', '/nonexistent.pem', '--tls-key', 'b', '--tls-ca', 'c']);
  assert.is(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /--tls-cert: cannot read \/nonexistent\.pem: ENOENT/);
});

test.run();
