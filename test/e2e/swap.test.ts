// Scale and swap, end to end: backends join and leave a running front, workers are reloaded,
// recycled, killed and replaced, all under a continuous load that must lose nothing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, runLoad, setUp, startPair, versionApp, type Ctx } from '../helpers/e2e.js';
import { fixture, runCli, startBackend, startFront, tempDir, type BackendProc } from '../helpers/procs.js';

interface SwapCtx extends Ctx {
  dir: string;
  control: string;
}

const swapCtx = (): SwapCtx => ({ ...newCtx(), dir: '', control: '' });

function describe(failures: { status?: number; error?: string; body?: string }[]): string {
  return JSON.stringify(failures.slice(0, 5));
}

/** Waits until the front's answers come from `version`. */
async function until(url: string, version: string): Promise<void> {
  await poll(async () => {
    const r = await call(`${url}/probe`);
    return r.status === 200 && r.text.startsWith(version) ? true : undefined;
  }, `answers from ${version}`);
}

/** Setup: versionApp('v1') written to ctx.dir/app.js (a temp dir named `prefix`), served with `backendArgs` behind a front. */
function versionPair(prefix: string, backendArgs: string[]): (ctx: SwapCtx) => Promise<void> {
  return async (ctx) => {
    ctx.dir = tempDir(prefix);
    writeFileSync(join(ctx.dir, 'app.js'), versionApp('v1'));
    await startPair(ctx, join(ctx.dir, 'app.js'), backendArgs);
  };
}

// 1. A second version registers while the first drains and exits: nothing fails.
const register = suite<SwapCtx>('swap-by-registration', swapCtx());
setUp(register, async (ctx) => {
  ctx.dir = tempDir('tsgi-swap-');
  ctx.control = join(ctx.dir, 'front.ctl');
  writeFileSync(join(ctx.dir, 'v1.js'), versionApp('v1'));
  writeFileSync(join(ctx.dir, 'v2.js'), versionApp('v2'));
  ctx.front = await startFront([], ['--control', ctx.control]);
  ctx.backend = await startBackend(join(ctx.dir, 'v1.js'), ['--register', ctx.control]);
  ctx.agent = newAgent();
  await until(ctx.front.url, 'v1');
});

register('v1 → v2 under load: zero failed requests, answers switch to v2, v1 leaves the pool', async (ctx) => {
  let stop = false;
  const load = runLoad(ctx.front!.url, { concurrency: 8, stop: () => stop, agent: ctx.agent });
  await sleep(300);
  const v2 = await startBackend(join(ctx.dir, 'v2.js'), ['--register', ctx.control]);
  ctx.extra.push(v2);
  await v2.waitForStderr(/registered .* with the front/);
  await sleep(300);
  const exit = await ctx.backend!.stop('SIGTERM');
  assert.is(exit.code, 0, 'v1 exits cleanly after draining');
  await sleep(300);
  stop = true;
  const result = await load;
  assert.equal(result.failures, [], `failures: ${describe(result.failures)}`);
  assert.ok(result.ok > 50, `a real load went through (${result.ok})`);
  assert.ok(result.bodies.some((b) => b.startsWith('v1')), 'v1 answered at first');
  assert.ok(result.bodies.slice(-20).every((b) => b.startsWith('v2')), 'v2 answers at the end');
  const list = await runCli(['ctl', '--control', ctx.control, 'list']);
  assert.is(list.code, 0);
  assert.ok(list.stdout.includes(v2.socket), list.stdout);
  assert.not.ok(list.stdout.includes(ctx.backend!.socket), `v1 is gone from the pool:\n${list.stdout}`);
});

register.run();

// 2. SIGHUP: a rolling reload of a --workers 2 backend picks up the new code from disk.
const reload = suite<SwapCtx>('rolling-reload', swapCtx());
setUp(reload, versionPair('tsgi-reload-', ['--workers', '2']));

reload('SIGHUP under load: zero failed requests, new generation serves the new code', async (ctx) => {
  let stop = false;
  const load = runLoad(ctx.front!.url, { concurrency: 8, stop: () => stop, agent: ctx.agent });
  await sleep(300);
  writeFileSync(join(ctx.dir, 'app.js'), versionApp('v2'));
  process.kill(ctx.backend!.pid, 'SIGHUP');
  await ctx.backend!.waitForStderr(/worker \d+ \(pid \d+, generation 2\) ready[\s\S]*worker \d+ \(pid \d+, generation 2\) ready/);
  await until(ctx.front!.url, 'v2');
  await sleep(300);
  stop = true;
  const result = await load;
  assert.equal(result.failures, [], `failures: ${describe(result.failures)}`);
  assert.ok(result.bodies.some((b) => b.startsWith('v1')));
  assert.ok(result.bodies.slice(-20).every((b) => b.startsWith('v2')), 'the new generation answers at the end');
  await poll(async () => (/retiring: replaced by generation 2[\s\S]*retiring: replaced by generation 2/.test(ctx.backend!.stderr()) ? true : undefined),
    'both old workers retired');
});

