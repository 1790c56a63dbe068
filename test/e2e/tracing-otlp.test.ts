// End to end: tracing across `tsgi front` and `tsgi serve --workers 2`, both with --otlp-endpoint
// pointing at an OTLP/HTTP receiver this test runs (an HTTP server decoding the JSON export
// requests the OpenTelemetry exporter posts: Debian has no collector). A client's traceparent
// reaches the app as the front's span (same trace, new parent), tracestate as sent; the spans
// arrive with their names, parents and the request id; the request id (X-Request-Id, made when
// absent) reaches the app and the log lines about its request. Then, embedded: the fetch and
// Node adapters see traceparent, tracestate and the request id among their request headers, and
// --request-id-header names another header.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { front, fromFetch, fromNodeHandler, serve, type Backend, type Front } from '../../src/index.js';
import { eventually } from '../helpers/assert.js';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront } from '../helpers/procs.js';

interface OtlpSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  events: string[];
  status?: { code?: number };
}

type AnyValue = { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number };
const valueOf = (v: AnyValue): unknown => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue ?? v.doubleValue);
const attrs = (list: { key: string; value: AnyValue }[] | undefined) => Object.fromEntries((list ?? []).map((a) => [a.key, valueOf(a.value)]));

/** An OTLP/HTTP traces receiver: decodes each JSON ExportTraceServiceRequest into `spans`. */
async function startReceiver(spans: OtlpSpan[], contentTypes: string[]): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.push(String(req.headers['content-type']));
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: { resource: { attributes: { key: string; value: AnyValue }[] };
          scopeSpans: { spans: (Omit<OtlpSpan, 'service' | 'attributes' | 'events'> & { attributes: { key: string; value: AnyValue }[];
            events?: { name: string }[] })[] }[] }[];
      };
      for (const rs of body.resourceSpans) {
        const service = String(attrs(rs.resource.attributes)['service.name']);
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            spans.push({ ...s, service, attributes: attrs(s.attributes), events: (s.events ?? []).map((e) => e.name) });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/v1/traces` };
}

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_SPAN = 'b7ad6b7169203331';
const ID = /^[A-Za-z0-9_-]{12}-[0-9a-z]+$/;

interface OtlpCtx extends Ctx { receiver?: Server; url: string; spans: OtlpSpan[]; contentTypes: string[] }

const test = suite<OtlpCtx>('e2e/tracing-otlp', { ...newCtx(), url: '', spans: [], contentTypes: [] });

setUp(test, async (ctx) => {
  const { server, url } = await startReceiver(ctx.spans, ctx.contentTypes);
  ctx.receiver = server;
  ctx.url = url;
  ctx.backend = await startBackend(fixture('trace-app.js'), ['--workers', '2', '--otlp-endpoint', url]);
  ctx.front = await startFront([ctx.backend.socket], ['--otlp-endpoint', url, '--response-timeout', '1']);
  ctx.agent = newAgent();
});

test.after(async (ctx) => {
  await new Promise((resolve) => ctx.receiver?.close(resolve) ?? resolve(undefined));
});

const spansOf = (ctx: OtlpCtx, trace: string) => ctx.spans.filter((s) => s.traceId === trace);

test('a client\'s traceparent: the app gets the front\'s span as parent, in the same trace; the spans reach the receiver', async (ctx) => {
  const r = await call(`${ctx.front!.url}/traced?q=1`, {
    dispatcher: ctx.agent, headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=abc,other=1' },
  });
  assert.is(r.status, 200);
  const seen = JSON.parse(r.text) as { traceparent: string; tracestate: string; requestId: string };
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen.traceparent);
  assert.ok(m, seen.traceparent);
  assert.is(m![1], TRACE);
  assert.is.not(m![2], CLIENT_SPAN, 'the app\'s parent is the front\'s span, not the client\'s');
  assert.is(seen.tracestate, 'vendor=abc,other=1');
  assert.match(seen.requestId, ID);
  // Both programs export: the front's request span and its dispatch span, the backend's app span.
  await eventually(() => spansOf(ctx, TRACE).length >= 3, 'three spans of the trace at the receiver', 15_000);
  const spans = spansOf(ctx, TRACE);
  const req = spans.find((s) => s.service === 'tsgi-front' && s.name === 'GET');
  const dispatch = spans.find((s) => s.service === 'tsgi-front' && s.name === 'dispatch');
  const app = spans.find((s) => s.service === 'tsgi-serve' && s.name === 'app');
  assert.ok(req && dispatch && app, JSON.stringify(spans.map((s) => [s.service, s.name])));
  assert.is(req!.parentSpanId, CLIENT_SPAN);
  assert.is(req!.spanId, m![2]);
  assert.is(req!.kind, 2); // SERVER
  assert.equal(req!.events, ['dispatch', 'first byte']);
  assert.is(req!.attributes['http.response.status_code'], 200);
  assert.is(req!.attributes['url.path'], '/traced');
  assert.is(req!.attributes['tsgi.request_id'], seen.requestId);
  assert.is(dispatch!.parentSpanId, req!.spanId);
  assert.match(String(dispatch!.attributes['tsgi.backend']), /^unix:/);
  assert.is(app!.parentSpanId, req!.spanId);
  assert.is(app!.kind, 2);
  assert.is(app!.attributes['tsgi.request_id'], seen.requestId);
  assert.is(app!.attributes['http.response.status_code'], 200);
  assert.ok(ctx.contentTypes.every((t) => t.startsWith('application/json')), ctx.contentTypes.join());
});

test('no traceparent: the front starts the trace, and the app is in it', async (ctx) => {
  const r = await call(`${ctx.front!.url}/fresh`, { dispatcher: ctx.agent });
  const seen = JSON.parse(r.text) as { traceparent: string };
  const [, trace, parent] = seen.traceparent.split('-');
  await eventually(() => spansOf(ctx, trace!).length >= 3, 'the new trace at the receiver', 15_000);
  const req = spansOf(ctx, trace!).find((s) => s.service === 'tsgi-front' && s.name === 'GET')!;
  assert.is(req.parentSpanId ?? '', '');
  assert.is(req.spanId, parent);
  assert.is(spansOf(ctx, trace!).find((s) => s.service === 'tsgi-serve')!.parentSpanId, parent);
});

test('the request id: kept when sent, made when not (unique), named in the log lines about the request', async (ctx) => {
  const own = JSON.parse((await call(`${ctx.front!.url}/own`, { dispatcher: ctx.agent, headers: { 'x-request-id': 'client-id-7' } })).text);
  assert.is(own.requestId, 'client-id-7');
  const ids = new Set<string>();
  for (let i = 0; i < 5; i++) ids.add(JSON.parse((await call(`${ctx.front!.url}/n${i}`, { dispatcher: ctx.agent })).text).requestId);
  assert.is(ids.size, 5);
  for (const id of ids) assert.match(id, ID);
  // The app fails: the backend's error line names the id.
  assert.is((await call(`${ctx.front!.url}/throw`, { dispatcher: ctx.agent, headers: { 'x-request-id': 'boom-1' } })).status, 500);
  await ctx.backend!.waitForStderr(/GET \/throw: application error before the response head; answered 500 \(request id boom-1\)/);
  // The backend is too slow: the front's 504 line names it (one the front made, here).
  assert.is((await call(`${ctx.front!.url}/hang`, { dispatcher: ctx.agent })).status, 504);
  const line = await ctx.front!.waitForStderr(/504 GET \/hang: .*request id ([A-Za-z0-9_-]{12}-[0-9a-z]+)\)/);
  // And its span says 504, with the same id.
  await eventually(() => ctx.spans.some((s) => s.attributes['tsgi.request_id'] === line[1] && s.service === 'tsgi-front'),
    'the span of the 504', 15_000);
  const span = ctx.spans.find((s) => s.attributes['tsgi.request_id'] === line[1] && s.name === 'GET')!;
  assert.is(span.attributes['http.response.status_code'], 504);
  assert.is(span.status?.code, 2); // ERROR
});

test.run();

// The adapters, embedded: the fetch Request's and the Node request's headers carry the trace
// context and the request id (--request-id-header x-correlation-id, made by the front).
interface AdapterCtx { dir?: string; backends: Backend[]; fronts: Front[] }
const adapters = suite<AdapterCtx>('e2e/tracing-otlp: adapters', { backends: [], fronts: [] });

adapters.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-trace-adapters-'));
});

adapters.after(async (ctx) => {
  for (const f of ctx.fronts) await f.stop({ graceful: false });
  for (const b of ctx.backends) await b.stop({ graceful: false });
  if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true });
});

async function pair(ctx: AdapterCtx, name: string, app: Parameters<typeof serve>[0]['app']): Promise<string> {
  const socket = join(ctx.dir!, `${name}.sock`);
  ctx.backends.push(await serve({ app, socket, requestIdHeader: 'x-correlation-id' }));
  const f = await front({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [{ kind: 'unix', path: socket }],
    requestIdHeader: 'X-Correlation-Id' });
  ctx.fronts.push(f);
  return `http://127.0.0.1:${(f.address as { port: number }).port}`;
}

for (const [name, app] of [
  ['fetch', fromFetch({ fetch: (r: Request) => Response.json(Object.fromEntries(r.headers)) })],
  ['node', fromNodeHandler((req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(req.headers)); })],
] as const) {
  adapters(`the ${name} adapter's request headers: traceparent, tracestate, and the request id the front made`, async (ctx) => {
    const url = await pair(ctx, name, app);
    const res = await request(`${url}/h`, { headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=abc' } });
    assert.is(res.statusCode, 200);
    const headers = await res.body.json() as Record<string, string>;
    // No --otlp-endpoint here: the client's traceparent goes on as sent.
    assert.is(headers.traceparent, `00-${TRACE}-${CLIENT_SPAN}-01`);
    assert.is(headers.tracestate, 'vendor=abc');
    assert.match(headers['x-correlation-id']!, ID);
    assert.is(headers['x-request-id'], undefined);
  });
}

adapters.run();
