// End to end: interim responses (103 Early Hints) and trailers both ways, through a real front
// and `tsgi serve`, over HTTP/1.1 (Node's http client, raw sockets) and HTTP/2 (http2.connect):
// a gateway app (environ['tsgi.early_hints'], environ['tsgi.trailers'], tsgi.input.trailers) and a
// Node handler (res.writeEarlyHints, res.addTrailers, req.trailers).
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, type BackendProc, type FrontProc } from '../helpers/procs.js';
import { rawExchange } from '../helpers/raw-http.js';

interface HtCtx extends Ctx {
  nodeBackend?: BackendProc;
  nodeFront?: FrontProc;
}

const test = suite<HtCtx>('e2e/hints-trailers', newCtx());
setUp(test, async (ctx) => {
  ctx.backend = await startBackend(fixture('hints-trailers.js'));
  ctx.front = await startFront([ctx.backend.socket]);
  ctx.nodeBackend = await startBackend(fixture('node-hints-trailers.js'));
  ctx.extra.push(ctx.nodeBackend);
  ctx.nodeFront = await startFront([ctx.nodeBackend.socket]);
  ctx.extra.push(ctx.nodeFront);
});

interface H1Answer {
  informational: { status: number; headers: Record<string, unknown> }[];
  status: number;
  headers: Record<string, unknown>;
  body: string;
  trailers: Record<string, string>;
}

/** A GET with Node's http client (which reports 1xx as 'information' and reads chunked trailers). */
function h1(url: string, headers: Record<string, string> = {}): Promise<H1Answer> {
  return new Promise((resolve, reject) => {
    const informational: H1Answer['informational'] = [];
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => { body += s; });
      res.on('end', () => resolve({ informational, status: res.statusCode!, headers: res.headers, body, trailers: res.trailers as Record<string, string> }));
    });
    req.on('information', (info) => informational.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    req.end();
  });
}

interface H2Answer {
  informational: IncomingHttpHeaders[];
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders | null;
}

function h2(session: ClientHttp2Session, path: string, opts: { body?: string; trailers?: Record<string, string> } = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const hasBody = opts.body !== undefined;
    const stream = session.request({ ':path': path, ':method': hasBody ? 'POST' : 'GET' },
      { endStream: !hasBody, waitForTrailers: opts.trailers !== undefined });
    const informational: IncomingHttpHeaders[] = [];
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | null = null;
    let body = '';
    stream.on('headers', (h) => informational.push(h));
    stream.on('response', (h) => { headers = h; });
    stream.on('trailers', (h) => { trailers = h; });
    stream.setEncoding('utf8');
    stream.on('data', (s: string) => { body += s; });
    stream.on('end', () => resolve({ informational, headers, body, trailers }));
    stream.on('error', reject);
    if (opts.trailers !== undefined) stream.once('wantTrailers', () => stream.sendTrailers(opts.trailers!));
    if (hasBody) stream.end(opts.body);
  });
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

test('103 Early Hints reaches an HTTP/1.1 and an HTTP/2 client before the 200, from either kind of app', async (ctx) => {
  const gw = await h1(`${ctx.front!.url}/hints`);
  assert.equal(gw.informational.map((i) => [i.status, i.headers.link]), [[103, '</style.css>; rel=preload; as=style']]);
  assert.is(gw.status, 200);
  assert.is(gw.body, 'hinted\n');
  const node = await h1(`${ctx.nodeFront!.url}/hints`);
  assert.equal(node.informational.map((i) => [i.status, i.headers.link]), [[103, '</app.js>; rel=preload; as=script']]);
  assert.is(node.body, 'hinted\n');
  const session = h2connect(ctx.front!.url);
  try {
    const a = await h2(session, '/hints');
    assert.equal(a.informational.map((h) => [h[':status'], h.link]), [[103, '</style.css>; rel=preload; as=style']]);
    assert.is(a.headers[':status'], 200);
    assert.is(a.body, 'hinted\n');
  } finally {
    session.close();
  }
});

test('response trailers: chunked HTTP/1.1 with TE: trailers, none without it; HTTP/2 always', async (ctx) => {
  const want = sha('one\ntwo\nthree\n');
  const withTe = await h1(`${ctx.front!.url}/trailers`, { TE: 'trailers' });
  assert.is(withTe.body, 'one\ntwo\nthree\n');
  assert.is(withTe.headers['transfer-encoding'], 'chunked');
  assert.equal(withTe.trailers, { 'x-checksum': want });
  const whole = await h1(`${ctx.front!.url}/whole`, { TE: 'trailers' });
  assert.is(whole.body, 'all at once\n');
  assert.equal(whole.trailers, { 'x-checksum': sha('all at once\n') }, 'a whole body is sent chunked to carry them');
  const without = await h1(`${ctx.front!.url}/trailers`);
  assert.is(without.body, 'one\ntwo\nthree\n');
  assert.equal(without.trailers, {}, 'a client that did not ask gets none');
  const node = await h1(`${ctx.nodeFront!.url}/trailers`, { TE: 'trailers' });
  assert.is(node.body, 'streamed\n');
  assert.equal(node.trailers, { 'x-rows': '3' });
  const session = h2connect(ctx.front!.url);
  try {
    const streamed = await h2(session, '/trailers');
    assert.is(streamed.body, 'one\ntwo\nthree\n');
    assert.is(streamed.trailers?.['x-checksum'], want);
    const all = await h2(session, '/whole');
    assert.is(all.trailers?.['x-checksum'], sha('all at once\n'));
  } finally {
    session.close();
  }
});

test('request trailers reach the app: chunked HTTP/1.1 and HTTP/2, gateway and Node apps; forbidden fields dropped', async (ctx) => {
  const raw = 'POST /request-trailers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
    + '5\r\nhello\r\n0\r\nX-Sig: abc\r\nContent-Length: 99\r\n\r\n';
  const answer = (await rawExchange(ctx.front!.port, raw)).text;
  assert.match(answer, /^HTTP\/1\.1 200 /);
  const json = JSON.parse(answer.slice(answer.indexOf('{'), answer.lastIndexOf('}') + 1)) as { bytes: number; trailers: string[] };
  assert.equal(json, { bytes: 5, trailers: ['X-Sig', 'abc'] }, 'as sent; Content-Length is no trailer');
  const nodeAnswer = (await rawExchange(ctx.nodeFront!.port, raw)).text;
  const nodeJson = JSON.parse(nodeAnswer.slice(nodeAnswer.indexOf('{'), nodeAnswer.lastIndexOf('}') + 1)) as Record<string, unknown>;
  assert.equal(nodeJson, { bytes: 5, trailers: { 'x-sig': 'abc' }, raw: ['X-Sig', 'abc'] });
  const session = h2connect(ctx.front!.url);
  try {
    const a = await h2(session, '/request-trailers', { body: 'twelve bytes', trailers: { 'x-sig': 'h2' } });
    assert.equal(JSON.parse(a.body), { bytes: 12, trailers: ['x-sig', 'h2'] });
  } finally {
    session.close();
  }
});

test.run();
