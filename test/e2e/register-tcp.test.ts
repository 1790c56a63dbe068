// Registration across hosts: `tsgi serve --register tls:HOST:PORT` to a front's --control-listen,
// over mutual TLS with the files of the links. A backend is routed to once registered and
// withdrawn on a graceful stop; a wildcard listen address is not advertised without --advertise;
// --control-allow decides what may be added; a certificate from another CA is refused, said on
// both sides. Certificates are made by openssl in a temp dir.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { makePki, type CertFiles, type Pki } from '../helpers/certs.js';
import { freePort } from '../helpers/interop.js';
import { fixture, runCli, spawnCli, type FrontProc, type Proc } from '../helpers/procs.js';

interface RegCtx extends Ctx {
  pki: Pki;
  other: Pki;
  /** The front's certificate: a server's (for --control-listen) and a client's (for the links). */
  frontCert: CertFiles;
  backendCert: CertFiles;
}

const test = suite<RegCtx>('register over tcp', newCtx() as RegCtx);

setUp(test, async (ctx) => {
  ctx.pki = makePki();
  ctx.other = makePki('another CA');
  ctx.frontCert = ctx.pki.issue('front', ['IP:127.0.0.1'], 'serverAuth,clientAuth');
  ctx.backendCert = ctx.pki.issue('backend', ['IP:127.0.0.1'], 'serverAuth,clientAuth');
  ctx.agent = newAgent();
});

test.after((ctx) => {
  ctx.pki?.remove();
  ctx.other?.remove();
});

async function front(ctx: RegCtx, extra: string[] = []): Promise<FrontProc & { control: string }> {
  const proc = spawnCli(['front', '--listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--graceful-timeout', '5',
    '--backend-tls-cert', ctx.frontCert.cert, '--backend-tls-key', ctx.frontCert.key, '--backend-tls-ca', ctx.pki.ca, ...extra]);
  ctx.extra.push(proc);
  const c = await proc.waitForStderr(/control on tls (127\.0\.0\.1:\d+)/);
  const m = await proc.waitForStderr(/listening on http 127\.0\.0\.1:(\d+)/);
  return Object.assign(proc, { port: Number(m[1]), url: `http://127.0.0.1:${m[1]}`, control: `tls:${c[1]}` });
}

function backend(ctx: RegCtx, listen: string, register: string, extra: string[] = [], cert = ctx.backendCert): Proc {
  const proc = spawnCli(['serve', fixture('hello.js'), '--listen', listen, '--register', register, '--graceful-timeout', '5',
    '--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-ca', ctx.pki.ca, ...extra]);
  ctx.extra.push(proc);
  return proc;
}

test('a backend registers over mutual TLS, is routed to, and withdraws on SIGTERM', async (ctx) => {
  const f = await front(ctx);
  const b = backend(ctx, '127.0.0.1:0', f.control);
  const port = (await b.waitForStderr(/serving on 127\.0\.0\.1:(\d+)/))[1];
  await b.waitForStderr(new RegExp(`registered tls:127\\.0\\.0\\.1:${port} with the front at ${f.control.replace(/\./g, '\\.')}`));
  await f.waitForStderr(new RegExp(`backend tls:127\\.0\\.0\\.1:${port} added \\(control\\)`));
  const { status, text } = await call(`${f.url}/`, { dispatcher: ctx.agent });
  assert.is(status, 200);
  assert.is(text, '<h1>Hello, web</h1>');
  await b.stop();
  await f.waitForStderr(new RegExp(`control: drain tls:127\\.0\\.0\\.1:${port}`));
  await f.waitForStderr(new RegExp(`backend tls:127\\.0\\.0\\.1:${port} drained and removed`));
});

test('a wildcard listen address is not advertised; --advertise names the address to dial', async (ctx) => {
  const f = await front(ctx);
  const refused = await runCli(['serve', fixture('hello.js'), '--listen', '0.0.0.0:0', '--register', f.control,
    '--tls-cert', ctx.backendCert.cert, '--tls-key', ctx.backendCert.key, '--tls-ca', ctx.pki.ca]);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /--register: this backend listens on 0\.0\.0\.0:\d+, a wildcard address that a front cannot dial; give --advertise HOST:\d+/);
  const port = await freePort();
  const b = backend(ctx, `0.0.0.0:${port}`, f.control, ['--advertise', `127.0.0.1:${port}`]);
  await b.waitForStderr(new RegExp(`registered tls:127\\.0\\.0\\.1:${port} with the front`));
  await f.waitForStderr(new RegExp(`backend tls:127\\.0\\.0\\.1:${port} is ready`));
  assert.is((await call(`${f.url}/`, { dispatcher: ctx.agent })).status, 200);
});

test('--control-allow refuses an address it does not list: a warn line at the front, the reason at the backend', async (ctx) => {
  const f = await front(ctx, ['--control-allow', '10.0.0.0/8']);
  const b = backend(ctx, '127.0.0.1:0', f.control);
  await b.waitForStderr(/cannot register with the front at tls:127\.0\.0\.1:\d+: tls:127\.0\.0\.1:\d+ is not allowed: --control-allow admits 10\.0\.0\.0\/8/);
  await f.waitForStderr(/warn: control: refused add: tls:127\.0\.0\.1:\d+ is not allowed/);
  assert.not.match(f.stderr(), /added \(control\)/);
});

test('a backend whose certificate another CA signed cannot register; both sides say so', async (ctx) => {
  const f = await front(ctx);
  const stranger = ctx.other.issue('backend', ['IP:127.0.0.1'], 'serverAuth,clientAuth');
  const b = backend(ctx, '127.0.0.1:0', f.control, [], stranger);
  await f.waitForStderr(/warn: control: refused 127\.0\.0\.1:\d+: certificate not accepted: \w+ \(a backend's --tls-cert must be signed by --backend-tls-ca /);
  await b.waitForStderr(/cannot register with the front at tls:127\.0\.0\.1:\d+: .*closed the connection without an answer \(over TLS: it refused our certificate/);
  assert.not.match(f.stderr(), /added \(control\)/);
});

test('start-up refuses a TCP control endpoint without TLS, and plain HOST:PORT registration', async (ctx) => {
  const f = await runCli(['front', '--listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0']);
  assert.is(f.code, 2, f.stderr);
  assert.match(f.stderr, /--control-listen takes registrations from other hosts over mutual TLS: give --backend-tls-cert/);
  const plain = await runCli(['serve', fixture('hello.js'), '--listen', '127.0.0.1:0', '--register', '127.0.0.1:7000']);
  assert.is(plain.code, 2, plain.stderr);
  assert.match(plain.stderr, /--register 127\.0\.0\.1:7000: over TCP, write tls:127\.0\.0\.1:7000/);
  const noTls = await runCli(['serve', fixture('hello.js'), '--listen', '127.0.0.1:0', '--register', 'tls:127.0.0.1:7000']);
  assert.is(noTls.code, 2, noTls.stderr);
  assert.match(noTls.stderr, /registration over TCP is mutual TLS, as the links: give --tls-cert, --tls-key and --tls-ca/);
  void ctx;
});

test.run();
