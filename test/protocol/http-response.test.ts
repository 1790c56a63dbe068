// The raw HTTP/1.x response reader (what a uwsgi server writes back) against a corpus fed whole,
// byte by byte and in seeded random splits: the head, the body bytes and the end must come out
// the same every way, and malformed responses must be refused.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ProtocolError } from '../../src/protocol/errors.js';
import { HttpResponseParser, type ParsedResponseHead } from '../../src/protocol/http-response.js';
import { randomSplit } from '../helpers/split.js';

const test = suite('protocol/http-response');

interface Outcome {
  heads: ParsedResponseHead[];
  body: string;
  ended: boolean;
  error: ProtocolError | null;
}

function run(chunks: Buffer[], eof: boolean, headRequest = false): Outcome {
  const out: Outcome = { heads: [], body: '', ended: false, error: null };
  const parser = new HttpResponseParser({
    onHead: (h) => out.heads.push(h),
    onBody: (c) => { out.body += c.toString('latin1'); },
    onEnd: () => {
      assert.not.ok(out.ended, 'onEnd once');
      out.ended = true;
    },
  }, { headRequest, maxHeadSize: 1024 });
  try {
    for (const c of chunks) parser.push(c);
    if (eof) parser.finish();
  } catch (err) {
    assert.instance(err, ProtocolError);
    out.error = err as ProtocolError;
  }
  return out;
}

interface Case {
  name: string;
  text: string;
  /** Whether the connection closes after the bytes (finish() is called). */
  eof: boolean;
  headRequest?: boolean;
  status?: number;
  reason?: string;
  headers?: string[];
  framing?: ParsedResponseHead['framing'];
  body?: string;
  ended?: boolean;
  error?: RegExp;
}

