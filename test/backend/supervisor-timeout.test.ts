// The supervisor's side of --timeout and of a failed reload, on fake workers: a worker that
// reports a request past --timeout is logged (the request and its age), stopped with a 1 s grace
// and replaced; and each generation keeps a copy of the app's entry module, so a worker respawned
// after a failed reload is given the serving generation's code, not the file on disk.
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT } from '../../src/common/exit-codes.js';
import { Supervisor, type SupervisorOptions } from '../../src/backend/supervisor.js';
import type { WorkerConfig } from '../../src/backend/worker.js';
import { type FakeChild, fakeClock, fakeSpawn, recordingLogger, teardown, turn } from '../helpers/fake-children.js';

interface Ctx {
  stop: (() => Promise<void>) | null;
  children: FakeChild[];
  dir: string | null;
}

const test = suite<Ctx>('backend/supervisor-timeout', { stop: null, children: [], dir: null });

function make(ctx: Ctx, app: string, over: Partial<SupervisorOptions> = {}) {
  const fake = fakeSpawn<WorkerConfig>();
  const log = recordingLogger();
  const sup = new Supervisor({
    address: null, workers: 1, log, gracefulTimeoutMs: 30_000, requestTimeoutMs: 2000, maxRequests: 0, maxRequestsJitter: 0,
    worker: { app, scriptName: '', maxStreams: 16, window: 65536, maxFrameSize: 16384, gracefulTimeoutMs: 30_000, logLevel: 'info' },
    spawn: fake.spawn, now: fakeClock().now,
    ...over,
  });
  ctx.stop = () => sup.stop({ graceful: false });
  ctx.children = fake.children;
  return { sup, log, fake };
}

test.after.each(async (ctx) => {
  if (ctx.stop !== null) await teardown([], ctx.children, ctx.stop);
  ctx.stop = null;
  if (ctx.dir !== null) rmSync(ctx.dir, { recursive: true, force: true });
  ctx.dir = null;
});

test('a worker reporting a request past --timeout: logged with the request and its age, stopped within 1 s, replaced', async (ctx) => {
  const { sup, log, fake } = make(ctx, '/nowhere/app.js');
  const start = sup.start();
  const [a] = await fake.made(1);
  a!.say({ type: 'ready' });
  await start;
  a!.say({ type: 'timeout', requests: [{ method: 'GET', uri: '/slow?x=1', ms: 2043 }] });
  await turn();
  assert.equal(a!.got('stop').map((s) => s.message), [{ type: 'stop', graceMs: 1000, closeCode: 1012 }], 'a short grace, not --graceful-timeout; its WebSockets close with 1012');
  assert.ok(log.lines.some((l) => /worker 1 \(pid [^)]*\): request GET \/slow\?x=1 \(running 2\.0 s\) exceeded --timeout 2 s: answered 504; killing the worker in 1 s/.test(l)),
    log.lines.join('\n'));
  assert.is(sup.restartsByReason.get('timeout'), 1);
  const [, b] = await fake.made(2);
  assert.ok(b, 'a replacement is spawned at once');
  // A second report from the worker being killed changes nothing.
  a!.say({ type: 'timeout', requests: [{ method: 'GET', uri: '/other', ms: 2100 }] });
  await turn();
  assert.is(sup.restartsByReason.get('timeout'), 1);
});

test('after a failed reload, a respawned worker of the serving generation gets that generation\'s copy of the app', async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-sup-code-'));
  const app = join(ctx.dir, 'app.js');
  writeFileSync(app, 'export default "v1";\n');
  const { sup, fake } = make(ctx, app, { requestTimeoutMs: 0 });
  const start = sup.start();
  const [a] = await fake.made(1);
  a!.say({ type: 'ready' });
  await start;
  const first = a!.config as WorkerConfig;
  assert.is(first.app, realpathSync(app));
  assert.is(readFileSync(first.appSnapshot!, 'utf8'), 'export default "v1";\n');
  writeFileSync(app, 'export default (;\n');
  sup.reload();
  const [, b] = await fake.made(2);
  const second = b!.config as WorkerConfig;
  assert.is(readFileSync(second.appSnapshot!, 'utf8'), 'export default (;\n', 'the new generation reads the new code');
  b!.exit(EXIT.APP_LOAD); // the reload fails: generation 1 keeps serving
  await turn();
  assert.is(sup.generation, 1);
  a!.exit(null, 'SIGKILL'); // and its worker dies
  const [, , c] = await fake.made(3);
  const third = c!.config as WorkerConfig;
  assert.is(third.appSnapshot, first.appSnapshot);
  assert.is(readFileSync(third.appSnapshot!, 'utf8'), 'export default "v1";\n', 'the respawn gets generation 1\'s code');
});

test.run();
