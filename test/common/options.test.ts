// The options and addresses of the nginx/uWSGI interop: uwsgi: backend addresses (round-trip,
// refused where they make no sense), --uwsgi-socket / --uwsgi-listen, and --trust-proxy lists.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatAddress, parseAddress } from '../../src/common/address.js';
import { OPTIONS, configValues, defaultOf, optionsHelp, parseOptions, readConfigFile, resolveOptions } from '../../src/common/options.js';
import { front } from '../../src/index.js';
import { DEFAULTS } from '../../src/protocol/constants.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { throwsCode } from '../helpers/assert.js';

const test = suite('common/options');

test('uwsgi: addresses parse to the uwsgi protocol and format back the same', () => {
  for (const text of ['uwsgi:unix:/run/uwsgi/app.sock', 'uwsgi:127.0.0.1:3031', 'uwsgi:[::1]:3031']) {
    const a = parseAddress(text, '--backend', true);
    assert.is(a.protocol, 'uwsgi', text);
    assert.is(formatAddress(a), text);
  }
  assert.equal(parseAddress('uwsgi:tcp:10.0.0.2:3031', 'x', true), { kind: 'tcp', host: '10.0.0.2', port: 3031, protocol: 'uwsgi' });
  assert.is(parseAddress('unix:/a.sock').protocol, undefined, 'tsgi is the default');
  assert.is(formatAddress(parseAddress('unix:/a.sock')), 'unix:/a.sock');
});

test('a uwsgi: address is refused where the front or the backend listens', () => {
  throwsCode(() => parseOptions('front', ['--listen', 'uwsgi:unix:/x.sock']), ConfigError, 'TSGI_ERR_CONFIG');
  throwsCode(() => parseOptions('serve', ['app.js', '--uwsgi-listen', 'uwsgi:127.0.0.1:3031']), ConfigError, 'TSGI_ERR_CONFIG');
  throwsCode(() => parseAddress('uwsgi:unix:/x.sock'), ConfigError, 'TSGI_ERR_CONFIG');
});

test('front: --backend takes uwsgi: addresses, from flags and from TSGI_BACKENDS', () => {
  const { values } = parseOptions('front', ['--listen', ':0', '--backend', 'uwsgi:unix:/u.sock', '--backend', 'unix:/t.sock'], {});
  assert.equal((values.backends as unknown[]).map((a) => formatAddress(a as never)), ['uwsgi:unix:/u.sock', 'unix:/t.sock']);
  const env = parseOptions('front', ['--listen', ':0'], { TSGI_BACKENDS: 'uwsgi:127.0.0.1:3031,unix:/t.sock' });
  assert.is(formatAddress((env.values.backends as never[])[0]!), 'uwsgi:127.0.0.1:3031');
});

test('front: --trust-proxy repeats and splits on commas; empty by default; bad entries stop start-up', () => {
  assert.equal(parseOptions('front', [], {}).values.trustProxy, []);
  const { values } = parseOptions('front', ['--trust-proxy', 'loopback,10.0.0.0/8', '--trust-proxy=unix'], {});
  assert.equal(values.trustProxy, ['loopback', '10.0.0.0/8', 'unix']);
  assert.equal(parseOptions('front', [], { TSGI_TRUST_PROXY: '::1' }).values.trustProxy, ['::1/128']);
  assert.equal(configValues('front', { 'trust-proxy': ['unix', '192.0.2.0/24'] }, 'f.json').trustProxy, ['unix', '192.0.2.0/24']);
  throwsCode(() => parseOptions('front', ['--trust-proxy', 'everyone'], {}), ConfigError, 'TSGI_ERR_CONFIG');
});

test('serve: --uwsgi-socket and --uwsgi-listen, from flags and the environment', () => {
  let { values } = parseOptions('serve', ['app.js', '--uwsgi-socket', '/run/app.uwsgi.sock'], {});
  assert.is(values.uwsgiSocket, '/run/app.uwsgi.sock');
  ({ values } = parseOptions('serve', ['app.js', '--uwsgi-listen', '127.0.0.1:3031'], {}));
  assert.equal(values.uwsgiListen, { kind: 'tcp', host: '127.0.0.1', port: 3031 });
  ({ values } = parseOptions('serve', ['app.js'], { TSGI_UWSGI_SOCKET: '/e.sock', TSGI_UWSGI_LISTEN: 'unix:/f.sock' }));
  assert.is(values.uwsgiSocket, '/e.sock');
  assert.equal(values.uwsgiListen, { kind: 'unix', path: '/f.sock' });
});

