// Start-up tells the truth: every failure is one log line naming the option and the real cause
// (a missing directory, a port in use, an app that cannot load), with exit code 2 (options) or
// 3 (the app), never a stack; --check validates the options and loads the app without binding;
// a config file may name the app; each process logs under one tag; with NOTIFY_SOCKET set (systemd
// Type=notify) READY=1 is sent once the listeners are bound.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../helpers/e2e.js';
import { CLI, fixture, runCli, spawnCli, tempDir, type Proc } from '../helpers/procs.js';

interface Ctx {
  dir: string;
  busy: Server | null;
  busyPort: number;
  procs: Proc[];
}

const test = suite<Ctx>('e2e/startup', { dir: '', busy: null, busyPort: 0, procs: [] });

test.before(async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-startup-');
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  ctx.busy = busy;
  ctx.busyPort = (busy.address() as { port: number }).port;
});

test.after(async (ctx) => {
  for (const p of ctx.procs) await p.stop();
  await new Promise<void>((resolve) => (ctx.busy ? ctx.busy.close(() => resolve()) : resolve()));
  rmSync(ctx.dir, { recursive: true, force: true });
});

/** The log lines of a failed start: exactly one, an error, with no stack frame after it. */
function oneLine(stderr: string, tag: string): string {
  const lines = stderr.split('\n').filter((l) => l !== '' && !/ (info|debug): /.test(l) && !/ warn: a development server/.test(l));
  assert.is(lines.length, 1, `one error line, got:\n${stderr}`);
  assert.match(lines[0]!, new RegExp(`^\\S+ tsgi ${tag}\\[\\d+\\] error: `), `tagged ${tag}: ${lines[0]}`);
  assert.not.match(stderr, /^\s+at /m, 'no stack');
  return lines[0]!;
}

test('a Unix socket in a directory that does not exist: exit 2, one line naming the option and the directory', async ({ dir }) => {
  const missing = join(dir, 'no-such-dir');
  const cases: [string[], string][] = [
    [['serve', fixture('hello.js'), '--socket', join(missing, 'app.sock')], '--socket'],
    [['serve', fixture('hello.js'), '--socket', join(dir, 'ok.sock'), '--uwsgi-socket', join(missing, 'u.sock')], '--uwsgi-socket'],
    [['serve', fixture('hello.js'), '-w', '1', '--listen', `unix:${join(missing, 'app.sock')}`], '--listen'],
    [['front', '--listen', `unix:${join(missing, 'front.sock')}`, '--backend', 'unix:/x.sock'], '--listen'],
    [['front', '--listen', '127.0.0.1:0', '--control', join(missing, 'front.ctl')], '--control'],
  ];
  for (const [args, flag] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 2, `tsgi ${args.join(' ')}: ${r.stderr}`);
    const line = oneLine(r.stderr, args[0]!);
    assert.ok(line.includes(`error: ${flag}: cannot listen on `), line);
    assert.ok(line.endsWith(`the directory ${missing} does not exist`), line);
    assert.not.match(line, /permission denied/i);
  }
});

test('a TCP port in use: exit 2, one line naming the option and the port', async ({ busyPort }) => {
  const at = `127.0.0.1:${busyPort}`;
  const cases: [string[], string][] = [
    [['front', '--listen', at, '--backend', 'unix:/x.sock'], '--listen'],
    [['front', '--bind', at, '--backend', 'unix:/x.sock', '--processes', '2'], '--listen'],
    [['serve', fixture('hello.js'), '-b', at], '--listen'],
    [['serve', fixture('hello.js'), '--uwsgi-listen', at], '--uwsgi-listen'],
    [['front', '--listen', '127.0.0.1:0', '--backend', 'unix:/x.sock', '--admin', at], '--admin'],
    [['run', fixture('hello.js'), '--port', String(busyPort)], '--port'],
  ];
  for (const [args, flag] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 2, `tsgi ${args.join(' ')}: ${r.stderr}`);
    const line = oneLine(r.stderr, args[0]!);
    assert.ok(line.includes(`error: ${flag}: cannot listen on ${at}: port ${busyPort} is in use`), line);
  }
});

