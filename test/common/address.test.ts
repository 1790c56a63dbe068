// The backend address forms of a front that reaches beyond one machine: tls: (mutual TLS),
// dns:NAME:PORT and srv:NAME (resolved by the front), alone and combined; each formats back
// as written, and is refused where a program listens.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatAddress, parseAddress } from '../../src/common/address.js';
import { parseOptions } from '../../src/common/options.js';
import { ConfigError } from '../../src/protocol/errors.js';

const test = suite('address');

test('tls:, dns:, srv: and their combinations parse and format back as written', () => {
  const cases: [string, object][] = [
    ['tls:10.0.0.2:9000', { kind: 'tcp', host: '10.0.0.2', port: 9000, tls: true }],
    ['tls:[::1]:9000', { kind: 'tcp', host: '::1', port: 9000, tls: true }],
    ['dns:app.default.svc.cluster.local:9000', { kind: 'tcp', host: 'app.default.svc.cluster.local', port: 9000, discover: 'dns' }],
    ['srv:_tsgi._tcp.app.default.svc.cluster.local', { kind: 'tcp', host: '_tsgi._tcp.app.default.svc.cluster.local', port: 0, discover: 'srv' }],
    ['tls:dns:app.test:9000', { kind: 'tcp', host: 'app.test', port: 9000, discover: 'dns', tls: true }],
    ['tls:srv:_tsgi._tcp.app.test', { kind: 'tcp', host: '_tsgi._tcp.app.test', port: 0, discover: 'srv', tls: true }],
  ];
  assert.ok(cases.length > 0);
  for (const [text, expected] of cases) {
    const a = parseAddress(text, '--backend', true);
    assert.equal(a, expected, text);
    assert.is(formatAddress(a), text);
  }
  assert.is(formatAddress(parseAddress('tls:tcp:127.0.0.1:9', 'x', true)), 'tls:127.0.0.1:9');
});

test('malformed or misplaced forms are refused with what to write', () => {
  const refused: [string, RegExp][] = [
    ['tls:unix:/run/a.sock', /tls: takes HOST:PORT, dns:NAME:PORT or srv:NAME/],
    ['tls:uwsgi:127.0.0.1:9', /tls: takes HOST:PORT/],
    ['dns:app.test', /dns: takes NAME:PORT/],
    ['dns:app.test:0', /dns: takes NAME:PORT/],
    ['srv:app.test', /srv: takes an SRV name such as srv:_tsgi\._tcp\./],
  ];
  for (const [text, message] of refused) {
    assert.throws(() => parseAddress(text, '--backend', true), (err: Error) => err instanceof ConfigError && message.test(err.message), text);
  }
  // Where a program listens, none of them means anything.
  for (const text of ['tls:127.0.0.1:9', 'dns:app.test:9', 'srv:_a._tcp.b']) {
    assert.throws(() => parseOptions('serve', ['--listen', text]), (err: Error) => err instanceof ConfigError && /--backend/.test(err.message), text);
  }
});

test('--dns-server repeats and splits on commas', () => {
  const { values } = parseOptions('front', ['--dns-server', '10.96.0.10', '--dns-server', '127.0.0.1:5353,[::1]:53'], {});
  assert.equal(values.dnsServers, ['10.96.0.10', '127.0.0.1:5353', '[::1]:53']);
  assert.equal(parseOptions('front', [], {}).values.dnsServers, []);
});

test.run();
