// fromNodeHandler: a Node (req, res) handler run as a gateway application, through runApplication:
// req a real IncomingMessage fed from tsgi.input, res a real ServerResponse feeding the gateway.
import { IncomingMessage, type Server, ServerResponse, createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputStream } from '../../src/backend/input.js';
import { loadApplication } from '../../src/backend/load-app.js';
import { fromNodeHandler, isNodeApp, type NodeHandler } from '../../src/backend/node-adapter.js';
import { eventually } from '../helpers/assert.js';
import { type EnvironOptions, RecordingResponder, assertAborted, assertComplete, run, turns } from './helpers/exchange.js';

const test = suite('backend/node-adapter');

/** Runs `handler` for one request; resolves once the exchange is done. */
async function serve(handler: NodeHandler, opts: EnvironOptions & { out?: RecordingResponder } = {}) {
  const x = run(fromNodeHandler(handler), opts);
  await x.done;
  return x;
}

test('req: a real IncomingMessage with method, url, version, headers as Node joins them, rawHeaders, socket', async () => {
  let req: IncomingMessage | undefined;
  let res: ServerResponse | undefined;
  const x = await serve((rq, rs) => {
    req = rq;
    res = rs;
    rs.end('ok');
  }, {
    head: { method: 'PUT', target: '/app/items/%E4%B8%AD?sort=asc', scheme: 'https', remoteAddr: '10.0.0.9', remotePort: 4242 },
    headers: ['Host', 'example.test', 'X-Multi', 'a', 'x-multi', 'b', 'Cookie', 'c=1', 'Cookie', 'd=2',
      'Set-Cookie', 's1', 'Set-Cookie', 's2', 'Content-Type', 'text/plain', 'Content-Length', '0'],
    scriptName: '/app',
  });
  assertComplete(x.out);
  assert.instance(req, IncomingMessage);
  assert.instance(req, Readable);
  assert.instance(res, ServerResponse);
  assert.is(req!.method, 'PUT');
  assert.is(req!.url, '/app/items/%E4%B8%AD?sort=asc', 'the path as the client sent it, mount prefix included');
  assert.is(req!.httpVersion, '1.1');
  assert.is(req!.httpVersionMajor, 1);
  assert.equal(req!.headers, {
    host: 'example.test', 'x-multi': 'a, b', cookie: 'c=1; d=2', 'set-cookie': ['s1', 's2'],
    'content-type': 'text/plain', 'content-length': '0',
  });
  // rawHeaders as tsgi.headers has them: names of the static table arrive lower-cased, others as sent
  assert.equal(req!.rawHeaders.slice(0, 6), ['host', 'example.test', 'X-Multi', 'a', 'x-multi', 'b']);
  const socket = req!.socket as unknown as { remoteAddress: string; remotePort: number; encrypted?: boolean };
  assert.is(socket.remoteAddress, '10.0.0.9');
  assert.is(socket.remotePort, 4242);
  assert.is(socket.encrypted, true, 'https: socket.encrypted, as a TLS socket has');
  assert.is(res!.socket, req!.socket as unknown);
});

test('regression: req.url of an absolute-form target is its path and query', async () => {
  let url: string | undefined;
  await serve((req, res) => { url = req.url; res.end(); }, { head: { target: 'http://example.test/a/b?x=1' } });
  assert.is(url, '/a/b?x=1');
});

test('the request body streams from tsgi.input only as the handler reads it', async () => {
  const credited: number[] = [];
  const input = new InputStream((n) => credited.push(n));
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; i < 8; i++) input.push(chunk);
  let req: IncomingMessage | undefined;
  let res: ServerResponse | undefined;
  const out = new RecordingResponder();
  const x = run(fromNodeHandler((rq, rs) => { req = rq; res = rs; }), {
    out, input, head: { method: 'POST', target: '/up' }, headers: ['Host', 'h', 'Content-Length', String(10 * chunk.length)],
  });
  await eventually(() => req !== undefined, 'the handler to run');
  await turns(10);
  assert.is(credited.length, 0, 'nothing taken before anyone reads');
  let received = 0;
  req!.once('data', (c: Buffer) => {
    received += c.length;
    req!.pause(); // the first chunk, then a pause: what is taken stays bounded
  });
  await eventually(() => received > 0, 'a first chunk');
  await turns(10);
  const taken = credited.length;
  assert.ok(taken <= 2, `a paused request stops taking chunks (took ${taken} of 8)`);
  req!.on('data', (c: Buffer) => { received += c.length; });
  const ended = new Promise<void>((resolve) => req!.on('end', resolve));
  req!.resume();
  input.push(chunk);
  input.push(chunk);
  input.end();
  await ended;
  assert.is(credited.reduce((a, b) => a + b, 0), 10 * chunk.length, 'every byte taken and credited');
  assert.ok(received > 0 && received <= 10 * chunk.length);
  assert.ok(req!.complete);
  res!.end(String(received));
  await x.done;
  assertComplete(out);
});

