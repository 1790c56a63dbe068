// End to end: --admin on the front and on `tsgi serve --workers 2`. /metrics parses as the
// Prometheus text format and its counters move by exactly the requests made; /status has its
// documented shape; a worker killed with SIGKILL is counted as a restart. A Host other than the
// admin server's own address or localhost gets 421 (DNS rebinding), with one warn line.
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, type Proc } from '../helpers/procs.js';
import { rawUntilClose } from '../helpers/raw-http.js';

type Series = Map<string, number>;

/**
 * Parses the Prometheus text exposition format (0.0.4) strictly enough to catch a malformed
 * line: HELP and TYPE comments, then `name{label="value",…} number` samples, each sample of a
 * family declared by a TYPE before it. Returns 'name{labels}' → value (labels sorted).
 */
function parseProm(text: string): { series: Series; types: Map<string, string> } {
  const series: Series = new Map();
  const types = new Map<string, string>();
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (comment !== null) {
      if (comment[1] === 'TYPE') {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(comment[3]!), line);
        types.set(comment[2]!, comment[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `a sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(name) || types.has(family), `${name} was declared by a # TYPE line`);
    const value = Number(m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : m[3]);
    // Prometheus reads floats with Go's ParseFloat, which takes NaN in any case; prom-client
    // writes 'Nan' (e.g. the event-loop lag before its first sample).
    assert.ok(/^nan$/i.test(m[3]!) || !Number.isNaN(value), `a number in ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`).sort();
    series.set(labels.length > 0 ? `${name}{${labels.join(',')}}` : name, value);
  }
  return { series, types };
}

async function scrape(base: string): Promise<{ series: Series; types: Map<string, string> }> {
  const res = await request(`${base}/metrics`);
  assert.is(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseProm(await res.body.text());
}

const get = (s: Series, key: string): number => s.get(key) ?? 0;

async function adminUrl(proc: Proc): Promise<string> {
  const m = await proc.waitForStderr(/admin on http (127\.0\.0\.1:\d+)/);
  return `http://${m[1]}`;
}

interface AdminCtx extends Ctx {
  frontAdmin: string;
  serveAdmin: string;
}

const test = suite<AdminCtx>('e2e/admin', { ...newCtx(), frontAdmin: '', serveAdmin: '' });

setUp(test, async (ctx) => {
  ctx.backend = await startBackend(fixture('echo.js'), ['--workers', '2', '--admin', '127.0.0.1:0']);
  ctx.serveAdmin = await adminUrl(ctx.backend);
  ctx.front = await startFront([ctx.backend.socket], ['--admin', '127.0.0.1:0']);
  ctx.frontAdmin = await adminUrl(ctx.front);
  ctx.agent = newAgent();
});

test('front /metrics: counters move by exactly the requests made; per-backend series', async (ctx) => {
  const name = `unix:${ctx.backend!.socket}`;
  const before = await scrape(ctx.frontAdmin);
  assert.is(before.types.get('tsgi_http_request_duration_seconds'), 'histogram');
  assert.is(before.types.get('tsgi_http_requests_total'), 'counter');
  assert.ok(before.series.has('process_cpu_seconds_total'), 'default process metrics');
  const bodies = ['a', 'bb', 'ccc', 'dddd'];
  for (const body of bodies) {
    const r = await call(`${ctx.front!.url}/echo`, { method: 'POST', body, dispatcher: ctx.agent });
    assert.is(r.text, body);
  }
  for (let i = 0; i < 3; i++) assert.is((await call(`${ctx.front!.url}/get`, { dispatcher: ctx.agent })).status, 200);
  const after = await scrape(ctx.frontAdmin);
  const delta = (key: string) => get(after.series, key) - get(before.series, key);
  assert.is(delta('tsgi_http_requests_total{status="200"}'), 7);
  assert.is(delta('tsgi_http_request_duration_seconds_count'), 7);
  assert.is(get(after.series, 'tsgi_http_request_duration_seconds_bucket{le="+Inf"}'),
    get(after.series, 'tsgi_http_request_duration_seconds_count'));
  assert.ok(delta('tsgi_http_request_duration_seconds_sum') > 0);
  assert.is(delta('tsgi_http_request_bytes_total'), 10);
  assert.is(delta('tsgi_http_response_bytes_total'), 10);
  assert.is(get(after.series, `tsgi_backend_up{backend="${name}"}`), 1);
  assert.is(get(after.series, `tsgi_backend_state{backend="${name}",state="up"}`), 1);
  assert.is(delta(`tsgi_backend_requests_total{backend="${name}"}`), 7);
  assert.is(get(after.series, `tsgi_backend_failures_total{backend="${name}"}`), 0);
  assert.is(get(after.series, `tsgi_backend_in_flight{backend="${name}"}`), 0);
  assert.is(get(after.series, 'tsgi_http_in_flight'), 0);
  assert.is(get(after.series, 'tsgi_queue_depth'), 0);
  // Cumulative buckets never decrease.
  let last = 0;
  for (const [key, value] of after.series) {
    if (!key.startsWith('tsgi_http_request_duration_seconds_bucket')) continue;
    assert.ok(value >= last, key);
    last = value;
  }
});

test('front /metrics: clients refused before a request existed (malformed, head too large) are counted', async (ctx) => {
  const before = await scrape(ctx.frontAdmin);
  const send = async (bytes: string) => (await rawUntilClose(ctx.front!.port, bytes)).text;
  assert.match(await send('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await send(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  const after = await scrape(ctx.frontAdmin);
  const delta = (key: string) => get(after.series, key) - get(before.series, key);
  assert.is(after.types.get('tsgi_http_refused_total'), 'counter');
  assert.is(delta('tsgi_http_refused_total{status="400"}'), 1);
  assert.is(delta('tsgi_http_refused_total{status="431"}'), 1);
  assert.is(delta('tsgi_http_requests_total{status="400"}'), 0, 'not counted as requests');
});

test('front /status: its JSON shape', async (ctx) => {
  const r = await call(`${ctx.frontAdmin}/status`);
  assert.is(r.status, 200);
  assert.match(String(r.headers['content-type']), /application\/json/);
  const s = JSON.parse(r.text) as Record<string, unknown>;
  assert.is(s.kind, 'front');
  assert.is(s.pid, ctx.front!.pid);
  for (const key of ['uptime', 'requests', 'inFlight', 'queued', 'bytesIn', 'bytesOut']) assert.type(s[key], 'number', key);
  assert.type(s.version, 'string');
  assert.ok(Array.isArray(s.recentErrors));
  const backends = s.backends as Record<string, unknown>[];
  assert.is(backends.length, 1);
  assert.equal(Object.keys(backends[0]!).sort(), ['failures', 'inFlight', 'links', 'name', 'recent', 'requests', 'source', 'state']);
  assert.equal([backends[0]!.name, backends[0]!.state], [`unix:${ctx.backend!.socket}`, 'up']);
  assert.ok((s.requests as number) >= 7);
  assert.ok((s.statuses as Record<string, number>)['200']! >= 7);
  const page = await call(`${ctx.frontAdmin}/`);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(page.text, /<script>/);
  assert.not.match(page.text, /<script src|<link /, 'no external assets');
  assert.is((await call(`${ctx.frontAdmin}/nope`)).status, 404);
});

test('front admin: a Host other than its own address or localhost gets 421, with one warn line (DNS rebinding)', async (ctx) => {
  const port = Number(new URL(ctx.frontAdmin).port);
  const status = async (host: string) => {
    const r = await rawUntilClose(port, `GET /status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    return Number(/^HTTP\/1\.1 (\d{3}) /.exec(r.text)?.[1]);
  };
  const before = ctx.front!.stderr().split('\n').filter((l) => l.includes('admin: 421')).length;
  assert.is(before, 0);
  for (const host of ['evil.example', `evil.example:${port}`, `localhost:${port + 1}`, `[::1]:${port}`, `127.0.0.2:${port}`]) {
    assert.is(await status(host), 421, host);
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', `LOCALHOST:${port}`]) assert.is(await status(host), 200, host);
  const misdirected = await rawUntilClose(port, `GET /metrics HTTP/1.1\r\nHost: rebind.test:${port}\r\nConnection: close\r\n\r\n`);
  assert.match(misdirected.text, /^HTTP\/1\.1 421 /);
  assert.not.match(misdirected.text, /tsgi_/, 'no metrics in it');
  await ctx.front!.waitForStderr(/admin: 421/); // stderr comes through a pipe, maybe after the answer
  const warned = ctx.front!.stderr().split('\n').filter((l) => l.includes('admin: 421'));
  assert.is(warned.length, 1, warned.join('\n'));
  assert.match(warned[0]!, /warn.*admin: 421 for Host "evil\.example" \(client 127\.0\.0\.1\): the admin server \(--admin 127\.0\.0\.1:\d+\) answers only its own address or localhost.*further ones are logged at debug level/);
});

test('serve --workers 2 /metrics: the workers\' requests summed by the supervisor', async (ctx) => {
  const before = await scrape(ctx.serveAdmin);
  assert.is(get(before.series, 'tsgi_serve_workers{state="ready"}'), 2);
  assert.is(get(before.series, 'tsgi_serve_generation'), 1);
  assert.ok(before.series.has('tsgi_serve_worker_restarts_total{reason="crash"}'));
  assert.is(before.types.get('tsgi_serve_request_duration_seconds'), 'histogram');
  const base = get(before.series, 'tsgi_serve_requests_total{status="200"}');
  const n = 6;
  for (let i = 0; i < n; i++) assert.is((await call(`${ctx.front!.url}/w${i}`, { dispatcher: ctx.agent })).status, 200);
  // A worker counts a request when the app is done, a moment after the front has the response.
  const after = await poll(async () => {
    const s = await scrape(ctx.serveAdmin);
    return get(s.series, 'tsgi_serve_requests_total{status="200"}') >= base + n ? s : undefined;
  }, 'the workers to count the requests');
  assert.is(get(after.series, 'tsgi_serve_requests_total{status="200"}'), base + n);
  assert.is(get(after.series, 'tsgi_serve_request_duration_seconds_count'),
    get(before.series, 'tsgi_serve_request_duration_seconds_count') + n);
  assert.is(get(after.series, 'tsgi_serve_request_duration_seconds_bucket{le="+Inf"}'),
    get(after.series, 'tsgi_serve_request_duration_seconds_count'));
  assert.is(get(after.series, 'tsgi_serve_connections'), 2, 'one front connection per worker');
  assert.is(get(after.series, 'tsgi_serve_in_flight'), 0);
});

test('serve /status, and a worker killed with SIGKILL counted as a restart', async (ctx) => {
  const status = async () => JSON.parse((await call(`${ctx.serveAdmin}/status`)).text) as {
    kind: string; pid: number; generation: number; requests: number; restarts: Record<string, number>;
    recentErrors: { level: string; message: string }[];
    workers: { id: number; pid: number; state: string; generation: number; inFlight: number; requests: number; connections: number }[];
  };
  const s = await status();
  assert.is(s.kind, 'serve');
  assert.is(s.pid, ctx.backend!.pid);
  assert.is(s.generation, 1);
  assert.is(s.workers.length, 2);
  for (const w of s.workers) {
    assert.equal(Object.keys(w).sort(), ['connections', 'generation', 'id', 'inFlight', 'pid', 'recent', 'requests', 'state']);
    assert.is(w.state, 'ready');
  }
  assert.is(s.restarts.crash, 0);
  const served = get((await scrape(ctx.serveAdmin)).series, 'tsgi_serve_requests_total{status="200"}');
  assert.ok(served >= 6);
  // The victim: the worker that served the most (by the heartbeats, once they caught up).
  const busiest = await poll(async () => {
    const now = await status();
    if (now.workers.reduce((n, w) => n + w.requests, 0) < served) return undefined;
    return now.workers.reduce((a, b) => (b.requests > a.requests ? b : a));
  }, 'the heartbeats to report the requests');
  assert.ok(busiest.requests > 0);
  const victim = busiest.pid;
  process.kill(victim, 'SIGKILL');
  const after = await poll(async () => {
    const m = await scrape(ctx.serveAdmin);
    return get(m.series, 'tsgi_serve_worker_restarts_total{reason="crash"}') === 1
      && get(m.series, 'tsgi_serve_workers{state="ready"}') === 2 ? m : undefined;
  }, 'the restart to be counted and a new worker ready');
  assert.is(get(after.series, 'tsgi_serve_worker_restarts_total{reason="crash"}'), 1);
  assert.is(get(after.series, 'tsgi_serve_requests_total{status="200"}'), served,
    'the dead worker\'s requests stay in the sum (a counter never goes down)');
  const again = await status();
  assert.is(again.restarts.crash, 1);
  assert.ok(!again.workers.some((w) => w.pid === victim), 'the killed worker is gone from /status');
  const recent = again.recentErrors;
  assert.ok(recent.some((e) => e.message.includes(`pid ${victim}`) && e.message.includes('died')), JSON.stringify(recent));
});

test.run();
