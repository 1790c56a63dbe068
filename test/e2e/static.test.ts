// Static files end to end: a real `tsgi front --static` over a temp tree of real files (a
// symlink out of the root, dotfiles, index.html, a 1 MB file with .gz/.br siblings, a unicode
// name), with undici, and raw sockets for the paths undici would normalise.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { brotliCompressSync, brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, runCli, startBackend, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import { getRequest, pausedRequest, rawUntilClose, statusOf } from '../helpers/raw-http.js';

interface StaticCtx extends Ctx {
  dir?: string;
  root?: string;
  deny?: FrontProc;
  allow?: FrontProc;
  bundle?: Buffer;
}

const SECRET = `TOP-SECRET-${randomBytes(8).toString('hex')}`;
const HELLO = 'hello static\n';
const UNICODE_NAME = 'sp ace é 文.txt';

/** A 1 MB JavaScript-ish file that compresses (repetitive, but not one byte repeated). */
function makeBundle(): Buffer {
  let text = '';
  for (let i = 0; text.length < 1 << 20; i++) text += `export const value${i} = ${(i * 2654435761) % 1000003};\n`;
  return Buffer.from(text.slice(0, 1 << 20));
}

const test = suite<StaticCtx>('e2e/static', newCtx());
setUp(test, async (ctx) => {
  const dir = tempDir('tsgi-e2e-static-');
  ctx.dir = dir;
  const root = join(dir, 'root');
  ctx.root = root;
  writeFileSync(join(dir, 'secret.txt'), SECRET);
  mkdirSync(join(dir, 'outside-dir'));
  writeFileSync(join(dir, 'outside-dir', 'secret.txt'), SECRET);
  mkdirSync(join(root, 'sub'), { recursive: true });
  mkdirSync(join(root, 'empty'));
  mkdirSync(join(root, '.hidden'));
  mkdirSync(join(dir, 'other'));
  writeFileSync(join(dir, 'other', 'x.txt'), 'from the other mount');
  writeFileSync(join(root, 'hello.txt'), HELLO);
  writeFileSync(join(root, 'style.css'), 'body { color: red }\n');
  writeFileSync(join(root, 'sub', 'index.html'), '<h1>sub index</h1>\n');
  writeFileSync(join(root, UNICODE_NAME), 'unicode name\n');
  writeFileSync(join(root, '.env'), 'DOTFILE=1\n');
  writeFileSync(join(root, '.hidden', 'x.txt'), 'in a dot directory\n');
  const bundle = makeBundle();
  ctx.bundle = bundle;
  writeFileSync(join(root, 'bundle.js'), bundle);
  writeFileSync(join(root, 'bundle.js.gz'), gzipSync(bundle));
  writeFileSync(join(root, 'bundle.js.br'), brotliCompressSync(bundle));
  symlinkSync('../secret.txt', join(root, 'escape'));
  symlinkSync('../outside-dir', join(root, 'escape-dir'));
  symlinkSync('hello.txt', join(root, 'inside-link'));
  // A precompressed sibling that is a symlink out of the root must never be sent either.
  symlinkSync('../secret.txt', join(root, 'hello.txt.gz'));
  ctx.backend = await startBackend(fixture('hello.js'));
  const mounts = ['--static', `/static=${root}`, '--static', `/static/other=${join(dir, 'other')}`];
  ctx.front = await startFront([ctx.backend.socket], [...mounts, '--log-level', 'debug']);
  ctx.deny = await startFront([ctx.backend.socket], [...mounts, '--static-dotfiles', 'deny']);
  ctx.extra.push(ctx.deny);
  ctx.allow = await startFront([ctx.backend.socket], [...mounts, '--static-dotfiles', 'allow']);
  ctx.extra.push(ctx.allow);
  ctx.agent = newAgent();
});
test.after((ctx) => {
  if (ctx.dir !== undefined) rmSync(ctx.dir, { recursive: true, force: true });
});

/** A GET (or `method`) with the body as bytes, through undici (which does not decompress). */
async function fetchBytes(url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' | 'POST' | 'DELETE' = 'GET') {
  const res = await request(url, { method, headers, headersTimeout: 20_000, bodyTimeout: 20_000 });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers as Record<string, string | undefined>, body };
}

/** Sends a raw request line (undici and URL would normalise '..') and reads the whole answer. */
async function rawGet(port: number, target: string): Promise<{ status: number; raw: string }> {
  const { text } = await rawUntilClose(port, getRequest(target, { host: 'localhost' }));
  return { status: statusOf(text), raw: text };
}

/** VmRSS of a process in bytes (Linux /proc). */
function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

