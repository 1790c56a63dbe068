// A real DNS server for the discovery tests: dnsmasq (Debian's dnsmasq-base) run in the
// foreground on 127.0.0.1 and a free port (or where asked, e.g. in a network namespace), answering only from a hosts file the test rewrites
// (SIGHUP makes dnsmasq read it again) and from SRV records given at start. `--local=/test/`
// makes it answer names under .test itself (NODATA for a missing AAAA) instead of refusing.
// Stopped by its PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { tempDir } from './procs.js';
import { freePort } from './interop.js';

export interface Dnsmasq {
  /** IP:PORT, for --dns-server. */
  readonly server: string;
  readonly port: number;
  /** Replaces the hosts file (lines `IP NAME`) and has dnsmasq read it again. */
  setHosts(lines: string[]): Promise<void>;
  output(): string;
  /** Stops it (SIGTERM, then SIGKILL); safe to call twice. */
  stop(): Promise<void>;
  /** Starts it again on the same port, with the same records. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

/** Whether dnsmasq is installed (CI requires it; elsewhere the suite is skipped with a note). */
export function haveDnsmasq(): boolean {
  return spawnSync('dnsmasq', ['--version'], { encoding: 'utf8' }).status === 0;
}

export interface DnsmasqOptions {
  /** Run it under this command, which execs it in place (`ip netns exec NS`). */
  prefix?: string[];
  /** Listen here instead of 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
}

/** Starts dnsmasq with the hosts `lines` and SRV records (`_svc._tcp.NAME,TARGET,PORT`). */
export async function startDnsmasq(lines: string[], srv: string[] = [], opts: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const dir = tempDir('tsgi-dns-');
  // dnsmasq started as root reads the hosts file as nobody: the directory must be searchable.
  chmodSync(dir, 0o755);
  const hosts = join(dir, 'hosts');
  const write = (l: string[]) => writeFileSync(hosts, l.map((x) => `${x}\n`).join(''), { mode: 0o644 });
  write(lines);
  const port = opts.port ?? await freePort();
  const host = opts.host ?? '127.0.0.1';
  const prefix = opts.prefix ?? [];
  let child: ChildProcess | null = null;
  let out = '';
  /** Called on each piece of dnsmasq's output (and its exit): the waits below check their condition. */
  const watchers = new Set<() => void>();
  const heard = (s: string) => {
    out += s;
    for (const w of watchers) w();
  };
  /** Resolves once `ready()` holds, checked at each output; rejects at the deadline or the exit. */
  const until = (ready: () => boolean, what: string, c: ChildProcess, ms = 5000) => new Promise<void>((resolve, reject) => {
    const check = () => {
      if (ready()) done(resolve);
      else if (c.exitCode !== null || c.signalCode !== null) done(() => reject(new Error(`dnsmasq exited before ${what}:\n${out}`)));
    };
    const timer = setTimeout(() => done(() => reject(new Error(`dnsmasq: no ${what} within ${ms} ms:\n${out}`))), ms);
    const done = (then: () => void) => {
      clearTimeout(timer);
      watchers.delete(check);
      c.off('exit', check);
      then();
    };
    watchers.add(check);
    c.on('exit', check);
    check();
  });
  const launch = async () => {
    const argv = [...prefix, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', `--port=${port}`, `--listen-address=${host}`,
      '--bind-interfaces', '--no-resolv', '--no-hosts', '--local=/test/', `--addn-hosts=${hosts}`, '--pid-file=',
      '--log-facility=-', '--log-queries', ...srv.map((r) => `--srv-host=${r}`)];
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout!.setEncoding('utf8').on('data', heard);
    c.stderr!.setEncoding('utf8').on('data', heard);
    child = c;
    const from = out.length;
    // dnsmasq logs 'started' once its sockets are bound; a query then shows it answers.
    await until(() => /started, version/.test(out.slice(from)), 'start', c);
    await answering(host, port, () => out);
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  await launch();
  return {
    server: `${host}:${port}`,
    port,
    async setHosts(l) {
      write(l);
      const reads = (out.match(/read .*hosts/g) ?? []).length;
      const c = child;
      if (c === null) throw new Error('dnsmasq is not running');
      c.kill('SIGHUP');
      // dnsmasq logs each read of the file: wait for the new one.
      await until(() => (out.match(/read .*hosts/g) ?? []).length > reads, 'reread of its hosts file', c);
    },
    output: () => out,
    stop: async () => {
      await stop();
    },
    async restart() {
      await stop();
      await launch();
    },
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One query answered (any answer, even NXDOMAIN): the server is up. Each try waits on its own reply or timeout. */
async function answering(host: string, port: number, output: () => string): Promise<void> {
  const r = new Resolver({ timeout: 500, tries: 3 });
  r.setServers([`${host}:${port}`]);
  try {
    await r.resolve4('probe.test');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTFOUND' && code !== 'ENODATA') throw new Error(`dnsmasq did not answer on ${host}:${port} (${code}):\n${output()}`);
  }
}
