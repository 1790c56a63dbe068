// Large request bodies at the front, end to end over a raw keep-alive connection: a body of
// LARGE_BODY or more is read in large reads (http/body-reads.ts), and the same connection then
// goes on with small requests, pipelined ones and another large body, every byte echoed intact.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fixture } from '../helpers/procs.js';
import { newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { parseResponse, rawUntilClose } from '../helpers/raw-http.js';
import { LARGE_BODY } from '../../src/frontend/http/body-reads.js';

const H = 'Host: tsgi.test\r\n';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * seed + (i >>> 11)) & 0xff;
  return b;
}

const s = suite<Ctx>('e2e/large-bodies', newCtx());
setUp(s, (ctx) => startPair(ctx, fixture('echo.js')));

s('a large body, then small and pipelined requests, then another large body, on one connection: all echoed intact, in order', async (ctx) => {
  const big1 = pattern(3 * 1024 * 1024 + 17, 7);
  const big2 = pattern(LARGE_BODY + 4096, 13);
  assert.ok(big2.length >= LARGE_BODY);
  const raw = await rawUntilClose(ctx.front!.port, [
    Buffer.from(`POST /big1 HTTP/1.1\r\n${H}Content-Length: ${big1.length}\r\n\r\n`, 'latin1'),
    big1,
    `POST /small HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`
    + `POST /pipelined HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`,
    Buffer.from(`POST /big2 HTTP/1.1\r\n${H}Content-Length: ${big2.length}\r\n\r\n`, 'latin1'),
    big2,
    `POST /last HTTP/1.1\r\n${H}Content-Length: 4\r\nConnection: close\r\n\r\nlast`,
  ], { timeoutMs: 20_000 });
  const got: { status: number; body: string }[] = [];
  let rest = raw.text;
  while (rest.length > 0) {
    const r = parseResponse(rest);
    got.push({ status: r.status, body: r.body });
    rest = r.rest;
  }
  assert.is(got.length, 5, 'five responses');
  assert.equal(got.map((r) => r.status), [200, 200, 200, 200, 200]);
  assert.ok(got[0]!.body === big1.toString('latin1'), 'the first large body came back intact');
  assert.is(got[1]!.body, 'hello');
  assert.is(got[2]!.body, 'abc');
  assert.ok(got[3]!.body === big2.toString('latin1'), 'the second large body came back intact');
  assert.is(got[4]!.body, 'last');
});

s.run();
