// Several hosts on one machine: network namespaces joined by veth pairs (iproute2; needs root).
// A front in one namespace, three backends in three others, over mutual-TLS links found by DNS
// (dnsmasq in the front's namespace). Load runs from the test (the root namespace) while
//   (a) backend hosts are added to the name, and (b) the first is removed from it (a rolling
//       deploy): nothing may fail;
//   (c) one host's link is cut (its interface down): the front drops the link at --ping-timeout,
//       sends again what the host never took, and fails only what was in flight there, each
//       with a 502 and a log line.
// Prints the counts. Runs as root on Linux with `ip` and dnsmasq; under CI=true it requires them.
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { makePki, type Pki } from '../helpers/certs.js';
import { haveDnsmasq, startDnsmasq, type Dnsmasq } from '../helpers/dnsmasq.js';
import { spawnCli, tempDir, type Proc } from '../helpers/procs.js';

/** 10.213.0.0/24 joins the root namespace (.1) and the front's (.2); 10.213.N.0/24 the front (.1) and backend N (.2). */
const NET = '10.213';
const TAG = `ts${process.pid % 100000}`;
const FRONT_NS = `${TAG}-front`;
const HOSTS = [1, 2, 3];
const backendNs = (n: number) => `${TAG}-b${n}`;
const backendIp = (n: number) => `${NET}.${n}.2`;
const PORT = 9000;
const DNS_PORT = 5353;

