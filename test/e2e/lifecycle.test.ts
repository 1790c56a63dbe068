// What an orchestrator sees of a stopping process: /livez and /readyz on the admin address of
// both programs; /readyz answers 503 from the moment SIGTERM arrives, while requests are still
// served for --shutdown-delay seconds; then the process drains and exits 0. The probes answer
// whatever the Host (a kubelet sends the pod's IP); the rest of the admin server still checks it.
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { shutdownDelayOf } from '../../src/common/shutdown.js';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, type Proc } from '../helpers/procs.js';

async function adminUrl(proc: Proc): Promise<string> {
  const m = await proc.waitForStderr(/admin on http (127\.0\.0\.1:\d+): \/metrics, \/status, \/, \/livez, \/readyz/);
  return `http://${m[1]}`;
}

async function probe(url: string, host?: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers: host === undefined ? {} : { host } });
  return { status: res.statusCode, text: await res.body.text() };
}

const test = suite<Ctx>('e2e/lifecycle', newCtx());

setUp(test, async (ctx) => {
  ctx.agent = newAgent();
});

test('the default --shutdown-delay is 5 s in a Kubernetes pod, 0 elsewhere; a given one wins', () => {
  assert.is(shutdownDelayOf(undefined, {}), 0);
  assert.is(shutdownDelayOf(undefined, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }), 5);
  assert.is(shutdownDelayOf(2, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }), 2);
  assert.is(shutdownDelayOf(0, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }), 0);
});

test('backend: /readyz turns 503 at SIGTERM while the front still gets answers, then it drains and exits 0', async (ctx) => {
  const backend = await startBackend(fixture('hello.js'), ['--admin', '127.0.0.1:0', '--shutdown-delay', '3']);
  ctx.extra.push(backend);
  const admin = await adminUrl(backend);
  const front = await startFront([backend.socket]);
  ctx.extra.push(front);
  assert.equal(await probe(`${admin}/livez`), { status: 200, text: 'ok\n' });
  assert.equal(await probe(`${admin}/readyz`), { status: 200, text: 'ok\n' });
  // A kubelet's probe names the pod's address as Host: the probes answer it; /status does not.
  assert.is((await probe(`${admin}/readyz`, '10.1.2.3:9100')).status, 200);
  assert.is((await probe(`${admin}/status`, '10.1.2.3:9100')).status, 421);

  process.kill(backend.pid, 'SIGTERM');
  await backend.waitForStderr(/stopping: \/readyz answers 503; serving 3 s more \(--shutdown-delay\), then draining/);
  assert.equal(await probe(`${admin}/readyz`), { status: 503, text: 'not ready: stopping\n' });
  assert.is((await probe(`${admin}/livez`)).status, 200);
  // Still serving: fronts that have not heard yet are answered.
  const { status, text } = await call(`${front.url}/`, { dispatcher: ctx.agent });
  assert.is(status, 200);
  assert.is(text, '<h1>Hello, web</h1>');
  assert.equal(await backend.exited, { code: 0, signal: null });
});

test('backend under a supervisor: ready once a worker is', async (ctx) => {
  const backend = await startBackend(fixture('hello.js'), ['--workers', '2', '--admin', '127.0.0.1:0', '--shutdown-delay', '0']);
  ctx.extra.push(backend);
  const admin = await adminUrl(backend);
  await poll(async () => ((await probe(`${admin}/readyz`)).status === 200 ? true : undefined), '/readyz 200');
  process.kill(backend.pid, 'SIGTERM');
  assert.equal(await backend.exited, { code: 0, signal: null });
  assert.not.match(backend.stderr(), /--shutdown-delay/);
});

test('front: /readyz turns 503 at SIGTERM while clients are still served; then it exits 0', async (ctx) => {
  const backend = await startBackend(fixture('hello.js'));
  ctx.extra.push(backend);
  const front = await startFront([backend.socket], ['--admin', '127.0.0.1:0', '--shutdown-delay', '3']);
  ctx.extra.push(front);
  const admin = await adminUrl(front);
  assert.equal(await probe(`${admin}/readyz`), { status: 200, text: 'ok\n' });
  process.kill(front.pid, 'SIGTERM');
  await front.waitForStderr(/stopping: \/readyz answers 503; serving 3 s more \(--shutdown-delay\), then draining/);
  assert.equal(await probe(`${admin}/readyz`), { status: 503, text: 'not ready: stopping\n' });
  const { status, text } = await call(`${front.url}/`, { dispatcher: ctx.agent });
  assert.is(status, 200);
  assert.is(text, '<h1>Hello, web</h1>');
  assert.equal(await front.exited, { code: 0, signal: null });
});

test('front --processes 2: the primary answers the probes and turns 503 at SIGTERM', async (ctx) => {
  const backend = await startBackend(fixture('hello.js'));
  ctx.extra.push(backend);
  const front = await startFront([backend.socket], ['--processes', '2', '--admin', '127.0.0.1:0', '--shutdown-delay', '3']);
  ctx.extra.push(front);
  const admin = await adminUrl(front);
  assert.equal(await probe(`${admin}/readyz`), { status: 200, text: 'ok\n' });
  process.kill(front.pid, 'SIGTERM');
  await front.waitForStderr(/stopping: \/readyz answers 503; serving 3 s more/);
  assert.equal(await probe(`${admin}/readyz`), { status: 503, text: 'not ready: stopping\n' });
  assert.is((await call(`${front.url}/`, { dispatcher: ctx.agent })).status, 200);
  assert.equal(await front.exited, { code: 0, signal: null });
});

test.run();
