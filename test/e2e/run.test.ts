// `tsgi run`, the development server: one process serves the app over HTTP (no front), says at
// start that it is not for production, and with --reload restarts the app when a file under
// its directory changes — on the same port, waiting for a fix when an edit breaks the app.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent } from 'undici';
import { call, poll } from '../helpers/e2e.js';
import { fixture, runCli, spawnCli, tempDir, type Proc } from '../helpers/procs.js';

interface Ctx {
  dir: string;
  procs: Proc[];
  agent: Agent;
}

const test = suite<Ctx>('e2e/run', { dir: '', procs: [], agent: new Agent() });

test.before((ctx) => {
  ctx.dir = tempDir('tsgi-e2e-run-');
  // No keep-alive: each poll sees the app running now, not a connection to one that left.
  ctx.agent = new Agent({ pipelining: 0, headersTimeout: 10_000, bodyTimeout: 10_000 });
});

test.after(async (ctx) => {
  for (const p of ctx.procs) await p.stop();
  await ctx.agent.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('tsgi run APP serves it over HTTP from one process, and says it is not for production', async (ctx) => {
  const proc = spawnCli(['run', fixture('environ.js'), '--port', '0']);
  ctx.procs.push(proc);
  const m = await proc.waitForStderr(/tsgi run\[(\d+)\] info: serving \S+environ\.js on http:\/\/127\.0\.0\.1:(\d+)\//);
  assert.is(Number(m[1]), proc.pid, 'served by the process started, no child');
  assert.match(proc.stderr(), /warn: a development server: .*use tsgi front and tsgi serve in production/);
  const r = await call(`http://127.0.0.1:${m[2]}/x/y?q=1`, { dispatcher: ctx.agent, headers: { 'x-test': 'yes' } });
  assert.is(r.status, 200);
  const e = JSON.parse(r.text) as Record<string, string>;
  assert.is(e.PATH_INFO, '/x/y');
  assert.is(e.QUERY_STRING, 'q=1');
  assert.is(e.HTTP_X_TEST, 'yes');
  assert.is(e.REMOTE_ADDR, '127.0.0.1');
  assert.is(e.SERVER_PORT, m[2]);
  assert.equal(await proc.stop(), { code: 0, signal: null });
});

test('tsgi run with an app that cannot load: exit 3, one line', async ({ dir }) => {
  const r = await runCli(['run', join(dir, 'missing.js'), '--port', '0']);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /tsgi run\[\d+\] error: APP_MODULE: application module \S+missing\.js does not exist\n$/);
});

test('--reload: an edit under the app\'s directory restarts it on the same port; a broken edit waits for the next', async (ctx) => {
  const appDir = join(ctx.dir, 'app');
  mkdirSync(join(appDir, 'lib'), { recursive: true });
  const app = join(appDir, 'app.js');
  writeFileSync(join(appDir, 'lib', 'name.js'), "export const name = 'one';\n");
  const source = (version: string) => `import { name } from './lib/name.js';
export default function application(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [name + ' ${version} pid=' + process.pid];
}
`;
  writeFileSync(app, source('v1'));
  const proc = spawnCli(['run', app, '--port', '0', '--reload']);
  ctx.procs.push(proc);
  const m = await proc.waitForStderr(/serving \S+app\.js on http:\/\/127\.0\.0\.1:(\d+)\/ \(restarted on changes\)/);
  assert.match(proc.stderr(), `--reload: watching ${appDir}`);
  const url = `http://127.0.0.1:${m[1]}/`;
  const get = async (): Promise<string> => (await call(url, { dispatcher: ctx.agent })).text;
  const first = await get();
  assert.match(first, /^one v1 pid=(\d+)$/);
  const firstPid = Number(/pid=(\d+)/.exec(first)![1]);
  assert.is.not(firstPid, proc.pid, 'the app runs in a child');

  writeFileSync(app, source('v2'));
  const second = await poll(async () => { const t = await get(); return t.startsWith('one v2') ? t : undefined; }, 'v2 after the edit');
  assert.match(proc.stderr(), /app\.js changed; restarting the app/);
  assert.not.ok(alive(firstPid), 'the old child is gone');

  writeFileSync(join(appDir, 'lib', 'name.js'), "export const name = 'two';\n");
  await poll(async () => ((await get()).startsWith('two v2') ? true : undefined), 'a change in a subdirectory restarts too');

  writeFileSync(app, 'export default {;\n');
  await proc.waitForStderr(/error: cannot load \S+app\.js: .*; waiting for a change under/);
  writeFileSync(app, source('v3'));
  const third = await poll(async () => { const t = await get(); return t.startsWith('two v3') ? t : undefined; }, 'v3 after the fix');
  const lastPid = Number(/pid=(\d+)/.exec(third)![1]);
  assert.is.not(lastPid, Number(/pid=(\d+)/.exec(second)![1]));
  assert.equal(await proc.stop(), { code: 0, signal: null });
  assert.not.ok(alive(lastPid), 'stopping tsgi run stops its child');
});

test.run();
