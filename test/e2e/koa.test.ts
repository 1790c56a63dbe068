// End to end: a Koa app (test/fixtures/koa-app.js, the real koa package) run by a real
// `tsgi serve` behind a real `tsgi front`, with undici and a raw socket as clients: a handler that
// calls ctx.req.socket.destroy() cuts the client's connection (no response at all), Koa's
// app.on('error') hears the error, and requests on other connections go on unharmed. What every
// adapter does, Koa included, is in adapters.test.ts.
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fixture, tempDir } from '../helpers/procs.js';
import { call, newAgent, newCtx, poll, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { rawUntilClose } from '../helpers/raw-http.js';
import { streamReader } from '../helpers/bodies.js';

interface Heard { message: string; path: string; headerSent: boolean }

const test = suite<Ctx>('e2e/koa', newCtx());
const logDir = tempDir('tsgi-koa-');
const accessLog = join(logDir, 'access.log');
setUp(test, (ctx) => startPair(ctx, fixture('koa-app.js'), [], ['--access-log', accessLog, '--log-format', 'common']));
test.after(() => rmSync(logDir, { recursive: true, force: true }));

async function heard(ctx: Ctx): Promise<Heard[]> {
  const res = await call(`${ctx.front!.url}/errors`, { dispatcher: ctx.agent });
  assert.is(res.status, 200);
  return JSON.parse(res.text) as Heard[];
}

test('regression: ctx.req.socket.destroy(err) cuts the client\'s connection (no 500, no byte), app.on(\'error\') hears it', async (ctx) => {
  const { front, backend } = ctx;
  const before = (await heard(ctx)).length;
  // undici: a socket error, not a response.
  const cutAgent = newAgent();
  try {
    const outcome = await request(`${front!.url}/cut`, { dispatcher: cutAgent }).then(
      async (res) => `a response: ${res.statusCode} ${await res.body.text()}`,
      (err: unknown) => err,
    );
    assert.instance(outcome, Error, String(outcome));
    assert.is((outcome as Error & { code?: string }).code, 'UND_ERR_SOCKET', (outcome as Error).message);
  } finally {
    await cutAgent.destroy();
  }
  // The bytes: nothing at all before the close.
  const raw = await rawUntilClose(front!.port, 'GET /cut HTTP/1.1\r\nHost: koa.test\r\n\r\n');
  assert.is(raw.text, '', 'the connection closes without a response');
  const all = await poll(async () => {
    const list = await heard(ctx);
    return list.length >= before + 2 ? list : undefined;
  }, 'app.on(\'error\') to hear both cuts');
  assert.equal(all.slice(before), [
    { message: 'x', path: '/cut', headerSent: true },
    { message: 'x', path: '/cut', headerSent: true },
  ], 'Koa took the socket for unwritable: it emitted the error and sent no 500');
  await front!.waitForStderr(/warn: GET \/cut: .*client connection cut, no response/);
  await backend!.waitForStderr(/GET \/cut: the application cut the connection, no response; stream reset/);
  assert.not.match(backend!.stderr(), /error:/, 'not an application error');
  // The access log records nginx's 444 ("closed without a response"), not a client's 499.
  await poll(async () => (/"GET \/cut HTTP\/1\.1" 444 - /.test(readFileSync(accessLog, 'utf8')) ? true : undefined), 'the access log line of a cut');
});

test('ctx.req.socket.destroy() without an error: the connection is cut too, and Koa hears no error', async (ctx) => {
  const before = (await heard(ctx)).length;
  const raw = await rawUntilClose(ctx.front!.port, 'GET /cut-quietly HTTP/1.1\r\nHost: koa.test\r\n\r\n');
  assert.is(raw.text, '');
  // The request after it on a new connection is served, and Koa heard nothing new.
  assert.is((await heard(ctx)).length, before);
});

test('a cut leaves other connections alone: a response in progress elsewhere completes, new requests are served', async (ctx) => {
  const { front, agent } = ctx;
  const held = await request(`${front!.url}/hold`, { dispatcher: agent });
  assert.is(held.statusCode, 200);
  const body = streamReader(held.body);
  await body.until('started\n');
  const others = newAgent();
  try {
    const cut = await request(`${front!.url}/cut`, { dispatcher: others }).then(() => null, (err: unknown) => err);
    assert.instance(cut, Error);
    const next = await call(`${front!.url}/`, { dispatcher: others });
    assert.is(next.status, 200, 'a new connection after the cut is served');
    assert.is(next.text, 'hello from Koa\n');
    const release = await call(`${front!.url}/release`, { method: 'POST', dispatcher: others });
    assert.is(release.status, 200);
  } finally {
    await others.destroy();
  }
  await body.until('done\n');
  assert.ok((await body.next()).done, 'the held response ends normally');
  assert.is(body.seen(), 'started\ndone\n');
});

test.run();