interface HostsCtx extends Ctx {
  dir: string;
  pki: Pki;
  dns: Dnsmasq;
  frontNs: Proc & { url: string };
  /** Namespaces made (removed in after, with their interfaces). */
  made: string[];
  rootLink: boolean;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why this machine cannot run the suite, or null. */
function unavailable(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (network namespaces need it)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'ip (iproute2) is missing';
  if (!haveDnsmasq()) return 'dnsmasq is missing';
  const probe = `${TAG}-probe`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return 'ip netns add failed (no CAP_SYS_ADMIN?)';
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

/** The front's namespace, linked to the root one and to each backend's. */
function makeHosts(ctx: HostsCtx): void {
  ip('netns', 'add', FRONT_NS);
  ctx.made.push(FRONT_NS);
  ip('-n', FRONT_NS, 'link', 'set', 'lo', 'up');
  ip('link', 'add', `${TAG}r`, 'type', 'veth', 'peer', 'name', 'f0', 'netns', FRONT_NS);
  ctx.rootLink = true;
  ip('addr', 'add', `${NET}.0.1/24`, 'dev', `${TAG}r`);
  ip('link', 'set', `${TAG}r`, 'up');
  ip('-n', FRONT_NS, 'addr', 'add', `${NET}.0.2/24`, 'dev', 'f0');
  ip('-n', FRONT_NS, 'link', 'set', 'f0', 'up');
  for (const n of HOSTS) {
    const ns = backendNs(n);
    ip('netns', 'add', ns);
    ctx.made.push(ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', FRONT_NS, 'link', 'add', `f${n}`, 'type', 'veth', 'peer', 'name', `b${n}`, 'netns', ns);
    ip('-n', FRONT_NS, 'addr', 'add', `${NET}.${n}.1/24`, 'dev', `f${n}`);
    ip('-n', FRONT_NS, 'link', 'set', `f${n}`, 'up');
    ip('-n', ns, 'addr', 'add', `${backendIp(n)}/24`, 'dev', `b${n}`);
    ip('-n', ns, 'link', 'set', `b${n}`, 'up');
  }
}

function removeHosts(ctx: HostsCtx): void {
  for (const ns of ctx.made.splice(0)) spawnSync('ip', ['netns', 'del', ns]);
  if (ctx.rootLink) spawnSync('ip', ['link', 'del', `${TAG}r`]);
  ctx.rootLink = false;
}

/** An app that names its host, answers after a few ms (so some requests are in flight), and counts the body. */
const APP = `export default async function application(environ, startResponse) {
  const body = await environ['tsgi.input'].read();
  await new Promise((r) => setTimeout(r, 5));
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [process.env.HOST_NAME + ' pid=' + process.pid + ' received ' + body.length];
}
`;

interface Outcome {
  ok: number;
  /** Non-2xx answers and client errors, with the URL. */
  failures: { url: string; status?: number; error?: string }[];
  byHost: Map<string, number>;
}

/** Load from the root namespace: GETs and POSTs, `concurrency` at a time, until stop(). */
async function load(url: string, ctx: HostsCtx, outcome: Outcome, stop: () => boolean): Promise<void> {
  const loop = async (id: number) => {
    for (let i = 0; !stop(); i++) {
      const post = i % 2 === 1;
      const target = `${url}/load?id=${id}&i=${i}`;
      const payload = post ? 'x'.repeat(100 + (i % 5) * 1000) : undefined;
      try {
        const res = await request(target, { method: post ? 'POST' : 'GET', body: payload, dispatcher: ctx.agent });
        const text = await res.body.text();
        if (res.statusCode === 200 && text.endsWith(` received ${payload?.length ?? 0}`)) {
          outcome.ok++;
          const host = text.split(' ', 1)[0]!;
          outcome.byHost.set(host, (outcome.byHost.get(host) ?? 0) + 1);
        } else {
          outcome.failures.push({ url: target, status: res.statusCode });
        }
      } catch (err) {
        outcome.failures.push({ url: target, error: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, id) => loop(id)));
}

const hostsFile = (...n: number[]) => n.map((k) => `${backendIp(k)} app.test`);
const count = (text: string, re: RegExp) => text.match(new RegExp(re.source, 'g'))?.length ?? 0;

function hostsSuite(): void {
  const test = suite<HostsCtx>('multi-host', { ...newCtx(), made: [], rootLink: false } as unknown as HostsCtx);

  setUp(test, async (ctx) => {
    ctx.dir = tempDir('tsgi-hosts-');
    ctx.pki = makePki();
    makeHosts(ctx);
    const app = join(ctx.dir, 'app.js');
    writeFileSync(app, APP);
    const server = ctx.pki.issue('app', ['DNS:app.test'], 'serverAuth');
    const client = ctx.pki.issue('front', [], 'clientAuth');
    for (const n of HOSTS) {
      const proc = spawnCli(['serve', app, '--listen', `${backendIp(n)}:${PORT}`, '--graceful-timeout', '5',
        '--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', ctx.pki.ca], undefined,
      ['ip', 'netns', 'exec', backendNs(n), 'env', `HOST_NAME=b${n}`]);
      ctx.extra.push(proc);
      await proc.waitForStderr(/serving on /);
    }
    ctx.dns = await startDnsmasq(hostsFile(1), [], { prefix: ['ip', 'netns', 'exec', FRONT_NS], host: `${NET}.0.2`, port: DNS_PORT });
    const front = spawnCli(['front', '--listen', `${NET}.0.2:8080`, '--backend', `tls:dns:app.test:${PORT}`,
      '--dns-server', ctx.dns.server, '--dns-interval', '0.2', '--ping-interval', '0.3', '--ping-timeout', '1.5',
      '--backend-tls-cert', client.cert, '--backend-tls-key', client.key, '--backend-tls-ca', ctx.pki.ca,
      '--graceful-timeout', '5', '--log-level', 'debug'], undefined, ['ip', 'netns', 'exec', FRONT_NS]);
    ctx.extra.push(front);
    await front.waitForStderr(/listening on http /);
    ctx.frontNs = Object.assign(front, { url: `http://${NET}.0.2:8080` });
    ctx.agent = newAgent();
  });

  test.after(async (ctx) => {
    // setUp's after (registered first) stopped the processes; the namespaces go now.
    await ctx.dns?.remove();
    removeHosts(ctx);
    ctx.pki?.remove();
  });

  test('hosts added and drained by DNS under load fail nothing; a cut link fails only its in-flight requests, each a 502 with a log line', async (ctx) => {
    const front = ctx.frontNs;
    await front.waitForStderr(new RegExp(`backend tls:${backendIp(1).replace(/\./g, '\\.')}:${PORT} is ready`));
    // (a) and (b): the rolling deploy.
    const rolling: Outcome = { ok: 0, failures: [], byHost: new Map() };
    let stopRolling = false;
    const rollingLoad = load(front.url, ctx, rolling, () => stopRolling);
    try {
      await poll(async () => ((rolling.byHost.get('b1') ?? 0) > 20 ? true : undefined), 'b1 serving');
      await ctx.dns.setHosts(hostsFile(1, 2, 3));
      await poll(async () => ((rolling.byHost.get('b2') ?? 0) > 20 && (rolling.byHost.get('b3') ?? 0) > 20 ? true : undefined), 'b2 and b3 serving');
      await ctx.dns.setHosts(hostsFile(2, 3));
      await front.waitForStderr(new RegExp(`backend tls:${backendIp(1).replace(/\./g, '\\.')}:${PORT} drained and removed`));
      const after = rolling.ok;
      await poll(async () => (rolling.ok > after + 50 ? true : undefined), 'more requests after the drain');
    } finally {
      stopRolling = true;
    }
    await rollingLoad;

    // (c): cut b3's link while load runs.
    const cut: Outcome = { ok: 0, failures: [], byHost: new Map() };
    let stopCut = false;
    const cutLoad = load(front.url, ctx, cut, () => stopCut);
    const b3 = `tls:${backendIp(3)}:${PORT}`;
    const b3re = b3.replace(/\./g, '\\.');
    let logBefore = 0;
    try {
      await poll(async () => ((cut.byHost.get('b3') ?? 0) > 20 ? true : undefined), 'b3 serving before the cut');
      logBefore = front.stderr().length;
      ip('-n', FRONT_NS, 'link', 'set', 'f3', 'down');
      await front.waitForStderr(new RegExp(`backend ${b3re} did not answer a ping within 1\\.5 s; closing the connection`), 15_000);
      const b2 = cut.byHost.get('b2') ?? 0;
      await poll(async () => ((cut.byHost.get('b2') ?? 0) > b2 + 50 ? true : undefined), 'b2 serving after the cut');
    } finally {
      stopCut = true;
    }
    await cutLoad;
    const log = front.stderr().slice(logBefore);
    const refused502 = cut.failures.filter((f) => f.status === 502);
    const lines502 = count(log, /warn: 502 (GET|POST) \/load\?/);
    const retried = count(log, new RegExp(`lost with ${b3re} before it took the request .*; retrying`));
    process.stdout.write(`\nmulti-host: rolling deploy (b2, b3 added; b1 drained): ${rolling.ok} answered, `
      + `${rolling.failures.length} failed (b1 ${rolling.byHost.get('b1') ?? 0}, b2 ${rolling.byHost.get('b2') ?? 0}, b3 ${rolling.byHost.get('b3') ?? 0})\n`
      + `multi-host: b3's link cut: ${cut.ok} answered, ${retried} sent again after the cut, ${refused502.length} failed with 502 `
      + `(${lines502} log lines), ${cut.failures.length - refused502.length} other failures\n`);
    assert.equal(rolling.failures, [], 'the rolling deploy failed nothing');
    assert.is(refused502.length, cut.failures.length, `only 502s: ${JSON.stringify(cut.failures.slice(0, 5))}`);
    assert.is(lines502, refused502.length, 'one log line per 502');
    for (const f of refused502) assert.ok(log.includes(new URL(f.url).pathname + new URL(f.url).search), `a log line for ${f.url}`);
    assert.ok(cut.ok > 100, `${cut.ok} answered`);
    // The down host keeps failing to connect while its link is down: marked down, not routed to.
    assert.match(front.stderr(), new RegExp(`backend ${b3re} unreachable`));
  });

  test.run();
}

const why = unavailable();
if (why === null) hostsSuite();
else if (process.env.CI === 'true') {
  const test = suite('multi-host/programs');
  test('CI=true: root, iproute2 and dnsmasq make the namespaces', () => {
    assert.unreachable(`cannot run the multi-host test: ${why} (.ci/run installs iproute2 and dnsmasq-base and runs as root)`);
  });
  test.run();
} else {
  process.stdout.write(`multi-host: skipped — ${why}\n`);
}
