// Backends found by DNS, against a real DNS server (dnsmasq) whose records the test changes
// while load runs: an address added is routed to, one removed is drained (no request fails),
// an address that stays keeps its backend across resolutions, a failed resolution keeps the last
// good set and is logged once, and an SRV name leads to a mutual-TLS backend checked against the
// service's name. Backends listen on 127.0.0.2-5 (all loopback on Linux), on one port.
// Runs when dnsmasq is installed; under CI=true (.ci/run installs it) it requires it.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, runLoad, setUp, versionApp, type Ctx } from '../helpers/e2e.js';
import { makePki, type Pki } from '../helpers/certs.js';
import { haveDnsmasq, startDnsmasq, type Dnsmasq } from '../helpers/dnsmasq.js';
import { runCli, spawnCli, tempDir, type FrontProc } from '../helpers/procs.js';

interface DnsCtx extends Ctx {
  dir: string;
  dns: Dnsmasq;
  pki: Pki;
  /** The port every plain backend listens on (127.0.0.2, .3, .4), and the TLS one's (127.0.0.5). */
  port: number;
  tlsPort: number;
}

const count = (text: string, re: RegExp) => text.match(new RegExp(re.source, 'g'))?.length ?? 0;
const esc = (s: string) => s.replace(/\./g, '\\.');

/** `tsgi serve` of versionApp(name) on HOST:PORT; resolves with the port it bound. */
async function backendOn(ctx: DnsCtx, name: string, host: string, port: number, extra: string[] = []): Promise<number> {
  const app = join(ctx.dir, `${name}.js`);
  writeFileSync(app, versionApp(name));
  const proc = spawnCli(['serve', app, '--listen', `${host}:${port}`, '--graceful-timeout', '5', ...extra]);
  ctx.extra.push(proc);
  const m = await proc.waitForStderr(new RegExp(`serving on ${esc(host)}:(\\d+)`));
  return Number(m[1]);
}

async function frontTo(ctx: DnsCtx, backend: string, extra: string[] = []): Promise<FrontProc> {
  const proc = spawnCli(['front', '--listen', '127.0.0.1:0', '--backend', backend, '--dns-server', ctx.dns.server,
    '--dns-interval', '0.2', '--graceful-timeout', '5', ...extra]);
  ctx.extra.push(proc);
  const m = await proc.waitForStderr(/listening on http 127\.0\.0\.1:(\d+)/);
  return Object.assign(proc, { port: Number(m[1]), url: `http://127.0.0.1:${m[1]}` });
}

/** The hosts lines: app.test on the given addresses, and the SRV target of the TLS backend. */
const hosts = (...ips: string[]) => [...ips.map((ip) => `${ip} app.test`), '127.0.0.5 d.app.test'];

/** A UDP server in dnsmasq's place that answers every query SERVFAIL, and counts them. */
function servfail(port: number): Promise<{ queries: () => number; close: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock: UdpSocket = createSocket('udp4');
    let n = 0;
    sock.on('message', (msg, rinfo) => {
      n++;
      const reply = Buffer.from(msg);
      reply[2] = (reply[2]! | 0x80) & 0xf9; // QR: a response; no AA/TC
      reply[3] = (reply[3]! & 0x70) | 0x80 | 2; // RA, RCODE 2: SERVFAIL
      sock.send(reply, rinfo.port, rinfo.address);
    });
    sock.once('error', reject);
    sock.bind(port, '127.0.0.1', () => resolve({ queries: () => n, close: () => new Promise((r) => sock.close(() => r())) }));
  });
}

