// End to end: the Hono example's HEAD through a real front and backend carries no
// Content-Length: 0 for a GET that has a body (the GET's length, or none).
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { request } from 'undici';
import { newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { ROOT } from '../helpers/procs.js';

const test = suite<Ctx>('e2e/head-framing', newCtx());
setUp(test, (ctx) => startPair(ctx, join(ROOT, 'examples/hono/app.js')));

test('Hono HEAD: no Content-Length: 0 when the GET has a body', async ({ front, agent }) => {
  const get = await request(`${front!.url}/api/users/7`, { dispatcher: agent });
  const body = await get.body.text();
  assert.ok(body.length > 0);
  const res = await request(`${front!.url}/api/users/7`, { method: 'HEAD', dispatcher: agent });
  assert.is(res.statusCode, 200);
  const length = res.headers['content-length'];
  assert.ok(length === undefined || length === String(Buffer.byteLength(body)), `content-length: ${String(length)}`);
  assert.is(await res.body.text(), '');
});

test.run();
