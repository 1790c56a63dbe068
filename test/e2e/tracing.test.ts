// The request lifecycle on node:diagnostics_channel, with the front and a backend embedded in
// this process (front() and serve()): a subscriber sees every exchange at the front (start,
// dispatch, head, end) and every app call at the backend, with no log line.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { front, serve, type Backend, type Front } from '../../src/index.js';
import { eventually } from '../helpers/assert.js';

const NAMES = ['tsgi:front:request:start', 'tsgi:front:request:dispatch', 'tsgi:front:request:head', 'tsgi:front:request:end',
  'tsgi:serve:app:start', 'tsgi:serve:app:end'];

interface Ctx { dir?: string; backend?: Backend; front?: Front; seen: [string, Record<string, unknown>][] }
const test = suite<Ctx>('e2e/tracing', { seen: [] });
const listeners = new Map<string, (message: unknown) => void>();

test.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-tracing-'));
  const socket = join(ctx.dir, 'app.sock');
  ctx.backend = await serve({
    app: (environ, startResponse) => {
      startResponse('201 Created', [['Content-Type', 'text/plain']]);
      return [`made ${environ.PATH_INFO}`];
    },
    socket,
  });
  ctx.front = await front({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [{ kind: 'unix', path: socket }] });
  for (const name of NAMES) {
    const fn = (message: unknown) => ctx.seen.push([name, message as Record<string, unknown>]);
    listeners.set(name, fn);
    subscribe(name, fn);
  }
});

test.after(async (ctx) => {
  for (const [name, fn] of listeners) unsubscribe(name, fn);
  await ctx.front?.stop({ graceful: false });
  await ctx.backend?.stop({ graceful: false });
  if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true });
});

test('one request: start, dispatch, the app call, head and end, in order, with what each knows', async (ctx) => {
  const address = ctx.front!.address;
  assert.is(address.kind, 'tcp');
  const res = await request(`http://127.0.0.1:${(address as { port: number }).port}/thing?x=1`);
  assert.is(res.statusCode, 201);
  assert.is(await res.body.text(), 'made /thing');
  await eventually(() => ctx.seen.some(([name]) => name === 'tsgi:front:request:end'), 'the end of the exchange');
  assert.equal(ctx.seen.map(([name]) => name), [
    'tsgi:front:request:start', 'tsgi:front:request:dispatch', 'tsgi:serve:app:start', 'tsgi:serve:app:end',
    'tsgi:front:request:head', 'tsgi:front:request:end',
  ]);
  const by = Object.fromEntries(ctx.seen);
  assert.equal(by['tsgi:front:request:start'], { method: 'GET', url: '/thing?x=1', remote: '127.0.0.1' });
  assert.match(String(by['tsgi:front:request:dispatch']!.backend), /^unix:.*app\.sock$/);
  const { environ, ...start } = by['tsgi:serve:app:start']!;
  assert.equal(start, { method: 'GET', uri: '/thing?x=1' });
  assert.is((environ as Record<string, unknown>).PATH_INFO, '/thing');
  const { environ: same, ...end0 } = by['tsgi:serve:app:end']!;
  assert.equal(end0, { method: 'GET', uri: '/thing?x=1', status: 201, aborted: false });
  assert.is(same, environ, 'the same environ: a subscriber can tie the end to the start');
  // dispatch and head carry the exchange, the same object: a subscriber can tie them together.
  assert.type(by['tsgi:front:request:dispatch']!.exchange, 'object');
  assert.is(by['tsgi:front:request:head']!.exchange, by['tsgi:front:request:dispatch']!.exchange);
  assert.is(by['tsgi:front:request:head']!.status, 201);
  const end = by['tsgi:front:request:end']!;
  assert.is(end.status, 201);
  assert.is(end.bytesOut, 'made /thing'.length);
  assert.type(end.ms, 'number');
});

test.run();
