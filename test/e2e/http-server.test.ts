// The front's own HTTP/1.1 server, end to end over raw sockets: pipelined requests (with bodies,
// chunked and not) answered in order, HTTP/1.0 keep-alive and close, a head dribbled a few bytes
// at a time, HEAD, Expect: 100-continue, and a chunked upload whose chunks span reads.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture } from '../helpers/procs.js';
import { newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { openSocket, parseResponse, rawExchange } from '../helpers/raw-http.js';

const H = 'Host: tsgi.test\r\n';

/** Every response in `raw`, in order. */
function responses(raw: string): ReturnType<typeof parseResponse>[] {
  const out: ReturnType<typeof parseResponse>[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const r = parseResponse(rest);
    out.push(r);
    rest = r.rest;
  }
  return out;
}

const s = suite<Ctx>('e2e/http-server', newCtx());
setUp(s, (ctx) => startPair(ctx, fixture('echo.js')));

s('pipelined requests, bodies and all, are answered in order on one connection', async (ctx) => {
  const body2 = 'second body';
  const chunked = '5\r\nthird\r\n6\r\n chunk\r\n0\r\n\r\n';
  const raw = await rawExchange(ctx.front!.port, [
    `POST /1 HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nfirst`
    + `POST /2 HTTP/1.1\r\n${H}Content-Length: ${body2.length}\r\n\r\n${body2}`
    + `POST /3 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${chunked}`
    + `POST /4 HTTP/1.1\r\n${H}Content-Length: 4\r\nConnection: close\r\n\r\nlast`,
  ]);
  assert.ok(raw.closedByServer, 'closed after the request that asked');
  const got = responses(raw.text);
  assert.equal(got.map((r) => [r.status, r.body]), [[200, 'first'], [200, body2], [200, 'third chunk'], [200, 'last']]);
  assert.is(got[3]!.headers.get('connection'), 'close');
});

s('HTTP/1.0: closed after the response, unless it asks for keep-alive', async (ctx) => {
  const port = ctx.front!.port;
  const plain = await rawExchange(port, 'POST /a HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi', { timeoutMs: 5000 });
  assert.ok(plain.closedByServer);
  assert.is(parseResponse(plain.text).body, 'hi');
  assert.match(plain.text, /\r\nConnection: close\r\n/i);
  const kept = await rawExchange(port, [
    'POST /b HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\none',
    'POST /c HTTP/1.0\r\nContent-Length: 3\r\n\r\ntwo',
  ], { gapMs: 50, timeoutMs: 5000 });
  assert.ok(kept.closedByServer, 'the second request did not ask to stay open');
  const got = responses(kept.text);
  assert.equal(got.map((r) => r.body), ['one', 'two']);
  assert.match(kept.text, /\r\nConnection: keep-alive\r\n/i);
});

s('a head that comes a few bytes at a time is read whole', async (ctx) => {
  const request = `POST /slow HTTP/1.1\r\n${H}Content-Length: 4\r\nConnection: close\r\n\r\nbody`;
  const pieces: string[] = [];
  for (let i = 0; i < request.length; i += 7) pieces.push(request.slice(i, i + 7));
  const raw = await rawExchange(ctx.front!.port, pieces, { gapMs: 2 });
  const r = parseResponse(raw.text);
  assert.equal([r.status, r.body], [200, 'body']);
});

s('HEAD gets the head only, and the connection goes on', async (ctx) => {
  const raw = await rawExchange(ctx.front!.port,
    `HEAD /h HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\nPOST /after HTTP/1.1\r\n${H}Content-Length: 2\r\nConnection: close\r\n\r\nok`);
  const head = raw.text.slice(0, raw.text.indexOf('\r\n\r\n') + 4);
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
  const after = parseResponse(raw.text.slice(head.length));
  assert.equal([after.status, after.body], [200, 'ok'], raw.text);
});

s('Expect: 100-continue gets 100 Continue before the body is sent, then the response', async (ctx) => {
  const sock = await openSocket(ctx.front!.port);
  try {
    sock.write(`POST /continue HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`);
    const deadline = Date.now() + 5000;
    while (!sock.received().includes('100 Continue') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.match(sock.received(), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    sock.write('hello');
    while (!sock.received().endsWith('hello') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const r = parseResponse(sock.received().slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
    assert.equal([r.status, r.body], [200, 'hello']);
  } finally {
    sock.destroy();
  }
});

s('a chunked upload whose sizes, data and CRLFs are split across writes arrives whole', async (ctx) => {
  const data = 'x'.repeat(3000);
  const body = `${(1000).toString(16)}\r\n${data.slice(0, 1000)}\r\n${(2000).toString(16)}\r\n${data.slice(1000)}\r\n0\r\n\r\n`;
  const wire = `POST /chunks HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`;
  const pieces: string[] = [];
  for (let i = 0; i < wire.length; i += 333) pieces.push(wire.slice(i, i + 333));
  const raw = await rawExchange(ctx.front!.port, pieces, { gapMs: 1 });
  const r = parseResponse(raw.text);
  assert.is(r.status, 200);
  assert.is(r.body, data);
});

s.run();
