// The deployment examples run as written: examples/nginx/*.conf pass nginx -t as they are;
// the systemd units score "OK" in systemd-analyze security; and the whole of examples/systemd
// and examples/nginx/front.conf works together — the install steps the units' header gives
// (under a temporary root: /srv/app, /etc/tsgi, /run/tsgi, /var/log/tsgi moved under it),
// front.json checked with --check, the units' ExecStart command lines run as written, an app
// importing 'tsgi' from /srv/app/node_modules, nginx in front: a request reaches the app with
// the client's address, a static file comes from /srv/app/public, the access log is written.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { poll } from '../helpers/e2e.js';
import { curl, freePort, nginxCheck, startNginx, type Nginx } from '../helpers/interop.js';
import { CLI, ROOT, tempDir } from '../helpers/procs.js';

const EXAMPLES = join(ROOT, 'examples');
const unit = (name: string): string => readFileSync(join(EXAMPLES, 'systemd', name), 'utf8');

/** The value of each `Key=` line of a unit file, in order. */
function directives(text: string, key: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

export function nginxExamples(): void {
  const test = suite('interop/examples-nginx-t');
  for (const name of ['front.conf', 'uwsgi.conf']) {
    test(`nginx -t passes on examples/nginx/${name} as it is`, () => {
      const r = nginxCheck(name);
      assert.ok(r.ok, r.output);
      assert.match(r.output, /test is successful/);
    });
  }
  test.run();
}

export function systemdSecurity(): void {
  const test = suite('interop/examples-systemd-security');
  const analyze = spawnSync('systemd-analyze', ['--version']).status === 0;
  for (const name of ['tsgi-front.service', 'tsgi-app@.service']) {
    test(`systemd-analyze security scores ${name} OK (2.0 or less)`, () => {
      if (!analyze) {
        process.stdout.write('interop: skipping systemd-analyze security — no systemd-analyze\n');
        return;
      }
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', name],
        { cwd: join(EXAMPLES, 'systemd'), encoding: 'utf8', timeout: 30_000 });
      const m = /Overall exposure level for \S+: (\d+\.\d) (\w+)/.exec(r.stdout);
      assert.ok(m !== null, `${r.stdout}${r.stderr}`);
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} ${m[2]}`);
      assert.is(m[2], 'OK');
    });
  }
  test('the units run tsgi from /srv/app/node_modules (where apps import it from) and say READY=1', () => {
    for (const name of ['tsgi-front.service', 'tsgi-app@.service']) {
      const text = unit(name);
      assert.match(directives(text, 'ExecStart')[0]!, /^\/srv\/app\/node_modules\/\.bin\/tsgi /, name);
      assert.equal(directives(text, 'Type'), ['notify'], name);
      assert.equal(directives(text, 'NotifyAccess'), ['all'], `${name}: systemd-notify, a child, sends READY=1`);
      assert.equal(directives(text, 'RestartPreventExitStatus'), ['2 3'], name);
    }
  });
  test.run();
}

interface DeployCtx {
  root: string;
  procs: ChildProcess[];
  nginx: Nginx | null;
  output: string;
}

export function systemdDeploy(): void {
  const test = suite<DeployCtx>('interop/examples-systemd-deploy', { root: '', procs: [], nginx: null, output: '' });
  /** An absolute path of the examples, moved under the temporary root. */
  let relocate = (text: string): string => text;

  /** Runs an ExecStart= line of a unit as written (the tsgi of /srv/app/node_modules/.bin). */
  const exec = (ctx: DeployCtx, line: string, cwd: string, env: Record<string, string> = {}): ChildProcess => {
    const [bin, ...args] = relocate(line).split(/\s+/);
    const child = spawn(process.execPath, [bin!, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { ctx.output += s; });
    ctx.procs.push(child);
    return child;
  };

  test.before(async (ctx) => {
    ctx.root = tempDir('tsgi-sd-');
    const root = ctx.root;
    const admin = `127.0.0.1:${await freePort()}`;
    relocate = (text) => text.replace(/(^|[\s"=:])(\/(?:srv\/app|etc\/tsgi|run\/tsgi|var\/log\/tsgi))/g, `$1${root}$2`)
      .replace('127.0.0.1:9180', admin);
    // What systemd makes for the units: RuntimeDirectory=tsgi and LogsDirectory=tsgi.
    assert.equal(directives(unit('tsgi-front.service'), 'RuntimeDirectory'), ['tsgi']);
    assert.equal(directives(unit('tsgi-front.service'), 'LogsDirectory'), ['tsgi']);
    mkdirSync(join(root, 'run/tsgi'), { recursive: true });
    mkdirSync(join(root, 'var/log/tsgi'), { recursive: true });
    // The install steps of tsgi-front.service's header.
    const steps = unit('tsgi-front.service');
    assert.match(steps, /mkdir -p \/srv\/app\/public \/srv\/app\/blue \/etc\/tsgi/);
    for (const dir of ['srv/app/public', 'srv/app/blue', 'etc/tsgi']) mkdirSync(join(root, dir), { recursive: true });
    // `npm install --prefix /srv/app tsgi`: the package in node_modules, its bin in node_modules/.bin.
    assert.match(steps, /npm install --prefix \/srv\/app tsgi/);
    mkdirSync(join(root, 'srv/app/node_modules/.bin'), { recursive: true });
    symlinkSync(ROOT, join(root, 'srv/app/node_modules/tsgi'));
    symlinkSync(CLI, join(root, 'srv/app/node_modules/.bin/tsgi'));
    writeFileSync(join(root, 'srv/app/blue/app.js'), `import { fromFetch } from 'tsgi';
const api = fromFetch({ fetch: (request) => new Response('api ' + new URL(request.url).pathname) });
export default function application(environ, startResponse) {
  if (environ.PATH_INFO.startsWith('/api/')) return api(environ, startResponse);
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['blue, client ' + environ.REMOTE_ADDR];
}
`);
    writeFileSync(join(root, 'srv/app/public/hello.txt'), 'a static file\n');
    writeFileSync(join(root, 'etc/tsgi/front.json'), relocate(readFileSync(join(EXAMPLES, 'systemd/front.json'), 'utf8')));
  });

  test.after(async (ctx) => {
    await ctx.nginx?.stop('SIGQUIT');
    for (const child of ctx.procs) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(ctx.root, { recursive: true, force: true });
  });

  test('the front\'s config passes --check as the guide runs it', () => {
    const r = spawnSync(process.execPath, [join(relocate('/srv/app/node_modules/.bin/tsgi')), 'front', '--config', relocate('/etc/tsgi/front.json'), '--check'],
      { encoding: 'utf8', timeout: 20_000 });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /tsgi front: the options are valid/);
  });

  test('the units\' command lines, front.json and nginx/front.conf serve together: app, client address, static file, access log', async (ctx) => {
    const front = unit('tsgi-front.service');
    exec(ctx, directives(front, 'ExecStart')[0]!, ctx.root);
    await poll(async () => (ctx.output.includes('listening on http unix:') ? true : undefined), `the front listening:\n${ctx.output}`);
    const app = unit('tsgi-app@.service');
    const env = Object.fromEntries(directives(app, 'Environment').map((e) => e.split('=', 2) as [string, string]));
    exec(ctx, directives(app, 'ExecStart')[0]!.replaceAll('%i', 'blue'), relocate(directives(app, 'WorkingDirectory')[0]!.replaceAll('%i', 'blue')), env);
    ctx.nginx = await startNginx('front.conf', { '/run/tsgi/front.sock': relocate('/run/tsgi/front.sock') });
    const url = ctx.nginx.url;
    const r = await poll(async () => {
      const res = await curl(`${url}/hello`, ['-H', 'X-Forwarded-For: 6.6.6.6']);
      return res.status === 200 ? res : undefined;
    }, `the app, registered with the front:\n${ctx.output}`, 30_000);
    assert.is(r.body, 'blue, client 127.0.0.1', 'the client\'s address from nginx (--trust-proxy unix), not the spoofed one');
    const api = await curl(`${url}/api/x`);
    assert.is(api.body, 'api /api/x', 'the part of /srv/app/blue/app.js that uses tsgi\'s fromFetch');
    const s = await curl(`${url}/static/hello.txt`);
    assert.is(s.status, 200);
    assert.is(s.body, 'a static file\n');
    await poll(async () => (readFileSync(relocate('/var/log/tsgi/access.log'), 'utf8').includes('GET /static/hello.txt') ? true : undefined),
      'the access log line');
    assert.not.match(ctx.nginx.output(), /\[(error|crit|alert|emerg)\]/);
    assert.not.match(ctx.output, / error: /);
    // tsgi ctl, on the control socket its --help names (the one front.json sets), lists the app.
    const control = JSON.parse(readFileSync(join(EXAMPLES, 'systemd/front.json'), 'utf8')).control as string;
    const help = spawnSync(process.execPath, [CLI, 'ctl', '--help'], { encoding: 'utf8' }).stdout;
    assert.ok(help.includes(`tsgi ctl --control ${control} list`), help);
    const list = spawnSync(process.execPath, [CLI, 'ctl', '--control', relocate(control), 'list'], { encoding: 'utf8', timeout: 10_000 });
    assert.is(list.status, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`unix:${relocate('/run/tsgi/app-blue.sock')} +up +control`), list.stdout);
  });

  test.run();
}
