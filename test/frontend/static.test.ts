// Static files, the parts without a server: the path check (decode once, refuse NUL, double
// encoding and '..'), dot segments, Accept-Encoding, and the mount match at segment boundaries.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger } from '../../src/common/log.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { HttpServer } from '../../src/frontend/http/server.js';
import { StaticFiles, type StaticOutcome } from '../../src/frontend/static/files.js';
import { acceptedEncodings, checkPath, hasDotSegment, isRefusal } from '../../src/frontend/static/path.js';
import { throwsCode } from '../helpers/assert.js';
import { request } from 'undici';

const test = suite('frontend/static');
const log = createLogger('test');

test('checkPath: plain and encoded names are decoded once', () => {
  assert.equal(checkPath('/a/b.txt'), { rel: '/a/b.txt', dot: false });
  assert.equal(checkPath('/sp%20ace%20%C3%A9.txt'), { rel: '/sp ace é.txt', dot: false });
  assert.equal(checkPath(''), { rel: '', dot: false });
  assert.equal(checkPath('/./a'), { rel: '/./a', dot: false }, "'.' is not a dotfile");
  assert.equal(checkPath('/.env'), { rel: '/.env', dot: true });
  assert.equal(checkPath('/%2Egit/config'), { rel: '/.git/config', dot: true });
});

test('checkPath: traversal, NUL, malformed and double encoding are refused', () => {
  const refused = {
    '/../x': 'TSGI_ERR_STATIC_FORBIDDEN', '/%2e%2e/x': 'TSGI_ERR_STATIC_FORBIDDEN', '/a/..': 'TSGI_ERR_STATIC_FORBIDDEN',
    '/..%2fx': 'TSGI_ERR_STATIC_FORBIDDEN', '/..%5cx': 'TSGI_ERR_STATIC_FORBIDDEN', '/a\\..\\x': 'TSGI_ERR_STATIC_FORBIDDEN',
    '/%00': 'TSGI_ERR_STATIC_BAD_PATH', '/a%00.txt': 'TSGI_ERR_STATIC_BAD_PATH', '/%zz': 'TSGI_ERR_STATIC_BAD_PATH',
    '/%c0%ae%c0%ae/x': 'TSGI_ERR_STATIC_BAD_PATH', '/%252e%252e/x': 'TSGI_ERR_STATIC_BAD_PATH', '/a%252fb': 'TSGI_ERR_STATIC_BAD_PATH',
  } as const;
  for (const [raw, code] of Object.entries(refused)) {
    const checked = checkPath(raw);
    assert.ok(isRefusal(checked), raw);
    if (isRefusal(checked)) {
      assert.is(checked.code, code, raw);
      assert.ok(checked.hostile, raw);
    }
  }
});

test('checkPath (property): whatever is accepted stays under the root once joined and normalised', () => {
  const piece = fc.constantFrom('a', '.', '..', '%2e', '%2E', '%2f', '%5c', '\\', '/', '%', '%25', '%00', 'é', '%c3%a9', '.x');
  fc.assert(fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
    const checked = checkPath(`/${pieces.join('')}`);
    if (isRefusal(checked)) return true;
    const joined = posix.normalize(`/root${checked.rel.replace(/\\/g, '/')}`);
    return joined === '/root' || joined.startsWith('/root/');
  }), { numRuns: 2000 });
});

test('hasDotSegment: any segment starting with a dot, other than . and ..', () => {
  for (const yes of ['/.env', '/a/.git/x', '/a/.b']) assert.ok(hasDotSegment(yes), yes);
  for (const no of ['', '/a', '/a.b/c.d', '/./a', '/a/.', '/a/b.']) assert.not.ok(hasDotSegment(no), no);
});

