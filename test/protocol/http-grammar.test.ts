// The chunked-coding line reader both parsers use: one rule each, and the two directions'
// deliberate differences (strict for a client's request, lenient for a backend's response).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CONTENT_LENGTH, ChunkedLines, LINE_BARE_LF, LINE_INCOMPLETE, LINE_TOO_LONG, MAX_CHUNK_SIZE_DIGITS, isContentLength,
} from '../../src/protocol/http-grammar.js';

const read = (lines: ChunkedLines, text: string): number => lines.next(Buffer.from(text, 'latin1'), 0);

/** The size, and whether the extensions pass, of one chunk-size line, or the LINE_* code. */
function sizeLine(strict: boolean, text: string): { size: number; ext: boolean } | number {
  const lines = new ChunkedLines(strict, 4096);
  const next = read(lines, text);
  if (next < 0) return next;
  return { size: lines.chunkSize(), ext: lines.extensionsValid() };
}

test('a line split across reads is held, then given whole', () => {
  const lines = new ChunkedLines(true, 4096);
  assert.is(read(lines, '1'), LINE_INCOMPLETE);
  assert.is(read(lines, 'a;n'), LINE_INCOMPLETE);
  const bytes = Buffer.from('ame=v\r\nrest', 'latin1');
  assert.is(lines.next(bytes, 0), 7, 'the offset after the CRLF');
  assert.is(lines.line.toString('latin1', 0, lines.end), '1a;name=v');
  assert.is(lines.chunkSize(), 0x1a);
  assert.is(lines.extensionBytes(), 7);
  assert.ok(lines.extensionsValid());
});

test('both directions read the same sizes', () => {
  for (const strict of [true, false]) {
    assert.equal(sizeLine(strict, '0\r\n'), { size: 0, ext: true });
    assert.equal(sizeLine(strict, 'fFfF\r\n'), { size: 0xffff, ext: true });
    assert.equal(sizeLine(strict, `${'0'.repeat(MAX_CHUNK_SIZE_DIGITS - 1)}1\r\n`), { size: 1, ext: true });
    assert.is((sizeLine(strict, `${'0'.repeat(MAX_CHUNK_SIZE_DIGITS)}1\r\n`) as { size: number }).size, -1, 'too many digits');
    assert.is((sizeLine(strict, 'x\r\n') as { size: number }).size, -1, 'no digit');
    assert.is((sizeLine(strict, '-1\r\n') as { size: number }).size, -1, 'a sign');
  }
});

test('strict (requests): CRLF only, extensions to the grammar; lenient (responses): bare LF and anything after ";"', () => {
  assert.is(sizeLine(true, '5\n'), LINE_BARE_LF);
  assert.equal(sizeLine(false, '5\n'), { size: 5, ext: true });
  for (const odd of ['5;\r\n', '5; =x\r\n', '5;a=\r\n', '5 \r\n', '5;a=b c\r\n']) {
    assert.equal(sizeLine(true, odd), { size: 5, ext: false }, `strict refuses ${JSON.stringify(odd)}`);
  }
  for (const odd of ['5;\r\n', '5; =x\r\n', '5 \r\n', '5 ; anything at all\r\n']) {
    assert.equal(sizeLine(false, odd), { size: 5, ext: true }, `lenient takes ${JSON.stringify(odd)}`);
  }
  assert.equal(sizeLine(false, '5x\r\n'), { size: 5, ext: false }, 'a size followed by junk is refused either way');
  assert.equal(sizeLine(true, '5 ; a = "q\\"s" ;b\r\n'), { size: 5, ext: true }, 'BWS, a quoted-string, two extensions');
});

test('a line over the limit is refused, whether or not its end has come', () => {
  const lines = new ChunkedLines(true, 16);
  assert.is(read(lines, '1'.repeat(17)), LINE_TOO_LONG);
  assert.is(new ChunkedLines(false, 16).next(Buffer.from(`${'1'.repeat(20)}\r\n`), 0), LINE_TOO_LONG);
});

test('clear() lets go of the last line: no view of a read is kept between requests', () => {
  const lines = new ChunkedLines(true, 4096);
  const read = Buffer.from(`0\r\n\r\n${'x'.repeat(1000)}`, 'latin1');
  assert.is(lines.next(read, 0), 3);
  assert.is(lines.line.buffer, read.buffer, 'the line is a view of the read, not a copy');
  lines.clear();
  assert.is(lines.end, 0);
  assert.is(lines.line.length, 0);
  assert.is.not(lines.line.buffer, read.buffer);
});

test('isContentLength takes what CONTENT_LENGTH does: one to fifteen digits, nothing else', () => {
  const values = ['0', '19', '007', '123456789012345', '1234567890123456', '', ' 1', '1 ', '+1', '-1', '1,1', '1.0', '١', '0x1', '1e3', '\t5'];
  assert.ok(values.length > 10);
  for (const v of values) assert.is(isContentLength(v), CONTENT_LENGTH.test(v), JSON.stringify(v));
  assert.ok(isContentLength('19') && !isContentLength('1234567890123456'));
});

test.run();