function dnsSuite(): void {
  const test = suite<DnsCtx>('dns discovery', newCtx() as DnsCtx);
  let front: FrontProc;

  setUp(test, async (ctx) => {
    ctx.dir = tempDir('tsgi-dns-apps-');
    ctx.pki = makePki();
    ctx.port = await backendOn(ctx, 'a', '127.0.0.2', 0);
    await backendOn(ctx, 'b', '127.0.0.3', ctx.port);
    await backendOn(ctx, 'c', '127.0.0.4', ctx.port);
    // The TLS backend's certificate names the service (app.test), not its address.
    const cert = ctx.pki.issue('app', ['DNS:app.test'], 'serverAuth');
    ctx.tlsPort = await backendOn(ctx, 'd', '127.0.0.5', 0, ['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-ca', ctx.pki.ca]);
    ctx.dns = await startDnsmasq(hosts('127.0.0.2'), [`_tsgi._tcp.app.test,d.app.test,${ctx.tlsPort}`]);
    ctx.agent = newAgent();
    front = await frontTo(ctx, `dns:app.test:${ctx.port}`);
  });

  test.after(async (ctx) => {
    await ctx.dns?.remove();
    ctx.pki?.remove();
  });

  test('under load, an address added to the name is routed to and one removed is drained: no request fails', async (ctx) => {
    const p = ctx.port;
    await front.waitForStderr(new RegExp(`backend dns:app\\.test:${p}: 1 address in DNS \\(added 127\\.0\\.0\\.2:${p}\\)`));
    await poll(async () => ((await call(`${front.url}/`, { dispatcher: ctx.agent })).text.startsWith('a pid=') ? true : undefined), 'a');
    const seen = new Map<string, number>();
    let aGone = false;
    let aAfterGone = 0;
    let done = false;
    const load = runLoad(front.url, {
      concurrency: 8, stop: () => done, agent: ctx.agent,
      onBody: (body) => {
        const v = body.slice(0, 1);
        seen.set(v, (seen.get(v) ?? 0) + 1);
        if (aGone && v === 'a') aAfterGone++;
      },
    });
    try {
      await ctx.dns.setHosts(hosts('127.0.0.2', '127.0.0.3'));
      await front.waitForStderr(new RegExp(`2 addresses in DNS \\(added 127\\.0\\.0\\.3:${p}\\)`));
      await poll(async () => ((seen.get('b') ?? 0) > 20 ? true : undefined), 'requests served by b');
      await ctx.dns.setHosts(hosts('127.0.0.3', '127.0.0.4'));
      await front.waitForStderr(new RegExp(`2 addresses in DNS \\(added 127\\.0\\.0\\.4:${p}; draining 127\\.0\\.0\\.2:${p}\\)`));
      await front.waitForStderr(new RegExp(`backend 127\\.0\\.0\\.2:${p} drained and removed`));
      aGone = true;
      const bBefore = seen.get('b') ?? 0;
      await poll(async () => ((seen.get('c') ?? 0) > 20 && (seen.get('b') ?? 0) > bBefore + 20 ? true : undefined), 'requests served by b and c');
    } finally {
      done = true;
    }
    const result = await load;
    assert.equal(result.failures, [], `failures: ${JSON.stringify(result.failures.slice(0, 5))}`);
    assert.ok(result.ok > 60, `${result.ok} requests answered`);
    assert.ok((seen.get('a') ?? 0) > 0, 'a served before it was drained');
    assert.is(aAfterGone, 0, 'nothing reached a once it was drained and removed');
    // 127.0.0.3 stayed in every answer since it appeared (five more resolutions here): one
    // backend, added once, never drained.
    const queries = count(ctx.dns.output(), /query\[A\] app\.test/);
    await poll(async () => (count(ctx.dns.output(), /query\[A\] app\.test/) >= queries + 5 ? true : undefined), 'five more resolutions');
    assert.is(count(front.stderr(), new RegExp(`backend 127\\.0\\.0\\.3:${p} added`)), 1, front.stderr());
    assert.not.match(front.stderr(), new RegExp(`draining[^\\n]*127\\.0\\.0\\.3:${p}`));
  });

  test('a failed resolution keeps the last good set, said once; a resolution that works again is said too', async (ctx) => {
    await ctx.dns.stop();
    const fake = await servfail(ctx.dns.port);
    try {
      await front.waitForStderr(/warn: backend dns:app\.test:\d+: DNS resolution failed \(ESERVFAIL asking 127\.0\.0\.1:\d+\); keeping the 2 addresses found before; retrying/);
      // Three more failed resolutions (an A and an AAAA query each), still one line, still served.
      const after = fake.queries();
      await poll(async () => (fake.queries() >= after + 6 ? true : undefined), 'more resolutions');
      for (let i = 0; i < 10; i++) {
        const { status, text } = await call(`${front.url}/`, { dispatcher: ctx.agent });
        assert.is(status, 200);
        assert.match(text, /^[bc] pid=/);
      }
      assert.is(count(front.stderr(), /DNS resolution failed/), 1, front.stderr());
    } finally {
      await fake.close();
    }
    await ctx.dns.restart();
    await front.waitForStderr(/info: backend dns:app\.test:\d+: DNS resolves again/);
    assert.not.match(front.stderr(), /drained and removed[^\n]*127\.0\.0\.[34]/);
  });

  test('tls:srv:NAME: the SRV record gives the target and port; the certificate is checked against the service name', async (ctx) => {
    const client = ctx.pki.issue('front', [], 'clientAuth');
    const tlsFront = await frontTo(ctx, 'tls:srv:_tsgi._tcp.app.test', [
      '--backend-tls-ca', ctx.pki.ca, '--backend-tls-cert', client.cert, '--backend-tls-key', client.key,
    ]);
    await tlsFront.waitForStderr(new RegExp(`backend tls:srv:_tsgi\\._tcp\\.app\\.test: 1 address in DNS \\(added tls:127\\.0\\.0\\.5:${ctx.tlsPort}\\)`));
    const { status, text } = await call(`${tlsFront.url}/`, { dispatcher: ctx.agent });
    assert.is(status, 200);
    assert.match(text, /^d pid=/);
    assert.not.match(tlsFront.stderr(), /TLS handshake failed/);
  });

  test('--processes 2: each front process resolves the name; a control operation keeps the addresses found', async (ctx) => {
    const dir = tempDir('tsgi-dns-ctl-');
    const control = join(dir, 'front.ctl');
    const multi = await frontTo(ctx, `dns:app.test:${ctx.port}`, ['--processes', '2', '--control', control]);
    await poll(async () => (count(multi.stderr(), /: 2 addresses in DNS \(added /) >= 2 ? true : undefined), 'both processes resolved');
    for (let i = 0; i < 10; i++) {
      const { status, text } = await call(`${multi.url}/`, { dispatcher: ctx.agent });
      assert.is(status, 200);
      assert.match(text, /^[bc] pid=/);
    }
    // An add over the control socket makes the primary send every process its list of backends:
    // the addresses found by DNS are not on it by name, and must stay.
    const added = await runCli(['ctl', '--control', control, 'add', `unix:${join(dir, 'none.sock')}`]);
    assert.is(added.code, 0, added.stderr);
    const list = await runCli(['ctl', '--control', control, 'list']);
    assert.match(list.stdout, new RegExp(`127\\.0\\.0\\.3:${ctx.port}\\s+up\\s+dns:app\\.test:${ctx.port}`));
    assert.match(list.stdout, new RegExp(`127\\.0\\.0\\.4:${ctx.port}\\s+up\\s+dns:app\\.test:${ctx.port}`));
    assert.not.match(multi.stderr(), /draining 127\.0\.0\.[34]|127\.0\.0\.[34]:\d+ drained/);
    await ctx.extra.pop()!.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('start-up checks: --dns-server takes IP[:PORT]; dns: takes NAME:PORT', async () => {
    const bad = await runCli(['front', '--listen', '127.0.0.1:0', '--backend', 'dns:app.test:9000', '--dns-server', 'ns.example']);
    assert.is(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--dns-server: expected an IP address with an optional port/);
    const noPort = await runCli(['front', '--listen', '127.0.0.1:0', '--backend', 'dns:app.test']);
    assert.is(noPort.code, 2, noPort.stderr);
    assert.match(noPort.stderr, /dns: takes NAME:PORT/);
  });

  test.run();
}

const required = process.env.CI === 'true';
if (haveDnsmasq()) dnsSuite();
else if (required) {
  const test = suite('dns discovery/programs');
  test('CI=true: dnsmasq is installed', () => {
    assert.unreachable('dnsmasq is missing (.ci/run installs dnsmasq-base with apt-get)');
  });
  test.run();
} else {
  process.stdout.write('dns: skipping the DNS discovery tests — dnsmasq is missing (apt-get install dnsmasq-base)\n');
}
