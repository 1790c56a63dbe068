// End to end: the front facing clients directly, over TLS and HTTP/2, with real clients (Node's
// http2.connect, undici, curl) and a real `tsgi serve` behind it. HTTP/1.1 and h2 by ALPN on
// one TLS port, h2c with prior knowledge on a cleartext port, bodies both ways, 200 streams on
// one connection, a slow reader beside fast ones, certificate reload, and the known floods.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { type ClientHttp2Session, type ClientHttp2Stream, connect as h2connect, constants } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newCtx, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir, type FrontProc } from '../helpers/procs.js';
import { makeCa, makeServerPair, readPem } from '../helpers/tls.js';
import { eventually } from '../helpers/assert.js';
import { pattern } from '../fixtures/download.js';

interface H2Ctx extends Ctx {
  dir: string;
  ca: Buffer;
  /** The TLS front (its certificate files are copies the tests replace), and a cleartext one. */
  tls?: FrontProc;
  clear?: FrontProc;
  live: { cert: string; key: string };
  pairs: { a: { cert: string; key: string }; b: { cert: string; key: string } };
}

const test = suite<H2Ctx>('e2e/http2-tls', { ...newCtx(), dir: '', ca: Buffer.alloc(0), live: { cert: '', key: '' },
  pairs: { a: { cert: '', key: '' }, b: { cert: '', key: '' } } });

setUp(test, async (ctx) => {
  ctx.dir = tempDir('tsgi-h2-');
  ctx.ca = readPem(makeCa(ctx.dir));
  ctx.pairs = { a: makeServerPair(ctx.dir, 'a'), b: makeServerPair(ctx.dir, 'b') };
  ctx.live = { cert: join(ctx.dir, 'live.pem'), key: join(ctx.dir, 'live-key.pem') };
  copyFileSync(ctx.pairs.a.cert, ctx.live.cert);
  copyFileSync(ctx.pairs.a.key, ctx.live.key);
  ctx.backend = await startBackend(fixture('h2-app.js'));
  ctx.tls = await startFront([ctx.backend.socket], ['--tls-cert', ctx.live.cert, '--tls-key', ctx.live.key,
    '--max-body-size', '40000000']);
  ctx.extra.push(ctx.tls);
  ctx.clear = await startFront([ctx.backend.socket], ['--max-headers', '20', '--admin', '127.0.0.1:0']);
  ctx.extra.push(ctx.clear);
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request on an HTTP/2 session, its body read whole. */
function h2(session: ClientHttp2Session, path: string, opts: { method?: string; body?: Iterable<Uint8Array>; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': opts.method ?? 'GET', ':path': path, ...opts.headers }, { endStream: opts.body === undefined });
    const parts: Buffer[] = [];
    let status = 0;
    let headers: Answer['headers'] = {};
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h as Answer['headers'];
    });
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => resolve({ status, headers, body: Buffer.concat(parts) }));
    stream.on('error', reject);
    if (opts.body !== undefined) writeAll(stream, opts.body).catch(reject);
  });
}

async function writeAll(stream: ClientHttp2Stream, body: Iterable<Uint8Array>): Promise<void> {
  for (const chunk of body) {
    if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r));
  }
  stream.end();
}

const sha = (parts: Iterable<Uint8Array>): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

function connectTls(ctx: H2Ctx): ClientHttp2Session {
  return h2connect(ctx.tls!.url, { ca: ctx.ca });
}

async function closeSession(session: ClientHttp2Session): Promise<void> {
  if (session.closed || session.destroyed) return;
  await new Promise<void>((resolve) => session.close(resolve));
}

/** The CN of the certificate a new TLS connection to the front is shown. */
function servedCn(ctx: H2Ctx): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ port: ctx.tls!.port, host: '127.0.0.1', ca: ctx.ca, ALPNProtocols: ['http/1.1'] }, () => {
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.destroy();
      resolve(String(cn));
    });
    socket.on('error', reject);
  });
}

