// End to end: the front's access log (--access-log FILE --log-format combined|common|json). A
// line per request with the right status, bytes, backend and time; 502 and 503 are logged too;
// a header value with quotes, backslashes and odd bytes cannot break or forge a line.
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, runCli, startBackend, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import { rawUntilClose } from '../helpers/raw-http.js';

/** One combined/common line: the Apache fields, then request time and backend. */
const LINE = /^(\S+) - - \[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) \+0000\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")? (\d+\.\d{3}) (\S+)$/;

interface ClfLine {
  remote: string; time: number; request: string; status: number; bytes: number;
  referer?: string; agent?: string; seconds: number; backend: string;
}

/** Undoes Apache's escaping (\" \\ \xhh). */
function unescape(s: string): string {
  return s.replace(/\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)/g, (_, e: string) =>
    e.length > 1 ? String.fromCharCode(parseInt(e.slice(1), 16)) : e);
}

function parseClf(line: string): ClfLine {
  const m = LINE.exec(line);
  assert.ok(m !== null, `a well-formed log line: ${JSON.stringify(line)}`);
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'].indexOf(m[3]!);
  return {
    remote: m[1]!,
    time: Date.UTC(Number(m[4]), month, Number(m[2]), Number(m[5]), Number(m[6]), Number(m[7])),
    request: unescape(m[8]!),
    status: Number(m[9]),
    bytes: m[10] === '-' ? 0 : Number(m[10]),
    referer: m[11] === undefined ? undefined : unescape(m[11]),
    agent: m[12] === undefined ? undefined : unescape(m[12]),
    seconds: Number(m[13]),
    backend: m[14]!,
  };
}

/** The file's lines, once it has `n` of them (lines are written asynchronously). */
function linesOf(path: string, n: number): Promise<string[]> {
  return poll(async () => {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
    const lines = text.split('\n');
    assert.is(lines.pop(), '', 'the log ends with a newline');
    return lines.length >= n ? lines : undefined;
  }, `${n} lines in ${path}`);
}

interface LogCtx extends Ctx {
  dir: string;
  fronts: Record<'combined' | 'common' | 'json', FrontProc>;
}

const FORGED_AGENT = 'evil" 200 1 "-" "x\\" \t\xff\xe9 end';

const test = suite<LogCtx>('e2e/access-log', { ...newCtx(), dir: '', fronts: {} as LogCtx['fronts'] });

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-log-');
  ctx.backend = await startBackend(fixture('echo.js'));
  for (const format of ['combined', 'common', 'json'] as const) {
    const front = await startFront([ctx.backend.socket], ['--access-log', join(ctx.dir, `${format}.log`), '--log-format', format]);
    ctx.extra.push(front);
    ctx.fronts[format] = front;
  }
  ctx.agent = newAgent();
  // The same four requests through each front: a GET, a POST with a body, a forged agent, a 404-ish HEAD.
  for (const front of Object.values(ctx.fronts)) {
    const get = await call(`${front.url}/get?x=1`, { dispatcher: ctx.agent, headers: { 'user-agent': 'tester/1', referer: 'http://ref.example/' } });
    assert.is(get.status, 200);
    const post = await call(`${front.url}/post`, { method: 'POST', body: 'abcdefghij', dispatcher: ctx.agent });
    assert.is(post.text, 'abcdefghij');
    // A User-Agent with bytes undici would not send.
    const raw = await rawUntilClose(front.port, Buffer.from(
      `GET /forged HTTP/1.1\r\nHost: x\r\nUser-Agent: ${FORGED_AGENT}\r\nConnection: close\r\n\r\n`, 'latin1'));
    assert.match(raw.text, /^HTTP\/1\.1 200 /);
  }
});

test('combined: a line per request with status, bytes, referer, agent, time and backend', async (ctx) => {
  const lines = await linesOf(join(ctx.dir, 'combined.log'), 3);
  assert.is(lines.length, 3, lines.join('\n'));
  const [get, post, forged] = lines.map(parseClf) as [ClfLine, ClfLine, ClfLine];
  assert.is(get.remote, '127.0.0.1');
  assert.is(get.request, 'GET /get?x=1 HTTP/1.1');
  assert.is(get.status, 200);
  assert.is(get.bytes, 0);
  assert.is(get.referer, 'http://ref.example/');
  assert.is(get.agent, 'tester/1');
  assert.is(get.backend, `unix:${ctx.backend!.socket}`);
  assert.ok(Math.abs(get.time - Date.now()) < 120_000, 'the time is now (UTC)');
  assert.ok(get.seconds >= 0);
  assert.is(post.request, 'POST /post HTTP/1.1');
  assert.is(post.bytes, 10);
  assert.is(post.referer, '-');
  assert.is(forged.request, 'GET /forged HTTP/1.1');
  assert.is(forged.agent, FORGED_AGENT, 'the agent round-trips through the escaping, whole, in its own field');
  assert.is(forged.backend, `unix:${ctx.backend!.socket}`);
});