test('a body without Content-Length looks chunked to body parsers; a bodiless GET ends at once', async () => {
  const input = new InputStream();
  let te: string | undefined;
  const x = run(fromNodeHandler((req, res) => {
    te = req.headers['transfer-encoding'];
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => res.end(body.toUpperCase()));
  }), { input, head: { method: 'POST', target: '/' }, headers: ['Host', 'h'] });
  input.push(Buffer.from('abc'));
  input.end();
  await x.done;
  assert.is(te, 'chunked');
  assert.is(x.out.body, 'ABC');
  let get: IncomingMessage | undefined;
  const y = await serve((req, res) => {
    get = req;
    req.on('end', () => res.end('done')).resume();
  });
  assert.is(get!.headers['transfer-encoding'], undefined);
  assert.ok(get!.complete);
  assert.is(y.out.body, 'done');
});

test('res: statusCode, statusMessage and the header methods make the head', async () => {
  let sentAfter: boolean | undefined;
  let thrown: unknown;
  const x = await serve((req, res) => {
    res.statusCode = 201;
    res.statusMessage = 'Made It';
    res.setHeader('Content-Type', 'text/plain');
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.setHeader('X-Gone', 'x');
    assert.ok(res.hasHeader('x-gone'));
    res.removeHeader('X-Gone');
    assert.not.ok(res.hasHeader('x-gone'));
    assert.is(res.getHeader('content-type'), 'text/plain');
    assert.equal(Object.keys(res.getHeaders()), ['content-type', 'set-cookie']);
    assert.not.ok(res.headersSent);
    res.write('one ');
    sentAfter = res.headersSent;
    try {
      res.setHeader('X-Late', '1');
    } catch (err) {
      thrown = err;
    }
    res.end('two');
  });
  assertComplete(x.out);
  assert.is(x.out.head0.status, 201);
  assert.is(x.out.head0.reason, 'Made It');
  assert.equal(x.out.header('set-cookie'), ['a=1', 'b=2']);
  assert.equal(x.out.header('content-length'), ['7'], 'ended before the handler returned: the whole body is known');
  assert.is(x.out.body, 'one two');
  assert.ok(sentAfter, 'headersSent after the first write');
  assert.is((thrown as { code?: string })?.code, 'ERR_HTTP_HEADERS_SENT');
});

test('res.writeHead: every form (headers object, message, flat array, pairs) and chaining', async () => {
  const forms: ((res: ServerResponse) => void)[] = [
    (res) => res.writeHead(202, { 'X-A': '1', 'Set-Cookie': ['c=1', 'c=2'] }).end(),
    (res) => res.writeHead(202, 'Fine', { 'X-A': '1' }).end(),
    (res) => { res.setHeader('X-A', 'old'); res.writeHead(202, ['X-A', '1', 'X-B', '2']); res.end(); },
    (res) => { res.setHeader('X-A', 'old'); res.writeHead(202, [['X-A', '1']] as unknown as string[]); res.end(); },
    (res) => { res.writeHead(103, { Link: '</a.css>; rel=preload' }); res.writeHead(202, { 'X-A': '1' }); res.end(); },
  ];
  for (const [i, form] of forms.entries()) {
    const x = await serve((_req, res) => form(res));
    assertComplete(x.out);
    assert.is(x.out.head0.status, 202, `form ${i}`);
    assert.equal(x.out.header('x-a'), ['1'], `form ${i}: x-a`);
    if (i === 0) assert.equal(x.out.header('set-cookie'), ['c=1', 'c=2']);
    if (i === 1) assert.is(x.out.head0.reason, 'Fine');
    if (i === 2) assert.equal(x.out.header('x-b'), ['2']);
    if (i === 4) assert.equal(x.out.header('link'), [], 'a 1xx head is dropped, its headers too');
  }
});

