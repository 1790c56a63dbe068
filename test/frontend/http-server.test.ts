// The front's HTTP/1.1 server in-process, byte for byte: a connection is an in-memory duplex
// (no socket, no port), the handler answers through HttpResponse, and the test reads exactly
// what a client would. The framing rules: Content-Length when the whole body is known,
// chunked for a streamed HTTP/1.1 body, the close for HTTP/1.0, no body for HEAD/204/304, the
// keep-alive header, pipelined responses in order, and a half-close that still gets its answer.
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Logger } from '../../src/common/log.js';
import { HttpServer, type HttpRequest, type HttpResponse } from '../../src/frontend/http/server.js';

const lines: string[] = [];
const log: Logger = {
  debug: () => {}, info: () => {},
  warn: (m: string) => { lines.push(m); }, error: (m: string) => { lines.push(m); },
} as unknown as Logger;

/** A client connection in memory: what the client writes goes in; what the server writes is collected. */
class FakeSocket extends Duplex {
  remoteAddress = '192.0.2.1';
  bytesWritten = 0;
  out: Buffer[] = [];
  serverEnded = false;
  constructor() {
    super({ allowHalfOpen: true });
    this.on('finish', () => { this.serverEnded = true; });
  }
  setNoDelay(): this { return this; }
  destroySoon(): void { this.end(); }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.bytesWritten += chunk.length;
    this.out.push(Buffer.from(chunk));
    done();
  }
  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    for (const { chunk } of chunks) this.out.push(Buffer.from(chunk));
    done();
  }
  /** The client sends `text` (and, with `end`, its FIN). */
  send(text: string, end = false): void {
    this.push(Buffer.from(text, 'latin1'));
    if (end) this.push(null);
  }
  get text(): string {
    return Buffer.concat(this.out).toString('latin1');
  }
}

type Handler = (req: HttpRequest, res: HttpResponse) => void;

function serve(handler: Handler): { server: HttpServer; connect(): FakeSocket } {
  const server = new HttpServer({
    log, onRequest: handler, keepAliveTimeoutMs: 5000, headersTimeoutMs: 0, maxHeaderSize: 16384, maxConnections: 0,
  });
  return {
    server,
    connect() {
      const socket = new FakeSocket();
      server.accept(socket as unknown as Socket);
      return socket;
    },
  };
}

/** Resolves after the microtasks and ticks the server's writes go through. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The response text without its Date line (it changes every second). */
const noDate = (text: string) => text.replace(/Date: [^\r]*\r\n/g, '');

const test = suite('frontend/http-server');

test('a whole body known at the end gets a Content-Length, and the connection stays open', async () => {
  const { connect } = serve((_req, res) => {
    res.writeHead(200, undefined, ['content-type', 'text/plain']);
    res.end(Buffer.from('hello'));
  });
  const c = connect();
  c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  assert.is(noDate(c.text), 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n'
    + 'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello');
  assert.not.ok(c.serverEnded);
});

test('a streamed HTTP/1.1 body is chunked; the end is the zero chunk', async () => {
  const { connect } = serve((_req, res) => {
    res.writeHead(200, undefined, []);
    res.write(Buffer.from('ab'));
    res.write(Buffer.from('cde'));
    res.end();
  });
  const c = connect();
  c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  assert.is(noDate(c.text), 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n'
    + 'Keep-Alive: timeout=5\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n');
});