reload('SIGTTIN adds a worker, SIGTTOU removes one', async (ctx) => {
  process.kill(ctx.backend!.pid, 'SIGTTIN');
  await ctx.backend!.waitForStderr(/target is now 3[\s\S]*generation 2\) ready/);
  process.kill(ctx.backend!.pid, 'SIGTTOU');
  await ctx.backend!.waitForStderr(/target is now 2[\s\S]*retiring: scaled down/);
  const r = await call(`${ctx.front!.url}/after-scaling`);
  assert.is(r.status, 200);
});

reload('a reload whose code cannot load keeps the working generation serving', async (ctx) => {
  writeFileSync(join(ctx.dir, 'app.js'), 'export default 42;\n');
  process.kill(ctx.backend!.pid, 'SIGHUP');
  await ctx.backend!.waitForStderr(/reload failed: generation 3 cannot load the application; generation 2 keeps serving/);
  const result = await runLoad(ctx.front!.url, { concurrency: 4, stop: () => false, maxRequests: 100, agent: ctx.agent });
  assert.equal(result.failures, [], `failures: ${describe(result.failures)}\n${ctx.front!.stderr().slice(-3000)}\n${ctx.backend!.stderr().slice(-3000)}`);
  assert.ok(result.bodies.every((b) => b.startsWith('v2')));
  writeFileSync(join(ctx.dir, 'app.js'), versionApp('v3'));
  process.kill(ctx.backend!.pid, 'SIGHUP');
  await until(ctx.front!.url, 'v3');
});

reload.run();

// 3. kill -9 of one worker under load: only its in-flight requests fail (502), and it is replaced.
const crash = suite<SwapCtx>('worker-kill-9', swapCtx());
setUp(crash, versionPair('tsgi-crash-', ['--workers', '2']));

crash('only the requests in flight on the killed worker fail, with 502; the worker is respawned', async (ctx) => {
  const pids = [...ctx.backend!.stderr().matchAll(/worker \d+ \(pid (\d+), generation 1\) ready/g)].map((m) => Number(m[1]));
  assert.is(pids.length, 2, 'two workers');
  const concurrency = 8;
  let stop = false;
  let replacementServed = false;
  const load = runLoad(ctx.front!.url, {
    concurrency, agent: ctx.agent,
    stop: () => stop,
    onBody: (body) => {
      const pid = Number(/pid=(\d+)/.exec(body)?.[1]);
      if (pid !== pids[0] && pid !== pids[1]) replacementServed = true;
    },
  });
  await sleep(400);
  process.kill(pids[0]!, 'SIGKILL');
  await ctx.backend!.waitForStderr(new RegExp(`pid ${pids[0]}\\) died \\(SIGKILL\\); respawning[\\s\\S]*worker \\d+ \\(pid \\d+, generation 1\\) ready`));
  // The front's new connection lands on the replacement (held for it, or moved to it by the
  // supervisor's rebalancing): keep the load on until the replacement has answered.
  await poll(async () => (replacementServed ? true : undefined), 'an answer from the replacement worker')
    .catch((err: Error) => {
      stop = true;
      throw new Error(`${err.message}\n${ctx.backend!.stderr().slice(-2500)}\n${ctx.front!.stderr().slice(-2500)}`);
    });
  stop = true;
  const result = await load;
  assert.ok(result.failures.length <= concurrency, `at most the in-flight requests failed: ${describe(result.failures)}`);
  for (const f of result.failures) assert.is(f.status, 502, `a lost request is a 502: ${JSON.stringify(f)}`);
  const after = result.bodies.slice(-20);
  assert.ok(after.length === 20 && after.every((b) => b.startsWith('v1')), 'service continued');

});

crash.run();

// 4. No backend at all for 2 s, then one registers: the queued requests succeed.
const queue = suite<SwapCtx>('queue-until-ready', swapCtx());
setUp(queue, async (ctx) => {
  ctx.dir = tempDir('tsgi-queue-');
  ctx.control = join(ctx.dir, 'front.ctl');
  ctx.front = await startFront([], ['--control', ctx.control, '--queue-timeout', '15', '--queue-size', '4',
    '--admin', `unix:${join(ctx.dir, 'admin.sock')}`]);
  ctx.agent = newAgent();
});