test('flushHeaders() sends the head now, before any body: headersSent, later setHeader throws', async () => {
  const out = new RecordingResponder();
  let res: ServerResponse | undefined;
  const x = run(fromNodeHandler((_req, rs) => {
    res = rs;
    rs.setHeader('Content-Type', 'text/event-stream');
    rs.flushHeaders();
  }), { out });
  await eventually(() => res !== undefined, 'the handler');
  assert.ok(res!.headersSent);
  assert.throws(() => res!.setHeader('X-Late', '1'), /after they are sent/);
  assert.is(out.heads.length, 1, 'the head went out with no body yet');
  assert.is(out.writes.length, 0);
  res!.write('data: 1\n\n');
  await eventually(() => out.chunks.length === 1, 'the first event');
  assert.equal(out.header('content-type'), ['text/event-stream']);
  res!.end();
  await x.done;
  assertComplete(out);
});

test('the methods survive a prototype swap, as Express does to every res and req', async () => {
  const proto = Object.create(ServerResponse.prototype) as object;
  const x = await serve((req, res) => {
    Object.setPrototypeOf(req, Object.create(IncomingMessage.prototype));
    Object.setPrototypeOf(res, proto);
    res.statusCode = 202;
    res.write('a');
    res.end('b');
  });
  assertComplete(x.out);
  assert.is(x.out.head0.status, 202);
  assert.is(x.out.body, 'ab');
});

test('res.end(body) sends a Content-Length; hop-by-hop headers a Node app sets are dropped', async () => {
  const x = await serve((_req, res) => {
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('Transfer-Encoding', 'chunked');
    res.end(Buffer.from('héllo'));
  });
  assertComplete(x.out);
  assert.equal(x.out.header('content-length'), ['6'], 'the whole body was known');
  assert.equal(x.out.header('connection'), []);
  assert.equal(x.out.header('transfer-encoding'), []);
  assert.is(x.out.body, 'héllo');
  const y = await serve((_req, res) => res.end('héllo'));
  assert.equal(y.out.header('content-length'), ['6']);
  const z = await serve((_req, res) => res.end());
  assert.equal(z.out.header('content-length'), ['0'], 'end() with no body: Content-Length: 0, as Node sends');
});

test('HEAD, 204 and 304: the body is dropped', async () => {
  const x = await serve((_req, res) => { res.setHeader('Content-Length', '5'); res.end('hello'); }, { head: { method: 'HEAD' } });
  assertComplete(x.out);
  assert.is(x.out.body, '');
  assert.equal(x.out.header('content-length'), ['5']);
  const y = await serve((_req, res) => { res.statusCode = 204; res.end('ignored'); });
  assert.is(y.out.head0.status, 204);
  assert.is(y.out.body, '');
});

test('backpressure: write() answers false when the stream is full, \'drain\' follows, callbacks run', async () => {
  const out = new RecordingResponder();
  out.blocked = true;
  const results: boolean[] = [];
  let drained = 0;
  let called = 0;
  let res: ServerResponse | undefined;
  const x = run(fromNodeHandler((_req, rs) => {
    res = rs;
    rs.on('drain', () => { drained++; });
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    for (let i = 0; i < 8; i++) results.push(rs.write(chunk, () => { called++; }));
  }), { out });
  await eventually(() => out.waiting, 'the gateway to wait for the stream');
  assert.ok(results.includes(false), `write() said stop once 64 KiB waited: ${results}`);
  assert.is(results.indexOf(false), 3, 'the fourth 16 KiB chunk reaches the high-water mark');
  assert.is(drained, 0);
  out.release();
  await eventually(() => drained === 1, '\'drain\' once the queue emptied');
  assert.is(called, 8, 'every write callback ran');
  res!.end();
  await x.done;
  assertComplete(out);
  assert.is(out.body.length, 8 * 16 * 1024);
  assert.equal(out.header('content-length'), [], 'a body still being written when the head left goes chunked');
});