test('common: the same fields without referer and agent', async (ctx) => {
  const lines = await linesOf(join(ctx.dir, 'common.log'), 3);
  assert.is(lines.length, 3, lines.join('\n'));
  const parsed = lines.map(parseClf);
  assert.equal(parsed.map((l) => [l.request, l.status, l.bytes, l.agent]), [
    ['GET /get?x=1 HTTP/1.1', 200, 0, undefined],
    ['POST /post HTTP/1.1', 200, 10, undefined],
    ['GET /forged HTTP/1.1', 200, 0, undefined],
  ]);
  for (const l of parsed) assert.is(l.backend, `unix:${ctx.backend!.socket}`);
});

test('json: one object per line with every field', async (ctx) => {
  const lines = await linesOf(join(ctx.dir, 'json.log'), 3);
  assert.is(lines.length, 3, lines.join('\n'));
  const [get, post, forged] = lines.map((l) => JSON.parse(l) as Record<string, unknown>) as [
    Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  assert.equal(Object.keys(get), ['time', 'remote', 'method', 'target', 'protocol', 'status', 'bytes_sent',
    'bytes_received', 'duration_ms', 'backend', 'user_agent', 'referer', 'request_id']);
  assert.ok(Math.abs(Date.parse(get.time as string) - Date.now()) < 120_000);
  assert.equal([get.remote, get.method, get.target, get.protocol, get.status, get.bytes_sent, get.bytes_received,
    get.user_agent, get.referer], ['127.0.0.1', 'GET', '/get?x=1', 'HTTP/1.1', 200, 0, 0, 'tester/1', 'http://ref.example/']);
  assert.ok(typeof get.duration_ms === 'number' && get.duration_ms >= 0);
  assert.is(get.backend, `unix:${ctx.backend!.socket}`);
  assert.equal([post.method, post.bytes_sent, post.bytes_received], ['POST', 10, 10]);
  assert.is(forged.user_agent, FORGED_AGENT);
});

test('SIGUSR1 reopens the file (logrotate): new lines go to a new file at the path', async (ctx) => {
  const path = join(ctx.dir, 'common.log');
  await linesOf(path, 3);
  renameSync(path, `${path}.1`);
  const front = ctx.fronts.common;
  process.kill(front.pid, 'SIGUSR1');
  await front.waitForStderr(/access log \S+common\.log reopened/);
  assert.is((await call(`${front.url}/after-rotate`, { dispatcher: ctx.agent })).status, 200);
  const lines = await linesOf(path, 1);
  assert.is(lines.length, 1);
  assert.is(parseClf(lines[0]!).request, 'GET /after-rotate HTTP/1.1');
  assert.is(readFileSync(`${path}.1`, 'utf8').split('\n').length, 4, 'the rotated file kept its 3 lines');
});

test.after(async (ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

test.run();

// A 502 (the backend dies mid-request) and a 503 (no backend within --queue-timeout) are logged.
const errors = suite<Ctx & { dir: string }>('e2e/access-log-errors', { ...newCtx(), dir: '' });

setUp(errors, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-log-');
  ctx.backend = await startBackend(fixture('abort.js'));
  ctx.front = await startFront([ctx.backend.socket], [
    '--access-log', join(ctx.dir, 'access.log'), '--log-format', 'json', '--queue-timeout', '0.3',
  ]);
  ctx.agent = newAgent();
});

errors('a 502 and a 503 get their lines, with the backend that failed', async (ctx) => {
  const front = ctx.front!;
  // A POST: a GET lost with its connection before any answer would be sent again (to no backend: 503).
  const pending = call(`${front.url}/wait?id=a`, { method: 'POST', dispatcher: ctx.agent, headers: { 'x-request-id': 'req-502' } });
  await poll(async () => {
    const r = await call(`${front.url}/status?id=a`, { dispatcher: ctx.agent });
    return (JSON.parse(r.text) as { started: boolean }).started ? true : undefined;
  }, 'the app to hold the request');
  await ctx.backend!.kill9();
  const lost = await pending;
  assert.is(lost.status, 502);
  const refused = await call(`${front.url}/later`, { dispatcher: ctx.agent });
  assert.is(refused.status, 503);
  const path = join(ctx.dir, 'access.log');
  const lines = (await poll(async () => {
    const all = (await linesOf(path, 1)).map((l) => JSON.parse(l) as Record<string, unknown>);
    return all.some((l) => l.status === 503) ? all : undefined;
  }, 'the 503 line'));
  const bad = lines.find((l) => l.status === 502);
  assert.ok(bad !== undefined, JSON.stringify(lines));
  assert.equal([bad.target, bad.backend, bad.request_id], ['/wait?id=a', `unix:${ctx.backend!.socket}`, 'req-502']);
  assert.ok((bad.bytes_sent as number) > 0, 'the error body was sent');
  const unavailable = lines.find((l) => l.status === 503)!;
  assert.equal([unavailable.target, unavailable.backend], ['/later', '-']);
});

errors('a log file that cannot be opened stops start-up, naming the option', async (ctx) => {
  const r = await runCli(['front', '--listen', '127.0.0.1:0', '--backend', 'unix:/nonexistent/b.sock',
    '--access-log', join(ctx.dir, 'no-such-dir', 'access.log')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /--access-log: cannot open \S+access\.log: ENOENT/);
});

errors.after(async (ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

errors.run();

// Files served by --static are logged like proxied requests, with 'static' as the backend, and
// counted in the metrics.
const statics = suite<Ctx & { dir: string }>('e2e/access-log-static', { ...newCtx(), dir: '' });

setUp(statics, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-log-');
  mkdirSync(join(ctx.dir, 'public'));
  writeFileSync(join(ctx.dir, 'public', 'a.txt'), 'static body\n');
  ctx.backend = await startBackend(fixture('echo.js'));
  ctx.front = await startFront([ctx.backend.socket], [
    '--access-log', join(ctx.dir, 'access.log'), '--log-format', 'json', '--static', `/files=${join(ctx.dir, 'public')}`,
  ]);
  ctx.agent = newAgent();
});

statics('a static file, a static 404 and a proxied request each get a line naming what answered', async (ctx) => {
  const front = ctx.front!;
  assert.is((await call(`${front.url}/files/a.txt`, { dispatcher: ctx.agent })).text, 'static body\n');
  assert.is((await call(`${front.url}/files/missing.txt`, { dispatcher: ctx.agent })).status, 404);
  assert.is((await call(`${front.url}/app`, { dispatcher: ctx.agent })).status, 200);
  const lines = (await linesOf(join(ctx.dir, 'access.log'), 3)).map((l) => JSON.parse(l) as Record<string, unknown>);
  const byTarget = Object.fromEntries(lines.map((l) => [l.target, l]));
  assert.equal([byTarget['/files/a.txt']?.status, byTarget['/files/a.txt']?.backend, byTarget['/files/a.txt']?.bytes_sent],
    [200, 'static', 12]);
  assert.equal([byTarget['/files/missing.txt']?.status, byTarget['/files/missing.txt']?.backend], [404, 'static']);
  assert.is(byTarget['/app']?.backend, `unix:${ctx.backend!.socket}`);
});

statics.after(async (ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

statics.run();

// A failed write (a full disk) does not stop the log for good: the lines are counted as lost, the
// path is reopened from a later line on, and the log says how many were lost once it writes again.
const heal = suite<Ctx & { dir: string }>('e2e/access-log-heal', { ...newCtx(), dir: '' });

setUp(heal, async (ctx) => {
  ctx.dir = tempDir('tsgi-e2e-log-');
  symlinkSync('/dev/full', join(ctx.dir, 'access.log'));
  ctx.backend = await startBackend(fixture('echo.js'));
  ctx.front = await startFront([ctx.backend.socket], [
    '--access-log', join(ctx.dir, 'access.log'), '--log-format', 'json', '--admin', `unix:${join(ctx.dir, 'admin.sock')}`,
  ]);
  ctx.agent = newAgent();
});

heal('after ENOSPC the access log reopens by itself, counts the lost lines and says how many', async (ctx) => {
  const front = ctx.front!;
  let sent = 0;
  const get = async (target: string) => {
    sent++;
    assert.is((await call(`${front.url}${target}`, { dispatcher: ctx.agent })).status, 200);
  };
  for (let i = 0; i < 3; i++) await get(`/lost-${i}`);
  await front.waitForStderr(/access log \S+access\.log: write failed \(ENOSPC\); dropping lines/);
  // The disk has room again: the path now leads to a real file.
  const real = join(ctx.dir, 'real.log');
  writeFileSync(real, '');
  symlinkSync(real, join(ctx.dir, 'next.log'));
  renameSync(join(ctx.dir, 'next.log'), join(ctx.dir, 'access.log'));
  const m = await poll(async () => {
    await get('/after');
    return /access log \S+access\.log: writing again after ENOSPC; (\d+) line\(s\) lost/.exec(front.stderr()) ?? undefined;
  }, 'the log to heal');
  const lost = Number(m[1]);
  assert.ok(lost >= 3, `the 3 lines written to a full disk were lost: ${lost}`);
  await get('/healed');
  const lines = await poll(async () => {
    const all = (await linesOf(real, 1)).map((l) => JSON.parse(l) as Record<string, unknown>);
    return all.some((l) => l.target === '/healed') ? all : undefined;
  }, 'the line of /healed');
  assert.is(lines.length + lost, sent, `every line is either in the file (${lines.length}) or counted as lost (${lost})`);
  assert.not.ok(lines.some((l) => String(l.target).startsWith('/lost-')));
  const metrics = await rawUntilClose(join(ctx.dir, 'admin.sock'), 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(metrics.text, new RegExp(`\ntsgi_access_log_dropped_total ${lost}\n`));
  assert.is(front.stderr().match(/write failed \(ENOSPC\)/g)?.length, 1, 'one line for the failure, not one per retry');
});

heal.after(async (ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

heal.run();