test('TLS: HTTP/1.1 and h2 by ALPN on one port; the app sees https and the protocol', async (ctx) => {
  const agent = new Agent({ connect: { ca: ctx.ca } });
  try {
    const r = await request(`${ctx.tls!.url}/environ`, { dispatcher: agent });
    const seen = await r.body.json() as Record<string, unknown>;
    assert.equal(seen, { scheme: 'https', https: 'on', protocol: 'HTTP/1.1', host: `127.0.0.1:${ctx.tls!.port}`, method: 'GET', length: null });
  } finally {
    await agent.close();
  }
  const session = connectTls(ctx);
  try {
    const a = await h2(session, '/environ');
    assert.is(a.status, 200);
    assert.is((session.socket as unknown as { alpnProtocol: string }).alpnProtocol, 'h2');
    assert.equal(JSON.parse(a.body.toString()), { scheme: 'https', https: 'on', protocol: 'HTTP/2.0',
      host: `127.0.0.1:${ctx.tls!.port}`, method: 'GET', length: null }, ':authority became the Host');
    const b = await h2(session, '/environ', { headers: { host: 'sent.example' } });
    assert.is(JSON.parse(b.body.toString()).host, 'sent.example', 'a Host field beside :authority is kept as sent');
  } finally {
    await closeSession(session);
  }
  // undici's own HTTP/2 client, by ALPN.
  const h2agent = new Agent({ allowH2: true, connect: { ca: ctx.ca } });
  try {
    const r = await request(`${ctx.tls!.url}/environ`, { dispatcher: h2agent });
    assert.is((await r.body.json() as { protocol: string }).protocol, 'HTTP/2.0');
  } finally {
    await h2agent.close();
  }
});

test('h2c with prior knowledge on the cleartext port, beside HTTP/1.1; curl agrees on both ports', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  try {
    const a = await h2(session, '/environ');
    assert.equal(JSON.parse(a.body.toString()).protocol, 'HTTP/2.0');
    assert.equal(JSON.parse(a.body.toString()).scheme, 'http');
  } finally {
    await closeSession(session);
  }
  const r = await request(`${ctx.clear!.url}/environ`);
  assert.is((await r.body.json() as { protocol: string }).protocol, 'HTTP/1.1');
  const curl = (args: string[]): string => {
    const out = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', ...args], { encoding: 'utf8' });
    assert.is(out.status, 0, `curl ${args.join(' ')}: ${out.stderr}`);
    return out.stdout;
  };
  assert.is(curl(['--http2-prior-knowledge', `${ctx.clear!.url}/`]), '2 200');
  assert.is(curl(['--http1.1', `${ctx.clear!.url}/`]), '1.1 200');
  const ca = join(ctx.dir, 'ca.pem');
  assert.is(curl(['--http2', '--cacert', ca, `${ctx.tls!.url.replace('127.0.0.1', 'localhost')}/`]), '2 200');
});

test('24 MiB up and down one h2 stream each, both ways at once too: the digests match', async (ctx) => {
  const session = connectTls(ctx);
  try {
    const n = 24 * 1024 * 1024;
    const body = [...pattern(n, 3)];
    const [up, down] = await Promise.all([
      h2(session, '/echo', { method: 'POST', body }),
      h2(session, `/bytes?n=${n}&seed=4`),
    ]);
    assert.is(up.status, 200);
    assert.is(up.body.length, n);
    assert.is(sha([up.body]), sha(body), 'the echo');
    assert.is(down.headers['content-length'], String(n));
    assert.is(sha([down.body]), sha(pattern(n, 4)), 'the download');
  } finally {
    await closeSession(session);
  }
});

