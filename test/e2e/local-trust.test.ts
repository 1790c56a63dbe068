// End to end: what a local user reaching the front's sockets can do. The control socket adds only
// backends --control-allow admits (Unix sockets and loopback by default), and says why it refuses;
// `tsgi ctl` on a socket it cannot open prints one line and exits 1; /status keeps no query
// string of a request target; an admin server on a Unix socket answers any Host.
import { spawn } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { CLI, ROOT, runCli, spawnCli, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import { rawUntilClose } from '../helpers/raw-http.js';

interface TrustCtx extends Ctx {
  dir: string;
  control: string;
  admin: string;
  /** A second front, with --control-allow 10.0.0.0/8. */
  narrow?: FrontProc;
  narrowControl: string;
}

const test = suite<TrustCtx>('e2e/local-trust', { ...newCtx(), dir: '', control: '', admin: '', narrowControl: '' });

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-trust-');
  ctx.control = join(ctx.dir, 'front.ctl');
  ctx.admin = join(ctx.dir, 'admin.sock');
  ctx.narrowControl = join(ctx.dir, 'narrow.ctl');
  ctx.front = await startFront([], ['--control', ctx.control, '--admin', `unix:${ctx.admin}`, '--queue-size', '0']);
  ctx.narrow = await startFront([], ['--control', ctx.narrowControl, '--control-allow', '10.0.0.0/8']);
  ctx.extra.push(ctx.narrow);
});

test.after((ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

const ctl = (control: string, ...args: string[]) => runCli(['ctl', '--control', control, ...args]);

/** The control protocol spoken directly, as any program that can open the socket may. */
function rawControl(path: string, request: unknown): Promise<{ ok: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let text = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(JSON.stringify(request) + '\n'));
    s.on('data', (d: string) => {
      text += d;
      if (text.includes('\n')) {
        s.end();
        resolve(JSON.parse(text.slice(0, text.indexOf('\n'))) as { ok: boolean; error?: string });
      }
    });
    s.on('error', reject);
  });
}

test('default --control-allow: a tcp backend off this host, or named by a host name, is refused with a reason and a warn line', async (ctx) => {
  const far = await ctl(ctx.control, 'add', 'tcp:10.9.8.7:9000');
  assert.is(far.code, 1);
  assert.is(far.stderr, 'tsgi ctl: 10.9.8.7:9000 is not allowed: --control-allow admits unix, loopback\n');
  const named = await ctl(ctx.control, 'add', 'tcp:evil.example:9000');
  assert.is(named.code, 1);
  assert.is(named.stderr, 'tsgi ctl: evil.example:9000 is not allowed: --control-allow admits unix, loopback, '
    + 'checked against IP addresses; give evil.example\'s address instead of its name\n');
  const uwsgi = await rawControl(ctx.control, { op: 'add', address: 'uwsgi:tcp:[fd00::1]:3031' });
  assert.equal(uwsgi, { ok: false, error: 'uwsgi:[fd00::1]:3031 is not allowed: --control-allow admits unix, loopback' });
  await ctx.front!.waitForStderr(/refused add: uwsgi:\[fd00::1\]:3031/); // stderr comes through a pipe, maybe after the answer
  const warned = ctx.front!.stderr().split('\n').filter((l) => l.includes('control: refused add'));
  assert.is(warned.length, 3, warned.join('\n'));
  assert.match(warned[0]!, /warn.*control: refused add: 10\.9\.8\.7:9000 is not allowed: --control-allow admits unix, loopback$/);
  const list = await ctl(ctx.control, 'list');
  assert.is(list.code, 0);
  assert.not.match(list.stdout, /10\.9\.8\.7|evil|fd00/, 'none of them was added');
});

test('default --control-allow: Unix sockets, loopback addresses and localhost are added', async (ctx) => {
  const names = [`unix:${join(ctx.dir, 'b.sock')}`, '127.0.0.1:1', '[::1]:2', 'localhost:3'];
  for (const name of names) {
    const r = await ctl(ctx.control, 'add', name.startsWith('unix:') ? name : `tcp:${name}`);
    assert.is(r.code, 0, r.stderr);
  }
  const list = await ctl(ctx.control, 'list');
  for (const name of names) assert.ok(list.stdout.includes(name), `${name} in\n${list.stdout}`);
  for (const name of names) assert.is((await ctl(ctx.control, 'remove', name.startsWith('unix:') ? name : `tcp:${name}`)).code, 0);
});

