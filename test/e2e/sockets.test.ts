// The Unix sockets tsgi creates — the front's --listen unix: and --control, tsgi serve's --socket
// and --uwsgi-socket — are created 0660 (or --socket-mode), a stale socket file (nobody listens)
// is replaced, and a live one is never stolen: the second process exits 2 with a clear error and
// the first keeps serving. A path that is not a socket is never replaced.
import { existsSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture, runCli, spawnCli, tempDir, type Proc } from '../helpers/procs.js';
import { accepting, getRequest, rawUntilClose } from '../helpers/raw-http.js';
import { request as uwsgiRequest } from '../helpers/uwsgi.js';

interface Paths { dir: string; socket: string; uwsgi: string; listen: string; control: string }

interface SocketCtx {
  paths?: Paths;
  procs: Proc[];
  setupError?: unknown;
}

const modeOf = (path: string): number => statSync(path).mode & 0o777;

/** Starts `tsgi serve` (both sockets) and `tsgi front` (unix listen and control) on `paths`. */
async function startBoth(ctx: SocketCtx, extra: string[] = []): Promise<{ serve: Proc; front: Proc }> {
  const p = ctx.paths!;
  const serve = spawnCli(['serve', fixture('hello.js'), '--socket', p.socket, '--uwsgi-socket', p.uwsgi, ...extra]);
  ctx.procs.push(serve);
  await serve.waitForStderr(/accepting uwsgi on unix:/);
  const front = spawnCli(['front', '--listen', `unix:${p.listen}`, '--control', p.control, '--backend', `unix:${p.socket}`, ...extra]);
  ctx.procs.push(front);
  await front.waitForStderr(/listening on http unix:/);
  await front.waitForStderr(/backend .* is ready/);
  return { serve, front };
}

async function assertServing(p: Paths): Promise<void> {
  assert.match((await rawUntilClose(p.listen, getRequest('/', { host: 'unix' }))).text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*<h1>Hello, web<\/h1>$/, 'the front serves over its Unix socket');
  const res = await uwsgiRequest(p.uwsgi, [['REQUEST_METHOD', 'GET'], ['REQUEST_URI', '/'], ['PATH_INFO', '/']]);
  assert.is(res.status, 200, 'the uwsgi socket serves');
}

const test = suite<SocketCtx>('e2e/unix-sockets', { procs: [] });
test.before((ctx) => {
  const dir = tempDir('tsgi-e2e-sockets-');
  ctx.paths = { dir, socket: join(dir, 'app.sock'), uwsgi: join(dir, 'app.uwsgi.sock'), listen: join(dir, 'front.sock'), control: join(dir, 'front.ctl') };
});
test.after(async (ctx) => {
  for (const p of ctx.procs) await p.stop();
  if (ctx.paths) rmSync(ctx.paths.dir, { recursive: true, force: true });
});

test('every Unix socket is created 0660 by default', async (ctx) => {
  const { serve, front } = await startBoth(ctx);
  const p = ctx.paths!;
  for (const path of [p.socket, p.uwsgi, p.listen, p.control]) assert.is(modeOf(path).toString(8), '660', path);
  await assertServing(p);
  await front.stop();
  await serve.stop();
});

test('--socket-mode 600 makes them 0600; killed with SIGKILL, they are left behind, stale', async (ctx) => {
  const { serve, front } = await startBoth(ctx, ['--socket-mode', '600']);
  const p = ctx.paths!;
  for (const path of [p.socket, p.uwsgi, p.listen, p.control]) assert.is(modeOf(path).toString(8), '600', path);
  await front.kill9();
  await serve.kill9();
  for (const path of [p.socket, p.uwsgi, p.listen, p.control]) {
    assert.ok(existsSync(path), `${path} is left behind`);
    assert.not.ok(await accepting(path), `nobody listens on ${path}`);
  }
});

test('stale socket files are replaced: a restart on the same paths serves', async (ctx) => {
  await startBoth(ctx);
  await assertServing(ctx.paths!);
});

test('a live socket is never stolen: the second process exits 2 saying which path is in use, the first keeps serving', async (ctx) => {
  const p = ctx.paths!;
  const spare = (name: string) => join(p.dir, name);
  const attempts: [string[], string][] = [
    [['serve', fixture('hello.js'), '--socket', p.socket], p.socket],
    [['serve', fixture('hello.js'), '--socket', spare('other.sock'), '--uwsgi-socket', p.uwsgi], p.uwsgi],
    [['serve', fixture('hello.js'), '--socket', spare('other2.sock'), '--uwsgi-socket', p.uwsgi, '--workers', '1'], p.uwsgi],
    [['front', '--listen', `unix:${p.listen}`, '--backend', `unix:${p.socket}`], p.listen],
    [['front', '--listen', `unix:${spare('other-front.sock')}`, '--control', p.control, '--backend', `unix:${p.socket}`], p.control],
  ];
  for (const [args, path] of attempts) {
    const r = await runCli(args);
    assert.is(r.code, 2, `tsgi ${args.join(' ')}: exit code 2 (stderr: ${r.stderr})`);
    assert.match(r.stderr, `${path} is in use: another process is listening on it`);
  }
  await assertServing(p);
  for (const path of [p.socket, p.uwsgi, p.listen, p.control]) assert.ok(await accepting(path), `${path} still answers`);
});

test('a front whose socket file was replaced leaves the new front\'s file alone when it stops', async (ctx) => {
  const dir = tempDir('tsgi-e2e-sockets-front-');
  const path = join(dir, 'front.sock');
  const args = ['front', '--listen', `unix:${path}`, '--backend', `unix:${ctx.paths!.socket}`];
  const old = spawnCli(args);
  ctx.procs.push(old);
  await old.waitForStderr(/listening on http unix:/);
  unlinkSync(path); // a deploy removed it, and a new front took the path
  const fresh = spawnCli(args);
  ctx.procs.push(fresh);
  await fresh.waitForStderr(/listening on http unix:/);
  await old.stop();
  assert.ok(await accepting(path), 'the new front\'s socket file is still there and accepts');
  await fresh.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a path that is not a socket is refused and left as it was', async (ctx) => {
  const file = join(ctx.paths!.dir, 'precious.txt');
  writeFileSync(file, 'keep me');
  const r = await runCli(['serve', fixture('hello.js'), '--socket', file]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, `${file} exists and is not a socket; refusing to replace it`);
  assert.is(readFileSync(file, 'utf8'), 'keep me');
});

test.run();