test('200 streams on one connection (SETTINGS allow 100 at once): every one is answered', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  try {
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    assert.is(session.remoteSettings.maxConcurrentStreams, 100);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => h2(session, `/?i=${i}`)));
    assert.is(answers.length, 200);
    for (const a of answers) {
      assert.is(a.status, 200);
      assert.is(a.body.toString(), 'hello\n');
    }
    assert.equal(answers[0]!.headers['set-cookie'], ['a=1', 'b=2'], 'two Set-Cookie fields');
  } finally {
    await closeSession(session);
  }
});

test('a stream whose reader stops does not stall the other streams of its connection', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  try {
    const slow = session.request({ ':path': `/bytes?n=${64 * 1024 * 1024}` });
    slow.pause();
    let slowBytes = 0;
    await new Promise((resolve) => slow.once('response', resolve));
    const others = await Promise.all(Array.from({ length: 20 }, () => h2(session, '/')));
    for (const a of others) assert.is(a.body.toString(), 'hello\n');
    slow.on('data', (c: Buffer) => { slowBytes += c.length; });
    assert.ok(!slow.readableEnded, 'the slow stream is still unread');
    slow.close(constants.NGHTTP2_CANCEL);
    assert.ok(slowBytes < 64 * 1024 * 1024);
  } finally {
    await closeSession(session);
  }
});

test('HEAD gets the head alone; a body over --max-body-size gets 413; over --max-headers 431', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  try {
    const head = await h2(session, '/bytes?n=1000', { method: 'HEAD' });
    assert.is(head.status, 200);
    assert.is(head.headers['content-length'], '1000');
    assert.is(head.body.length, 0);
    const many: Record<string, string> = {};
    for (let i = 0; i < 25; i++) many[`x-h${i}`] = 'v';
    const tooMany = await h2(session, '/', { headers: many });
    assert.is(tooMany.status, 431);
    const tooLarge = await h2(session, '/', { headers: { 'x-big': 'x'.repeat(20_000) } });
    assert.is(tooLarge.status, 431, 'a header list over --max-header-size (16 KiB)');
  } finally {
    await closeSession(session);
  }
  const tls = connectTls(ctx);
  try {
    // A declared length over the limit: refused before the body is read (the stream is left open).
    const stream = tls.request({ ':method': 'POST', ':path': '/echo', 'content-length': '50000000' }, { endStream: false });
    stream.on('error', () => {});
    stream.write(Buffer.alloc(10));
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    assert.is(status, 413);
  } finally {
    tls.destroy();
  }
});

test('SIGHUP reloads the certificate under load: new connections get it, no request fails; a bad file keeps it', async (ctx) => {
  assert.is(await servedCn(ctx), 'a');
  const session = connectTls(ctx);
  let stop = false;
  let ok = 0;
  let failed = 0;
  const load = (async () => {
    while (!stop) {
      const s = connectTls(ctx);
      try {
        const a = await h2(s, '/');
        if (a.status === 200) ok++;
        else failed++;
      } catch {
        failed++;
      } finally {
        s.destroy();
      }
    }
  })();
  try {
    await eventually(() => ok >= 5, 'requests before the reload');
    copyFileSync(ctx.pairs.b.cert, ctx.live.cert);
    copyFileSync(ctx.pairs.b.key, ctx.live.key);
    process.kill(ctx.tls!.pid, 'SIGHUP');
    await ctx.tls!.waitForStderr(/TLS: certificate and key reloaded/);
    assert.is(await servedCn(ctx), 'b');
    const before = ok;
    await eventually(() => ok >= before + 5, 'requests after the reload');
    const onOld = await h2(session, '/');
    assert.is(onOld.status, 200, 'a connection made before the reload goes on');
    writeFileSync(ctx.live.key, 'not a key\n');
    process.kill(ctx.tls!.pid, 'SIGHUP');
    await ctx.tls!.waitForStderr(/TLS: could not reload .*; keeping the certificate in use/);
    assert.is(await servedCn(ctx), 'b', 'the bad file left the pair in use');
  } finally {
    stop = true;
    await load;
    session.destroy();
  }
  assert.is(failed, 0, `no request failed across the reloads (${ok} ok)`);
});

