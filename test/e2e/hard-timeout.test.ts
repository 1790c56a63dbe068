// --timeout is a hard limit: a request past it gets 504 at once, whether its app awaits or
// spins on the CPU, the log lines name it, and (with --workers) its worker is killed and
// replaced. Real front and backend processes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { fixture, startUwsgiBackend } from '../helpers/procs.js';
import { request as uwsgiRequest } from '../helpers/uwsgi.js';

const APP = fixture('stuck.js');

async function pid(ctx: Ctx): Promise<string> {
  const r = await call(`${ctx.front!.url}/pid`, { dispatcher: ctx.agent });
  assert.is(r.status, 200);
  return r.text;
}

const workers = suite<Ctx>('hard --timeout with --workers', newCtx());
setUp(workers, (ctx) => startPair(ctx, APP, ['--workers', '1', '--timeout', '1'], ['--response-timeout', '30']));

workers('an awaiting request past --timeout gets 504 and its worker is killed and replaced', async (ctx) => {
  const before = await pid(ctx);
  const r = await call(`${ctx.front!.url}/sleep?ms=8000`, { dispatcher: ctx.agent });
  assert.is(r.status, 504);
  await ctx.backend!.waitForStderr(/request GET \/sleep\?ms=8000 \(running 1\.\d s\) exceeded --timeout 1 s: answered 504; killing the worker/);
  await ctx.front!.waitForStderr(/504 GET \/sleep\?ms=8000: .*--timeout/);
  const after = await poll(async () => {
    const p = await pid(ctx).catch(() => undefined);
    return p !== undefined && p !== before ? p : undefined;
  }, 'a new worker');
  assert.is.not(after, before);
  await poll(async () => (isAlive(Number(before)) ? undefined : true), 'the timed-out worker to exit');
});

workers('a request spinning on the CPU past --timeout gets 504 and its worker is killed', async (ctx) => {
  const before = await pid(ctx);
  const r = await call(`${ctx.front!.url}/spin?ms=8000`, { dispatcher: ctx.agent });
  assert.is(r.status, 504);
  // The front answered it (the worker could not): its line names the request and its age.
  await ctx.front!.waitForStderr(/504 GET \/spin\?ms=8000: \S+ did not finish the request within its --timeout 1 s \(running 1\.\d s\)/);
  await ctx.backend!.waitForStderr(/worker \d+ \(pid \d+\) is stuck: no heartbeat for [\d.]+ s, past --timeout 1 s.*; killing it/);
  const after = await poll(async () => {
    const p = await pid(ctx).catch(() => undefined);
    return p !== undefined && p !== before ? p : undefined;
  }, 'a new worker');
  assert.is.not(after, before);
  await poll(async () => (isAlive(Number(before)) ? undefined : true), 'the stuck worker to exit');
});

workers('a request that ends within --timeout is answered', async (ctx) => {
  const r = await call(`${ctx.front!.url}/sleep?ms=10`, { dispatcher: ctx.agent });
  assert.is(r.status, 200);
  assert.is(r.text, 'done /sleep\n');
});

workers.run();

const single = suite<Ctx>('hard --timeout in one process', newCtx());
setUp(single, (ctx) => startPair(ctx, APP, ['--timeout', '1'], ['--response-timeout', '30']));

single('an awaiting request past --timeout gets 504 and a log line naming it', async (ctx) => {
  const r = await call(`${ctx.front!.url}/sleep?ms=8000`, { dispatcher: ctx.agent });
  assert.is(r.status, 504);
  await ctx.backend!.waitForStderr(/request GET \/sleep\?ms=8000 \(running 1\.\d s\) exceeded --timeout 1 s: answered 504/);
  const again = await call(`${ctx.front!.url}/sleep?ms=1`, { dispatcher: ctx.agent });
  assert.is(again.status, 200);
});

single.run();

const uwsgi = suite<Ctx>('hard --timeout on the uwsgi socket', newCtx());
setUp(uwsgi, async (ctx) => { ctx.backend = await startUwsgiBackend(APP, ['--workers', '1', '--timeout', '1']); });

uwsgi('a uwsgi request past --timeout gets 504 and the connection ends', async (ctx) => {
  const r = await uwsgiRequest(ctx.backend!.socket, [['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/sleep?ms=8000'],
    ['PATH_INFO', '/sleep'], ['QUERY_STRING', 'ms=8000'], ['SERVER_PROTOCOL', 'HTTP/1.1'], ['SERVER_NAME', 'x'], ['SERVER_PORT', '80']]);
  assert.is(r.status, 504);
  await ctx.backend!.waitForStderr(/request GET \/sleep\?ms=8000 \(running 1\.\d s\) exceeded --timeout 1 s: answered 504/);
});

uwsgi.run();

function isAlive(p: number): boolean {
  try {
    process.kill(p, 0);
    return true;
  } catch {
    return false;
  }
}
