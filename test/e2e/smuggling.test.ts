// Request smuggling and header spoofing at the front, end to end: a raw socket writes the exact
// bytes of each ambiguous request to a real front before a real backend whose app records
// every request it sees. Each is refused (400, connection closed) and the app sees nothing of it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, fixture, startFront, startUwsgiBackend } from '../helpers/procs.js';
import { call, newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { parseResponse, rawExchange } from '../helpers/raw-http.js';

interface Seen {
  method: string;
  uri: string;
  keys: Record<string, string>;
  body: number;
  complete: boolean;
}

async function seen(url: string): Promise<Seen[]> {
  const r = await call(`${url}/__seen`);
  assert.is(r.status, 200);
  return JSON.parse(r.text) as Seen[];
}

const H = 'Host: tsgi.test\r\n';

/** Each case: the raw bytes, and the status the front must answer. All carry "/smuggle" paths. */
const CASES: [string, string | Buffer, number][] = [
  ['Content-Length with Transfer-Encoding',
    `POST /smuggle-cl-te HTTP/1.1\r\n${H}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggle-cl-te-inner HTTP/1.1\r\n${H}\r\n`, 400],
  ['Transfer-Encoding with Content-Length',
    `POST /smuggle-te-cl HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggle-te-cl-inner HTTP/1.1\r\n${H}\r\n0\r\n\r\n`, 400],
  ['two Content-Lengths with different values',
    `POST /smuggle-cl-cl HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 41\r\n\r\nGET /smuggle-cl-cl-inner HTTP/1.1\r\n${H}\r\n`, 400],
  ['two equal Content-Lengths',
    `POST /smuggle-cl-same HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, 400],
  ['Content-Length with a plus sign', `POST /smuggle-cl-plus HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, 400],
  ['Content-Length negative', `POST /smuggle-cl-minus HTTP/1.1\r\n${H}Content-Length: -3\r\n\r\nabc`, 400],
  ['Content-Length with a space inside', `POST /smuggle-cl-space HTTP/1.1\r\n${H}Content-Length: 1 2\r\n\r\nabcdefghijkl`, 400],
  ['Content-Length in hex', `POST /smuggle-cl-hex HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\nabc`, 400],
  ['Content-Length as a comma list', `POST /smuggle-cl-list HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, 400],
  ['Transfer-Encoding with chunked not last',
    `POST /smuggle-te-order HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 400],
  ['Transfer-Encoding: xchunked', `POST /smuggle-te-x HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 400],
  ['Transfer-Encoding on two lines, one chunked',
    `POST /smuggle-te-two HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 400],
  ['Transfer-Encoding folded (obs-fold)',
    `POST /smuggle-te-fold HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc`, 400],
  ['an obs-fold continuation line', `GET /smuggle-fold HTTP/1.1\r\n${H}X-Folded: one\r\n two\r\n\r\n`, 400],
  ['bare LF line endings', `GET /smuggle-lf HTTP/1.1\n${H.replace('\r\n', '\n')}X-A: b\n\n`, 400],
  ['a bare LF inside the head', `GET /smuggle-lf2 HTTP/1.1\r\n${H}X-A: b\nX-B: c\r\n\r\n`, 400],
  ['a bare CR inside a header value', `GET /smuggle-cr HTTP/1.1\r\n${H}X-A: b\rX-B: c\r\n\r\n`, 400],
  ['a NUL in a header value', `GET /smuggle-nul HTTP/1.1\r\n${H}X-A: b\0c\r\n\r\n`, 400],
  ['a space before the colon', `GET /smuggle-space HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, 400],
  ['an absolute-form target naming another host', `GET http://evil.test/smuggle-abs HTTP/1.1\r\n${H}\r\n`, 400],
  ['an absolute-form target with userinfo', `GET http://tsgi.test@evil.test/smuggle-abs-user HTTP/1.1\r\n${H}\r\n`, 400],
  ['a target that is neither origin- nor absolute-form', `GET smuggle-relative HTTP/1.1\r\n${H}\r\n`, 400],
  ['HTTP/1.1 without Host', 'GET /smuggle-nohost HTTP/1.1\r\n\r\n', 400],
  ['two Host fields', `GET /smuggle-host2 HTTP/1.1\r\n${H}Host: evil.test\r\n\r\n`, 400],
  ['a Host with a path in it', 'GET /smuggle-hostpath HTTP/1.1\r\nHost: tsgi.test/evil\r\n\r\n', 400],
  ['a Host with userinfo', 'GET /smuggle-hostuser HTTP/1.1\r\nHost: evil.test@tsgi.test\r\n\r\n', 400],
  ['a space in a header name', `GET /smuggle-namesp HTTP/1.1\r\n${H}X A: b\r\n\r\n`, 400],
  ['a tab in a header name', `GET /smuggle-nametab HTTP/1.1\r\n${H}X\tA: b\r\n\r\n`, 400],
  ['a lowercase HTTP version', `GET /smuggle-ver http/1.1\r\n${H}\r\n`, 400],
  ['HTTP/1.1 padded with a space', `GET /smuggle-ver2 HTTP/1.1 \r\n${H}\r\n`, 400],
  ['an Expect other than 100-continue', `POST /smuggle-expect HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 3\r\n\r\nabc`, 417],
  // trim() strips U+00A0: read as chunked, this body would hide the request after it.
  ['Transfer-Encoding: \\xa0chunked\\xa0', Buffer.from(`POST /smuggle-te-nbsp HTTP/1.1\r\n${H}Transfer-Encoding: \xa0chunked\xa0\r\n\r\n`
    + `0\r\n\r\nGET /smuggle-te-nbsp-inner HTTP/1.1\r\n${H}\r\n`, 'latin1'), 400],
  ['Transfer-Encoding: \\xa0chunked\\xa0 with a Content-Length', Buffer.from(`POST /smuggle-te-nbsp-cl HTTP/1.1\r\n${H}`
    + `Content-Length: 44\r\nTransfer-Encoding: \xa0chunked\xa0\r\n\r\n0\r\n\r\nGET /smuggle-te-nbsp-cl-inner HTTP/1.1\r\n${H}\r\n`, 'latin1'), 400],
  ['Transfer-Encoding: chunked on two lines',
    `POST /smuggle-te-twice HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['an asterisk-form target with GET', `GET * HTTP/1.1\r\n${H}\r\n`, 400],
  ['a raw UTF-8 byte in the target', Buffer.from(`GET /smuggle-caf\xc3\xa9 HTTP/1.1\r\n${H}\r\n`, 'latin1'), 400],
  ['a fragment in the target', `GET /smuggle-frag#x HTTP/1.1\r\n${H}\r\n`, 400],
  ['a malformed percent escape in the path', `GET /smuggle-pct%zz HTTP/1.1\r\n${H}\r\n`, 400],
  ['a backslash in the path', `GET /smuggle-bs\\..\\x HTTP/1.1\r\n${H}\r\n`, 400],
];

const s = suite<Ctx>('e2e/smuggling', newCtx());
setUp(s, (ctx) => startPair(ctx, fixture('record.js'), ['--workers', '1']));

s('the recording app sees an ordinary request (the control for the cases below)', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, `GET /control HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.is(parseResponse(r.text).status, 200);
  assert.ok((await seen(ctx.front!.url)).some((e) => e.uri === '/control'));
});

for (const [name, bytes, status] of CASES) {
  s(`refused, and the app sees nothing: ${name}`, async (ctx) => {
    const before = (await seen(ctx.front!.url)).length;
    const r = await rawExchange(ctx.front!.port, bytes);
    assert.ok(r.closedByServer, `the front closes the connection; got ${JSON.stringify(r.text)}`);
    const res = parseResponse(r.text);
    const sent = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
    assert.is(res.status, status, `status for ${JSON.stringify(sent)}: ${JSON.stringify(r.text)}`);
    assert.is(res.headers.get('connection'), 'close');
    assert.is(res.rest, '', 'exactly one response: nothing smuggled was answered');
    const leaked = (await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen');
    assert.equal(leaked, [], 'the app saw nothing of it');
  });
}

/** Errors in a chunked body: the head went on before the body was parsed (bodies stream). */
const BODY_CASES: [string, string][] = [
  ['a control byte in a chunk extension', '3;\u0001\r\nabc\r\n0\r\n\r\n'],
  ['a chunk size with a sign', '+3\r\nabc\r\n0\r\n\r\n'],
  ['a chunk size in 0x hex', '0x3\r\nabc\r\n0\r\n\r\n'],
  ['a chunk without its CRLF', '3\r\nabcX\r\n0\r\n\r\n'],
  ['a chunk size line ending in a bare LF', '3\nabc\r\n0\r\n\r\n'],
  ['an empty chunk extension', '3;\r\nabc\r\n0\r\n\r\n'],
  ['a chunk extension without a name', '3; =x\r\nabc\r\n0\r\n\r\n'],
];

for (const [name, chunks] of BODY_CASES) {
  s(`400 and closed, the app never gets a complete body nor what follows: ${name}`, async (ctx) => {
    // What cannot reach the app: a complete body, or anything after the bad chunk.
    const before = (await seen(ctx.front!.url)).length;
    const r = await rawExchange(ctx.front!.port, [`POST /smuggle-chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`,
      `${chunks}GET /smuggle-chunk-inner HTTP/1.1\r\n${H}\r\n`], { gapMs: 100 });
    assert.ok(r.closedByServer);
    const res = parseResponse(r.text);
    assert.is(res.status, 400, r.text);
    assert.is(res.rest, '');
    const after = (await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen');
    assert.ok(after.every((e) => e.uri === '/smuggle-chunk' && !e.complete && e.body <= 3), JSON.stringify(after));
  });
}

// CVE-2024-22019 (Node): chunk extensions were read without limit, none of them counted as body.
s('chunk extensions over --max-header-size in one request: 400, closed, a warn line naming the flag', async (ctx) => {
  const before = (await seen(ctx.front!.url)).length;
  const line = `1;a=${'e'.repeat(1000)}\r\nx\r\n`; // 1004 bytes of extension a line: 17 of them pass 16384
  const r = await rawExchange(ctx.front!.port, [`POST /smuggle-ext HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`,
    `${line.repeat(40)}0\r\n\r\nGET /smuggle-ext-inner HTTP/1.1\r\n${H}\r\n`], { gapMs: 100 });
  assert.ok(r.closedByServer);
  const res = parseResponse(r.text);
  assert.is(res.status, 400, r.text);
  assert.is(res.headers.get('connection'), 'close');
  assert.is(res.rest, '');
  await ctx.front!.waitForStderr(/warn: 400 POST \/smuggle-ext: chunk extensions over 16384 bytes \(--max-header-size\)/);
  const after = (await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen');
  assert.ok(after.every((e) => e.uri === '/smuggle-ext' && !e.complete && e.body <= 16), JSON.stringify(after));
});

s('trailers over --max-header-size: 431, closed, a warn line naming the flag', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, [`POST /trailers-big HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`,
    `2\r\nok\r\n0\r\n${`X-T: ${'t'.repeat(1000)}\r\n`.repeat(20)}\r\n`], { gapMs: 100 });
  assert.ok(r.closedByServer);
  assert.is(parseResponse(r.text).status, 431, r.text);
  await ctx.front!.waitForStderr(/warn: 431 POST \/trailers-big: request trailers over 16384 bytes \(--max-header-size\)/);
});

s('a bad request pipelined behind a good one: the good one is answered, then 400, then close', async (ctx) => {
  const before = (await seen(ctx.front!.url)).length;
  const r = await rawExchange(ctx.front!.port, `GET /pipe-good HTTP/1.1\r\n${H}\r\n`
    + `POST /smuggle-pipe-bad HTTP/1.1\r\n${H}Content-Length: +1\r\n\r\nx`);
  assert.ok(r.closedByServer);
  const first = parseResponse(r.text);
  assert.is(first.status, 200, r.text);
  assert.match(first.body, /"uri":"\/pipe-good"/);
  const second = parseResponse(first.rest);
  assert.is(second.status, 400, r.text);
  assert.is(second.rest, '');
  const after = (await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen');
  assert.equal(after.map((e) => e.uri), ['/pipe-good']);
});

s('Content-Length with leading zeros is its number: 00 is no body, 005 is five bytes; what follows is the next request', async (ctx) => {
  const before = (await seen(ctx.front!.url)).length;
  const r = await rawExchange(ctx.front!.port, `POST /cl-zeros-none HTTP/1.1\r\n${H}Content-Length: 00\r\n\r\n`
    + `POST /cl-zeros-five HTTP/1.1\r\n${H}Content-Length: 005\r\n\r\nhello`
    + `GET /cl-zeros-after HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  let rest = r.text;
  for (let i = 0; i < 3; i++) {
    const res = parseResponse(rest);
    assert.is(res.status, 200, r.text);
    rest = res.rest;
  }
  assert.is(rest, '');
  const after = (await seen(ctx.front!.url)).slice(before).filter((e) => e.uri !== '/__seen');
  assert.equal(after.map((e) => [e.uri, e.body, e.complete]),
    [['/cl-zeros-none', 0, true], ['/cl-zeros-five', 5, true], ['/cl-zeros-after', 0, true]]);
});

s('an absolute-form target naming the Host is served as its path', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, `GET http://tsgi.test/abs-ok?q=1 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.is(parseResponse(r.text).status, 200);
  assert.ok((await seen(ctx.front!.url)).some((e) => e.uri === 'http://tsgi.test/abs-ok?q=1'));
});

s('no lenient parsing anywhere: nothing in src turns on Node\'s insecureHTTPParser', () => {
  // The front parses HTTP itself (protocol/http-request.ts, strict whatever NODE_OPTIONS says);
  // no other server in src may be made lenient either.
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
  for (const file of walk(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    assert.not.match(text, /insecureHTTPParser:\s*true/, file);
  }
});

s.run();

// Spoofing: X_Foo collapses onto HTTP_X_FOO; names with '_' are left out of the CGI view.
const SPOOF_HEAD = 'GET /spoof HTTP/1.1\r\nHost: tsgi.test\r\nX-Forwarded-For: 203.0.113.7\r\nX_Forwarded_For: 6.6.6.6\r\n'
  + 'Content_Type: evil/spoof\r\nContent_Length: 99\r\nX-Real-IP: 203.0.113.8\r\nx_real_ip: 6.6.6.7\r\nConnection: close\r\n\r\n';

function checkSpoof(keys: Record<string, string>): void {
  assert.is(keys.HTTP_X_FORWARDED_FOR, '203.0.113.7', 'X_Forwarded_For neither overrides nor joins X-Forwarded-For');
  assert.is(keys.HTTP_X_REAL_IP, '203.0.113.8');
  assert.not.ok('CONTENT_TYPE' in keys, 'Content_Type does not pose as Content-Type');
  assert.not.ok('CONTENT_LENGTH' in keys, 'Content_Length does not pose as Content-Length');
  assert.not.ok('HTTP_CONTENT_TYPE' in keys);
  for (const value of Object.values(keys)) assert.not.ok(String(value).includes('6.6.6.'), `no spoofed value: ${value}`);
}

const sp = suite<Ctx>('e2e/spoofing', newCtx());
setUp(sp, async (ctx) => {
  await startPair(ctx, fixture('record.js'), ['--workers', '1', '--log-level', 'debug']);
});

sp('tsgi: X_Forwarded_For cannot override or pose as X-Forwarded-For in the environ', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, SPOOF_HEAD);
  const res = parseResponse(r.text);
  assert.is(res.status, 200);
  checkSpoof((JSON.parse(res.body) as Seen).keys);
  await ctx.backend!.waitForStderr(/debug: header "X_Forwarded_For" left out of the environ/);
});

sp('tsgi: a header with "_" alone does not create the key of its "-" twin', async (ctx) => {
  const r = await rawExchange(ctx.front!.port,
    'GET /spoof-alone HTTP/1.1\r\nHost: tsgi.test\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n');
  const keys = (JSON.parse(parseResponse(r.text).body) as Seen).keys;
  assert.not.ok('HTTP_X_FORWARDED_FOR' in keys);
});

sp('tsgi: the real Content-Type still becomes CONTENT_TYPE', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, 'POST /spoof-ct HTTP/1.1\r\nHost: tsgi.test\r\nContent_Type: evil/x\r\n'
    + 'Content-Type: text/real\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi');
  const entry = JSON.parse(parseResponse(r.text).body) as Seen;
  assert.is(entry.keys.CONTENT_TYPE, 'text/real');
  assert.is(entry.keys.CONTENT_LENGTH, '2');
  assert.is(entry.body, 2);
});

sp.run();

const su = suite<Ctx>('e2e/spoofing-uwsgi', newCtx());
setUp(su, async (ctx) => {
  ctx.backend = await startUwsgiBackend(fixture('record.js'), ['--workers', '1']);
  ctx.front = await startFront([`uwsgi:unix:${ctx.backend.socket}`], ['--log-level', 'debug']);
});

su('uwsgi: X_Forwarded_For cannot override or pose as X-Forwarded-For in the vars', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, SPOOF_HEAD);
  const res = parseResponse(r.text);
  assert.is(res.status, 200, r.text);
  checkSpoof((JSON.parse(res.body) as Seen).keys);
  await ctx.front!.waitForStderr(/debug: header "X_Forwarded_For" left out of the uwsgi vars/);
});

su.run();

const sf = suite<Ctx>('e2e/spoofing-fetch', newCtx());
setUp(sf, async (ctx) => {
  await startPair(ctx, fixture('fetch-headers.js'));
});

sf('fetch-style: the handler sees each header under its own name, the real ones intact', async (ctx) => {
  const r = await rawExchange(ctx.front!.port, SPOOF_HEAD);
  const res = parseResponse(r.text);
  assert.is(res.status, 200, r.text);
  const headers = JSON.parse(res.body) as Record<string, string>;
  assert.is(headers['x-forwarded-for'], '203.0.113.7');
  assert.is(headers['x-real-ip'], '203.0.113.8');
  assert.is(headers['x_forwarded_for'], '6.6.6.6', 'a distinct name in the Fetch API: nothing collapses');
  assert.is(headers['content-type'], undefined);
  assert.is(headers.host, 'tsgi.test');
});

sf.run();
