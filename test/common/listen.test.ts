// listenOn / closeListener on Unix sockets: closing a server removes its own socket file, and
// never the file of another server that took the path after ours was deleted; two binding one
// path at once over a stale file: one wins, the other gets a clear error. The bind lock (PATH.lock)
// is taken only by those who may write the socket's directory, and a stale one is cleared.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { closeListener, listenOn, reachable } from '../../src/common/listen.js';

/**
 * Accepted sockets hear the other binds' probes (a connect, then an immediate destroy): a reset
 * is expected there, and an unheard 'error' would end the test process.
 */
const quiet = (socket: Socket): void => { socket.on('error', () => {}); };

const test = suite<{ dir: string; servers: Server[]; children: ChildProcess[] }>('common/listen', { dir: '', servers: [], children: [] });

/** A pid that is not running: a child's, once it has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/** Resolves with the first line a child writes (rejects if it exits first). */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl !== -1) resolve(out.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`exited (${code}) before writing a line: ${out}`)));
  });
}

/** Whatever a server on `path` answers first (each test server writes its name and ends). */
function answerOn(path: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const c = connect(path);
    let text = '';
    c.on('data', (d) => { text += d; });
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
}

test.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-listen-'));
});

test.after(async (ctx) => {
  for (const c of ctx.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of ctx.servers) await new Promise((r) => s.close(() => r(undefined)));
  rmSync(ctx.dir, { recursive: true, force: true });
});

test('closing a server removes its socket file', async (ctx) => {
  const path = join(ctx.dir, 'own.sock');
  const server = createServer(quiet);
  await listenOn(server, { kind: 'unix', path });
  assert.ok(existsSync(path));
  await closeListener(server);
  assert.not.ok(server.listening);
  assert.not.ok(existsSync(path), 'its own file goes');
});

test('regression: a server whose file was deleted does not delete the new server\'s file when it closes', async (ctx) => {
  const path = join(ctx.dir, 'shared.sock');
  const old = createServer(quiet);
  await listenOn(old, { kind: 'unix', path });
  rmSync(path); // deleted under it (by hand, or by a deploy script)
  const fresh = createServer(quiet);
  ctx.servers.push(fresh);
  await listenOn(fresh, { kind: 'unix', path });
  await closeListener(old);
  assert.ok(existsSync(path), 'the new server\'s socket file is still there');
  ctx.servers.push(old); // left open (unreferenced): closed by after(), which would unlink `path` then
});

test('reachable: true while the socket file is ours, false once it is deleted or replaced', async (ctx) => {
  const path = join(ctx.dir, 'reach.sock');
  const server = createServer(quiet);
  ctx.servers.push(server);
  await listenOn(server, { kind: 'unix', path });
  assert.ok(reachable(server));
  rmSync(path);
  assert.not.ok(reachable(server), 'deleted');
  const other = createServer(quiet);
  await listenOn(other, { kind: 'unix', path });
  assert.not.ok(reachable(server), 'replaced by another server\'s file');
  assert.ok(reachable(other));
  await closeListener(other);
});

test('a server whose file was deleted (nothing new on the path) closes normally', async (ctx) => {
  const path = join(ctx.dir, 'gone.sock');
  const server = createServer(quiet);
  await listenOn(server, { kind: 'unix', path });
  rmSync(path);
  await closeListener(server);
  assert.not.ok(server.listening);
});

test('two servers binding one path with a stale socket file on it: one listens where clients reach it, the other is refused', async (ctx) => {
  const path = join(ctx.dir, 'race.sock');
  // A stale socket file: a process that listened on the path and was killed.
  spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(existsSync(path), 'a stale socket file is there');
  const a = createServer((s) => { quiet(s); s.end('a'); });
  const b = createServer((s) => { quiet(s); s.end('b'); });
  const results = await Promise.allSettled([listenOn(a, { kind: 'unix', path }), listenOn(b, { kind: 'unix', path })]);
  for (const server of [a, b]) if (server.listening) ctx.servers.push(server);
  const won = results.filter((r) => r.status === 'fulfilled').length;
  assert.is(won, 1, `exactly one binds: ${results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'bound')).join('; ')}`);
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  // The second waits for nothing: the first holds the path's bind lock (PATH.lock).
  assert.match(String(refused.reason), /race\.sock (is being bound by another process right now|is in use)/);
  const winner = results[0]!.status === 'fulfilled' ? a : b;
  assert.ok(reachable(winner), 'the socket file on the path is the winner\'s');
  assert.is(await answerOn(path), winner === a ? 'a' : 'b');
  assert.not.ok(existsSync(`${path}.lock`), 'the lock is gone once the socket is bound');
});

test('a bind lock left by a process killed while binding (its pid dead) is cleared, and nothing is left beside the socket', async (ctx) => {
  const dir = join(ctx.dir, 'stale-lock');
  mkdirSync(dir);
  const path = join(dir, 'app.sock');
  writeFileSync(`${path}.lock`, `${deadPid()}\n`);
  const server = createServer((s) => { quiet(s); s.end('fresh'); });
  ctx.servers.push(server);
  await listenOn(server, { kind: 'unix', path });
  assert.is(await answerOn(path), 'fresh');
  assert.equal(readdirSync(dir), ['app.sock']);
});