test('--static mounts: repeatable, comma-separated in the environment, checked; choices are checked', () => {
  const { values } = parseOptions('front', ['--static', '/assets/=./public', '--static=/=site'], { TSGI_STATIC: '/x=y' });
  assert.equal(values.static, [{ prefix: '/assets', dir: './public' }, { prefix: '/', dir: 'site' }]);
  assert.equal(parseOptions('front', [], { TSGI_STATIC: '/a=b,/c=d' }).values.static, [{ prefix: '/a', dir: 'b' }, { prefix: '/c', dir: 'd' }]);
  for (const bad of ['public', '/a', '/a=', 'a=b', '/a/../b=c', '/a%2e=b', '/a?x=b']) {
    throwsCode(() => parseOptions('front', ['--static', bad], {}), ConfigError, 'TSGI_ERR_CONFIG');
  }
  assert.is(parseOptions('front', [], {}).values.staticDotfiles, 'ignore');
  assert.is(parseOptions('front', ['--log-format', 'json'], {}).values.logFormat, 'json');
  throwsCode(() => parseOptions('front', ['--log-format', 'xml'], {}), ConfigError, 'TSGI_ERR_CONFIG');
  throwsCode(() => parseOptions('front', ['--static-dotfiles', 'yes'], {}), ConfigError, 'TSGI_ERR_CONFIG');
  assert.match(optionsHelp('front'), /--static-dotfiles ignore\|deny\|allow\s/);
});

test('the example config files are valid for their command', () => {
  const file = fileURLToPath(new URL('../../../examples/systemd/front.json', import.meta.url));
  const values = configValues('front', readConfigFile(file), file);
  assert.equal(values.static, [{ prefix: '/static', dir: '/srv/app/public' }]);
  assert.is(values.control, '/run/tsgi/front.ctl');
});

test('--help lists the new options from the table', () => {
  assert.match(optionsHelp('serve'), /--uwsgi-socket/);
  assert.match(optionsHelp('serve'), /--uwsgi-listen/);
  assert.match(optionsHelp('front'), /--trust-proxy/);
  assert.not.match(optionsHelp('front'), /--uwsgi-socket/);
});

test('an embedder\'s config is resolved like the command line: defaults from the table, values checked', () => {
  const listen = parseAddress('127.0.0.1:0');
  const c = resolveOptions('front', { listen });
  for (const spec of OPTIONS) {
    if (!spec.commands.includes('front') || spec.key === 'listen') continue;
    assert.equal((c as Record<string, unknown>)[spec.key], spec.default, `${spec.flag} takes the table's default`);
  }
  assert.is(c.window, DEFAULTS.initialWindow, 'the window\'s default is the protocol\'s, written once');
  assert.is(defaultOf('sendTimeout'), 60);
  assert.is(resolveOptions('front', { listen, maxConnections: 7 }).maxConnections, 7);
  throwsCode(() => resolveOptions('front', { listen, maxConnections: -1 }), ConfigError, 'TSGI_ERR_CONFIG', 'a negative count');
  throwsCode(() => resolveOptions('front', { listen, maxHeaderSize: 10 }), ConfigError, 'TSGI_ERR_CONFIG', 'under the minimum');
  throwsCode(() => resolveOptions('front', { listen, logFormat: 'xml' as 'json' }), ConfigError, 'TSGI_ERR_CONFIG', 'not a choice');
  throwsCode(() => resolveOptions('serve', { window: 1.5e12 }), ConfigError, 'TSGI_ERR_CONFIG', 'over the maximum');
});

test('front() refuses a bad option with the flag\'s message before it binds anything', async () => {
  let err: unknown = null;
  try {
    await front({ listen: parseAddress('127.0.0.1:0'), backends: [], control: undefined, queueSize: -5 });
  } catch (e) {
    err = e;
  }
  assert.instance(err, ConfigError);
  assert.match((err as Error).message, /^--queue-size: expected at least 0, got -5$/);
});

