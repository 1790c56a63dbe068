// Every signal has a deliberate meaning for both programs: USR1 reopens the log files (and never
// opens Node's inspector), USR2 is ignored with a line, QUIT is a graceful stop (as nginx's),
// and a worker never acts on a signal meant for its supervisor. Real processes, real signals.
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';

interface SignalCtx extends Ctx {
  dir?: string;
}

const harmless = suite<SignalCtx>('signals-that-do-no-harm', newCtx());
setUp(harmless, async (ctx) => {
  ctx.dir = tempDir('tsgi-signals-');
  ctx.backend = await startBackend(fixture('stuck.js'), ['--workers', '2']);
  ctx.front = await startFront([ctx.backend.socket], ['--access-log', join(ctx.dir, 'access.log')]);
  ctx.agent = newAgent();
});
harmless.after((ctx) => { if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true }); });

harmless('SIGUSR1 reopens the access log, says so, and opens no inspector', async (ctx) => {
  assert.is((await call(`${ctx.front!.url}/one`, { dispatcher: ctx.agent })).status, 200);
  const log = join(ctx.dir!, 'access.log');
  await poll(async () => (existsSync(log) && readFileSync(log, 'utf8').includes('/one') ? true : undefined), 'the first access line');
  renameSync(log, `${log}.1`); // logrotate
  process.kill(ctx.front!.pid, 'SIGUSR1');
  process.kill(ctx.backend!.pid, 'SIGUSR1');
  await ctx.front!.waitForStderr(/SIGUSR1: reopened the access log/);
  await ctx.backend!.waitForStderr(/SIGUSR1: no log file to reopen \(tsgi serve logs to stderr only\)/);
  assert.is((await call(`${ctx.front!.url}/two`, { dispatcher: ctx.agent })).status, 200);
  await poll(async () => (existsSync(log) && readFileSync(log, 'utf8').includes('/two') ? true : undefined), 'the next line in a new file');
  assert.not.match(readFileSync(log, 'utf8'), /\/one/);
  for (const p of [ctx.front!, ctx.backend!]) assert.not.match(p.stderr(), /Debugger listening/);
});

harmless('SIGUSR2 is ignored with a line; both keep serving', async (ctx) => {
  process.kill(ctx.front!.pid, 'SIGUSR2');
  process.kill(ctx.backend!.pid, 'SIGUSR2');
  await ctx.front!.waitForStderr(/SIGUSR2: ignored/);
  await ctx.backend!.waitForStderr(/SIGUSR2: ignored/);
  assert.is((await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent })).status, 200);
});

harmless('signals sent to a worker (as to the whole process group) leave it serving', async (ctx) => {
  const before = (await call(`${ctx.front!.url}/pid`, { dispatcher: ctx.agent })).text;
  for (const signal of ['SIGUSR1', 'SIGUSR2', 'SIGQUIT', 'SIGHUP', 'SIGINT', 'SIGTTIN', 'SIGTTOU'] as const) {
    process.kill(Number(before), signal);
  }
  const r = await call(`${ctx.front!.url}/pid`, { dispatcher: ctx.agent });
  assert.is(r.status, 200);
  assert.is(r.text, before, 'the same worker still answers');
  assert.not.match(ctx.backend!.stderr(), /died|Debugger listening/);
});

harmless.run();

const quit = suite<SignalCtx>('sigquit-is-graceful', newCtx());
setUp(quit, async (ctx) => {
  ctx.backend = await startBackend(fixture('stuck.js'));
  ctx.front = await startFront([ctx.backend.socket]);
  ctx.agent = newAgent();
});

quit('SIGQUIT stops serve and front gracefully: the request in flight is answered, both exit 0', async (ctx) => {
  const slow = call(`${ctx.front!.url}/sleep?ms=1500`, { dispatcher: ctx.agent });
  await ctx.backend!.waitForStderr(/stuck\.js: sleeping 1500 ms/); // the request is at the app
  process.kill(ctx.backend!.pid, 'SIGQUIT');
  await ctx.backend!.waitForStderr(/SIGQUIT: stopping gracefully/);
  const r = await slow;
  assert.is(r.status, 200);
  assert.is(r.text, 'done /sleep\n');
  assert.equal(await ctx.backend!.exited, { code: 0, signal: null });
  process.kill(ctx.front!.pid, 'SIGQUIT');
  await ctx.front!.waitForStderr(/SIGQUIT: stopping gracefully/);
  assert.equal(await ctx.front!.exited, { code: 0, signal: null });
});

quit.run();