test('a bind lock holding our own pid that this process did not take is stale (a pid reused, as pid 1 in a container)', async (ctx) => {
  const path = join(ctx.dir, 'own-pid.sock');
  writeFileSync(`${path}.lock`, `${process.pid}\n`);
  const server = createServer(quiet);
  ctx.servers.push(server);
  await listenOn(server, { kind: 'unix', path });
  assert.not.ok(existsSync(`${path}.lock`));
});

test('a bind lock held by a live process refuses the bind, naming the lock file and its pid', async (ctx) => {
  const path = join(ctx.dir, 'held.sock');
  writeFileSync(`${path}.lock`, `${process.ppid}\n`);
  const server = createServer(quiet);
  ctx.servers.push(server);
  const err = await listenOn(server, { kind: 'unix', path }).then(() => null, (e: Error) => e);
  assert.ok(err !== null, 'refused');
  assert.is(err.message, `${path} is being bound by another process right now (pid ${process.ppid} holds ${path}.lock; `
    + 'if no such process is starting there, remove that file)');
  assert.not.ok(server.listening);
  assert.not.ok(existsSync(path));
  assert.ok(existsSync(`${path}.lock`), 'a live process\'s lock is left alone');
  rmSync(`${path}.lock`);
});

test('four processes binding one path over a stale socket and a stale lock: exactly one listens, the others are refused', async (ctx) => {
  const dir = join(ctx.dir, 'race4');
  mkdirSync(dir);
  const path = join(dir, 'app.sock');
  spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(existsSync(path), 'a stale socket file is there');
  writeFileSync(`${path}.lock`, `${deadPid()}\n`);
  const listen = new URL('../../src/common/listen.js', import.meta.url).href;
  const script = `import { createServer } from 'node:net';
    const { listenOn } = await import(${JSON.stringify(listen)});
    const server = createServer((s) => { s.on('error', () => {}); s.end(String(process.pid)); });
    listenOn(server, { kind: 'unix', path: ${JSON.stringify(path)} })
      .then(() => console.log('bound'), (err) => { console.log('refused: ' + err.message); process.exit(0); });`;
  const children = Array.from({ length: 4 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
  ctx.children.push(...children);
  const lines = await Promise.all(children.map(firstLine));
  const winners = children.filter((_, i) => lines[i] === 'bound');
  assert.is(winners.length, 1, lines.join('\n'));
  for (const line of lines) if (line !== 'bound') assert.match(line, /^refused: .*app\.sock (is being bound by another process right now|is in use)/);
  assert.is(await answerOn(path), String(winners[0]!.pid), 'the socket file on the path is the winner\'s');
  assert.equal(readdirSync(dir), ['app.sock']);
  winners[0]!.kill('SIGKILL');
});

test('a local user (nobody) cannot stop a bind: the lock is a file in the socket\'s directory, which they cannot write', async (ctx) => {
  if (process.getuid?.() !== 0) {
    process.stdout.write('listen: skipping the local-user test — it needs root to start a process as nobody\n');
    return;
  }
  const dir = join(ctx.dir, 'shared');
  mkdirSync(dir);
  chmodSync(ctx.dir, 0o755);
  chmodSync(dir, 0o755); // like /run/app: everyone may enter, only its owner may write
  const path = join(dir, 'app.sock');
  // The holder takes every name it can: the Linux abstract socket an earlier bind lock used, the
  // lock file, the socket path; and stays up holding what it got.
  const oldName = `\0tsgi-bind-${createHash('sha256').update(path).digest('hex').slice(0, 32)}`;
  const script = `const net = require('node:net'), fs = require('node:fs');
    const got = {};
    try { fs.writeFileSync(${JSON.stringify(`${path}.lock`)}, process.pid + '\\n', { flag: 'wx' }); got.lock = 'held'; } catch (e) { got.lock = e.code; }
    const a = net.createServer().listen(${JSON.stringify(oldName)}, () => {
      got.abstract = 'held';
      net.createServer().on('error', (e) => { got.socket = e.code; console.log(JSON.stringify(got)); })
        .listen(${JSON.stringify(path)}, () => { got.socket = 'held'; console.log(JSON.stringify(got)); });
    });
    a.on('error', (e) => { got.abstract = e.code; console.log(JSON.stringify(got)); });
    setInterval(() => {}, 1000);`;
  const holder = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', script],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  ctx.children.push(holder);
  const got = JSON.parse(await firstLine(holder)) as Record<string, string>;
  assert.equal(got, { lock: 'EACCES', abstract: 'held', socket: 'EACCES' }, 'nobody holds the old abstract name, and nothing in the directory');
  const server = createServer((s) => s.end('ours'));
  ctx.servers.push(server);
  await listenOn(server, { kind: 'unix', path });
  assert.is(await answerOn(path), 'ours');
  holder.kill('SIGKILL');
});

test.run();