test('acceptedEncodings: q values, q=0, the * wildcard, x-gzip, malformed q', () => {
  assert.equal(acceptedEncodings(undefined), { br: 0, gzip: 0 });
  assert.equal(acceptedEncodings('gzip, deflate, br'), { br: 1, gzip: 1 });
  assert.equal(acceptedEncodings('br;q=0.5, GZIP'), { br: 0.5, gzip: 1 });
  assert.equal(acceptedEncodings('br;q=0, gzip; q=0'), { br: 0, gzip: 0 });
  assert.equal(acceptedEncodings('*'), { br: 1, gzip: 1 });
  assert.equal(acceptedEncodings('*;q=0, br'), { br: 1, gzip: 0 });
  assert.equal(acceptedEncodings('x-gzip'), { br: 0, gzip: 1 });
  assert.equal(acceptedEncodings('br;q=abc, gzip;q=2'), { br: 0, gzip: 0 });
  assert.equal(acceptedEncodings('identity'), { br: 0, gzip: 0 });
});

test('StaticFiles: match() takes the longest prefix at a segment boundary; none without mounts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-static-unit-'));
  try {
    for (const d of ['a', 'b', 'c']) mkdirSync(join(dir, d));
    writeFileSync(join(dir, 'file'), '');
    symlinkSync(join(dir, 'a'), join(dir, 'link'));
    assert.is(StaticFiles.create([], { log }), null);
    assert.is(StaticFiles.create(undefined, { log }), null);
    const files = StaticFiles.create([
      { prefix: '/static', dir: join(dir, 'a') }, { prefix: '/static/deep', dir: join(dir, 'b') }, { prefix: '/s', dir: join(dir, 'link') },
    ], { log })!;
    const prefixOf = (url: string) => files.match(url)?.prefix ?? null;
    assert.is(prefixOf('/static'), '/static');
    assert.is(prefixOf('/static/'), '/static');
    assert.is(prefixOf('/static?x=1'), '/static');
    assert.is(prefixOf('/static/x/y'), '/static');
    assert.is(prefixOf('/static/deep/x'), '/static/deep');
    assert.is(prefixOf('/static/deeper'), '/static');
    assert.is(prefixOf('/staticky'), null);
    assert.is(prefixOf('/'), null);
    assert.is(prefixOf('http://host/static/x'), null);
    assert.is(files.match('/s/x')?.root, join(dir, 'a'), 'the root is the real path');
    const all = StaticFiles.create([{ prefix: '/', dir: join(dir, 'c') }], { log })!;
    assert.is(all.match('/anything')?.prefix, '/');
    assert.is(all.match('*'), null);
    throwsCode(() => StaticFiles.create([{ prefix: '/x', dir: join(dir, 'missing') }], { log }), ConfigError, 'TSGI_ERR_CONFIG');
    throwsCode(() => StaticFiles.create([{ prefix: '/x', dir: join(dir, 'file') }], { log }), ConfigError, 'TSGI_ERR_CONFIG');
    throwsCode(() => StaticFiles.create([{ prefix: '/x', dir: join(dir, 'a') }, { prefix: '/x', dir: join(dir, 'b') }], { log }),
      ConfigError, 'TSGI_ERR_CONFIG');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('onDone (the access-log hook): status, body bytes, mount and file of each static answer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-static-unit-'));
  const outcomes: StaticOutcome[] = [];
  const files = StaticFiles.create([{ prefix: '/s', dir }], { log, onDone: (_req, _res, o) => outcomes.push(o) })!;
  writeFileSync(join(dir, 'f.txt'), 'x'.repeat(1000));
  const server = new HttpServer({
    log, onRequest: (req, res) => files.serve(req, res, files.match(req.url)!),
    keepAliveTimeoutMs: 5000, headersTimeoutMs: 0, maxHeaderSize: 16384, maxConnections: 0,
  });
  await new Promise<void>((resolve) => server.listener.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.listener.address() as AddressInfo).port}`;
  try {
    for (const [path, method] of [['/s/f.txt', 'GET'], ['/s/f.txt', 'HEAD'], ['/s/missing', 'GET']] as const) {
      const res = await request(`${base}${path}`, { method });
      await res.body.text();
    }
    // 'close' follows the end of each response; wait for the third (bounded).
    for (let i = 0; i < 100 && outcomes.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(outcomes.map((o) => [o.status, o.bytes, o.mount.prefix, o.file?.endsWith('/f.txt') ?? null]),
      [[200, 1000, '/s', true], [200, 0, '/s', true], [404, '404 Not Found\n'.length, '/s', null]]);
  } finally {
    server.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.listener.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
