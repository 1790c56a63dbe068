// End to end: `tsgi front --processes 2`. Connections are spread over two front processes, each
// with its own connection to every backend; control ops, SIGHUP and SIGUSR1 reach both; /status
// and /metrics sum both; a process killed with SIGKILL is replaced while requests keep
// succeeding; SIGTERM lets in-flight requests finish; start-up errors are those of one process.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { front } from '../../src/index.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { rejects } from '../helpers/assert.js';
import { call, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, runCli, spawnCli, startBackend, tempDir, type FrontProc, type Proc } from '../helpers/procs.js';

interface Status {
  pid: number;
  requests: number;
  inFlight: number;
  restarts: number;
  backends: { name: string; state: string; links: number; requests: number }[];
  processes: { slot: number; pid: number; state: string; requests: number }[];
}

interface ProcCtx extends Ctx {
  dir: string;
  config: string;
  admin: string;
  control: string;
}

/** A line of the combined access log format (see access-log.test.ts for the fields). */
const LINE = /^\S+ - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/[^"]* HTTP\/1\.1" 200 \d+ "-" "[^"]*" \d+\.\d{3} unix:\S+$/;

/** `tsgi front --processes 2 …`, once the primary says it listens (every worker is ready by then). */
async function startProcesses(args: string[]): Promise<FrontProc> {
  const proc = spawnCli(['front', '--listen', '127.0.0.1:0', '--processes', '2', '--graceful-timeout', '5', ...args]);
  try {
    const m = await proc.waitForStderr(/listening on http 127\.0\.0\.1:(\d+) with 2 processes/);
    const port = Number(m[1]);
    return Object.assign(proc, { port, url: `http://127.0.0.1:${port}` });
  } catch (err) {
    await proc.kill9();
    throw err;
  }
}

/** GETs on a fresh connection each (Connection: close): every one is a new hand-over by the primary. */
async function fresh(url: string, n: number, path = '/'): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, async (_, i) => {
    const r = await request(`${url}${path}${path.includes('?') ? '&' : '?'}n=${i}`, { reset: true });
    await r.body.text();
    return r.statusCode;
  }));
}

const status = async (admin: string): Promise<Status> => JSON.parse((await call(`${admin}/status`)).text) as Status;