const cases: Case[] = [
  {
    name: 'Content-Length', eof: false, text: 'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<h1>Hello, web</h1>IGNORED',
    status: 200, reason: 'OK', headers: ['Content-Type', 'text/html', 'Content-Length', '19'], framing: 'length', body: '<h1>Hello, web</h1>', ended: true,
  },
  {
    name: 'chunked, with an extension and a trailer', eof: false,
    text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n',
    status: 200, framing: 'chunked', body: 'hello 0123456789', ended: true,
  },
  {
    name: 'until the close (uWSGI streaming a generator)', eof: true, text: 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline 1\nline 2\n',
    status: 200, framing: 'close', body: 'line 1\nline 2\n', ended: true,
  },
  { name: 'a custom reason phrase (the seed\'s "200 0K")', eof: true, text: 'HTTP/1.1 200 0K\r\n\r\nx', status: 200, reason: '0K', body: 'x', ended: true },
  { name: 'no reason phrase at all', eof: true, text: 'HTTP/1.1 204\r\n\r\n', status: 204, reason: '', framing: 'none', body: '', ended: true },
  { name: 'a HEAD response keeps its Content-Length and has no body', eof: false, headRequest: true, text: 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n', framing: 'none', body: '', ended: true },
  { name: '304 has no body', eof: false, text: 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', status: 304, framing: 'none', ended: true },
  { name: 'Content-Length 0', eof: false, text: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', framing: 'none', body: '', ended: true },
  { name: 'an interim 100 Continue is skipped', eof: false, text: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok', status: 201, body: 'ok', ended: true },
  { name: 'bare LF line ends', eof: false, text: 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok', status: 200, body: 'ok', ended: true },
  { name: 'repeated identical Content-Length', eof: false, text: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', body: 'ok', ended: true },
  { name: 'header values are trimmed, names keep their case', eof: false, text: 'HTTP/1.1 200 OK\r\nX-A:   spaced  \r\nContent-Length: 0\r\n\r\n', headers: ['X-A', 'spaced', 'Content-Length', '0'] },
  { name: 'a body cut short of its Content-Length', eof: true, text: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', body: 'short', error: /before the response body was complete/ },
  { name: 'a close before any response', eof: true, text: '', error: /before a complete response head/ },
  { name: 'a chunked body cut in the middle', eof: true, text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', body: 'hel', error: /before the response body was complete/ },
  { name: 'not HTTP', eof: false, text: 'SPDY/3 200 OK\r\n\r\n', error: /malformed status line/ },
  { name: 'regression: a control character in the reason phrase (the front could not write it on)', eof: false, text: 'HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n', error: /malformed status line/ },
  { name: 'a header line without a colon', eof: false, text: 'HTTP/1.1 200 OK\r\nNoColon\r\n\r\n', error: /malformed response header/ },
  { name: 'obsolete line folding', eof: false, text: 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n', error: /folding/ },
  { name: 'a control character in a value', eof: false, text: 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n\r\n', error: /control character/ },
  { name: 'conflicting Content-Length', eof: false, text: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok', error: /invalid Content-Length/ },
  { name: 'a negative Content-Length', eof: false, text: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', error: /invalid Content-Length/ },
  { name: 'a bad chunk size', eof: false, text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', error: /malformed chunk size/ },
  { name: 'chunk data without its CRLF', eof: false, text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n', body: 'ok', error: /not followed by CRLF/ },
  { name: '101 Switching Protocols', eof: false, text: 'HTTP/1.1 101 Switching Protocols\r\n\r\n', error: /switch protocols/ },
  { name: 'a head over the limit', eof: false, text: `HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(2000)}\r\n\r\n`, error: /exceeds 1024 bytes/ },
];

function check(c: Case, out: Outcome, how: string): void {
  const what = `${c.name} (${how})`;
  if (c.error !== undefined) {
    assert.ok(out.error !== null, `${what}: refused`);
    assert.match(out.error!.message, c.error, `${what}: the reason`);
  } else {
    assert.is(out.error, null, `${what}: ${out.error?.message}`);
  }
  if (c.body !== undefined) assert.is(out.body, c.body, `${what}: body`);
  if (c.ended !== undefined) assert.is(out.ended, c.ended, `${what}: ended`);
  if (c.status !== undefined || c.headers !== undefined || c.framing !== undefined || c.reason !== undefined) {
    assert.is(out.heads.length, 1, `${what}: one final head`);
    const h = out.heads[0]!;
    if (c.status !== undefined) assert.is(h.status, c.status, `${what}: status`);
    if (c.reason !== undefined) assert.is(h.reason, c.reason, `${what}: reason`);
    if (c.headers !== undefined) assert.equal(h.headers, c.headers, `${what}: headers`);
    if (c.framing !== undefined) assert.is(h.framing, c.framing, `${what}: framing`);
  }
}

for (const c of cases) {
  test(`${c.name}: whole, byte by byte, random splits`, () => {
    const bytes = Buffer.from(c.text, 'latin1');
    check(c, run([bytes], c.eof, c.headRequest), 'whole');
    check(c, run([...bytes].map((b) => Buffer.from([b])), c.eof, c.headRequest), 'byte by byte');
    for (const seed of [1, 2, 3]) check(c, run(randomSplit(bytes, seed * 104729, 32), c.eof, c.headRequest), `split ${seed}`);
  });
}

test('with upgrade: a 101 is the final head, and every byte after it is the tunnel\'s, split anywhere', () => {
  const text = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi\r\n\r\nHTTP/1.1 200 OK\r\n\r\n';
  const bytes = Buffer.from(text, 'latin1');
  for (let cut = 1; cut < bytes.length; cut++) {
    const heads: ParsedResponseHead[] = [];
    let body = '';
    const parser = new HttpResponseParser({
      onHead: (h) => heads.push(h), onBody: (c) => { body += c.toString('latin1'); }, onEnd: () => assert.unreachable('no end in a tunnel'),
    }, { upgrade: true });
    parser.push(bytes.subarray(0, cut));
    parser.push(bytes.subarray(cut));
    assert.is(heads.length, 1, `cut at ${cut}`);
    assert.equal([heads[0]!.status, heads[0]!.framing, heads[0]!.headers], [101, 'tunnel', ['Upgrade', 'websocket', 'Connection', 'Upgrade']]);
    assert.is(body, '\x81\x02hi\r\n\r\nHTTP/1.1 200 OK\r\n\r\n', `cut at ${cut}: later bytes untouched, even ones that look like HTTP`);
  }
  // A refusal is an ordinary response.
  const out: string[] = [];
  const parser = new HttpResponseParser({ onHead: (h) => out.push(`${h.status} ${h.framing}`), onBody: (c) => out.push(c.toString()), onEnd: () => out.push('end') }, { upgrade: true });
  parser.push(Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad'));
  assert.equal(out, ['400 length', 'bad', 'end']);
});

test('body chunks are views of the input, not copies', () => {
  const input = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody');
  const seen: Buffer[] = [];
  new HttpResponseParser({ onHead: () => {}, onBody: (c) => seen.push(c), onEnd: () => {} }).push(input);
  assert.is(seen.length, 1);
  assert.is(seen[0]!.buffer, input.buffer);
});

test.run();
