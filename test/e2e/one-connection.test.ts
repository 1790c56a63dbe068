// End to end: requests one at a time on one client connection, the case where the front and the
// backend write each frame at the end of the callback that made it (one stream in flight), and
// the same while other clients keep several streams in flight (frames batched per loop turn):
// every answer is whole, its own, and in order, whichever way each frame went out.
import { Pool } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture } from '../helpers/procs.js';
import { newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';

const test = suite<Ctx>('e2e/one-connection', newCtx());
// echo.js answers from an async generator: its head and body frames come from promise jobs and
// from later reads of the request body, not all from the callback that received the request.
setUp(test, (ctx) => startPair(ctx, fixture('echo.js')));

/** Sends `count` bodies one after another on `pool`, each checked against its echo. */
async function oneAtATime(pool: Pool, tag: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const body = `${tag}-${i}-${'x'.repeat(i * 37 % 3000)}`;
    const res = await pool.request({ path: '/', method: 'POST', body });
    assert.is(res.statusCode, 200);
    assert.is(await res.body.text(), body, `${tag} request ${i}`);
  }
}

test('one connection, requests one at a time: each echo is whole and its own', async ({ front }) => {
  const pool = new Pool(front!.url, { connections: 1, pipelining: 1 });
  try {
    await oneAtATime(pool, 'alone', 200);
  } finally {
    await pool.destroy();
  }
});

test('one connection one at a time beside clients with several requests in flight: every echo is its own', async ({ front }) => {
  const single = new Pool(front!.url, { connections: 1, pipelining: 1 });
  const busy = new Pool(front!.url, { connections: 8, pipelining: 1 });
  try {
    const crowd = Array.from({ length: 8 }, (_, c) => oneAtATime(busy, `busy${c}`, 40));
    await Promise.all([oneAtATime(single, 'single', 150), ...crowd]);
    // And alone again once the crowd has gone.
    await oneAtATime(single, 'after', 20);
  } finally {
    await single.destroy();
    await busy.destroy();
  }
});

test.run();