/** Requests waiting in the front's queue now, from its /status. */
async function queued(ctx: SwapCtx): Promise<number> {
  const admin = new Agent({ connect: { socketPath: join(ctx.dir, 'admin.sock') } });
  try {
    return (JSON.parse((await call('http://localhost/status', { dispatcher: admin })).text) as { queued: number }).queued;
  } finally {
    await admin.close();
  }
}

queue('requests wait while no backend is ready and succeed when one registers', async (ctx) => {
  const pending = Array.from({ length: 4 }, (_, i) => call(`${ctx.front!.url}/queued?i=${i}`, { dispatcher: ctx.agent }));
  await sleep(2000);
  ctx.backend = await startBackend(fixture('hello.js'), ['--register', ctx.control]);
  const results = await Promise.all(pending);
  for (const r of results) {
    assert.is(r.status, 200);
    assert.is(r.text, '<h1>Hello, web</h1>');
  }
});

queue('beyond --queue-size, a request gets 503 with Retry-After at once', async (ctx) => {
  await ctx.backend!.stop();
  ctx.backend = undefined;
  await poll(async () => ((await runCli(['ctl', '--control', ctx.control, 'list'])).stdout.includes('draining') ? undefined : true), 'backend gone');
  const agent = newAgent();
  const waiting = Array.from({ length: 4 }, (_, i) => request(`${ctx.front!.url}/w?i=${i}`, { dispatcher: agent }).catch(() => null));
  await poll(async () => ((await queued(ctx)) === 4 ? true : undefined), 'the four requests in the queue');
  const res = await request(`${ctx.front!.url}/overflow`, { dispatcher: agent });
  assert.is(res.statusCode, 503);
  assert.is(res.headers['retry-after'], '1');
  assert.ok((await res.body.text()).includes('503'));
  // Shed because the queue was full, not after waiting out --queue-timeout (also a 503).
  await ctx.front!.waitForStderr(/503 GET \/overflow: [^\n]*queue is full/);
  assert.not.match(ctx.front!.stderr(), /503 GET \/w\?i=\d: /, 'the four queued ones were still waiting');
  await agent.destroy();
  await Promise.all(waiting);
});

queue.run();

// 5. tsgi ctl by hand; a queue timeout answers 503, never 502.
const ctl = suite<SwapCtx>('ctl', swapCtx());
setUp(ctl, async (ctx) => {
  ctx.dir = tempDir('tsgi-ctl-');
  ctx.control = join(ctx.dir, 'front.ctl');
  ctx.backend = await startBackend(fixture('hello.js'));
  ctx.front = await startFront([], ['--control', ctx.control, '--queue-timeout', '1']);
  ctx.agent = newAgent();
});

ctl('add, list, drain, remove; a request with no backend waits --queue-timeout and gets 503', async (ctx) => {
  const socket = ctx.backend!.socket;
  const add = await runCli(['ctl', '--control', ctx.control, 'add', `unix:${socket}`]);
  assert.is(add.code, 0, add.stderr);
  await poll(async () => ((await call(`${ctx.front!.url}/`)).status === 200 ? true : undefined), 'routed to the added backend');
  const list = await runCli(['ctl', '--control', ctx.control, 'list']);
  assert.match(list.stdout, new RegExp(`unix:${socket}\\s+up\\s+control\\s+1\\s+0\\s+\\d+\\s+0`));
  const drain = await runCli(['ctl', '--control', ctx.control, 'drain', `unix:${socket}`]);
  assert.is(drain.code, 0);
  // Drained and held so: listed as drained (not routed again) until ctl add.
  await poll(async () => (new RegExp(`unix:${socket}\\s+drained\\s+held\\s`).test((await runCli(['ctl', '--control', ctx.control, 'list'])).stdout) ? true : undefined),
    'drained backend removed');
  const r = await call(`${ctx.front!.url}/nobody`);
  assert.is(r.status, 503, 'no backend: 503, not 502');
  const missing = await runCli(['ctl', '--control', ctx.control, 'remove', 'unix:/nowhere.sock']);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /no backend unix:\/nowhere\.sock/);
  const bad = await runCli(['ctl', '--control', ctx.control, 'frobnicate']);
  assert.is(bad.code, 2);
});

ctl.run();