test('a file: 200 with its Content-Type, Content-Length, ETag, Last-Modified and bytes', async ({ front, bundle }) => {
  const res = await fetchBytes(`${front!.url}/static/hello.txt`);
  assert.is(res.status, 200);
  assert.is(res.body.toString(), HELLO);
  assert.is(res.headers['content-type'], 'text/plain; charset=utf-8');
  assert.is(res.headers['content-length'], String(HELLO.length));
  assert.ok(res.headers.etag, 'an ETag');
  assert.ok(res.headers['last-modified'], 'a Last-Modified');
  assert.is(res.headers['accept-ranges'], 'bytes');
  assert.is((await fetchBytes(`${front!.url}/static/style.css`)).headers['content-type'], 'text/css; charset=utf-8');
  const js = await fetchBytes(`${front!.url}/static/bundle.js`);
  assert.is(js.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.ok(js.body.equals(bundle!), 'the 1 MB file, byte for byte');
  assert.is(js.headers.vary, undefined, 'no Accept-Encoding sent: no negotiation');
});

test('a unicode name with spaces, percent-encoded', async ({ front }) => {
  const res = await fetchBytes(`${front!.url}/static/${encodeURIComponent(UNICODE_NAME)}`);
  assert.is(res.status, 200);
  assert.is(res.body.toString(), 'unicode name\n');
});

test('conditional GET: If-None-Match and If-Modified-Since give 304 without a body', async ({ front }) => {
  const url = `${front!.url}/static/hello.txt`;
  const first = await fetchBytes(url);
  const etag = first.headers.etag!;
  const byTag = await fetchBytes(url, { 'if-none-match': etag });
  assert.is(byTag.status, 304);
  assert.is(byTag.body.length, 0);
  assert.is(byTag.headers.etag, etag);
  const byDate = await fetchBytes(url, { 'if-modified-since': first.headers['last-modified']! });
  assert.is(byDate.status, 304);
  const other = await fetchBytes(url, { 'if-none-match': '"something-else"' });
  assert.is(other.status, 200);
  assert.is(other.body.toString(), HELLO);
});

test('Range: 206 with the right bytes; unsatisfiable: 416 with Content-Range bytes */size', async ({ front, bundle }) => {
  const url = `${front!.url}/static/bundle.js`;
  const part = await fetchBytes(url, { range: 'bytes=1000-1999' });
  assert.is(part.status, 206);
  assert.is(part.headers['content-range'], `bytes 1000-1999/${bundle!.length}`);
  assert.ok(part.body.equals(bundle!.subarray(1000, 2000)));
  const tail = await fetchBytes(url, { range: 'bytes=-10' });
  assert.is(tail.status, 206);
  assert.ok(tail.body.equals(bundle!.subarray(bundle!.length - 10)));
  const several = await fetchBytes(url, { range: 'bytes=0-9,100-109' });
  assert.is(several.status, 200, 'several ranges: the whole file');
  assert.is(several.body.length, bundle!.length);
  const bad = await fetchBytes(url, { range: `bytes=${bundle!.length + 10}-` });
  assert.is(bad.status, 416);
  assert.is(bad.headers['content-range'], `bytes */${bundle!.length}`);
  assert.not.ok(bad.body.toString().includes('export const'), 'no file bytes in a 416');
});

test('HEAD: the same headers as GET, no body', async ({ front }) => {
  const url = `${front!.url}/static/hello.txt`;
  const get = await fetchBytes(url);
  const head = await fetchBytes(url, {}, 'HEAD');
  assert.is(head.status, 200);
  assert.is(head.body.length, 0);
  for (const name of ['content-type', 'content-length', 'etag', 'last-modified']) assert.is(head.headers[name], get.headers[name], name);
});

test('precompressed siblings: br and gzip by Accept-Encoding, q=0 honoured, Vary, an ETag of their own', async ({ front, bundle }) => {
  const url = `${front!.url}/static/bundle.js`;
  const plain = await fetchBytes(url, { 'accept-encoding': 'identity' });
  const gz = await fetchBytes(url, { 'accept-encoding': 'gzip' });
  assert.is(gz.headers['content-encoding'], 'gzip');
  assert.is(gz.headers['content-type'], 'text/javascript; charset=utf-8', "the original's type");
  assert.match(gz.headers.vary ?? '', /accept-encoding/i);
  assert.ok(gz.body.length < bundle!.length / 2, 'the compressed file was sent');
  assert.ok(gunzipSync(gz.body).equals(bundle!));
  const br = await fetchBytes(url, { 'accept-encoding': 'gzip, deflate, br' });
  assert.is(br.headers['content-encoding'], 'br');
  assert.ok(brotliDecompressSync(br.body).equals(bundle!));
  const etags = new Set([plain.headers.etag, gz.headers.etag, br.headers.etag]);
  assert.is(etags.size, 3, `distinct ETags: ${[...etags].join(' ')}`);
  assert.match(plain.headers.vary ?? '', /accept-encoding/i, 'Vary also on the identity answer: siblings exist');
  assert.is((await fetchBytes(url, { 'accept-encoding': 'br;q=0.5, gzip' })).headers['content-encoding'], 'gzip');
  const refused = await fetchBytes(url, { 'accept-encoding': 'br;q=0, gzip;q=0' });
  assert.is(refused.headers['content-encoding'], undefined);
  assert.ok(refused.body.equals(bundle!));
  assert.is((await fetchBytes(url, { 'accept-encoding': '*;q=0' })).headers['content-encoding'], undefined);
  assert.is((await fetchBytes(url, { 'accept-encoding': '*' })).headers['content-encoding'], 'br');
  // A conditional GET with the encoded ETag: 304 for the same encoding, 200 for the other one.
  assert.is((await fetchBytes(url, { 'accept-encoding': 'gzip', 'if-none-match': gz.headers.etag! })).status, 304);
  assert.is((await fetchBytes(url, { 'accept-encoding': 'br', 'if-none-match': gz.headers.etag! })).status, 200);
});

test('Range on an encoded representation counts bytes of the encoded file', async ({ front, bundle }) => {
  const url = `${front!.url}/static/bundle.js`;
  const whole = gzipSync(bundle!).length;
  const gz = await fetchBytes(url, { 'accept-encoding': 'gzip' });
  assert.is(gz.body.length, whole);
  const part = await fetchBytes(url, { 'accept-encoding': 'gzip', range: 'bytes=100-199' });
  assert.is(part.status, 206);
  assert.is(part.headers['content-encoding'], 'gzip');
  assert.is(part.headers['content-range'], `bytes 100-199/${gz.body.length}`);
  assert.ok(part.body.equals(gz.body.subarray(100, 200)));
});

test('a precompressed sibling that is a symlink out of the root is not used', async ({ front }) => {
  const res = await fetchBytes(`${front!.url}/static/hello.txt`, { 'accept-encoding': 'gzip' });
  assert.is(res.status, 200);
  assert.is(res.headers['content-encoding'], undefined);
  assert.is(res.body.toString(), HELLO);
});

test('directories: 301 to the slash form with the query kept, index.html, no listings', async ({ front }) => {
  const redirect = await fetchBytes(`${front!.url}/static/sub?a=1&b=two`);
  assert.is(redirect.status, 301);
  assert.is(redirect.headers.location, '/static/sub/?a=1&b=two');
  assert.is((await fetchBytes(`${front!.url}/static`)).headers.location, '/static/');
  const index = await fetchBytes(`${front!.url}/static/sub/`);
  assert.is(index.status, 200);
  assert.is(index.headers['content-type'], 'text/html; charset=utf-8');
  assert.is(index.body.toString(), '<h1>sub index</h1>\n');
  assert.is((await fetchBytes(`${front!.url}/static/empty/`)).status, 404);
  assert.is((await fetchBytes(`${front!.url}/static/hello.txt/`)).status, 404, 'a file with a trailing slash');
  // A redirect never points off-site, whatever slashes the path starts with.
  const raw = await rawGet(front!.port, '/static//sub');
  assert.not.match(raw.raw, /\r\nlocation: \/\//i);
});

test('methods other than GET and HEAD: 405 with Allow', async ({ front }) => {
  for (const method of ['POST', 'DELETE'] as const) {
    const res = await fetchBytes(`${front!.url}/static/hello.txt`, {}, method);
    assert.is(res.status, 405, method);
    assert.is(res.headers.allow, 'GET, HEAD');
  }
});

test('a static request is held to the same head checks as a proxied one: 400, 431, 413, each with a close', async ({ front }) => {
  const fields = Array.from({ length: 101 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
  const cases: [string, number][] = [
    ['GET /static/hello.txt HTTP/1.1\r\n\r\n', 400], // HTTP/1.1 without Host
    ['GET /static/hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    [`GET /static/hello.txt HTTP/1.1\r\nHost: a\r\n${fields}\r\n`, 431], // over --max-headers 100
    ['GET /static/hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 200000000\r\n\r\n', 413], // over --max-body-size
  ];
  for (const [text, status] of cases) {
    const r = await rawUntilClose(front!.port, text);
    assert.is(statusOf(r.text), status, r.text);
    assert.match(r.text, /\r\nconnection: close\r\n/i, 'the front closes the connection');
    assert.not.ok(r.text.includes(HELLO), 'no file');
  }
});

test('a missing file under a prefix is a 404 from the front; other URLs reach the backend', async ({ front }) => {
  const missing = await call(`${front!.url}/static/nope.txt`);
  assert.is(missing.status, 404);
  assert.not.ok(missing.text.includes('Hello, web'), 'not passed to the backend');
  for (const path of ['/', '/app', '/staticky', '/static-x/y', '/other/x.txt']) {
    const res = await call(`${front!.url}${path}`);
    assert.is(res.status, 200, path);
    assert.is(res.text, '<h1>Hello, web</h1>', path);
  }
  assert.is((await call(`${front!.url}/static/other/x.txt`)).text, 'from the other mount', 'the longest prefix wins');
  assert.is((await call(`${front!.url}/static/hello.txt?v=3`)).text, HELLO, 'a query is not part of the file name');
});

test('traversal in every spelling never returns a file outside the root', async ({ front }) => {
  const targets = [
    '/static/../secret.txt', '/static/%2e%2e/secret.txt', '/static/%2E%2E/secret.txt', '/static/.%2e/secret.txt',
    '/static/..%2fsecret.txt', '/static/%2e%2e%2fsecret.txt', '/static/..%5csecret.txt', '/static/..\\secret.txt',
    '/static/%252e%252e/secret.txt', '/static/%252e%252e%252fsecret.txt', '/static/sub/../../secret.txt',
    '/static/sub/%2e%2e/%2e%2e/secret.txt', '/static//../secret.txt', '/static/%c0%ae%c0%ae/secret.txt',
    '/static/..%00/secret.txt', '/static/hello.txt%00.css', '/static/escape', '/static/escape-dir/secret.txt',
    '/static/other/../../secret.txt', '/static/other/%2e%2e/%2e%2e/secret.txt', '/static/../root/../secret.txt',
  ];
  for (const target of targets) {
    const res = await rawGet(front!.port, target);
    assert.not.ok(res.raw.includes(SECRET), `${target} leaked the secret`);
    assert.ok([400, 403, 404].includes(res.status), `${target}: ${res.status}`);
  }
  assert.match(front!.stderr(), /warn: static 403 GET \/static\/%2e%2e\/secret\.txt from 127\.0\.0\.1: path traversal/);
  assert.match(front!.stderr(), /warn: static 403 GET \/static\/escape from 127\.0\.0\.1: a symlink leads outside the root/);
  assert.match(front!.stderr(), /warn: static 400 GET \/static\/%252e%252e\/secret\.txt .*double-encoded/);
});

test('symlinks inside the root are followed', async ({ front }) => {
  const res = await call(`${front!.url}/static/inside-link`);
  assert.is(res.status, 200);
  assert.is(res.text, HELLO);
});

test('dotfiles: ignore (404, the default), deny (403), allow (200)', async ({ front, deny, allow }) => {
  for (const path of ['/static/.env', '/static/.hidden/x.txt', '/static/%2eenv']) {
    assert.is((await call(`${front!.url}${path}`)).status, 404, `ignore ${path}`);
    assert.is((await call(`${deny!.url}${path}`)).status, 403, `deny ${path}`);
  }
  assert.is((await call(`${allow!.url}/static/.env`)).text, 'DOTFILE=1\n');
  assert.is((await call(`${allow!.url}/static/.hidden/x.txt`)).text, 'in a dot directory\n');
  assert.match(front!.stderr(), /debug: static 404 GET \/static\/\.env .*dotfile/);
});

test('a mount whose directory does not exist stops start-up with a message', async ({ dir }) => {
  const r = await runCli(['front', '--listen', '127.0.0.1:0', '--backend', 'unix:/nonexistent.sock', '--static', `/x=${join(dir!, 'missing')}`]);
  assert.is.not(r.code, 0);
  assert.match(r.stderr, /--static \/x=.*missing.*expected an existing directory/);
});

test('a 64 MB file to a reader that does not read: the front does not hold it in memory', async ({ front, root }) => {
  const size = 64 << 20;
  const path = join(root!, 'big.bin');
  const fd = openSync(path, 'w');
  const block = randomBytes(1 << 20);
  for (let i = 0; i < 64; i++) writeSync(fd, block);
  closeSync(fd);
  try {
    await fetchBytes(`${front!.url}/static/hello.txt`); // warm
    const before = rssOf(front!.pid);
    const reader = await pausedRequest(front!.port, getRequest('/static/big.bin', { host: 'localhost' }), { timeoutMs: 20_000 });
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      await sleep(150);
      peak = Math.max(peak, rssOf(front!.pid));
    }
    const growth = peak - before;
    assert.ok(growth < size / 4, `the front grew by ${(growth / 1048576).toFixed(1)} MB while the reader stalled`);
    const received = await reader.read();
    assert.ok(received > size, `received ${received} bytes (head + ${size})`);
  } finally {
    rmSync(path, { force: true });
  }
});

test.run();
