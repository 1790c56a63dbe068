// Each error code as the response a client gets: status, reason, headers, body and close, from
// the one function that decides them (errorResponse); and no code that nothing raises.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  STATUS, TsgiError, blamesBackend, errorResponse, rawErrorResponse, reasonPhrase, statusResponse, type TsgiErrorCode,
} from '../../src/protocol/errors.js';

const test = suite('protocol/errors');
const CODES = Object.keys(STATUS) as TsgiErrorCode[];
const SRC = fileURLToPath(new URL('../../../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'generated' ? [] : sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const header = (headers: string[], name: string): string | undefined => {
  const i = headers.findIndex((h, j) => j % 2 === 0 && h === name);
  return i === -1 ? undefined : headers[i + 1];
};

// What a client must see for each code: [status, closes the connection, extra header].
const EXPECTED: Record<TsgiErrorCode, [number, boolean, string?]> = {
  TSGI_ERR_PROTOCOL: [502, false],
  TSGI_ERR_FRAME_TOO_LARGE: [502, false],
  TSGI_ERR_VERSION: [502, false],
  TSGI_ERR_BACKEND_UNAVAILABLE: [502, false],
  TSGI_ERR_BACKEND_LOST: [502, false],
  TSGI_ERR_BACKEND_RESET: [502, false],
  TSGI_ERR_BACKEND_TIMEOUT: [504, false],
  TSGI_ERR_NO_BACKEND: [503, false, 'retry-after'],
  TSGI_ERR_STREAM_REFUSED: [503, false, 'retry-after'],
  TSGI_ERR_APP: [500, false],
  TSGI_ERR_APP_LOAD: [500, false],
  TSGI_ERR_START_RESPONSE: [500, false],
  TSGI_ERR_HEADER: [500, false],
  TSGI_ERR_BODY_LENGTH: [500, false],
  TSGI_ERR_CLIENT_GONE: [499, false],
  TSGI_ERR_CONNECTION_CUT: [444, true],
  TSGI_ERR_BODY_TOO_LARGE: [413, true],
  TSGI_ERR_BAD_REQUEST: [400, true],
  TSGI_ERR_REQUEST_TIMEOUT: [408, true],
  TSGI_ERR_HEADERS_TOO_LARGE: [431, true],
  TSGI_ERR_EXPECTATION_FAILED: [417, true],
  TSGI_ERR_OVERLOADED: [503, false, 'retry-after'],
  TSGI_ERR_TOO_MANY_TUNNELS: [503, false, 'retry-after'],
  TSGI_ERR_CONFIG: [500, false],
  TSGI_ERR_STATIC_BAD_PATH: [400, true],
  TSGI_ERR_STATIC_FORBIDDEN: [403, false],
  TSGI_ERR_STATIC_NOT_FOUND: [404, false],
  TSGI_ERR_STATIC_METHOD: [405, false, 'allow'],
  TSGI_ERR_NOT_IMPLEMENTED: [501, false],
  TSGI_ERR_WEBSOCKET: [400, false],
};

test('every code becomes its status, reason, body, headers and close', () => {
  assert.ok(CODES.length > 20, 'the table has the codes');
  assert.equal(CODES.slice().sort(), (Object.keys(EXPECTED) as TsgiErrorCode[]).sort(), 'every code has an expectation here');
  for (const code of CODES) {
    const [status, close, extra] = EXPECTED[code];
    const r = errorResponse(new TsgiError(code, 'why'));
    assert.is(r.status, status, code);
    assert.is(r.reason, reasonPhrase(status), `${code}: the one reason table`);
    assert.ok(r.reason.length > 0, `${code}: a reason`);
    assert.is(r.body, `${status} ${r.reason}\n`, `${code}: the body names the same reason as the status line`);
    assert.is(header(r.headers, 'content-length'), String(r.body.length));
    assert.is(header(r.headers, 'content-type'), 'text/plain; charset=utf-8');
    assert.is(r.close, close, `${code}: close`);
    assert.is(header(r.headers, 'connection'), close ? 'close' : undefined);
    assert.is(header(r.headers, 'retry-after') !== undefined, extra === 'retry-after', `${code}: retry-after`);
    assert.is(header(r.headers, 'allow') !== undefined, extra === 'allow', `${code}: allow`);
    assert.not.match(r.body, /why/, 'the message stays out of the body');
  }
});

test('413 says Content Too Large in the status line and the body alike (RFC 9110 15.5.14)', () => {
  const raw = rawErrorResponse(new TsgiError('TSGI_ERR_BODY_TOO_LARGE', ''));
  assert.match(raw, /^HTTP\/1\.1 413 Content Too Large\r\n/);
  assert.match(raw, /\r\n\r\n413 Content Too Large\n$/);
  assert.is(raw.match(/connection: close/g)?.length, 1, 'one Connection line');
});

test('an unread body closes the connection, whatever the error; anything not a TsgiError is a 500', () => {
  const r = errorResponse(new TsgiError('TSGI_ERR_BACKEND_LOST', ''), { bodyUnread: true });
  assert.is(r.status, 502);
  assert.ok(r.close);
  assert.is(header(r.headers, 'connection'), 'close');
  assert.is(errorResponse(new Error('x')).status, 500);
  assert.is(statusResponse(416).close, false);
  assert.match(rawErrorResponse(new TsgiError('TSGI_ERR_STATIC_NOT_FOUND', '')), /\r\nconnection: close\r\n/, 'a raw answer always closes');
});

test('backend faults are the codes a backend causes', () => {
  const blamed = CODES.filter((c) => blamesBackend(new TsgiError(c, '')));
  assert.equal(blamed.sort(), ['TSGI_ERR_BACKEND_LOST', 'TSGI_ERR_BACKEND_RESET', 'TSGI_ERR_BACKEND_TIMEOUT',
    'TSGI_ERR_BACKEND_UNAVAILABLE', 'TSGI_ERR_FRAME_TOO_LARGE', 'TSGI_ERR_PROTOCOL', 'TSGI_ERR_VERSION']);
  assert.not.ok(blamesBackend(new Error('x')));
});

test('every code is raised somewhere (none is dead)', () => {
  const files = sources(SRC).filter((f) => !f.endsWith(join('protocol', 'errors.ts')));
  assert.ok(files.length > 20, 'the sources were found');
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  // ConfigError and ProtocolError raise their codes through their classes.
  const raisedBy: Partial<Record<TsgiErrorCode, RegExp>> = { TSGI_ERR_CONFIG: /new ConfigError\(/, TSGI_ERR_PROTOCOL: /new ProtocolError\(/ };
  for (const code of CODES) {
    assert.ok(text.includes(`'${code}'`) || raisedBy[code]?.test(text) === true, `${code} is raised somewhere`);
  }
});

test.run();