test('short forms and aliases: -w workers, -b and --bind for --listen, -c config, -p port; -w4 and -w=4 too', () => {
  let { values } = parseOptions('serve', ['app.js', '-w', '3', '-b', '127.0.0.1:9000'], {});
  assert.is(values.workers, 3);
  assert.equal(values.listen, { kind: 'tcp', host: '127.0.0.1', port: 9000 });
  ({ values } = parseOptions('serve', ['app.js', '-w4', '--bind=unix:/x.sock'], {}));
  assert.is(values.workers, 4);
  assert.equal(values.listen, { kind: 'unix', path: '/x.sock' });
  assert.is(parseOptions('serve', ['-w=5', 'app.js'], {}).values.workers, 5);
  assert.is(parseOptions('run', ['app.js', '-p', '3000'], {}).values.port, 3000);
  const dir = mkdtempSync(join(tmpdir(), 'tsgi-options-'));
  const path = join(dir, 'front.json');
  writeFileSync(path, '{"listen": "127.0.0.1:0"}');
  const fromFile = parseOptions('front', ['-c', path], {});
  rmSync(dir, { recursive: true });
  assert.is(fromFile.values.config, path);
  assert.equal(fromFile.values.listen, { kind: 'tcp', host: '127.0.0.1', port: 0 });
  throwsCode(() => parseOptions('front', ['-w', '2'], {}), ConfigError, 'TSGI_ERR_CONFIG', '-w is not a front option');
  assert.equal(parseOptions('serve', ['app.js', '-'], {}).positionals, ['app.js', '-'], 'a lone dash stays an argument');
});

test('flags without a value: --check, --reload; true/false from the environment and config files', () => {
  assert.is(parseOptions('serve', ['app.js'], {}).values.check, false);
  assert.is(parseOptions('serve', ['app.js', '--check', '--socket', '/x.sock'], {}).values.check, true);
  assert.equal(parseOptions('serve', ['app.js', '--check', '--socket', '/x.sock'], {}).positionals, ['app.js'], '--check takes no value');
  assert.is(parseOptions('run', ['app.js', '--reload'], {}).values.reload, true);
  assert.is(parseOptions('run', ['app.js'], { TSGI_RELOAD: '1' }).values.reload, true);
  assert.is(parseOptions('run', ['app.js', '--reload=false'], {}).values.reload, false);
  assert.is(configValues('serve', { check: true }, 'f.json').check, true);
  throwsCode(() => parseOptions('run', ['app.js', '--reload=maybe'], {}), ConfigError, 'TSGI_ERR_CONFIG');
});

test('a config file may name the app ("app": "app.js"), as --app or TSGI_APP do', () => {
  assert.is(configValues('serve', { app: 'app.js', socket: '/x.sock' }, 'f.json').appModule, 'app.js');
  assert.is(parseOptions('serve', [], { TSGI_APP: 'other.js' }).values.appModule, 'other.js');
  throwsCode(() => configValues('front', { app: 'app.js' }, 'f.json'), ConfigError, 'TSGI_ERR_CONFIG', 'the front has no app');
});

test('--help: options grouped under titles, each with its metavariable and short form', () => {
  const help = optionsHelp('serve');
  const lines = help.split('\n');
  assert.ok(lines.includes('Processes:') && lines.includes('Limits:'), help);
  assert.ok(help.indexOf('Application and addresses:') < help.indexOf('Processes:'), 'the common options first');
  assert.match(help, /^  -w, --workers N +run a supervisor/m);
  assert.match(help, /^  -b, --listen, --bind HOST:PORT\|unix:PATH$/m);
  assert.match(help, /^  -c, --config FILE +JSON file/m);
  assert.match(help, /^  --check +check the options/m, 'a flag without a value has no metavariable');
  assert.match(help, /^  --max-frame-size SIZE +largest frame/m);
  assert.match(optionsHelp('run'), /^  --reload +restart the app/m);
  for (const command of ['front', 'serve', 'run', 'demo', 'ctl'] as const) {
    const flags = OPTIONS.filter((o) => o.commands.includes(command)).map((o) => o.flag);
    assert.ok(flags.length > 0, command);
    for (const flag of flags) assert.ok(optionsHelp(command).includes(` ${flag}`), `${command} --help lists ${flag}`);
  }
});

test.run();