test('\'finish\' then \'close\' on a normal end; writableEnded; the end callback', async () => {
  const events: string[] = [];
  let ended: boolean | undefined;
  const x = await serve((_req, res) => {
    res.on('finish', () => events.push('finish'));
    res.on('close', () => events.push('close'));
    res.end('x', () => events.push('cb'));
    ended = res.writableEnded;
  });
  assertComplete(x.out);
  await turns();
  assert.ok(ended);
  assert.equal(events, ['finish', 'cb', 'close']);
});

test('req ends and closes after the response, as on node:http, even if nobody read it', async () => {
  const events: string[] = [];
  const x = await serve((req, res) => {
    req.on('end', () => events.push('req end'));
    req.on('close', () => events.push('req close'));
    res.on('close', () => events.push('res close'));
    req.socket.on('close', () => events.push('socket close'));
    res.end('ok');
  });
  assertComplete(x.out);
  await eventually(() => events.length === 4, 'the events');
  assert.equal(events, ['res close', 'socket close', 'req end', 'req close']);
});

test('a client that leaves a GET: req \'aborted\' and \'close\', res \'close\'; write() then says false', async () => {
  const controller = new AbortController();
  const out = new RecordingResponder();
  const events: string[] = [];
  let res: ServerResponse | undefined;
  const x = run(fromNodeHandler((req, rs) => {
    res = rs;
    req.on('aborted', () => events.push('req aborted'));
    req.on('close', () => events.push('req close'));
    rs.on('close', () => events.push('res close'));
    rs.write('first');
  }), { out, signal: controller.signal });
  await eventually(() => out.chunks.length === 1, 'the first chunk');
  out.clientGone();
  controller.abort(new Error('client went away'));
  await x.done;
  await eventually(() => events.length === 3, 'the events');
  assert.equal(events.sort(), ['req aborted', 'req close', 'res close']);
  let error: unknown;
  assert.is(res!.write('late', (err) => { error = err; }), false);
  await turns();
  assert.is((error as { code?: string })?.code, 'ERR_STREAM_DESTROYED');
});

test('a client that goes away: res \'close\' (no finish), req \'aborted\', the exchange ends', async () => {
  const controller = new AbortController();
  const out = new RecordingResponder();
  const events: string[] = [];
  const input = new InputStream();
  const x = run(fromNodeHandler((req, res) => {
    req.on('aborted', () => events.push('req aborted'));
    req.on('error', () => events.push('req error'));
    res.on('finish', () => events.push('finish'));
    res.on('close', () => events.push(`close ${res.writableEnded}`));
    req.resume();
    res.write('waiting\n');
  }), { out, input, signal: controller.signal, head: { method: 'POST' }, headers: ['Host', 'h', 'Content-Length', '100'] });
  await eventually(() => out.chunks.length === 1, 'the first chunk');
  out.clientGone();
  controller.abort(new Error('client went away'));
  input.fail(new Error('client went away'));
  await x.done;
  await turns();
  assert.ok(events.includes('close false'), `res close: ${events}`);
  assert.ok(events.includes('req aborted'));
  assert.not.ok(events.includes('finish'));
  assert.is(x.doneCalls(), 1);
});

test('a handler that throws, or rejects, before the head: 500; after the head: reset', async () => {
  const sync = await serve(() => { throw new Error('boom'); });
  assert.is(sync.out.head0.status, 500);
  const async = await serve(async () => { await turns(1); throw new Error('later'); });
  assert.is(async.out.head0.status, 500);
  const late = await serve(async (_req, res) => {
    res.write('partial');
    await turns(1);
    throw new Error('after the head');
  });
  assertAborted(late.out);
  assert.is(late.log.errors.length, 1);
});

test('a handler that rejects after it ended the response: the response stands, tsgi.errors says why', async () => {
  const written: string[] = [];
  const inner = fromNodeHandler(async (_req, res) => {
    res.end('complete');
    throw new Error('late failure');
  });
  const x = run((environ, startResponse) => {
    environ['tsgi.errors'] = { write: (m: string) => { written.push(m); }, flush: () => {} };
    return inner(environ, startResponse);
  });
  await x.done;
  await turns();
  assertComplete(x.out);
  assert.is(x.out.body, 'complete');
  assert.is(written.length, 1);
  assert.match(written[0]!, /GET \/ failed after it ended the response: Error: late failure/);
});

