// The access log's line formats, without processes: Apache escaping that no header value can
// break out of, JSON lines that parse back to the values, and the CLF timestamp.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { clfTime, escapeField, formatLine } from '../../src/frontend/observe/access-log.js';
import type { HttpRequest, HttpResponse } from '../../src/frontend/http/server.js';
import type { Observed } from '../../src/frontend/observe/observe.js';

const test = suite('frontend/access-log');

function observed(agent: string, target = '/x', headersSent = true): Observed {
  return {
    req: { method: 'GET', url: target, httpVersion: '1.1', headers: { 'user-agent': agent, 'x-request-id': 'r1' } } as unknown as HttpRequest,
    res: { headersSent, statusCode: 201 } as unknown as HttpResponse,
    started: 0, backendName: 'unix:/b.sock', bytesIn: 3, bytesOut: 0, remote: '10.0.0.1',
  };
}

const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)) });

test('escapeField: no quote, backslash or control byte survives, and the escaping undoes', () => {
  fc.assert(fc.property(latin1, (s) => {
    const e = escapeField(s);
    assert.not.match(e, /[\x00-\x1f\x7f-\xff]/);
    assert.not.match(e.replace(/\\\\|\\"/g, ''), /"/);
    const back = e.replace(/\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)/g, (_, x: string) => (x.length > 1 ? String.fromCharCode(parseInt(x.slice(1), 16)) : x));
    assert.is(back, s);
  }));
});

test('combined: one line, the agent in its own quoted field', () => {
  fc.assert(fc.property(latin1, (agent) => {
    const line = formatLine('combined', observed(agent), Date.UTC(2026, 0, 2, 3, 4, 5, 500), 12.3456);
    assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1);
    const m = /^10\.0\.0\.1 - - \[02\/Jan\/2026:03:04:05 \+0000\] "GET \/x HTTP\/1\.1" 201 - "-" "((?:[^"\\]|\\.)*)" 0\.012 unix:\/b\.sock\n$/.exec(line);
    assert.ok(m !== null, line);
  }));
});

test('json: each line parses back to the values, whatever the header holds', () => {
  fc.assert(fc.property(fc.string(), latin1, (target, agent) => {
    const line = formatLine('json', observed(agent, target), Date.UTC(2026, 0, 2, 3, 4, 5, 6) + 2.5, 2.5);
    assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1);
    assert.equal(JSON.parse(line), {
      time: '2026-01-02T03:04:05.006Z', remote: '10.0.0.1', method: 'GET', target, protocol: 'HTTP/1.1', status: 201,
      bytes_sent: 0, bytes_received: 3, duration_ms: 2.5, backend: 'unix:/b.sock', user_agent: agent, referer: null,
      request_id: 'r1',
    });
  }));
});

test('a response whose head never went out is logged as 499', () => {
  assert.match(formatLine('common', observed('a', '/x', false), Date.now(), 1), /" 499 - /);
});

test('clfTime: day/Mon/year:hh:mm:ss +0000, in UTC', () => {
  assert.is(clfTime(Date.UTC(2026, 10, 21, 7, 8, 9, 999)), '[21/Nov/2026:07:08:09 +0000]');
  assert.is(clfTime(Date.UTC(2027, 1, 3, 23, 59, 0)), '[03/Feb/2027:23:59:00 +0000]');
});

test('a target or header with LF, CR or ESC cannot start a line of its own (\\xNN, as nginx writes it)', () => {
  const forged = '/x HTTP/1.1" 200 5\n10.6.6.6 - - [01/Jan/2026:00:00:00 +0000] "GET /forged\r\x1b[2K';
  for (const format of ['combined', 'common', 'json'] as const) {
    const line = formatLine(format, observed(`agent\n${forged}`, forged), 0, 1);
    assert.is(line.indexOf('\n'), line.length - 1, `one line (${format}): ${line}`);
    assert.not.match(line, /[\r\x1b]/);
  }
  assert.match(formatLine('common', observed('a', forged), 0, 1), /"GET \/x HTTP\/1\.1\\" 200 5\\x0a10\.6\.6\.6 .*\\x0d\\x1b\[2K HTTP\/1\.1"/);
});

test.run();