// 6. Workers recycled by --max-requests, and a runaway request past --timeout.
const recycle = suite<SwapCtx>('max-requests-and-timeout', swapCtx());
setUp(recycle, versionPair('tsgi-recycle-', ['--workers', '1', '--max-requests', '40', '--max-requests-jitter', '5']));

recycle('--max-requests recycles the only worker without failing a request', async (ctx) => {
  const until = Date.now() + 2500;
  const result = await runLoad(ctx.front!.url, { concurrency: 4, stop: () => Date.now() > until, maxRequests: 20_000, agent: ctx.agent });
  assert.equal(result.failures, [], `failures: ${describe(result.failures)}`);
  const pids = new Set(result.bodies.map((b) => /pid=(\d+)/.exec(b)![1]));
  assert.ok(pids.size >= 3, `several workers took turns (${[...pids].join(', ')})`);
  assert.match(ctx.backend!.stderr(), /requests \(max-requests\); recycling it/);
});

recycle.run();

const runaway = suite<SwapCtx>('request-timeout', swapCtx());
setUp(runaway, async (ctx) => startPair(ctx, fixture('slow.js'), ['--workers', '1', '--timeout', '1', '--graceful-timeout', '1']));

runaway('a request past --timeout is answered 504, its worker replaced, and the log names it', async (ctx) => {
  const slow = call(`${ctx.front!.url}/slow?ms=20000`, { dispatcher: ctx.agent });
  const line = await ctx.backend!.waitForStderr(/request GET \/slow\?ms=20000 \(running [\d.]+ s\) exceeded --timeout 1 s/);
  assert.ok(line);
  const r = await slow;
  assert.is(r.status, 504, 'the runaway request is answered 504 at once, not when its worker goes');
  await ctx.backend!.waitForStderr(/worker 2 \(pid \d+, generation 1\) ready/);
  const quick = await call(`${ctx.front!.url}/slow?ms=1`, { dispatcher: ctx.agent });
  assert.is(quick.status, 200);
});

runaway.run();

// 7. A worker that cannot load the app: the supervisor stops with a clear message, exit code 3.
const loadFail = suite('app-load-failure');
loadFail('--workers with a broken app exits 3 instead of respawning in a loop', async () => {
  const dir = tempDir('tsgi-broken-');
  writeFileSync(join(dir, 'broken.js'), 'export default 42;\n');
  const r = await runCli(['serve', join(dir, 'broken.js'), '--socket', join(dir, 's.sock'), '--workers', '2'], 20_000);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /could not load the application/);
  assert.match(r.stderr, /exports no application/);
  assert.ok((r.stderr.match(/could not load the application/g) ?? []).length === 1, 'no respawn loop');
});

loadFail.run();

// 8. SIGHUP on the front reloads its backends from --config.
const frontReload = suite<SwapCtx>('front-config-reload', swapCtx());
setUp(frontReload, async (ctx) => {
  ctx.dir = tempDir('tsgi-frontcfg-');
  writeFileSync(join(ctx.dir, 'v1.js'), versionApp('v1'));
  writeFileSync(join(ctx.dir, 'v2.js'), versionApp('v2'));
  ctx.backend = await startBackend(join(ctx.dir, 'v1.js'));
  const v2: BackendProc = await startBackend(join(ctx.dir, 'v2.js'));
  ctx.extra.push(v2);
  ctx.control = join(ctx.dir, 'front.ctl');
  writeFileSync(join(ctx.dir, 'front.json'), JSON.stringify({ backend: [`unix:${ctx.backend.socket}`], control: ctx.control }));
  ctx.front = await startFront([], ['--config', join(ctx.dir, 'front.json')]);
  ctx.agent = newAgent();
  await until(ctx.front.url, 'v1');
});

frontReload('SIGHUP swaps the configured backends without dropping a request', async (ctx) => {
  const v2 = ctx.extra[0] as BackendProc;
  let stop = false;
  const load = runLoad(ctx.front!.url, { concurrency: 6, stop: () => stop, agent: ctx.agent });
  await sleep(300);
  writeFileSync(join(ctx.dir, 'front.json'), JSON.stringify({ backend: [`unix:${v2.socket}`], control: ctx.control }));
  process.kill(ctx.front!.pid, 'SIGHUP');
  await ctx.front!.waitForStderr(/SIGHUP: backends reloaded/);
  await until(ctx.front!.url, 'v2');
  await sleep(200);
  stop = true;
  const result = await load;
  assert.equal(result.failures, [], `failures: ${describe(result.failures)}`);
  assert.ok(result.bodies.slice(-10).every((b) => b.startsWith('v2')));
});

frontReload.run();