test('socket.destroy() from the app resets its stream (no normal end)', async () => {
  const x = await serve((req, res) => {
    res.write('some');
    setImmediate(() => req.socket.destroy());
  });
  assertAborted(x.out);
});

// --- the app cuts its connection: req.socket.destroy(), res.destroy(), req.destroy() ----------
// Each case runs the same handler on a real node:http server (a raw client on 127.0.0.1) and
// through the adapter, and compares what req, res and req.socket emit, each in its own order.

const WATCHED = ['aborted', 'error', 'finish', 'end', 'close'] as const;
type Emitted = Record<'req' | 'res' | 'socket', string[]>;
interface Seen { emitted: Emitted; destroyed: boolean; writable: boolean }
type Action = (req: IncomingMessage, res: ServerResponse) => void;

/** Records every WATCHED event of req, res and req.socket, then runs `action`. */
function watched(action: Action, seen: Seen[]): NodeHandler {
  return (req, res) => {
    const emitted: Emitted = { req: [], res: [], socket: [] };
    const targets = { req, res, socket: req.socket };
    for (const name of ['req', 'res', 'socket'] as const) {
      for (const ev of WATCHED) {
        targets[name].on(ev, (x?: unknown) => {
          emitted[name].push(x instanceof Error ? `${ev}:${x.message}` : x === undefined ? ev : `${ev}:${String(x)}`);
        });
      }
    }
    action(req, res);
    // Right after the call, as node:http's socket is: destroyed, and no longer writable.
    seen.push({ emitted, destroyed: req.socket.destroyed, writable: req.socket.writable });
  };
}

const allClosed = (e: Emitted) => e.socket.some((x) => x.startsWith('close')) && e.req.includes('close') && e.res.includes('close');

let nodeServer: Server | undefined;
let nodeHandler: NodeHandler = () => {};

test.before(async () => {
  nodeServer = createServer((req, res) => nodeHandler(req, res));
  await new Promise<void>((resolve) => nodeServer!.listen(0, '127.0.0.1', resolve));
});

test.after(async () => {
  nodeServer?.closeAllConnections();
  await new Promise<void>((resolve) => nodeServer?.close(() => resolve()) ?? resolve());
});

/** `action` on node:http: what the objects emitted, and every byte the client received. */
async function onNodeHttp(action: Action, request = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'): Promise<Seen & { received: string }> {
  const seen: Seen[] = [];
  nodeHandler = watched(action, seen);
  const { port } = nodeServer!.address() as AddressInfo;
  const client = connect(port, '127.0.0.1');
  let received = '';
  client.on('data', (d: Buffer) => { received += d.toString('latin1'); });
  client.on('error', () => {});
  client.write(request);
  await eventually(() => seen.length === 1 && allClosed(seen[0]!.emitted), 'req, res and socket to close on node:http');
  client.destroy();
  return { ...seen[0]!, received };
}

/** `action` through the adapter: what the objects emitted, and what the gateway sent. */
async function onAdapter(action: Action, opts: EnvironOptions = {}): Promise<Seen & { out: RecordingResponder }> {
  const seen: Seen[] = [];
  const x = await serve(watched(action, seen), opts);
  await eventually(() => seen.length === 1 && allClosed(seen[0]!.emitted), 'req, res and socket to close in the adapter');
  return { ...seen[0]!, out: x.out };
}

/** The connection was cut as node:http cuts it: no byte / no head, the stream reset, the same events. */
async function assertCutLikeNode(action: Action): Promise<Emitted> {
  const node = await onNodeHttp(action);
  const ours = await onAdapter(action);
  assert.is(node.received, '', 'node:http sends nothing: the connection is just closed');
  assert.is(ours.out.heads.length, 0, 'no head: not a 500, not anything');
  assert.equal(ours.out.aborts.length, 1, 'the stream is reset');
  assert.is(ours.destroyed, node.destroyed, 'socket.destroyed at once');
  assert.is(ours.writable, node.writable, 'socket.writable at once');
  assert.ok(ours.destroyed);
  assert.equal(ours.emitted, node.emitted);
  return ours.emitted;
}

