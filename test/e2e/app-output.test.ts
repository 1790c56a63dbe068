// An application that breaks the gateway rules (test/fixtures/bad-output.js), through a real
// front and backend, read as RAW bytes off a socket: each bad response must be a well-formed
// 500 (or a response cut at a clean point), never a header injected, never a second status
// line, never bytes a keep-alive client would read as the next response; and the app must get
// an error it can read (caught and recorded, or named in the backend's log).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpResponseParser } from '../../src/protocol/http-response.js';
import { call, newCtx, setUp, startPair, type Ctx } from '../helpers/e2e.js';
import { fixture } from '../helpers/procs.js';
import { getRequest, rawUntilClose } from '../helpers/raw-http.js';

const ERROR_500 = '500 Internal Server Error\n';

interface Parsed {
  status: number;
  headers: string[];
  body: string;
  complete: boolean;
}

/** Splits raw bytes into responses with the strict parser; a malformed one fails the test. */
function responses(bytes: Buffer): Parsed[] {
  const out: Parsed[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const r: Parsed = { status: 0, headers: [], body: '', complete: false };
    const parser = new HttpResponseParser({
      onHead: (h) => { r.status = h.status; r.headers = h.headers; },
      onBody: (c) => { r.body += c.toString('latin1'); },
      onEnd: () => { r.complete = true; },
    });
    try {
      while (pos < bytes.length && !r.complete) parser.push(bytes.subarray(pos, ++pos));
    } catch (err) {
      assert.unreachable(`malformed HTTP from the front (${(err as Error).message}):\n${bytes.toString('latin1')}`);
    }
    out.push(r);
  }
  return out;
}

/** GET `path` then GET /next on one keep-alive connection (the second asks to close). */
async function pipelined(port: number, path: string): Promise<{ text: string; list: Parsed[] }> {
  const { bytes } = await rawUntilClose(port, getRequest(path, { host: 't', close: false }) + getRequest('/next', { host: 't' }));
  const text = bytes.toString('latin1');
  assert.not.match(text, /Injected|forged|never sent/i, `nothing of the refused head or body reaches the client:\n${text}`);
  return { text, list: responses(bytes) };
}

/** A complete 500 from the gateway, then the next request answered on the same connection. */
function assert500ThenNext(list: Parsed[], text: string, body = ERROR_500): void {
  assert.is(list.length, 2, `two responses:\n${text}`);
  assert.ok(list[0]!.complete, text);
  assert.is(list[0]!.status, 500, text);
  assert.is(list[0]!.body, body);
  assert.ok(list[1]!.complete && list[1]!.status === 200 && list[1]!.body === 'ok /next\n', text);
}

/**
 * The response was cut after its head: the connection closed with nothing (the head had not
 * left the front yet) or with one incomplete response, and nothing after it.
 */
function assertCut(list: Parsed[], text: string, prefix: string): void {
  assert.ok(list.length <= 1, `one response at most, never a second one after a cut:\n${text}`);
  if (list.length === 0) return;
  assert.not.ok(list[0]!.complete, `cut, not complete:\n${text}`);
  assert.is(list[0]!.status, 200);
  assert.ok(prefix.startsWith(list[0]!.body), `the body is what the app sent before the error:\n${text}`);
}

const HEADS: [path: string, code: string][] = [
  ['/status-crlf', 'TSGI_ERR_START_RESPONSE'], ['/status-lf', 'TSGI_ERR_START_RESPONSE'], ['/status-nul', 'TSGI_ERR_START_RESPONSE'],
  ['/status-control', 'TSGI_ERR_START_RESPONSE'], ['/status-unicode', 'TSGI_ERR_START_RESPONSE'],
  ['/status-garbage', 'TSGI_ERR_START_RESPONSE'], ['/status-informational', 'TSGI_ERR_START_RESPONSE'],
  ['/name-crlf', 'TSGI_ERR_HEADER'], ['/name-space', 'TSGI_ERR_HEADER'], ['/name-nul', 'TSGI_ERR_HEADER'],
  ['/value-crlf', 'TSGI_ERR_HEADER'], ['/value-lf', 'TSGI_ERR_HEADER'], ['/value-nul', 'TSGI_ERR_HEADER'],
  ['/value-unicode', 'TSGI_ERR_HEADER'], ['/hop-connection', 'TSGI_ERR_HEADER'], ['/hop-transfer-encoding', 'TSGI_ERR_HEADER'],
  ['/hop-keep-alive', 'TSGI_ERR_HEADER'], ['/hop-upgrade', 'TSGI_ERR_HEADER'], ['/length-garbage', 'TSGI_ERR_HEADER'],
];

