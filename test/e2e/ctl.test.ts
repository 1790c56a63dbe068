// Operations that stick: an address `tsgi ctl drain` drained stays drained through its backend's
// announcements until `tsgi ctl add` (or a new registration: the backend restarted), and
// `ctl list` says so; a backend registers as soon as its front is up; `tsgi ctl` lists, scales
// and reloads a backend's workers through `tsgi serve --control`. Real processes and sockets.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { controlRequest } from '../../src/common/control.js';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, runCli, startBackend, startFront, tempDir } from '../helpers/procs.js';

interface CtlCtx extends Ctx {
  dir?: string;
  control?: string;
}

const listOf = async (control: string) => (await runCli(['ctl', '--control', control, 'list'])).stdout;
/** The first list of a backend just started: "serving on" comes before its control socket listens. */
const firstList = (control: string) => poll(async () => {
  const out = await listOf(control);
  return out === '' ? undefined : out;
}, 'the control socket answers');

const sticky = suite<CtlCtx>('sticky-drain', newCtx());
setUp(sticky, async (ctx) => {
  ctx.dir = tempDir('tsgi-ctl-');
  ctx.control = join(ctx.dir, 'front.ctl');
  // The backend starts first: it registers as soon as the front is up, not at its next 10 s announcement.
  ctx.backend = await startBackend(fixture('hello.js'), ['--register', ctx.control]);
  await ctx.backend.waitForStderr(/cannot register with the front at .*; will keep trying/);
  ctx.front = await startFront([], ['--control', ctx.control]);
  ctx.agent = newAgent();
});
sticky.after((ctx) => { if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true }); });

sticky('a backend started before its front registers once the front is up', async (ctx) => {
  await ctx.backend!.waitForStderr(/registered unix:\S+ with the front at/, 5000);
  await poll(async () => ((await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent })).status === 200 ? true : undefined), 'routed to it');
});

sticky('a drained address stays drained through the announcements of its registration, until ctl add', async (ctx) => {
  const control = ctx.control!;
  const address = `unix:${join(ctx.dir!, 'other.sock')}`; // what a second backend would announce
  const announce = (registration: string) => controlRequest(control, { op: 'add', address, registration });
  assert.is((await announce('r1')).held, undefined);
  const drain = await runCli(['ctl', '--control', control, 'drain', address]);
  assert.is(drain.code, 0, drain.stderr);
  assert.match(await listOf(control), new RegExp(`${address}\\s+(draining|drained)\\s`));
  // Its next announcement (same registration) does not bring it back.
  const again = await announce('r1');
  assert.ok(again.ok);
  assert.is(again.held, true);
  await poll(async () => (new RegExp(`${address}\\s+drained\\s+held\\s`).test(await listOf(control)) ? true : undefined),
    'listed as drained (held)');
  // ctl add ends the hold.
  const add = await runCli(['ctl', '--control', control, 'add', address]);
  assert.is(add.code, 0, add.stderr);
  assert.not.match(await listOf(control), /drained/);
  assert.is((await announce('r1')).held, undefined);
  // A restarted backend (a new registration) ends a hold too.
  assert.is((await runCli(['ctl', '--control', control, 'drain', address])).code, 0);
  assert.is((await announce('r1')).held, true);
  assert.is((await announce('r2')).held, undefined);
  assert.match(await listOf(control), new RegExp(`${address}\\s+\\S+\\s+control`));
  assert.not.match(await listOf(control), /drained/);
  assert.is((await runCli(['ctl', '--control', control, 'remove', address])).code, 0);
});

sticky('a backend withdrawing itself is not held', async (ctx) => {
  const control = ctx.control!;
  const address = `unix:${join(ctx.dir!, 'third.sock')}`;
  assert.ok((await controlRequest(control, { op: 'add', address, registration: 'w1' })).ok);
  assert.ok((await controlRequest(control, { op: 'drain', address, registration: 'w1' })).ok);
  assert.not.match(await listOf(control), /drained/);
  assert.is((await controlRequest(control, { op: 'add', address, registration: 'w1' })).held, undefined);
  assert.is((await runCli(['ctl', '--control', control, 'remove', address])).code, 0);
});

sticky.run();

const workers = suite<CtlCtx>('ctl-a-backend', newCtx());
setUp(workers, async (ctx) => {
  ctx.dir = tempDir('tsgi-ctl-serve-');
  ctx.control = join(ctx.dir, 'serve.ctl');
  ctx.backend = await startBackend(fixture('hello.js'), ['--workers', '2', '--control', ctx.control]);
});
workers.after((ctx) => { if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true }); });

const readyWorkers = async (control: string, generation = 1) =>
  (await listOf(control)).split('\n').filter((l) => new RegExp(`^\\d+\\s+\\d+\\s+${generation}\\s+ready\\b`).test(l)).length;

workers('ctl lists, scales and reloads the workers of a backend by its control socket', async (ctx) => {
  const control = ctx.control!;
  const list = await firstList(control);
  assert.match(list, /^WORKER\s+PID\s+GENERATION\s+STATE/);
  assert.match(list, /generation 1; target 2 worker\(s\)/);
  assert.is(await readyWorkers(control), 2);
  const up = await runCli(['ctl', '--control', control, 'scale', '+1']);
  assert.is(up.code, 0, up.stderr);
  assert.match(up.stdout, /target 3 worker\(s\)/);
  await poll(async () => ((await readyWorkers(control)) === 3 ? true : undefined), 'three ready workers');
  const to = await runCli(['ctl', '--control', control, 'scale', '1']);
  assert.is(to.code, 0, to.stderr);
  await poll(async () => ((await readyWorkers(control)) === 1 ? true : undefined), 'one ready worker');
  const reload = await runCli(['ctl', '--control', control, 'reload']);
  assert.is(reload.code, 0, reload.stderr);
  await poll(async () => ((await readyWorkers(control, 2)) === 1 && (await readyWorkers(control, 1)) === 0 ? true : undefined),
    'generation 2 serving alone');
  const bad = await runCli(['ctl', '--control', control, 'scale', '-1']);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /keeps 1 to 256; the target is 1/);
  const front = await runCli(['ctl', '--control', control, 'drain', 'unix:/x.sock']);
  assert.is(front.code, 1);
  assert.match(front.stderr, /use list, scale or reload \(drain is an op of a front's control socket/);
  assert.match(ctx.backend!.stderr(), /control: scale by \+1/);
});

workers.run();

const single = suite<CtlCtx>('ctl-a-single-process-backend', newCtx());
setUp(single, async (ctx) => {
  ctx.dir = tempDir('tsgi-ctl-one-');
  ctx.control = join(ctx.dir, 'serve.ctl');
  ctx.backend = await startBackend(fixture('hello.js'), ['--control', ctx.control]);
});
single.after((ctx) => { if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true }); });

single('without --workers, ctl lists the process and refuses scale and reload', async (ctx) => {
  const list = await firstList(ctx.control!);
  assert.match(list, new RegExp(`^0\\s+${ctx.backend!.pid}\\s+1\\s+ready`, 'm'));
  const scale = await runCli(['ctl', '--control', ctx.control!, 'scale', '+1']);
  assert.is(scale.code, 1);
  assert.match(scale.stderr, /scale needs --workers/);
  const reload = await runCli(['ctl', '--control', ctx.control!, 'reload']);
  assert.is(reload.code, 1);
  assert.match(reload.stderr, /reload needs --workers/);
});

single.run();