test('a streamed HTTP/1.0 body is delimited by the close', async () => {
  const { connect } = serve((_req, res) => {
    res.writeHead(200, undefined, []);
    res.write(Buffer.from('ab'));
    res.end(Buffer.from('c'));
  });
  const c = connect();
  c.send('GET / HTTP/1.0\r\n\r\n');
  await settle();
  assert.is(noDate(c.text), 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc');
  assert.ok(c.serverEnded, 'the end of the body is the end of the connection');
});

test('a declared Content-Length is kept and the body must match it', async () => {
  let thrown: unknown = null;
  const { connect } = serve((_req, res) => {
    res.writeHead(200, undefined, ['content-length', '3']);
    res.write(Buffer.from('ab'));
    try {
      res.write(Buffer.from('cd'));
    } catch (err) {
      thrown = err;
    }
    res.end(Buffer.from('c'));
  });
  const c = connect();
  c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  assert.match(String(thrown), /body length does not match the Content-Length/);
  assert.is(noDate(c.text), 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nabc');
});

test('HEAD, 204 and 304 carry no body', async () => {
  const { connect } = serve((req, res) => {
    const status = req.url === '/204' ? 204 : req.url === '/304' ? 304 : 200;
    res.writeHead(status, undefined, status === 200 ? ['content-length', '5'] : []);
    res.end(status === 200 ? Buffer.from('hello') : undefined);
  });
  const c = connect();
  c.send('HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  await settle();
  const keep = 'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n';
  assert.is(noDate(c.text), `HTTP/1.1 200 OK\r\ncontent-length: 5\r\n${keep}`
    + `HTTP/1.1 204 No Content\r\n${keep}HTTP/1.1 304 Not Modified\r\n${keep}`);
});

test('pipelined requests are answered in order, one at a time', async () => {
  const pending: HttpResponse[] = [];
  const { connect } = serve((req, res) => {
    res.writeHead(200, undefined, ['x-url', req.url]);
    pending.push(res);
  });
  const c = connect();
  c.send('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  assert.is(pending.length, 1, 'the second waits for the first response');
  pending[0]!.end(Buffer.from('one'));
  await settle();
  assert.is(pending.length, 2);
  pending[1]!.end(Buffer.from('two'));
  await settle();
  const bodies = [...c.text.matchAll(/x-url: (\/\d)[\s\S]*?\r\n\r\n(one|two)/g)].map((m) => `${m[1]}=${m[2]}`);
  assert.equal(bodies, ['/1=one', '/2=two']);
});

test('a half-closed client still gets every answer, then the connection ends', async () => {
  const pending: HttpResponse[] = [];
  const { connect } = serve((_req, res) => {
    res.writeHead(200, undefined, []);
    pending.push(res);
  });
  const c = connect();
  c.send('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n', true);
  await settle();
  assert.is(pending.length, 1);
  assert.ok(c.text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 'a probe of whether the client is still there');
  assert.not.ok(pending[0]!.destroyed, 'a FIN is not a client gone');
  pending[0]!.end(Buffer.from('one'));
  await settle();
  pending[1]!.end(Buffer.from('two'));
  await settle();
  assert.match(c.text, /\r\n\r\none[\s\S]*\r\n\r\ntwo$/);
  assert.ok(c.serverEnded, 'ended after the last answer');
});

test('a refusal is a raw error response and the end', async () => {
  const { connect } = serve(() => assert.unreachable('no handler for a malformed head'));
  const c = connect();
  c.send('GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n');
  await settle();
  assert.match(c.text, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(c.text, /\r\nconnection: close\r\n/);
  assert.ok(c.serverEnded);
  assert.ok(lines.some((l) => /^400 to 192\.0\.2\.1: malformed request/.test(l)), 'a log line says why');
});

test.run();

// ---- the timeouts, driven by sweep(now) with a time of the test's own (no waiting) -------------

/** A client that reads nothing: the server's writes never complete. */
class StalledSocket extends FakeSocket {
  override _write(_chunk: Buffer, _enc: BufferEncoding, _done: (err?: Error | null) => void): void {}
  override _writev(_chunks: { chunk: Buffer }[], _done: (err?: Error | null) => void): void {}
}

function timed(opts: Partial<ConstructorParameters<typeof HttpServer>[0]>, handler: Handler = (_req, res) => {
  res.writeHead(200, undefined, []);
  res.end(Buffer.from('ok'));
}) {
  const server = new HttpServer({
    log, onRequest: handler, keepAliveTimeoutMs: 5000, headersTimeoutMs: 30_000, maxHeaderSize: 16384, maxConnections: 0,
    lingerTimeoutMs: 5000, sendTimeoutMs: 60_000, bodyTimeoutMs: 30_000, sweeper: false, ...opts,
  });
  return server;
}

const timers = suite('frontend/http-server-timeouts');

timers('a head not complete within --headers-timeout gets 408', async () => {
  const server = timed({});
  const c = new FakeSocket();
  server.accept(c as unknown as Socket);
  c.send('GET / HTTP/1.1\r\nHost');
  await settle();
  server.sweep(Date.now() + 29_000);
  assert.is(c.text, '');
  server.sweep(Date.now() + 31_000);
  await settle();
  assert.match(c.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.ok(c.serverEnded);
});

timers('an idle keep-alive connection closes after --keep-alive-timeout', async () => {
  const server = timed({});
  const c = new FakeSocket();
  server.accept(c as unknown as Socket);
  c.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  server.sweep(Date.now() + 4000);
  assert.not.ok(c.destroyed);
  server.sweep(Date.now() + 6000);
  assert.ok(c.destroyed);
});

timers('after Connection: close, the socket goes at --linger-timeout whatever the client sends', async () => {
  const server = timed({});
  const c = new FakeSocket();
  server.accept(c as unknown as Socket);
  c.send('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  await settle();
  assert.ok(c.serverEnded);
  const t = Date.now();
  server.sweep(t); // the last byte is out: the linger deadline starts
  c.send('more bytes');
  server.sweep(t + 4000);
  assert.not.ok(c.destroyed);
  c.send('and more');
  server.sweep(t + 5001);
  assert.ok(c.destroyed);
});

timers('a response the client does not read is abandoned at --send-timeout, with a log line', async () => {
  let closed = false;
  const server = timed({}, (_req, res) => {
    res.handler = { onResponseClose: () => { closed = true; } };
    res.writeHead(200, undefined, []);
    res.write(Buffer.alloc(100_000, 0x61));
  });
  const c = new StalledSocket();
  server.accept(c as unknown as Socket);
  c.send('GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  const t = Date.now();
  server.sweep(t);
  server.sweep(t + 59_000);
  assert.not.ok(c.destroyed);
  server.sweep(t + 60_001);
  assert.ok(c.destroyed);
  await settle();
  assert.ok(closed, 'the handler is told (the exchange resets its stream)');
  assert.ok(lines.some((l) => /the response to GET \/big could not be written for --send-timeout \(60 s\)/.test(l)));
});

timers('an unread body is dropped up to the limit, then the front stops reading and ends', async () => {
  const server = timed({ maxDropBytes: 1000 });
  const c = new FakeSocket();
  server.accept(c as unknown as Socket);
  c.send(`POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(500)}`);
  await settle();
  assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.not.ok(c.serverEnded, 'the rest of the body may still come within the limit');
  c.send('y'.repeat(600));
  await settle();
  assert.ok(c.serverEnded, 'over the limit: the connection ends');
  assert.ok(lines.some((l) => /dropped \d+ bytes of the unread body of POST \/ignore, over 1000/.test(l)));
});

timers.run();

const limits = suite('frontend/http-server-max-connections');

limits('at --max-connections a lingering connection gives way; with none, a new one gets 503', async () => {
  const server = new HttpServer({
    log, keepAliveTimeoutMs: 5000, headersTimeoutMs: 30_000, maxHeaderSize: 16384, maxConnections: 2, sweeper: false,
    onRequest: (_req, res) => {
      res.writeHead(200, undefined, []);
      res.end(Buffer.from('ok'));
    },
  });
  const lingering = new FakeSocket();
  server.accept(lingering as unknown as Socket);
  lingering.send('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const busy = new FakeSocket();
  server.accept(busy as unknown as Socket);
  busy.send('GET / HTTP/1.1\r\nHost'); // a head on its way
  await settle();
  assert.ok(lingering.serverEnded, 'answered and ended; its client has not closed');
  const honest = new FakeSocket();
  server.accept(honest as unknown as Socket);
  assert.ok(lingering.destroyed, 'the lingering one made room');
  honest.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await settle();
  assert.match(honest.text, /^HTTP\/1\.1 200 OK\r\n/);
  const refused = new FakeSocket();
  server.accept(refused as unknown as Socket);
  await settle();
  assert.match(refused.text, /^HTTP\/1\.1 503 Service Unavailable\r\n/, 'nobody lingers now: refused');
  assert.not.ok(busy.destroyed);
});

limits.run();
