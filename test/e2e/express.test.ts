// End to end: what is Express's own, on the Express example (examples/express/app.js, the real
// express package) served unchanged by a real `tsgi serve` behind a real `tsgi front`, with undici
// as the client: req.ip, req.protocol and req.hostname, body-parser's limit, res.sendFile with
// Range. What every adapter does (routes, bodies, streams, cookies, aborts, 404 and 500) is in
// adapters.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/procs.js';
import { call, newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';

const EXPRESS_APP = join(ROOT, 'examples/express/app.js');

const test = suite<Ctx>('e2e/express', newCtx());
setUp(test, async (ctx) => startPair(ctx, EXPRESS_APP));

test('req.ip, req.protocol and req.hostname come from the front; Express names itself in X-Powered-By', async ({ front, agent }) => {
  const home = await call(`${front!.url}/`, { dispatcher: agent });
  assert.is(home.status, 200);
  assert.is(home.text, 'Hello from Express on tsgi\n');
  assert.is(home.headers['x-powered-by'], 'Express');
  const user = await call(`${front!.url}/api/users/42?x=1`, { dispatcher: agent, headers: { host: 'example.test' } });
  assert.is(user.status, 200);
  assert.equal(JSON.parse(user.text), { id: '42', url: '/api/users/42?x=1', ip: '127.0.0.1', protocol: 'http', host: 'example.test' });
});

test('express.json({ limit: \'1mb\' }): a longer JSON body is refused 413 by body-parser, through the app\'s error handler', async ({ front, agent }) => {
  const big = Buffer.from(JSON.stringify({ a: 'x'.repeat(1024 * 1024) }));
  // reset: the front may close this connection after the answer, having dropped the unread body.
  const res = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: big, reset: true,
  });
  assert.is(res.status, 413, res.text);
  assert.equal(JSON.parse(res.text), { error: 'request entity too large', message: 'request entity too large' });
  const ok = await call(`${front!.url}/api/echo`, {
    method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: '{"small":1}',
  });
  assert.is(ok.status, 201);
  assert.equal(JSON.parse(ok.text), { json: { small: 1 } });
});

test('res.sendFile: a file piped into res, whole and by Range', async ({ front, agent }) => {
  const source = readFileSync(EXPRESS_APP, 'utf8');
  const whole = await call(`${front!.url}/source`, { dispatcher: agent });
  assert.is(whole.status, 200);
  assert.is(whole.text, source);
  assert.is(whole.headers['content-length'], String(Buffer.byteLength(source)));
  const part = await call(`${front!.url}/source`, { dispatcher: agent, headers: { range: 'bytes=3-12' } });
  assert.is(part.status, 206);
  assert.is(part.text, source.slice(3, 13));
});

test.run();