const test = suite<Ctx>('e2e/app-invalid-output', newCtx());
setUp(test, async (ctx) => startPair(ctx, fixture('bad-output.js')));

test('a refused status or header, uncaught: a clean 500 on the wire, the connection goes on, the log names it', async ({ front, backend }) => {
  for (const [path] of HEADS) {
    const { text, list } = await pipelined(front!.port, path);
    assert500ThenNext(list, text);
    await backend!.waitForStderr(new RegExp(`GET ${path}: application error before the response head; answered 500 \\(request id \\S+\\)\\n\\s+GatewayError: `));
  }
});

test('a refused status or header, caught: the app reads the error (code and message) and answers for itself', async ({ front, agent }) => {
  for (const [path, code] of HEADS) {
    const { text, list } = await pipelined(front!.port, `${path}?catch`);
    assert500ThenNext(list, text, `caught ${code}\n`);
  }
  const records = JSON.parse((await call(`${front!.url}/caught`, { dispatcher: agent })).text) as { path: string; code: string; name: string; message: string }[];
  for (const [path, code] of HEADS) {
    const r = records.find((x) => x.path === path);
    assert.ok(r !== undefined, `${path} was recorded`);
    assert.is(r!.code, code, path);
    assert.is(r!.name, 'GatewayError', path);
    assert.ok(r!.message.length > 10, `${path}: a message that says what is wrong (${r!.message})`);
  }
});

test('a second startResponse without excInfo: caught, the first head stands; uncaught, a 500', async ({ front, backend }) => {
  const caught = await pipelined(front!.port, '/twice?catch');
  assert.is(caught.list[0]!.status, 200, caught.text);
  assert.is(caught.list[0]!.body, 'first head stands\n');
  assert.not.match(caught.text, /X-Second/i);
  assert.ok(caught.list[1]!.complete && caught.list[1]!.status === 200, caught.text);
  const uncaught = await pipelined(front!.port, '/twice');
  assert500ThenNext(uncaught.list, uncaught.text);
  await backend!.waitForStderr(/GET \/twice: application error before the response head; answered 500 \(request id \S+\)\n\s+GatewayError: startResponse called a second time without excInfo/);
});

test('startResponse after the body began: excInfo is re-raised to the app; uncaught, the response is cut, never a second head', async ({ front, backend }) => {
  const caught = await pipelined(front!.port, '/after-body?catch');
  assert.ok(caught.list[0]!.complete, caught.text);
  assert.is(caught.list[0]!.body, 'part one\npart two\n');
  const uncaught = await pipelined(front!.port, '/after-body');
  assertCut(uncaught.list, uncaught.text, 'part one\n');
  await backend!.waitForStderr(/GET \/after-body: application error after the response head was sent; stream reset \(request id \S+\)\n\s+Error: too late for a new head/);
});

test('body bytes before startResponse: a 500, and the log says so', async ({ front, backend }) => {
  const { text, list } = await pipelined(front!.port, '/body-before-start');
  assert500ThenNext(list, text);
  await backend!.waitForStderr(/GET \/body-before-start: application error before the response head; answered 500 \(request id \S+\)\n\s+GatewayError: the application produced body bytes before calling startResponse/);
});

test('write() past the Content-Length: the app can catch TSGI_ERR_BODY_LENGTH and end cleanly; uncaught, a cut', async ({ front, agent }) => {
  const caught = await pipelined(front!.port, '/write-too-much?catch');
  assert.is(caught.list.length, 2, caught.text);
  assert.ok(caught.list[0]!.complete && caught.list[0]!.body === 'hello\n', caught.text);
  const records = JSON.parse((await call(`${front!.url}/caught`, { dispatcher: agent })).text) as { path: string; code: string }[];
  assert.is(records.find((r) => r.path === '/write-too-much')?.code, 'TSGI_ERR_BODY_LENGTH');
  // Uncaught, the stream is reset after the 6 declared bytes: the client gets them (a response
  // complete by its Content-Length, flushed before the cut) or fewer, then the connection
  // closes. Never the forged bytes, never a second response.
  const uncaught = await pipelined(front!.port, '/write-too-much');
  assert.ok(uncaught.list.length <= 1, `one response at most:\n${uncaught.text}`);
  assert.not.match(uncaught.text, /forged/);
  if (uncaught.list.length === 1) assert.ok('hello\n'.startsWith(uncaught.list[0]!.body), uncaught.text);
});

test.run();