test('an app that cannot load: exit 3, one line naming APP_MODULE and the cause', async ({ dir }) => {
  writeFileSync(join(dir, 'imports.js'), "import 'no-such-package-tsgi-test';\nexport default () => [];\n");
  writeFileSync(join(dir, 'throws.js'), "throw new Error('the database URL is not set');\n");
  const cases: [string, RegExp][] = [
    [join(dir, 'missing.js'), /APP_MODULE: application module \S+missing\.js does not exist$/],
    [join(dir, 'imports.js'), /APP_MODULE: cannot load \S+imports\.js: Cannot find package 'no-such-package-tsgi-test'/],
    [join(dir, 'throws.js'), /APP_MODULE: cannot load \S+throws\.js: the database URL is not set$/],
  ];
  for (const [app, pattern] of cases) {
    const r = await runCli(['serve', app, '--socket', join(dir, 'never.sock')]);
    assert.is(r.code, 3, r.stderr);
    assert.match(oneLine(r.stderr, 'serve'), pattern);
    assert.not.ok(existsSync(join(dir, 'never.sock')));
  }
});

test('bad options: exit 2, one line', async () => {
  const r = await runCli(['serve', fixture('hello.js'), '--workers', 'many']);
  assert.is(r.code, 2);
  assert.match(oneLine(r.stderr, 'serve'), /error: --workers: expected a whole number, got 'many'$/);
});

test('serve --check loads the app and checks the options without binding; exit 0', async ({ dir }) => {
  const socket = join(dir, 'check.sock');
  const r = await runCli(['serve', fixture('hello.js'), '--socket', socket, '-w', '2', '--check']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tsgi serve: the options are valid and \S+hello\.js loads\n$/);
  assert.not.ok(existsSync(socket), 'nothing was bound');
  assert.not.ok(existsSync(`${socket}.lock`));
});

test('serve --check: an app that cannot load is exit 3; a socket directory that does not exist, exit 2', async ({ dir }) => {
  writeFileSync(join(dir, 'broken.js'), 'export default {;\n');
  let r = await runCli(['serve', join(dir, 'broken.js'), '--socket', join(dir, 'c.sock'), '--check']);
  assert.is(r.code, 3, r.stderr);
  assert.match(oneLine(r.stderr, 'serve'), /APP_MODULE: cannot load \S+broken\.js: /);
  r = await runCli(['serve', fixture('hello.js'), '--socket', join(dir, 'nope', 'c.sock'), '--check']);
  assert.is(r.code, 2, r.stderr);
  assert.match(oneLine(r.stderr, 'serve'), new RegExp(`--socket \\S+c\\.sock: the directory ${join(dir, 'nope')} does not exist$`));
});

test('a config file names the app ("app"); -c reads it; --check passes, and the same file serves', async (ctx) => {
  const socket = join(ctx.dir, 'from-config.sock');
  const config = join(ctx.dir, 'app.json');
  writeFileSync(config, JSON.stringify({ app: fixture('hello.js'), socket, workers: 1 }));
  const r = await runCli(['serve', '-c', config, '--check']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, `the options are valid (${config}) and ${fixture('hello.js')} loads`);
  const proc = spawnCli(['serve', '-c', config]);
  ctx.procs.push(proc);
  await proc.waitForStderr(/serving on unix:/);
  assert.ok(existsSync(socket));
  await proc.stop();
});

