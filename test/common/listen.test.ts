// listenOn / closeListener on Unix sockets: closing a server removes its own socket file, and
// never the file of another server that took the path after ours was deleted; two binding one
// path at once over a stale file: one wins, the other gets a clear error.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { closeListener, listenOn, reachable } from '../../src/common/listen.js';

const test = suite<{ dir: string; servers: Server[] }>('common/listen', { dir: '', servers: [] });

test.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-listen-'));
});

test.after(async (ctx) => {
  for (const s of ctx.servers) await new Promise((r) => s.close(() => r(undefined)));
  rmSync(ctx.dir, { recursive: true, force: true });
});

test('closing a server removes its socket file', async (ctx) => {
  const path = join(ctx.dir, 'own.sock');
  const server = createServer();
  await listenOn(server, { kind: 'unix', path });
  assert.ok(existsSync(path));
  await closeListener(server);
  assert.not.ok(server.listening);
  assert.not.ok(existsSync(path), 'its own file goes');
});

test('regression: a server whose file was deleted does not delete the new server\'s file when it closes', async (ctx) => {
  const path = join(ctx.dir, 'shared.sock');
  const old = createServer();
  await listenOn(old, { kind: 'unix', path });
  rmSync(path); // deleted under it (by hand, or by a deploy script)
  const fresh = createServer();
  ctx.servers.push(fresh);
  await listenOn(fresh, { kind: 'unix', path });
  await closeListener(old);
  assert.ok(existsSync(path), 'the new server\'s socket file is still there');
  ctx.servers.push(old); // left open (unreferenced): closed by after(), which would unlink `path` then
});

test('reachable: true while the socket file is ours, false once it is deleted or replaced', async (ctx) => {
  const path = join(ctx.dir, 'reach.sock');
  const server = createServer();
  ctx.servers.push(server);
  await listenOn(server, { kind: 'unix', path });
  assert.ok(reachable(server));
  rmSync(path);
  assert.not.ok(reachable(server), 'deleted');
  const other = createServer();
  await listenOn(other, { kind: 'unix', path });
  assert.not.ok(reachable(server), 'replaced by another server\'s file');
  assert.ok(reachable(other));
  await closeListener(other);
});

test('a server whose file was deleted (nothing new on the path) closes normally', async (ctx) => {
  const path = join(ctx.dir, 'gone.sock');
  const server = createServer();
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
  const a = createServer((s) => s.end('a'));
  const b = createServer((s) => s.end('b'));
  const results = await Promise.allSettled([listenOn(a, { kind: 'unix', path }), listenOn(b, { kind: 'unix', path })]);
  for (const server of [a, b]) if (server.listening) ctx.servers.push(server);
  const won = results.filter((r) => r.status === 'fulfilled').length;
  assert.is(won, 1, `exactly one binds: ${results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'bound')).join('; ')}`);
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  // On Linux the second waits for nothing: the first holds the path's bind lock (an abstract socket).
  assert.match(String(refused.reason), /race\.sock (is being bound by another process right now|is in use)/);
  const winner = results[0]!.status === 'fulfilled' ? a : b;
  assert.ok(reachable(winner), 'the socket file on the path is the winner\'s');
  const answer = await new Promise<string>((resolve, reject) => {
    const c = connect(path);
    let text = '';
    c.on('data', (d) => { text += d; });
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
  assert.is(answer, winner === a ? 'a' : 'b');
});

test.run();