test('--control-allow 10.0.0.0/8: that network only, no longer Unix sockets nor loopback', async (ctx) => {
  assert.is((await ctl(ctx.narrowControl, 'add', 'tcp:10.9.8.7:9000')).code, 0);
  const unix = await ctl(ctx.narrowControl, 'add', `unix:${join(ctx.dir, 'c.sock')}`);
  assert.is(unix.stderr, `tsgi ctl: unix:${join(ctx.dir, 'c.sock')} is not allowed: --control-allow admits 10.0.0.0/8\n`);
  const loop = await ctl(ctx.narrowControl, 'add', 'tcp:127.0.0.1:9000');
  assert.is(loop.code, 1);
  assert.match(loop.stderr, /^tsgi ctl: 127\.0\.0\.1:9000 is not allowed: --control-allow admits 10\.0\.0\.0\/8\n$/);
  assert.is((await ctl(ctx.narrowControl, 'remove', 'tcp:10.9.8.7:9000')).code, 0);
});

test('--control-allow with a value that is not an address: start-up fails saying what it takes', async () => {
  const r = await runCli(['front', '--listen', '127.0.0.1:0', '--control', '/nonexistent/x.ctl', '--control-allow', 'everyone']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--control-allow: expected loopback, unix, an IP address or a CIDR such as 10\.0\.0\.0\/8 or fd00::\/8, got 'everyone'/);
});

test('tsgi ctl on a socket it cannot open: one line saying what, why and which path; exit 1', async (ctx) => {
  const missing = join(ctx.dir, 'none', 'front.ctl');
  const r = await ctl(missing, 'list');
  assert.is(r.code, 1);
  assert.is(r.stdout, '');
  assert.is(r.stderr, `tsgi ctl: cannot connect to the control socket ${missing}: ENOENT (no such file)\n`);
  // A stale socket file: its front was killed.
  const stale = join(ctx.dir, 'stale.ctl');
  const dead = spawnCli(['front', '--listen', '127.0.0.1:0', '--control', stale]);
  await dead.waitForStderr(/control socket on/);
  await dead.kill9();
  const refused = await ctl(stale, 'add', 'unix:/x.sock');
  assert.is(refused.code, 1);
  assert.is(refused.stderr, `tsgi ctl: cannot connect to the control socket ${stale}: ECONNREFUSED (nothing is listening on it)\n`);
  const file = join(ctx.dir, 'not-a-socket');
  writeFileSync(file, '');
  const notSocket = await ctl(file, 'list');
  assert.is(notSocket.code, 1);
  assert.match(notSocket.stderr, new RegExp(`^tsgi ctl: cannot connect to the control socket ${file}: E[A-Z]+ \\([^)]+\\)\\n$`));
});

test('the control socket is born with --socket-mode 660: another user (nobody) cannot open it', async (ctx) => {
  if (process.getuid?.() !== 0) {
    process.stdout.write('local-trust: skipping the other-user test — it needs root to run tsgi ctl as nobody\n');
    return;
  }
  chmodSync(ctx.dir, 0o755);
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI,
      'ctl', '--control', ctx.control, 'add', 'unix:/tmp/evil.sock'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('error', reject);
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stderr }); });
  });
  assert.is(r.code, 1);
  assert.match(r.stderr, new RegExp(`^tsgi ctl: cannot connect to the control socket ${ctx.control}: EACCES \\(permission denied`));
  assert.not.match((await ctl(ctx.control, 'list')).stdout, /evil/);
});

test('/status keeps no query string of a request target; an admin server on a Unix socket answers any Host', async (ctx) => {
  // No backend and --queue-size 0: a 503 at once, and a warn line naming the request.
  assert.is((await call(`${ctx.front!.url}/private/report?token=s3cret-42&user=ann`)).status, 503);
  const r = await rawUntilClose(ctx.admin, 'GET /status HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n');
  const text = r.bytes.toString('utf8');
  assert.match(text, /^HTTP\/1\.1 200 /);
  const status = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { recentErrors: { message: string }[] };
  const messages = status.recentErrors.map((e) => e.message);
  assert.ok(messages.some((m) => m.startsWith('503 GET /private/report?…: ')), messages.join('\n'));
  assert.not.match(text, /s3cret|user=ann/);
});

test.run();