test('/metrics counts responses by protocol', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  try {
    assert.is((await h2(session, '/')).status, 200);
  } finally {
    await closeSession(session);
  }
  await request(`${ctx.clear!.url}/`).then((r) => r.body.text());
  const admin = /admin on http 127\.0\.0\.1:(\d+)/.exec(ctx.clear!.stderr());
  assert.ok(admin !== null, 'the admin address is logged');
  const text = await (await request(`http://127.0.0.1:${admin[1]}/metrics`)).body.text();
  const count = (protocol: string): number => Number(new RegExp(`tsgi_http_requests_by_protocol_total\\{protocol="${protocol}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  assert.ok(count('HTTP/2.0') >= 1, 'HTTP/2 responses counted');
  assert.ok(count('HTTP/1.1') >= 1, 'HTTP/1.1 responses counted');
});

test('rapid reset (CVE-2023-44487): a client that opens and cancels streams in a flood is cut off; others go on', async (ctx) => {
  const session = h2connect(ctx.clear!.url);
  session.on('error', () => {});
  let goaway = -1;
  session.on('goaway', (code: number) => { goaway = code; });
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  let opened = 0;
  try {
    for (let i = 0; i < 20_000 && !session.closed && !session.destroyed && goaway === -1; i++) {
      const s = session.request({ ':path': '/' });
      s.on('error', () => {});
      s.close(constants.NGHTTP2_CANCEL);
      opened++;
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await eventually(() => session.closed || session.destroyed || goaway !== -1, 'the flooding session cut off', 10_000);
  } finally {
    session.destroy();
  }
  assert.ok(opened < 20_000, `cut off before the flood ended (${opened} streams opened)`);
  const other = h2connect(ctx.clear!.url);
  try {
    assert.is((await h2(other, '/')).status, 200, 'the front still serves');
  } finally {
    await closeSession(other);
  }
});

/** An HTTP/2 frame: 9-byte header and payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

test('CONTINUATION flood (CVE-2024-27316): HEADERS that never end are cut off; the front stays up', async (ctx) => {
  const socket = netConnect(ctx.clear!.port, '127.0.0.1');
  socket.on('error', () => {});
  let closed = false;
  socket.on('close', () => { closed = true; });
  socket.resume();
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0))]));
  // :method GET, :scheme http, :path / (static table), and no END_HEADERS.
  socket.write(frame(1, 0, 1, Buffer.from([0x82, 0x86, 0x84])));
  const field = Buffer.from([0x00, 3, ...Buffer.from('x-a'), 1, ...Buffer.from('b')]);
  let sent = 0;
  for (; sent < 100_000 && !closed; sent++) {
    if (!socket.write(frame(9, 0, 1, field))) await new Promise((r) => socket.once('drain', r).once('close', r));
  }
  await eventually(() => closed, 'the connection closed', 10_000);
  socket.destroy();
  assert.ok(sent < 100_000, `cut off before the flood ended (${sent} CONTINUATION frames)`);
  const session = h2connect(ctx.clear!.url);
  try {
    assert.is((await h2(session, '/')).status, 200, 'the front still serves');
  } finally {
    await closeSession(session);
  }
});

test.run();

// RFC 8441: a WebSocket over an HTTP/2 stream, to an unchanged ws app behind tsgi serve.
const ws = suite<Ctx>('e2e/http2-websocket', newCtx());
setUp(ws, async (ctx) => {
  ctx.backend = await startBackend(fixture('ws-node-server.js'));
  ctx.front = await startFront([ctx.backend.socket]);
});

/** A masked client text frame (RFC 6455 5.2), short payloads only. */
function clientText(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

ws('extended CONNECT with :protocol websocket: a 200, then WebSocket frames both ways on the stream, to an unchanged ws app', async (ctx) => {
  const session = h2connect(ctx.front!.url);
  try {
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    assert.ok(session.remoteSettings.enableConnectProtocol, 'the front offers extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)');
    const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/chat', ':scheme': 'http',
      ':authority': `127.0.0.1:${ctx.front!.port}`, 'sec-websocket-version': '13' }, { endStream: false });
    const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
    assert.is(head[':status'], 200);
    assert.is(head['sec-websocket-accept'], undefined, 'the HTTP/1.1 handshake stays between the front and the backend');
    let got = Buffer.alloc(0);
    stream.on('data', (c: Buffer) => { got = Buffer.concat([got, c]); });
    stream.write(clientText('hello over h2'));
    await eventually(() => got.length >= 2 + 13, 'the echo');
    assert.equal([...got.subarray(0, 2)], [0x81, 13], 'an unmasked text frame of 13 bytes');
    assert.is(got.subarray(2, 15).toString(), 'hello over h2');
    stream.write(clientText('whoami'));
    await eventually(() => got.includes(Buffer.from('/chat ')), 'the app saw the path');
    stream.close();
  } finally {
    session.destroy();
  }
  assert.match((await call(`${ctx.front!.url}/plain`)).text, /plain GET \/plain upgrade=-/, 'plain requests still served');
});

ws('--tunnel-idle-timeout closes an idle WebSocket stream (RST_STREAM CANCEL, a warn line); its session serves on', async (ctx) => {
  const front = await startFront([ctx.backend!.socket], ['--tunnel-idle-timeout', '1']);
  ctx.extra.push(front);
  const session = h2connect(front.url);
  try {
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/chat', ':scheme': 'http',
      ':authority': `127.0.0.1:${front.port}`, 'sec-websocket-version': '13' }, { endStream: false });
    const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode)));
    stream.on('error', () => {}); // the reset, asserted by its code below
    const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
    assert.is(head[':status'], 200);
    let got = Buffer.alloc(0);
    stream.on('data', (c: Buffer) => { got = Buffer.concat([got, c]); });
    stream.write(clientText('then silence'));
    await eventually(() => got.length >= 2 + 12, 'the echo');
    await front.waitForStderr(/warn: closed the upgraded connection of 127\.0\.0\.1 \(GET \/chat\): no byte either way for --tunnel-idle-timeout \(1 s\)/);
    assert.is(await closed, constants.NGHTTP2_CANCEL, 'the idle stream is reset with CANCEL');
    const plain = await h2(session, '/plain');
    assert.is(plain.status, 200, 'the session is still open and serves');
    assert.match(plain.body.toString(), /plain GET \/plain upgrade=-/);
  } finally {
    session.destroy();
  }
});

ws('--keep-alive-timeout: a session with no stream open that long gets GOAWAY (NO_ERROR) and is closed', async (ctx) => {
  const front = await startFront([ctx.backend!.socket], ['--keep-alive-timeout', '1']);
  ctx.extra.push(front);
  const session = h2connect(front.url);
  try {
    let goaway = -1;
    let closed = false;
    session.once('goaway', (code: number) => { goaway = code; });
    session.once('close', () => { closed = true; });
    session.on('error', () => {});
    const plain = await h2(session, '/plain');
    assert.is(plain.status, 200);
    await eventually(() => closed, 'the idle session closed by the front', 10_000);
    assert.is(goaway, constants.NGHTTP2_NO_ERROR, 'GOAWAY NO_ERROR first');
  } finally {
    session.destroy();
  }
});

ws('CONNECT without :protocol websocket is refused with 501', async (ctx) => {
  const session = h2connect(ctx.front!.url);
  try {
    await new Promise((resolve) => session.once('remoteSettings', resolve));
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' }, { endStream: false });
    const head = await new Promise<Record<string, unknown>>((resolve) => stream.once('response', resolve));
    assert.is(head[':status'], 501);
    stream.close();
  } finally {
    session.destroy();
  }
});

ws.run();