test('front --check: a --static directory that does not exist is exit 2, naming it; a good config exits 0 and binds nothing', async ({ dir }) => {
  const front = join(dir, 'front.sock');
  const base = ['front', '--listen', `unix:${front}`, '--backend', 'unix:/run/tsgi/app.sock', '--check'];
  let r = await runCli([...base, '--static', `/static=${join(dir, 'public')}`]);
  assert.is(r.code, 2, r.stderr);
  assert.match(oneLine(r.stderr, 'front'), new RegExp(`--static /static=\\S+: the directory ${join(dir, 'public')} does not exist$`));
  r = await runCli([...base, '--access-log', join(dir, 'logs', 'access.log')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(oneLine(r.stderr, 'front'), /--access-log \S+access\.log: the directory \S+logs does not exist$/);
  writeFileSync(join(dir, 'cert.pem'), 'not a certificate\n');
  r = await runCli([...base, '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'cert.pem')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(oneLine(r.stderr, 'front'), /error: --tls-cert \S+cert\.pem \/ --tls-key \S+cert\.pem: .*no start line/, 'the pair is read as at start');
  mkdirSync(join(dir, 'public'));
  r = await runCli([...base, '--static', `/static=${join(dir, 'public')}`, '--access-log', join(dir, 'access.log')]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tsgi front: the options are valid; would listen on unix:\S+front\.sock, 1 backend\(s\) configured\n$/);
  assert.not.ok(existsSync(front), 'nothing was bound');
  assert.not.ok(existsSync(join(dir, 'access.log')), 'nothing was created');
});

test('one log tag per process: a front, and a single-process backend, log every line under their own', async (ctx) => {
  const backend = spawnCli(['serve', fixture('hello.js'), '--socket', join(ctx.dir, 'tag.sock'), '--log-level', 'debug']);
  ctx.procs.push(backend);
  await backend.waitForStderr(/serving on unix:/);
  const front = spawnCli(['front', '--listen', '127.0.0.1:0', '--backend', `unix:${join(ctx.dir, 'tag.sock')}`, '--log-level', 'debug']);
  ctx.procs.push(front);
  const port = Number((await front.waitForStderr(/listening on http 127\.0\.0\.1:(\d+)/))[1]);
  assert.is((await call(`http://127.0.0.1:${port}/`)).status, 200);
  await front.stop();
  await backend.stop();
  for (const [proc, tag] of [[front, 'front'], [backend, 'serve']] as const) {
    const lines = proc.stderr().split('\n').filter((l) => /^\d{4}-/.test(l));
    assert.ok(lines.length >= 2, proc.stderr());
    for (const line of lines) assert.match(line, new RegExp(`^\\S+ tsgi ${tag}\\[${proc.pid}\\] `), line);
  }
});

test('--help groups the options and shows a metavariable for each', async () => {
  const r = await runCli(['serve', '--help']);
  assert.is(r.code, 0);
  assert.match(r.stdout, /\nApplication and addresses:\n/);
  assert.match(r.stdout, /\n {2}-w, --workers N +run a supervisor/);
  assert.match(r.stdout, /\n {2}-c, --config FILE +JSON file/);
  const top = await runCli(['--help']);
  assert.match(top.stdout, /\n {2}run +development server/);
});

/** A Unix datagram socket that prints what systemd-notify sends (Node has none: python3 listens). */
const RECEIVER = `import socket, os, sys, array
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('bound', flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array('i'); fds.frombytes(data[:len(data) - len(data) % 4])
            for fd in fds: os.close(fd)  # the barrier's pipe: closing it releases systemd-notify
    print(repr(msg.decode()), flush=True)
`;

const canNotify = spawnSync('systemd-notify', ['--version']).status === 0 && spawnSync('python3', ['--version']).status === 0;

test('NOTIFY_SOCKET set (systemd Type=notify): READY=1 once the backend is serving', async (ctx) => {
  if (!canNotify) {
    process.stdout.write('startup: skipping the Type=notify test (needs systemd-notify and python3)\n');
    return;
  }
  const notify = join(ctx.dir, 'notify.sock');
  writeFileSync(join(ctx.dir, 'receiver.py'), RECEIVER);
  const receiver = spawn('python3', [join(ctx.dir, 'receiver.py'), notify], { stdio: ['ignore', 'pipe', 'inherit'] });
  let got = '';
  const heard = (pattern: RegExp) => new Promise<void>((resolve, reject) => {
    const check = () => { if (pattern.test(got)) { receiver.stdout!.off('data', onData); resolve(); } };
    const onData = (s: string) => { got += s; check(); };
    receiver.stdout!.setEncoding('utf8').on('data', onData);
    receiver.once('exit', () => reject(new Error(`receiver exited: ${got}`)));
    check();
  });
  try {
    await heard(/bound/);
    const socket = join(ctx.dir, 'notified.sock');
    const child = spawn(process.execPath, [CLI, 'serve', fixture('hello.js'), '--socket', socket, '-w', '1'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notify } });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await heard(/'READY=1\\nSTATUS=serving \S+hello\.js on unix:\S+notified\.sock'/);
      assert.ok(existsSync(socket), 'READY=1 came after the bind');
      assert.match(stderr, /serving on unix:/);
      assert.not.match(stderr, /systemd-notify/, 'no warning');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  } finally {
    receiver.kill('SIGTERM');
  }
});

test.run();
