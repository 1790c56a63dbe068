// End to end: what is Hono's own, on the Hono example (examples/hono/app.js, the real hono
// package) served unchanged by a real `tsgi serve` behind a real `tsgi front`, with undici as the
// client: a streamSSE() stream whose onAbort runs when the client leaves. What every adapter does
// (routes, bodies, streams, cookies, aborts, 404 and 500) is in adapters.test.ts.
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/procs.js';
import { call, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';

const HONO_APP = join(ROOT, 'examples/hono/app.js');

const test = suite<Ctx>('e2e/hono', newCtx());
setUp(test, async (ctx) => startPair(ctx, HONO_APP));

interface Stats { subscribers: number; subscribed: number; left: number; working: number; cancelled: number }

async function stats(url: string, agent: Ctx['agent']): Promise<Stats> {
  const res = await call(`${url}/stats`, { dispatcher: agent });
  assert.is(res.status, 200);
  return JSON.parse(res.text) as Stats;
}

test('a client that leaves a stream: the Hono stream sees onAbort', async ({ front, agent }) => {
  const before = await stats(front!.url, agent);
  const ac = new AbortController();
  const res = await request(`${front!.url}/events`, { dispatcher: agent, signal: ac.signal });
  const body = res.body[Symbol.asyncIterator]();
  const first = await body.next();
  assert.match(String(first.value), /event: ready/);
  ac.abort();
  await body.next().catch(() => {});
  const after = await poll(async () => {
    const s = await stats(front!.url, agent);
    return s.left > before.left ? s : undefined;
  }, 'the Hono stream to see the client leave');
  assert.is(after.subscribers, before.subscribers, 'the subscriber was removed');
});

test.run();