async function metric(admin: string, series: string): Promise<number> {
  const text = (await call(`${admin}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

async function ctlList(control: string): Promise<Map<string, { state: string; conns: number }>> {
  const r = await runCli(['ctl', '--control', control, 'list']);
  assert.is(r.code, 0, r.stderr);
  const rows = new Map<string, { state: string; conns: number }>();
  for (const line of r.stdout.trim().split('\n').slice(1)) {
    const [address, state, , conns] = line.split(/\s+/);
    if (address?.startsWith('unix:')) rows.set(address, { state: state!, conns: Number(conns) });
  }
  return rows;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const test = suite<ProcCtx>('e2e/processes', { ...newCtx(), dir: '', config: '', admin: '', control: '' });

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-processes-');
  ctx.backend = await startBackend(fixture('environ.js'));
  ctx.config = join(ctx.dir, 'front.json');
  ctx.control = join(ctx.dir, 'front.ctl');
  writeFileSync(ctx.config, JSON.stringify({ backend: [`unix:${ctx.backend.socket}`] }));
  ctx.front = await startProcesses(['--config', ctx.config, '--admin', '127.0.0.1:0', '--control', ctx.control,
    '--access-log', join(ctx.dir, 'access.log')]);
  ctx.admin = `http://${(await ctx.front.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
});

test.after(async (ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

test('connections are spread over both processes, and each has its own connection to the backend', async (ctx) => {
  const before = await status(ctx.admin);
  assert.is(before.processes.length, 2);
  const pids = before.processes.map((p) => p.pid);
  assert.is(new Set(pids).size, 2);
  assert.not.ok(pids.includes(ctx.front!.pid), 'the workers are not the primary');
  assert.equal(await fresh(ctx.front!.url, 8), Array(8).fill(200));
  const after = await status(ctx.admin);
  assert.is(after.requests - before.requests, 8, 'the primary sums both processes');
  for (const p of after.processes) {
    const was = before.processes.find((b) => b.pid === p.pid)!;
    assert.ok(p.requests > was.requests, `process ${p.pid} served some of the 8 (${JSON.stringify(after.processes)})`);
  }
  const name = `unix:${ctx.backend!.socket}`;
  assert.equal((await ctlList(ctx.control)).get(name), { state: 'up', conns: 2 }, 'one connection per front process');
  assert.is(after.backends.find((b) => b.name === name)?.links, 2);
});

test('/metrics sums both processes: counters move by exactly the requests made', async (ctx) => {
  const base = await metric(ctx.admin, 'tsgi_http_requests_total{status="200"}');
  assert.equal(await fresh(ctx.front!.url, 6), Array(6).fill(200));
  assert.is(await metric(ctx.admin, 'tsgi_http_requests_total{status="200"}'), base + 6);
  assert.is(await metric(ctx.admin, `tsgi_backend_connections{backend="unix:${ctx.backend!.socket}"}`), 2);
  assert.is(await metric(ctx.admin, 'tsgi_front_processes{state="ready"}'), 2);
});

test('tsgi ctl add and drain, and serve --register, apply in every process', async (ctx) => {
  const other = await startBackend(fixture('hello.js'));
  ctx.extra.push(other);
  const name = `unix:${other.socket}`;
  const added = await runCli(['ctl', '--control', ctx.control, 'add', name]);
  assert.is(added.code, 0, added.stderr);
  await poll(async () => ((await ctlList(ctx.control)).get(name)?.conns === 2 ? true : undefined), 'both processes to connect');
  const drained = await runCli(['ctl', '--control', ctx.control, 'drain', name]);
  assert.is(drained.code, 0, drained.stderr);
  // Drained, and held so (not routed again until ctl add): listed as drained by both.
  await poll(async () => ((await ctlList(ctx.control)).get(name)?.state === 'drained' ? true : undefined), 'both processes to drop it');
  const registered = await startBackend(fixture('hello.js'), ['--register', ctx.control]);
  ctx.extra.push(registered);
  const regName = `unix:${registered.socket}`;
  await poll(async () => ((await ctlList(ctx.control)).get(regName)?.conns === 2 ? true : undefined), 'the registered backend in both');
  // Withdrawn on its graceful stop: from both processes.
  await registered.stop();
  await poll(async () => ((await ctlList(ctx.control)).has(regName) ? undefined : true), 'the withdrawn backend gone from both');
});

test('SIGHUP re-reads the backends from --config in every process', async (ctx) => {
  const second = await startBackend(fixture('hello.js'));
  ctx.extra.push(second);
  const first = `unix:${ctx.backend!.socket}`;
  const name = `unix:${second.socket}`;
  writeFileSync(ctx.config, JSON.stringify({ backend: [first, name] }));
  process.kill(ctx.front!.pid, 'SIGHUP');
  await poll(async () => ((await ctlList(ctx.control)).get(name)?.conns === 2 ? true : undefined), 'both processes to add it');
  writeFileSync(ctx.config, JSON.stringify({ backend: [first] }));
  process.kill(ctx.front!.pid, 'SIGHUP');
  await poll(async () => ((await ctlList(ctx.control)).has(name) ? undefined : true), 'both processes to drain it');
  assert.equal((await ctlList(ctx.control)).get(first), { state: 'up', conns: 2 });
});

test('SIGUSR1: every process reopens the access log; each line is whole', async (ctx) => {
  const path = join(ctx.dir, 'access.log');
  const lines = (file: string) => {
    const text = readFileSync(file, 'utf8');
    assert.ok(text === '' || text.endsWith('\n'), 'whole lines only');
    return text === '' ? [] : text.slice(0, -1).split('\n');
  };
  // Every response so far is in the file (lines are written a moment after the response).
  const served = (await status(ctx.admin)).requests;
  await poll(async () => (lines(path).length === served ? true : undefined), `${served} lines in the log`);
  renameSync(path, `${path}.1`);
  const reopened = (ctx.front!.stderr().match(/access log \S+ reopened/g) ?? []).length;
  process.kill(ctx.front!.pid, 'SIGUSR1');
  await poll(async () => ((ctx.front!.stderr().match(/access log \S+ reopened/g) ?? []).length === reopened + 2 ? true : undefined),
    'both processes to reopen the log');
  // Both processes write at once: 40 requests in parallel, each on its own connection.
  const before = await status(ctx.admin);
  assert.equal(await fresh(ctx.front!.url, 40, '/log?x="quoted"'), Array(40).fill(200));
  const after = await status(ctx.admin);
  for (const p of after.processes) {
    assert.ok(p.requests > before.processes.find((b) => b.pid === p.pid)!.requests, 'both processes wrote lines');
  }
  const fresh40 = await poll(async () => { const l = lines(path); return l.length >= 40 ? l : undefined; }, '40 lines in the new file');
  assert.is(fresh40.length, 40);
  for (const line of fresh40) assert.match(line, LINE);
  assert.is(lines(`${path}.1`).length, served, 'nothing more went to the rotated file');
});

test('a process killed with SIGKILL is replaced with backoff and logged; requests keep succeeding', async (ctx) => {
  const before = await status(ctx.admin);
  const servedBefore = await metric(ctx.admin, 'tsgi_http_requests_total{status="200"}');
  const victim = before.processes[0]!.pid;
  process.kill(victim, 'SIGKILL');
  await ctx.front!.waitForStderr(new RegExp(`front worker \\d \\(pid ${victim}\\) died \\(SIGKILL\\); respawning in \\d+ ms`));
  // Meanwhile (the replacement may still be starting) new connections go to the survivor.
  assert.equal(await fresh(ctx.front!.url, 10), Array(10).fill(200));
  const after = await poll(async () => {
    const s = await status(ctx.admin);
    return s.processes.length === 2 && s.processes.every((p) => p.state === 'ready') && !s.processes.some((p) => p.pid === victim)
      ? s : undefined;
  }, 'a replacement process');
  assert.is(after.restarts, 1);
  assert.is(await metric(ctx.admin, 'tsgi_front_process_restarts_total'), 1);
  assert.ok(await metric(ctx.admin, 'tsgi_http_requests_total{status="200"}') >= servedBefore + 10,
    'the killed process\'s requests stay counted');
  assert.equal(await fresh(ctx.front!.url, 6), Array(6).fill(200));
  // The replacement has the backends of the others, and its own connection to each.
  assert.equal((await ctlList(ctx.control)).get(`unix:${ctx.backend!.socket}`), { state: 'up', conns: 2 });
});

test('SIGTERM: in-flight requests finish, then the primary and every process exit', async (ctx) => {
  const proc = await startProcesses(['--backend', `unix:${ctx.backend!.socket}`, '--admin', '127.0.0.1:0']);
  ctx.extra.push(proc);
  const admin = `http://${(await proc.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/))[1]}`;
  const workers = (await status(admin)).processes.map((p) => p.pid);
  // environ.js?wait=2 waits for a second request that never comes, then answers after `delay` ms.
  const slow = call(`${proc.url}/slow?wait=2&delay=1500`);
  await poll(async () => ((await status(admin)).inFlight === 1 ? true : undefined), 'the request to be in flight');
  process.kill(proc.pid, 'SIGTERM');
  const r = await slow;
  assert.is(r.status, 200);
  assert.is((await proc.exited).code, 0);
  for (const pid of workers) assert.not.ok(alive(pid), `worker ${pid} exited too`);
});

const startup = suite<Ctx & { dir: string }>('e2e/processes-startup', { ...newCtx(), dir: '' });

startup.before((ctx) => {
  ctx.dir = tempDir('tsgi-e2e-processes-');
});

startup.after((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

startup('start-up errors: the same message and exit code as one process', async (ctx) => {
  const taken = join(ctx.dir, 'taken.sock');
  const holder = spawnCli(['front', '--listen', `unix:${taken}`, '--backend', 'unix:/nonexistent/b.sock']);
  ctx.extra.push(holder as Proc);
  await holder.waitForStderr(/listening on http/);
  const cases: [string, string[]][] = [
    ['listen address in use', ['--listen', `unix:${taken}`, '--backend', 'unix:/nonexistent/b.sock']],
    ['access log that cannot be opened', ['--listen', '127.0.0.1:0', '--backend', 'unix:/nonexistent/b.sock',
      '--access-log', join(ctx.dir, 'no-such-dir', 'access.log')]],
    ['static directory missing', ['--listen', '127.0.0.1:0', '--backend', 'unix:/nonexistent/b.sock',
      '--static', `/s=${join(ctx.dir, 'no-such-dir')}`]],
  ];
  const messages = (stderr: string) => stderr.split('\n').filter((l) => / error: /.test(l)).map((l) => l.replace(/^.* error: /, ''));
  for (const [what, args] of cases) {
    const one = await runCli(['front', ...args]);
    const two = await runCli(['front', ...args, '--processes', '2']);
    assert.is(one.code, 2, `${what}: ${one.stderr}`);
    assert.is(two.code, one.code, `${what}: the exit code (${two.stderr})`);
    assert.equal(messages(two.stderr), messages(one.stderr), `${what}: the message`);
  }
  await holder.stop();
});

startup('front() for embedding refuses processes > 1 with a ConfigError', async () => {
  const err = await rejects(front({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [], processes: 2 }),
    ConfigError, 'TSGI_ERR_CONFIG');
  assert.match(err.message, /tsgi front --processes N/);
});

test.run();
startup.run();
