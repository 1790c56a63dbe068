// --trust-proxy end to end: the client address and scheme come from X-Forwarded-For /
// X-Forwarded-Proto / X-Real-IP only when the peer is trusted (here: loopback, or a Unix-socket
// peer of a front listening on unix:PATH); from any other peer they are ignored.
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, spawnCli, startBackend, startFront, tempDir, type FrontProc, type Proc } from '../helpers/procs.js';

interface TrustCtx extends Ctx {
  untrusted?: FrontProc;
  otherNet?: FrontProc;
  loopback?: FrontProc;
  unixFront?: Proc;
  unixSocket?: string;
  unixAgent?: Agent;
}

const SPOOF = { 'x-forwarded-for': '203.0.113.7', 'x-real-ip': '203.0.113.8', 'x-forwarded-proto': 'https' };

const test = suite<TrustCtx>('e2e/trust-proxy', newCtx());
setUp(test, async (ctx) => {
  ctx.backend = await startBackend(fixture('environ.js'));
  ctx.untrusted = await startFront([ctx.backend.socket]);
  ctx.extra.push(ctx.untrusted);
  ctx.otherNet = await startFront([ctx.backend.socket], ['--trust-proxy', '192.0.2.0/24,2001:db8::/32']);
  ctx.extra.push(ctx.otherNet);
  ctx.loopback = await startFront([ctx.backend.socket], ['--trust-proxy', 'loopback']);
  ctx.extra.push(ctx.loopback);
  const dir = tempDir('tsgi-e2e-front-');
  ctx.unixSocket = join(dir, 'front.sock');
  ctx.unixFront = spawnCli(['front', '--listen', `unix:${ctx.unixSocket}`, '--socket-mode', '600', '--trust-proxy', 'unix',
    '--backend', `unix:${ctx.backend.socket}`, '--graceful-timeout', '5'], () => rmSync(dir, { recursive: true, force: true }));
  ctx.extra.push(ctx.unixFront);
  await ctx.unixFront.waitForStderr(/listening on http unix:\S+; backends: .*; trusting forwarded headers from unix/);
  ctx.agent = newAgent();
  ctx.unixAgent = new Agent({ connect: { socketPath: ctx.unixSocket } });
});
test.after(async (ctx) => { await ctx.unixAgent?.close(); });

async function environ(url: string, dispatcher: Agent, headers: Record<string, string> = SPOOF): Promise<Record<string, string>> {
  const r = await call(`${url}/`, { dispatcher, headers });
  assert.is(r.status, 200, r.text);
  return JSON.parse(r.text);
}

test('no --trust-proxy: a spoofed X-Forwarded-For, X-Real-IP and X-Forwarded-Proto change nothing', async ({ untrusted, agent }) => {
  const e = await environ(untrusted!.url, agent!);
  assert.is(e.REMOTE_ADDR, '127.0.0.1');
  assert.is(e.REMOTE_PORT !== '', true, 'the real client port');
  assert.is(e['tsgi.url_scheme'], 'http');
  assert.is(e.HTTPS, undefined);
  assert.is(e.HTTP_X_FORWARDED_FOR, '203.0.113.7', 'the header itself still reaches the app');
});

test('a peer outside the trusted networks is not believed either', async ({ otherNet, agent }) => {
  const e = await environ(otherNet!.url, agent!);
  assert.is(e.REMOTE_ADDR, '127.0.0.1');
  assert.is(e['tsgi.url_scheme'], 'http');
});

test('a trusted peer (loopback): the client address and the scheme come from the headers', async ({ loopback, agent }) => {
  const e = await environ(loopback!.url, agent!);
  assert.is(e.REMOTE_ADDR, '203.0.113.7');
  assert.is(e.REMOTE_PORT, '');
  assert.is(e['tsgi.url_scheme'], 'https');
  assert.is(e.HTTPS, 'on');
  const real = await environ(loopback!.url, agent!, { 'x-real-ip': '198.51.100.4' });
  assert.is(real.REMOTE_ADDR, '198.51.100.4', 'X-Real-IP without X-Forwarded-For');
  assert.is(real['tsgi.url_scheme'], 'http');
});

test('a front on a Unix socket, with its --socket-mode, trusting its Unix-socket peers', async ({ unixSocket, unixAgent }) => {
  assert.is(statSync(unixSocket!).mode & 0o777, 0o600);
  const e = await environ('http://localhost', unixAgent!);
  assert.is(e.REMOTE_ADDR, '203.0.113.7');
  assert.is(e['tsgi.url_scheme'], 'https');
  const plain = await environ('http://localhost', unixAgent!, {});
  assert.is(plain.REMOTE_ADDR, '', 'no header, no address: a Unix-socket peer has none');
});

test.run();
