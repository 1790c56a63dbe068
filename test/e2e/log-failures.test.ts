// End to end: the processes keep serving when their output fails or their descriptors run out.
// The front and `tsgi serve` with stderr on /dev/full or on a pipe whose reader has gone count
// the log lines they could not write (tsgi_log_write_errors_total) and go on answering; under
// `prlimit --nofile=64`, connections past the descriptor limit are refused, logged once and
// counted (tsgi_accept_errors_total{code="EMFILE"}), and service resumes once they close.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, poll } from '../helpers/e2e.js';
import { type BackendProc, CLI, fixture, type Proc, spawnCli, startBackend, startFront, tempDir } from '../helpers/procs.js';
import { accepting, getRequest, openSocket, rawUntilClose, statusOf } from '../helpers/raw-http.js';
import { request as uwsgiRequest } from '../helpers/uwsgi.js';

interface Ctx {
  dir: string;
  backend?: BackendProc;
  children: ChildProcess[];
  procs: Proc[];
}

const test = suite<Ctx>('log-failures', { dir: '', children: [], procs: [] });

test.before(async (ctx) => {
  ctx.dir = tempDir('tsgi-logfail-');
  ctx.backend = await startBackend(fixture('hello.js'));
});

test.after(async (ctx) => {
  for (const child of ctx.children) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      process.kill(child.pid!, 'SIGKILL');
      await gone;
    }
  }
  for (const p of ctx.procs) await p.stop();
  await ctx.backend?.stop();
  rmSync(ctx.dir, { recursive: true, force: true });
});

/** The environment without TSGI_* (flags only), and every log line printed (no collapsing of repeats). */
function env(): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { TSGI_LOG_REPEAT_WINDOW: '0' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSGI_')) out[k] = v;
  return out;
}

/** Runs `tsgi ...args` with stderr on /dev/full, or on a pipe whose read end is closed at once. */
function spawnBroken(ctx: Ctx, args: string[], stderr: 'full' | 'closed pipe'): ChildProcess {
  const fd = stderr === 'full' ? openSync('/dev/full', 'w') : 'pipe';
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', fd], env: env() });
  if (typeof fd === 'number') closeSync(fd);
  else child.stderr!.destroy();
  ctx.children.push(child);
  return child;
}

async function metric(admin: string, series: string): Promise<number> {
  const r = await rawUntilClose(admin, getRequest('/metrics'));
  assert.is(statusOf(r.text), 200, r.text);
  const line = r.text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line !== undefined, `${series} in /metrics:\n${r.text}`);
  return Number(line.slice(series.length + 1));
}

async function up(path: string): Promise<void> {
  await poll(async () => ((await accepting(path)) ? true : undefined), `something listening on ${path}`);
}

for (const stderr of ['full', 'closed pipe'] as const) {
  test(`the front keeps serving when its stderr is ${stderr === 'full' ? '/dev/full' : 'a pipe nobody reads'}`, async (ctx) => {
    const name = stderr === 'full' ? 'full' : 'pipe';
    const listen = join(ctx.dir, `front-${name}.sock`);
    const admin = join(ctx.dir, `admin-${name}.sock`);
    const child = spawnBroken(ctx, ['front', '--listen', `unix:${listen}`, '--backend', `unix:${ctx.backend!.socket}`,
      '--admin', `unix:${admin}`, '--graceful-timeout', '1'], stderr);
    await up(listen);
    await up(admin);
    const before = await metric(admin, 'tsgi_log_write_errors_total');
    assert.ok(before > 0, `the start-up lines could not be written: ${before}`);
    for (let i = 0; i < 5; i++) {
      // Each is refused with a warning, which cannot be written.
      const r = await rawUntilClose(listen, `BAD\x01REQUEST /${i}\r\n\r\n`);
      assert.is(statusOf(r.text), 400, r.text);
    }
    const after = await metric(admin, 'tsgi_log_write_errors_total');
    assert.ok(after >= before + 5, `5 more failed writes counted: ${before} -> ${after}`);
    const ok = await rawUntilClose(listen, getRequest('/'));
    assert.is(statusOf(ok.text), 200, ok.text);
    assert.is(child.exitCode, null, 'the front is still running');
    assert.is(child.signalCode, null);
  });
}

test('tsgi serve keeps serving when its stderr is /dev/full and the app fails', async (ctx) => {
  const socket = join(ctx.dir, 'serve-full.sock');
  const admin = join(ctx.dir, 'serve-admin.sock');
  const child = spawnBroken(ctx, ['serve', fixture('throw-early.js'), '--socket', socket, '--admin', `unix:${admin}`,
    '--graceful-timeout', '1'], 'full');
  await up(socket);
  await up(admin);
  const front = await startFront([socket]);
  ctx.procs.push(front);
  const agent = newAgent();
  try {
    const before = await metric(admin, 'tsgi_log_write_errors_total');
    for (let i = 0; i < 3; i++) {
      const r = await call(`${front.url}/before-start`, { dispatcher: agent });
      assert.is(r.status, 500);
    }
    const after = await metric(admin, 'tsgi_log_write_errors_total');
    assert.ok(after >= before + 3, `the app errors' lines counted: ${before} -> ${after}`);
    const r = await call(`${front.url}/`, { dispatcher: agent });
    assert.is(r.status, 200);
    assert.is(child.exitCode, null, 'tsgi serve is still running');
  } finally {
    await agent.destroy();
  }
});

