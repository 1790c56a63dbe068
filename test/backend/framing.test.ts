// Response framing the apps ask for, checked against node:http and RFC 9110/9112: no
// Content-Length: 0 for a HEAD whose GET has a body, none when a Node app removed it (a 205),
// and a transfer coding from a Node app refused rather than relayed as if it were content.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fromFetch } from '../../src/backend/fetch-adapter.js';
import { fromNodeHandler, type NodeHandler } from '../../src/backend/node-adapter.js';
import type { Application } from '../../src/backend/types.js';
import { type EnvironOptions, run } from './helpers/exchange.js';

const test = suite('backend/framing');

async function head(app: Application, opts: EnvironOptions = {}) {
  const x = run(app, opts);
  await x.done;
  const h = x.out.heads[0]!;
  const names = h.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  const value = (name: string) => h.headers[names.indexOf(name) * 2 + 1];
  return { status: h.status, names, value, body: Buffer.concat(x.out.writes.map((w) => w.chunk)).toString(), x };
}

const HEAD = { head: { method: 'HEAD', target: '/' } };

test('a fetch handler\'s HEAD (a null body, as Hono answers it) gets no Content-Length: 0', async () => {
  const app = fromFetch({ fetch: (req) => new Response(req.method === 'HEAD' ? null : 'twenty-four bytes body!\n', { headers: { 'content-type': 'text/plain' } }) });
  const h = await head(app, HEAD);
  assert.is(h.status, 200);
  assert.not.ok(h.names.includes('content-length'), `headers: ${h.names.join(', ')}`);
  assert.is(h.body, '');
});

test('a HEAD answered with the GET\'s body keeps the GET\'s length, and sends no body', async () => {
  const app: Application = (_env, start) => {
    start('200 OK', [['Content-Type', 'text/plain']]);
    return ['twenty-four bytes body!\n'];
  };
  const h = await head(app, HEAD);
  assert.is(h.value('content-length'), '24');
  const get = await head(app);
  assert.is(get.value('content-length'), '24');
  assert.is(get.body, 'twenty-four bytes body!\n');
});

test('a Node app\'s 205 with its Content-Length removed gets none, as node:http sends it', async () => {
  const h = await head(fromNodeHandler((_req, res) => {
    res.statusCode = 205;
    res.setHeader('Content-Length', '0');
    res.removeHeader('Content-Length');
    res.end();
  }));
  assert.is(h.status, 205);
  assert.not.ok(h.names.includes('content-length'), `headers: ${h.names.join(', ')}`);
  const plain = await head(fromNodeHandler((_req, res) => { res.statusCode = 205; res.end(); }));
  assert.is(plain.value('content-length'), '0', 'without the removal: Content-Length: 0, as node:http');
});

const gzipApps: [string, NodeHandler][] = [
  ['writeHead', (_req, res) => { res.writeHead(200, { 'Transfer-Encoding': 'gzip' }); res.end('coded'); }],
  ['setHeader', (_req, res) => { res.setHeader('Transfer-Encoding', 'gzip'); res.write('coded'); res.end(); }],
  ['empty body', (_req, res) => { res.writeHead(200, { 'Transfer-Encoding': 'gzip, chunked' }); res.end(); }],
];

test('a Node app\'s Transfer-Encoding other than chunked is refused (500), never relayed as content', async () => {
  assert.ok(gzipApps.length > 0);
  for (const [what, handler] of gzipApps) {
    const h = await head(fromNodeHandler(handler));
    assert.is(h.status, 500, what);
    assert.not.match(h.body, /coded/, what);
    const logged = h.x.log.errors.map((e) => `${e.message}: ${(e.err as Error)?.message}`).join('\n');
    assert.match(logged, /Transfer-Encoding "gzip[^"]*" from the application/, what);
  }
});

test('a Node app\'s Transfer-Encoding: chunked is the front\'s business: dropped, the body passes', async () => {
  const h = await head(fromNodeHandler((_req, res) => { res.setHeader('Transfer-Encoding', 'chunked'); res.end('hello'); }));
  assert.is(h.status, 200);
  assert.not.ok(h.names.includes('transfer-encoding'));
  assert.is(h.body, 'hello');
});

test.run();
