// --trust-proxy: which peers are trusted (loopback, unix, CIDRs v4/v6), and what the forwarded
// headers of a trusted peer change in the request head — and that nothing changes otherwise.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ProxyTrust, parseTrustProxy } from '../../src/common/trust-proxy.js';
import { applyForwarded, readForwarded } from '../../src/frontend/http/forwarded.js';
import type { RequestHead } from '../../src/protocol/connection.js';
import { ConfigError } from '../../src/protocol/errors.js';
import { throwsCode } from '../helpers/assert.js';

const test = suite('frontend/forwarded');

const trust = (text: string) => new ProxyTrust(parseTrustProxy(text));

test('parsing: keywords, addresses and CIDRs, normalised; anything else is a start-up error', () => {
  assert.equal(parseTrustProxy('loopback, UNIX,10.0.0.0/8,192.0.2.7,fd00::/8,::1'),
    ['loopback', 'unix', '10.0.0.0/8', '192.0.2.7/32', 'fd00::/8', '::1/128']);
  for (const bad of ['localhost', '10.0.0.0/33', '10.0.0/8', 'fd00::/129', '10.0.0.0/x', '1.2.3.4/', '300.1.1.1']) {
    throwsCode(() => parseTrustProxy(bad), ConfigError, 'TSGI_ERR_CONFIG', bad);
  }
});

test('loopback is 127.0.0.0/8 and ::1 (also IPv4-mapped), nothing else', () => {
  const t = trust('loopback');
  for (const a of ['127.0.0.1', '127.255.0.9', '::1', '::ffff:127.0.0.1']) assert.ok(t.trusts(a, false), a);
  for (const a of ['128.0.0.1', '10.0.0.1', '::2', '', undefined]) assert.not.ok(t.trusts(a, false), String(a));
  assert.not.ok(t.trusts(undefined, true), 'a Unix-socket peer is not loopback');
});

test('unix trusts Unix-socket peers only', () => {
  const t = trust('unix');
  assert.ok(t.trusts(undefined, true));
  assert.not.ok(t.trusts('127.0.0.1', false));
});

test('CIDRs, v4 and v6', () => {
  const t = trust('10.1.0.0/16,2001:db8::/32');
  assert.ok(t.trusts('10.1.200.3', false));
  assert.not.ok(t.trusts('10.2.0.1', false));
  assert.ok(t.trusts('2001:db8:ffff::1', false));
  assert.not.ok(t.trusts('2001:db9::1', false));
  assert.not.ok(t.trusts('not an address', false));
});

test('nothing trusted by default', () => {
  const t = new ProxyTrust([]);
  assert.ok(t.empty);
  assert.not.ok(t.trusts('127.0.0.1', false));
  assert.not.ok(t.trusts(undefined, true));
});

test('X-Forwarded-For is read from the right, skipping trusted proxies', () => {
  const t = trust('10.0.0.0/8');
  assert.equal(readForwarded(['X-Forwarded-For', '203.0.113.9, 10.0.0.2'], t), { remoteAddr: '203.0.113.9' });
  assert.equal(readForwarded(['X-Forwarded-For', '6.6.6.6, 203.0.113.9'], t), { remoteAddr: '203.0.113.9' },
    'a spoofed entry left of an untrusted hop is ignored');
  assert.equal(readForwarded(['X-Forwarded-For', '203.0.113.9', 'x-forwarded-for', '10.0.0.3'], t), { remoteAddr: '203.0.113.9' },
    'repeated headers are one list');
  assert.equal(readForwarded(['X-Forwarded-For', '10.0.0.5, 10.0.0.2'], t), { remoteAddr: '10.0.0.5' }, 'all trusted: the leftmost');
  assert.equal(readForwarded(['X-Forwarded-For', '[2001:db8::1]:443'], t), { remoteAddr: '2001:db8::1' });
  assert.equal(readForwarded(['X-Forwarded-For', '198.51.100.1:5000'], t), { remoteAddr: '198.51.100.1' });
  assert.equal(readForwarded(['X-Forwarded-For', 'garbage'], t), {}, 'nothing usable');
});

test('X-Real-IP when there is no X-Forwarded-For; X-Forwarded-Proto for the scheme', () => {
  const t = trust('unix');
  assert.equal(readForwarded(['X-Real-IP', '198.51.100.7', 'X-Forwarded-Proto', 'HTTPS'], t), { remoteAddr: '198.51.100.7', scheme: 'https' });
  assert.equal(readForwarded(['X-Forwarded-Proto', 'gopher'], t), {}, 'only http and https');
  assert.equal(readForwarded(['X-Real-IP', 'nope'], t), {});
});

function head(): RequestHead {
  return { target: '/', remoteAddr: '127.0.0.1', remotePort: 5555, serverAddr: '127.0.0.1', serverPort: 80 };
}
const SPOOF = ['X-Forwarded-For', '6.6.6.6', 'X-Real-IP', '6.6.6.7', 'X-Forwarded-Proto', 'https'];

test('a trusted peer: the head takes the client address and scheme', () => {
  const h = head();
  applyForwarded(h, SPOOF, trust('loopback'), false);
  assert.is(h.remoteAddr, '6.6.6.6');
  assert.is(h.remotePort, 0, 'the client port is unknown');
  assert.is(h.scheme, 'https');
  const u: RequestHead = { target: '/', remoteAddr: '' };
  applyForwarded(u, SPOOF, trust('unix'), true);
  assert.is(u.remoteAddr, '6.6.6.6');
});

test('an untrusted peer: the head is left exactly as it was', () => {
  for (const [t, unix] of [[new ProxyTrust([]), false], [trust('10.0.0.0/8'), false], [trust('unix'), false], [trust('loopback'), true]] as const) {
    const h = head();
    if (unix) h.remoteAddr = '';
    const before = JSON.stringify(h);
    applyForwarded(h, SPOOF, t, unix);
    assert.is(JSON.stringify(h), before, `trust ${t.entries.join(',') || 'nothing'}, unix peer ${unix}`);
  }
});

test.run();
