// A failed reload (SIGHUP onto broken code) leaves the working generation serving, and a worker
// of it respawned afterwards runs that generation's code, not the broken file now on disk.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newCtx, poll, setUp, startPair, versionApp, type Ctx } from '../helpers/e2e.js';
import { tempDir } from '../helpers/procs.js';

interface ReloadCtx extends Ctx {
  dir?: string;
}

const s = suite<ReloadCtx>('failed-reload-respawn', newCtx());
setUp(s, async (ctx) => {
  ctx.dir = tempDir('tsgi-reload-');
  writeFileSync(join(ctx.dir, 'app.js'), versionApp('v1'));
  await startPair(ctx, join(ctx.dir, 'app.js'), ['--workers', '2']);
});
s.after((ctx) => { if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true }); });

const pidOf = (text: string) => Number(/pid=(\d+)/.exec(text)![1]);

s('after a failed reload, respawned workers load the serving generation, not the broken file', async (ctx) => {
  const first = await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent });
  assert.match(first.text, /^v1 pid=/);
  const original = [...ctx.backend!.stderr().matchAll(/worker \d+ \(pid (\d+), generation 1\) ready/g)].map((m) => Number(m[1]));
  assert.is(original.length, 2);
  writeFileSync(join(ctx.dir!, 'app.js'), 'export default (;\n'); // a syntax error
  process.kill(ctx.backend!.pid, 'SIGHUP');
  await ctx.backend!.waitForStderr(/reload failed: generation 2 cannot load the application; generation 1 keeps serving/);
  // Both workers of generation 1 die: their replacements must serve v1 again.
  for (const pid of original) process.kill(pid, 'SIGKILL');
  await ctx.backend!.waitForStderr(/(changed on disk since this generation read it; loading the copy it read[^]*){2}/);
  await poll(async () => {
    const r = await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent });
    if (r.status !== 200) return undefined;
    assert.match(r.text, /^v1 pid=/);
    return original.includes(pidOf(r.text)) ? undefined : true;
  }, 'a respawned worker answering v1');
  assert.not.match(ctx.backend!.stderr(), /could not load the application|ENOENT/);
  // Fixed code on disk: the next reload takes it.
  writeFileSync(join(ctx.dir!, 'app.js'), versionApp('v2'));
  process.kill(ctx.backend!.pid, 'SIGHUP');
  await poll(async () => ((await call(`${ctx.front!.url}/`, { dispatcher: ctx.agent })).text.startsWith('v2') ? true : undefined), 'v2 after a good reload');
});

s.run();