test('regression: req.socket.destroy(err) cuts the connection as on node:http: no 500, \'error\' then \'close\' on the socket', async () => {
  const emitted = await assertCutLikeNode((req) => { req.socket.destroy(new Error('x')); });
  assert.equal(emitted.socket, ['error:x', 'close:true']);
  assert.equal(emitted.res, ['close'], 'res: \'close\' without \'finish\'');
});

test('regression: req.socket.destroy() without an error: the stream resets too, \'close\' without \'error\'', async () => {
  const emitted = await assertCutLikeNode((req) => { req.socket.destroy(); });
  assert.equal(emitted.socket, ['close:false']);
});

test('res.destroy(err) and res.destroy(): the connection is cut, as node:http cuts it', async () => {
  const withError = await assertCutLikeNode((_req, res) => { res.destroy(new Error('y')); });
  assert.equal(withError.socket, ['error:y', 'close:true']);
  const without = await assertCutLikeNode((_req, res) => { res.destroy(); });
  assert.equal(without.socket, ['close:false']);
});

test('req.destroy(err) before the body was read takes the connection with it, as on node:http', async () => {
  const withError = await assertCutLikeNode((req) => { req.destroy(new Error('z')); });
  assert.equal(withError.req, ['aborted', 'error:z', 'close']);
  assert.equal(withError.socket, ['error:z', 'close:true']);
  const without = await assertCutLikeNode((req) => { req.destroy(); });
  assert.equal(without.socket, ['close:false']);
});

test('req.destroy(err) after the body was read: the connection stays, the response goes out', async () => {
  const action: Action = (req, res) => {
    req.resume();
    req.on('end', () => {
      req.destroy(new Error('late'));
      setImmediate(() => res.end('ok'));
    });
  };
  const node = await onNodeHttp(action, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody');
  const input = new InputStream();
  input.push(Buffer.from('body'));
  input.end();
  const ours = await onAdapter(action, { input, head: { method: 'POST' }, headers: ['Host', 'h', 'Content-Length', '4'] });
  assert.match(node.received, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/);
  assertComplete(ours.out);
  assert.is(ours.out.body, 'ok');
  assert.is(ours.destroyed, false);
  assert.is(node.destroyed, false);
  assert.equal(ours.emitted.req, node.emitted.req);
  assert.equal(ours.emitted.req, ['end', 'error:late', 'close']);
  assert.equal(ours.emitted.res, node.emitted.res);
  assert.equal(ours.emitted.res, ['finish', 'close']);
});

test('socket.destroy(err) with no \'error\' listener on the socket: no crash, the stream resets', async () => {
  const x = await serve((req) => { req.socket.destroy(new Error('nobody listens')); });
  assert.is(x.out.heads.length, 0);
  assert.is(x.out.aborts.length, 1);
  assert.equal(x.log.errors, [], 'the application chose the cut: not an application error');
});

test('isNodeApp: Express/Connect-like apps only, never by arity', () => {
  const app = Object.assign((_a: unknown, _b: unknown) => {}, { handle() {}, use() {}, listen() {} });
  assert.ok(isNodeApp(app));
  assert.not.ok(isNodeApp((_req: unknown, _res: unknown) => {}));
  assert.not.ok(isNodeApp({ handle() {}, use() {}, listen() {} }));
});

/** test/fixtures/backend in the source tree (dist holds rewritten copies). */
function fixture(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return join(dir, 'test', 'fixtures', 'backend', name);
}

async function bodyOf(spec: string, target = '/probe?x=1'): Promise<string> {
  const app = await loadApplication(spec);
  const x = run(app, { head: { target } });
  await x.done;
  assertComplete(x.out);
  return x.out.body;
}

test('loading: an Express app as the default export runs through the adapter', async () => {
  assert.is(await bodyOf(fixture('express-app.js')), 'express /probe?x=1');
});

test('loading: a Connect-style CommonJS app, a nodeHandler export, file.js:nodeHandler', async () => {
  assert.is(await bodyOf(fixture('connect-app.cjs')), 'connect /probe?x=1');
  assert.is(await bodyOf(fixture('node-handler.js')), 'node GET /probe?x=1');
  assert.is(await bodyOf(`${fixture('node-handler.js')}:nodeHandler`), 'node GET /probe?x=1');
});

test.run();