/** Opens `n` connections, one after another. */
async function openMany(target: number | string, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await openSocket(target));
  return out;
}

test('the front out of descriptors: refuses with 503, logs once, counts, and serves again', async (ctx) => {
  const admin = join(ctx.dir, 'emfile-admin.sock');
  const front = spawnCli(['front', '--listen', '127.0.0.1:0', '--backend', `unix:${ctx.backend!.socket}`,
    '--admin', `unix:${admin}`, '--graceful-timeout', '1'], undefined, ['prlimit', '--nofile=64:64']) as Proc;
  ctx.procs.push(front);
  const port = Number((await front.waitForStderr(/listening on http 127\.0\.0\.1:(\d+)/))[1]);
  await up(admin);
  const clients = await openMany(port, 80);
  await front.waitForStderr(/HTTP listener: out of file descriptors \(descriptor \d+ of a limit of 64, 8 kept free\)/);
  const refused = () => clients.filter((c) => c.received().startsWith('HTTP/1.1 503')).length;
  // Every connection is either held open (accepted) or answered 503 and closed: the counter says how many.
  const n = await poll(async () => {
    const closed = clients.filter((c) => c.destroyed || c.readableEnded).length;
    const r = refused();
    return r > 0 && closed === r && await metric(admin, 'tsgi_accept_errors_total{code="EMFILE"}') === r ? r : undefined;
  }, 'the refused connections counted');
  assert.ok(n < 80, `some connections were accepted (${80 - n})`);
  assert.is(front.stderr().match(/out of file descriptors/g)?.length, 1, 'one line for the burst');
  for (const c of clients) c.destroy();
  await poll(async () => ((await call(`http://127.0.0.1:${port}/`)).status === 200 ? true : undefined),
    'a response once the connections closed');
  // A probe sent before the server saw every close may itself have been refused: the line counts it too.
  const again = await front.waitForStderr(/HTTP listener: accepting connections again; (\d+) refused for want of descriptors \(EMFILE\)/);
  assert.ok(Number(again[1]) >= n, `${again[1]} refused in the burst, at least the ${n} counted`);
  assert.is(await metric(admin, 'tsgi_accept_errors_total{code="EMFILE"}'), Number(again[1]), 'the line and the counter agree');
});

/**
 * `tsgi serve` with `listen` (a socket flag) under a limit of 64 descriptors, sent 80
 * connections: waits until its `listener` logged running out and counted the refusals (fewer
 * than 80, some were accepted). The clients are still open.
 */
async function exhaust(ctx: Ctx, name: string, listen: string, ready: RegExp, listener: string) {
  const socket = join(ctx.dir, `${name}.sock`);
  const admin = join(ctx.dir, `${name}-admin.sock`);
  const serve = spawnCli(['serve', fixture('hello.js'), listen, socket, '--admin', `unix:${admin}`, '--graceful-timeout', '1'],
    undefined, ['prlimit', '--nofile=64:64']);
  ctx.procs.push(serve);
  await serve.waitForStderr(ready);
  await up(admin);
  const clients = await openMany(socket, 80);
  await serve.waitForStderr(new RegExp(`${listener} listener: out of file descriptors \\(descriptor \\d+ of a limit of 64, 8 kept free\\)`));
  const counted = await poll(async () => {
    const v = await metric(admin, 'tsgi_accept_errors_total{code="EMFILE"}');
    return v > 0 ? v : undefined;
  }, 'the refused connections counted');
  assert.ok(counted < 80, `some connections were accepted: ${counted} refused`);
  return { socket, serve, clients, counted };
}

test('tsgi serve out of descriptors: closes, logs once, counts, and serves again', async (ctx) => {
  const { socket, serve, clients } = await exhaust(ctx, 'serve-emfile', '--socket', /serving on unix:/, 'backend');
  for (const c of clients) c.destroy();
  const front = await startFront([socket]);
  ctx.procs.push(front);
  const r = await call(`${front.url}/`);
  assert.is(r.status, 200);
  await serve.waitForStderr(/backend listener: accepting connections again; \d+ refused for want of descriptors \(EMFILE\)/);
  assert.is(serve.stderr().match(/out of file descriptors/g)?.length, 1, 'one line for the burst');
});

test('tsgi serve --uwsgi-socket out of descriptors: closes, logs once, counts, and serves again', async (ctx) => {
  // A single process takes its uwsgi connections on the libuv handle (no net.Socket): the guard holds there too.
  const { socket, serve, clients, counted } = await exhaust(ctx, 'uwsgi-emfile', '--uwsgi-socket', /accepting uwsgi on unix:/, 'uwsgi');
  await poll(async () => (clients.filter((c) => c.destroyed || c.readableEnded).length >= counted ? true : undefined),
    'the refused connections were closed');
  for (const c of clients) c.destroy();
  const r = await poll(async () => {
    const answer = await uwsgiRequest(socket, [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/']]).catch(() => null);
    return answer?.status === 200 ? answer : undefined;
  }, 'a response once the connections closed');
  assert.match(r.body.toString(), /Hello/);
  await serve.waitForStderr(/uwsgi listener: accepting connections again; \d+ refused for want of descriptors \(EMFILE\)/);
  assert.is(serve.stderr().match(/out of file descriptors/g)?.length, 1, 'one line for the burst');
});

test.run();
