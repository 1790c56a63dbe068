// runApplication: the gateway rules (PEP 3333 where they apply) between an application and a
// Responder: startResponse once (again only with excInfo), the head with the first non-empty
// chunk, close()/return() always, refused heads, errors before and after the head, backpressure.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputStream } from '../../src/backend/input.js';
import type { Application, Chunk } from '../../src/backend/types.js';
import { GatewayError } from '../../src/protocol/errors.js';
import { eventually, throwsCode } from '../helpers/assert.js';
import { RecordingResponder, assertAborted, assertComplete, run, turns } from './helpers/exchange.js';

const test = suite('backend/gateway');

const ERROR_500 = '500 Internal Server Error\n';

/** An app: startResponse(status, headers), then return `result()`. */
function app(result: () => ReturnType<Application>, status = '200 OK', headers: [string, string][] = []): Application {
  return (_environ, startResponse) => {
    startResponse(status, headers);
    return result();
  };
}

/**
 * Calls `fn` (inside an app) and returns a thunk that re-throws what it threw, for throwsCode
 * outside the app: an assertion failing inside the app would only become a 500.
 */
function capture(fn: () => unknown): () => void {
  try {
    fn();
  } catch (err) {
    return () => { throw err; };
  }
  return () => {};
}

/**
 * An app whose only startResponse(status, headers) is refused with `code`: the error reaches the
 * app, and tsgi's own 500 goes out.
 */
function assertStartRefused(status: string | number, headers: [string, string][], code: string, what: string): void {
  let refused = () => {};
  const x = run((_env, startResponse) => {
    refused = capture(() => startResponse(status, headers));
    return null;
  });
  throwsCode(refused, GatewayError, code, what);
  assert500(x.out);
}

/** Asserts the exchange was answered with tsgi's own 500 (the app's head never went out). */
function assert500(out: RecordingResponder): void {
  assertComplete(out);
  const head = out.head0;
  assert.is(head.status, 500);
  assert.equal(out.header('content-type'), ['text/plain; charset=utf-8']);
  assert.equal(out.header('content-length'), [String(Buffer.byteLength(ERROR_500))]);
  assert.is(out.body, ERROR_500);
}

/** An iterable whose close() is counted (PEP 3333: the server calls it however the response ends). */
function closable(chunks: (Chunk | Error)[]): Iterable<Chunk> & { closed: number; pulls: number } {
  const r = {
    closed: 0,
    pulls: 0,
    close() { r.closed++; },
    [Symbol.iterator](): Iterator<Chunk> {
      let i = 0;
      return {
        next: () => {
          r.pulls++;
          if (i >= chunks.length) return { done: true, value: undefined };
          const c = chunks[i++]!;
          if (c instanceof Error) throw c;
          return { done: false, value: c };
        },
      };
    },
  };
  return r;
}

// ---- result kinds -----------------------------------------------------------------------

test('a sync array: one head with Content-Length, the body, ended once', async () => {
  const x = run(app(() => ['Hello, ', 'web'], '200 OK', [['Content-Type', 'text/html']]));
  await x.done;
  assertComplete(x.out);
  const head = x.out.head0;
  assert.is(head.status, 200);
  assert.is(head.reason, '', 'the standard phrase is left to the front');
  assert.equal(head.headers, ['Content-Type', 'text/html', 'content-length', '10']);
  assert.is(x.out.body, 'Hello, web');
  assert.is(x.doneCalls(), 1);
});

test('regression: an array or string result ends the response once (no write after the end)', async () => {
  for (const result of [() => ['a', 'b'], () => 'text', () => new Uint8Array([1, 2]), () => [] as Chunk[]]) {
    const x = run(app(result));
    await x.done;
    assertComplete(x.out);
  }
});

test('a non-standard reason phrase is kept ("200 0K", as in the seed)', async () => {
  const x = run(app(() => [new TextEncoder().encode('<h1>Hello,web</h1>')], '200 0K', [['Content-Type', 'text/html']]));
  await x.done;
  assert.is(x.out.head0.reason, '0K');
  assert.is(x.out.body, '<h1>Hello,web</h1>');
});

test('a sync generator: chunks in order, no Content-Length', async () => {
  const x = run(app(function* () {
    yield 'one ';
    yield Buffer.from('two ');
    yield 'three';
  }));
  await x.done;
  assertComplete(x.out);
  assert.equal(x.out.chunks, ['one ', 'two ', 'three']);
  assert.equal(x.out.header('content-length'), [], 'length unknown up front');
});

test('an async generator: chunks in order, no Content-Length', async () => {
  const x = run(app(async function* () {
    yield 'a';
    await turns(1);
    yield 'b';
    await turns(1);
    yield 'c';
  }));
  await x.done;
  assertComplete(x.out);
  assert.equal(x.out.chunks, ['a', 'b', 'c']);
  assert.equal(x.out.header('content-length'), []);
});

test('an async app (a promise of an iterable), startResponse called after an await', async () => {
  const x = run(async (_env, startResponse) => {
    await turns(1);
    startResponse('201 Created', [['Location', '/items/1']]);
    return ['made'];
  });
  await x.done;
  assertComplete(x.out);
  assert.is(x.out.head0.status, 201);
  assert.equal(x.out.header('location'), ['/items/1']);
  assert.equal(x.out.header('content-length'), ['4']);
  assert.is(x.out.body, 'made');
});

test('a promise of an async iterable', async () => {
  const x = run(async (_env, startResponse) => {
    startResponse('200 OK', []);
    return (async function* () { yield 'x'; yield 'y'; })();
  });
  await x.done;
  assertComplete(x.out);
  assert.equal(x.out.chunks, ['x', 'y']);
});

test('a plain string result: UTF-8, with its byte length', async () => {
  const x = run(app(() => 'héllo 中'));
  await x.done;
  assertComplete(x.out);
  assert.is(x.out.body, 'héllo 中');
  assert.equal(x.out.header('content-length'), [String(Buffer.byteLength('héllo 中'))]);
  assert.equal(x.out.header('content-length'), ['10']);
});

test('a Uint8Array result: the bytes as they are', async () => {
  const bytes = new Uint8Array([0, 1, 2, 255]);
  const x = run(app(() => bytes));
  await x.done;
  assertComplete(x.out);
  assert.equal([...Buffer.concat(x.out.writes.map((w) => w.chunk))], [0, 1, 2, 255]);
  assert.equal(x.out.header('content-length'), ['4']);
});

test('null or undefined result: the head alone, ended', async () => {
  for (const result of [null, undefined]) {
    const x = run(app(() => result, '204 No Content'));
    await x.done;
    assertComplete(x.out);
    assert.is(x.out.head0.status, 204);
    assert.ok(x.out.head0.end, 'the head carries the end');
    assert.is(x.out.writes.length, 0);
    assert.equal(x.out.header('content-length'), []);
  }
});

test('the legacy write() callable sends at once, before the returned body', async () => {
  let sentBeforeReturn = -1;
  const out = new RecordingResponder();
  const x = run((_env, startResponse) => {
    const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
    write('written ');
    write(Buffer.from('directly '));
    sentBeforeReturn = out.chunks.length;
    return ['then returned'];
  }, { out });
  await x.done;
  assertComplete(x.out);
  assert.is(sentBeforeReturn, 2, 'write() does not wait for the return');
  assert.equal(x.out.chunks, ['written ', 'directly ', 'then returned']);
  assert.equal(x.out.header('content-length'), [], 'no Content-Length once the head went out without one');
});

test("write('') sends the head alone at once (PEP 3333: upon the first write() call); the body follows", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const out = new RecordingResponder();
  const x = run((_env, startResponse) => {
    const write = startResponse('200 OK', [['Content-Type', 'text/event-stream']]);
    write('');
    return (async function* () {
      await gate;
      yield 'data: 1\n\n';
    })();
  }, { out });
  await turns();
  assert.is(out.heads.length, 1, 'the head went out before any body');
  assert.not.ok(out.head0.end);
  assert.is(out.writes.length, 0);
  release();
  await x.done;
  assertComplete(out);
  assert.equal(out.chunks, ['data: 1\n\n']);
  assert.equal(out.header('content-length'), []);
});

test("write('') after the head went out, or a second time, sends nothing more", async () => {
  const out = new RecordingResponder();
  const x = run((_env, startResponse) => {
    const write = startResponse('200 OK', [['Content-Type', 'text/plain']]);
    write('');
    write('a');
    write('');
    return ['b'];
  }, { out });
  await x.done;
  assertComplete(out);
  assert.is(out.heads.length, 1);
  assert.equal(out.chunks, ['a', 'b']);
});

test('headers given as an object, with repeated values as arrays and numbers', async () => {
  const x = run((_env, startResponse) => {
    startResponse(200, { 'Content-Type': 'text/plain', 'Set-Cookie': ['a=1', 'b=2'], 'X-Count': 3 });
    return ['ok'];
  });
  await x.done;
  assert.equal(x.out.head0.headers, [
    'Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Count', '3', 'content-length', '2',
  ]);
});

// ---- Content-Length ---------------------------------------------------------------------

test('Content-Length: an app-given one is kept, in any letter case, and not doubled', async () => {
  const x = run(app(() => ['abc'], '200 OK', [['content-LENGTH', '3']]));
  await x.done;
  assert.equal(x.out.head0.headers, ['content-LENGTH', '3']);
});

test('Content-Length: none for 204 and 304', async () => {
  for (const status of ['204 No Content', '304 Not Modified']) {
    const x = run(app(() => [], status, [['ETag', '"v1"']]));
    await x.done;
    assertComplete(x.out);
    assert.equal(x.out.header('content-length'), [], status);
  }
});

test('Content-Length: counts bytes of mixed string and byte chunks', async () => {
  const x = run(app(() => ['é', new Uint8Array(3), '']));
  await x.done;
  assertComplete(x.out);
  assert.equal(x.out.header('content-length'), ['5']);
});

// ---- startResponse rules ----------------------------------------------------------------

test('startResponse a second time without excInfo throws; the first head stands', async () => {
  let second: unknown;
  const x = run((_env, startResponse) => {
    startResponse('200 OK', [['X-First', '1']]);
    try {
      startResponse('404 Not Found', [['X-Second', '1']]);
    } catch (err) {
      second = err;
    }
    return ['body'];
  });
  await x.done;
  throwsCode(() => { throw second; }, GatewayError, 'TSGI_ERR_START_RESPONSE', 'second startResponse');
  assert.is(x.out.head0.status, 200);
  assert.equal(x.out.header('x-first'), ['1']);
  assert.equal(x.out.header('x-second'), []);
});

test('startResponse twice, uncaught: a 500', async () => {
  const x = run((_env, startResponse) => {
    startResponse('200 OK', []);
    startResponse('200 OK', []);
    return ['never'];
  });
  await x.done;
  assert500(x.out);
});

test('startResponse with excInfo before the head went out replaces the head', async () => {
  const x = run(function* (_env, startResponse) {
    startResponse('200 OK', [['X-A', '1'], ['Content-Type', 'text/html']]);
    yield ''; // no body yet: the head is still pending
    startResponse('500 Oops', [['X-B', '2']], new Error('failed while rendering'));
    yield 'error page';
  });
  await x.done;
  assertComplete(x.out);
  const head = x.out.head0;
  assert.is(head.status, 500);
  assert.is(head.reason, 'Oops');
  assert.equal(head.headers, ['X-B', '2'], 'nothing of the first head is kept');
  assert.is(x.out.body, 'error page');
});

test('startResponse with excInfo after the head went out re-raises excInfo', async () => {
  const exc = new Error('too late');
  let caught: unknown;
  const x = run(function* (_env, startResponse) {
    startResponse('200 OK', []);
    yield 'partial ';
    try {
      startResponse('500 Internal Server Error', [], exc);
    } catch (err) {
      caught = err;
    }
    yield 'rest';
  });
  await x.done;
  assert.is(caught, exc, 'the very excInfo object is thrown');
  assertComplete(x.out);
  assert.is(x.out.head0.status, 200, 'the head is not changed');
  assert.is(x.out.body, 'partial rest');
});

test('startResponse with excInfo after the head, uncaught: the stream is aborted, no second head', async () => {
  const x = run(function* (_env, startResponse) {
    startResponse('200 OK', []);
    yield 'partial';
    startResponse('500 Internal Server Error', [], new Error('boom'));
  });
  await x.done;
  assertAborted(x.out);
  assert.is(x.out.head0.status, 200);
  assert.is(x.out.body, 'partial');
});

test('the head goes out only with the first non-empty chunk', async () => {
  const seen: number[] = [];
  const out = new RecordingResponder();
  const x = run(function* (_env, startResponse) {
    startResponse('200 OK', []);
    yield '';
    yield new Uint8Array(0);
    seen.push(out.events.length);
    yield 'first';
    seen.push(out.heads.length);
  }, { out });
  await x.done;
  assert.equal(seen, [0, 1], 'nothing sent for empty chunks; the head with "first"');
  assertComplete(x.out);
  assert.not.ok(x.out.head0.end);
  assert.equal(x.out.chunks, ['first']);
});

test('an error after startResponse but before any body byte still gets the 500 (the head was pending)', async () => {
  const x = run(function* (_env, startResponse) {
    startResponse('200 OK', [['X-App', '1']]);
    yield '';
    throw new Error('boom before the body');
  });
  await x.done;
  assert500(x.out);
  assert.equal(x.out.header('x-app'), []);
});

test('only empty chunks: the head goes out at the end, carrying the end', async () => {
  const x = run(app(function* () { yield ''; yield ''; }));
  await x.done;
  assertComplete(x.out);
  assert.ok(x.out.head0.end);
});

// ---- refused heads ----------------------------------------------------------------------

const BAD_HEADERS: [string, [string, string], string][] = [
  ['CR/LF in a value', ['X-Foo', 'a\r\nSet-Cookie: evil=1'], 'TSGI_ERR_HEADER'],
  ['LF in a value', ['X-Foo', 'a\nb'], 'TSGI_ERR_HEADER'],
  ['CR in a value', ['X-Foo', 'a\rb'], 'TSGI_ERR_HEADER'],
  ['NUL in a value', ['X-Foo', 'a\0b'], 'TSGI_ERR_HEADER'],
  ['CR/LF in a name', ['X-Foo\r\nSet-Cookie', 'evil=1'], 'TSGI_ERR_HEADER'],
  ['LF in a name', ['X-Foo\n', 'v'], 'TSGI_ERR_HEADER'],
  ['a space in a name', ['X Foo', 'v'], 'TSGI_ERR_HEADER'],
  ['a colon in a name', ['X-Foo:', 'v'], 'TSGI_ERR_HEADER'],
  ['an empty name', ['', 'v'], 'TSGI_ERR_HEADER'],
];
const HOP_BY_HOP = ['Connection', 'keep-alive', 'Transfer-Encoding', 'Upgrade', 'TE', 'Trailer', 'Proxy-Authenticate', 'Proxy-Connection'];

test('CR/LF and other bad characters in header names and values are refused', () => {
  for (const [what, pair, code] of BAD_HEADERS) {
    let refused = () => {};
    const x = run((_env, startResponse) => {
      refused = capture(() => startResponse('200 OK', [pair]));
      startResponse('200 OK', [['X-Fine', '1']]); // a refused head was not kept: this is the first
      return ['ok'];
    });
    throwsCode(refused, GatewayError, code, what);
    assertComplete(x.out);
    assert.equal(x.out.head0.headers, ['X-Fine', '1', 'content-length', '2'], what);
  }
});

test('a refused header, uncaught: a 500 that carries nothing of it', async () => {
  for (const [what, pair] of BAD_HEADERS) {
    const x = run(app(() => ['never'], '200 OK', [pair]));
    await x.done;
    assert500(x.out);
    assert.not.ok(x.out.head0.headers.some((h) => h.includes('evil')), what);
  }
});

test('hop-by-hop headers from the app are refused', () => {
  for (const name of HOP_BY_HOP) {
    let pairs = () => {};
    let object = () => {};
    const x = run((_env, startResponse) => {
      pairs = capture(() => startResponse('200 OK', [[name, 'x']]));
      object = capture(() => startResponse('200 OK', { [name]: 'x' }));
      return null;
    });
    throwsCode(pairs, GatewayError, 'TSGI_ERR_HEADER', name);
    throwsCode(object, GatewayError, 'TSGI_ERR_HEADER', `${name} (object form)`);
    assert500(x.out); // no startResponse call was accepted
  }
});

test('a header name or status line accepted before still has its value checked; a refused one is refused every time', () => {
  // startResponse remembers the names and status lines it accepted, not what it refused.
  for (let round = 0; round < 3; round++) {
    const x = run(app(() => ['ok'], '200 OK', [['X-Seen', 'fine']]));
    assertComplete(x.out);
    assert.equal(x.out.head0.headers, ['X-Seen', 'fine', 'content-length', '2']);
    assertStartRefused('200 OK', [['X-Seen', 'a\r\nSet-Cookie: evil=1']], 'TSGI_ERR_HEADER', `a bad value of a known name, round ${round}`);
    assertStartRefused('200 OK', [['Connection', 'close']], 'TSGI_ERR_HEADER', `hop-by-hop, round ${round}`);
    assertStartRefused('200 OK', [['X Seen', 'v']], 'TSGI_ERR_HEADER', `a space in a name, round ${round}`);
    assertStartRefused('200 OK\r\nX: y', [], 'TSGI_ERR_START_RESPONSE', `CR/LF in a status line, round ${round}`);
    assertStartRefused('99 Low', [], 'TSGI_ERR_START_RESPONSE', `a two-digit status, round ${round}`);
  }
});

test('invalid statuses are refused', () => {
  const bad: (string | number)[] = [
    'OK', '', '20 OK', '2000 OK', '200OK', '099 Low', '100 Continue', '101 Switching Protocols',
    '200 OK\r\nX-Evil: 1', '200 OK\n', ' 200 OK', 100, 1000, 200.5, -1, NaN,
  ];
  for (const status of bad) assertStartRefused(status, [], 'TSGI_ERR_START_RESPONSE', JSON.stringify(status));
});

test('valid statuses: phrase kept only when not the standard one', () => {
  const good: [string | number, number, string][] = [
    ['404 Not Found', 404, ''], [201, 201, ''], ['299', 299, ''], ['599 Custom Thing', 599, 'Custom Thing'],
    ['200 Fine', 200, 'Fine'], ['999 x', 999, 'x'],
  ];
  for (const [status, code, reason] of good) {
    const x = run(app(() => [], status as string));
    assert.is(x.out.head0.status, code, String(status));
    assert.is(x.out.head0.reason, reason, String(status));
  }
});

test('a reason phrase with a control character or a character above U+00FF is refused (the front could not send it)', () => {
  for (const status of ['200 O\x01K', '200 caf\u00e9 \u2603', '404 tab\tis fine but DEL\x7f is not']) {
    assertStartRefused(status, [], 'TSGI_ERR_START_RESPONSE', JSON.stringify(status));
  }
  const ok = run(app(() => [], '200 caf\u00e9\tok'));
  assert.is(ok.out.head0.reason, 'caf\u00e9\tok', 'Latin-1 and tabs pass');
});

// ---- Content-Length ---------------------------------------------------------------------

test('a Content-Length that is not one number is refused at startResponse', () => {
  const bad: [string, string][][] = [
    [['Content-Length', 'abc']], [['Content-Length', '-1']], [['Content-Length', '5, 6']], [['Content-Length', '1e3']],
    [['Content-Length', ' 5']], [['Content-Length', '']], [['Content-Length', '5'], ['content-length', '6']],
  ];
  for (const headers of bad) assertStartRefused('200 OK', headers, 'TSGI_ERR_HEADER', JSON.stringify(headers));
  const twice = run(app(() => ['hello'], '200 OK', [['Content-Length', '5'], ['content-length', '5']]));
  assertComplete(twice.out);
  assert.is(twice.out.body, 'hello', 'the same value twice is one length');
});

test('a body longer than its Content-Length: write() throws an error the app can read, and nothing extra is sent', async () => {
  let caught: unknown = null;
  const x = run((_env, startResponse) => {
    const write = startResponse('200 OK', [['Content-Length', '5']]);
    write('hello');
    try {
      write(' and more');
    } catch (err) {
      caught = err;
    }
    return [];
  });
  await x.done;
  throwsCode(() => { throw caught; }, GatewayError, 'TSGI_ERR_BODY_LENGTH');
  assert.match((caught as Error).message, /grew to 14 bytes; its Content-Length says 5/);
  assertComplete(x.out);
  assert.is(x.out.body, 'hello');
});

test('a body longer or shorter than its Content-Length, uncaught: a 500 while the head is pending, else a cut, logged', async () => {
  const cases: [string, Application, 'cut' | '500'][] = [
    ['an array longer', app(() => ['hello', ' world'], '200 OK', [['Content-Length', '5']]), '500'],
    ['an array shorter', app(() => ['hel'], '200 OK', [['Content-Length', '5']]), '500'],
    ['no body at all', app(() => [], '200 OK', [['Content-Length', '10']]), '500'],
    ['a string longer', app(() => 'hello world', '200 OK', [['Content-Length', '5']]), '500'],
    ['a first chunk already too long', app(() => (function* g() { yield 'hello world'; })(), '200 OK', [['Content-Length', '5']]), '500'],
    ['a generator longer', app(() => (function* g() { yield 'hello'; yield 'HTTP/1.1 200 OK\r\n\r\nforged'; })(), '200 OK', [['Content-Length', '5']]), 'cut'],
    ['a generator shorter', app(() => (function* g() { yield 'hello'; })(), '200 OK', [['Content-Length', '10']]), 'cut'],
    ['an async generator shorter', app(() => (async function* g() { yield 'hello'; })(), '200 OK', [['Content-Length', '10']]), 'cut'],
  ];
  for (const [what, application, outcome] of cases) {
    const x = run(application);
    await x.done;
    if (outcome === '500') assert500(x.out);
    else assertAborted(x.out);
    assert.not.match(x.out.body, /forged/, what);
    assert.is(x.log.errors.length, 1, what);
    assert.is((x.log.errors[0]!.err as GatewayError).code, 'TSGI_ERR_BODY_LENGTH', what);
  }
});

test('Content-Length is not held to for HEAD, 204 and 304 (no body goes out there)', async () => {
  const head = run(app(() => [], '200 OK', [['Content-Length', '10']]), { head: { method: 'HEAD' } });
  await head.done;
  assertComplete(head.out);
  assert.equal(head.out.header('content-length'), ['10']);
  for (const status of ['204 No Content', '304 Not Modified']) {
    const x = run(app(() => [], status, [['Content-Length', '10']]));
    await x.done;
    assertComplete(x.out);
  }
});

// ---- errors -----------------------------------------------------------------------------

test('the app throws before the head: a 500 with a text body, logged', async () => {
  const cases: [string, Application][] = [
    ['sync throw before startResponse', () => { throw new Error('boom'); }],
    ['sync throw after startResponse', (_e, sr) => { sr('200 OK', []); throw new Error('boom'); }],
    ['async rejection', async (_e, sr) => { sr('200 OK', []); await turns(1); throw new Error('boom'); }],
    ['returned without startResponse', () => ['body']],
    ['yielded body bytes before startResponse', function* () { yield 'x'; }],
    ['returned nothing without startResponse', () => undefined],
    ['yielded a number', app(function* () { yield 42 as unknown as Chunk; })],
    ['an array holding null', app(() => [null as unknown as Chunk])],
    ['returned a non-iterable object', app(() => ({ not: 'iterable' }) as unknown as Chunk[])],
    ['async generator throws at its first step', app(async function* () { throw new Error('boom'); })],
  ];
  for (const [what, application] of cases) {
    const x = run(application);
    await x.done;
    assert500(x.out);
    assert.is(x.log.errors.length, 1, `${what}: logged once`);
    assert.is(x.doneCalls(), 1, `${what}: done once`);
  }
});

test('an error carrying a tsgi code gets its status: input.read(limit) over the limit → 413', async () => {
  const input = new InputStream();
  input.push(Buffer.alloc(20));
  input.end();
  const x = run(async (environ, startResponse) => {
    const body = await environ['tsgi.input'].read(10);
    startResponse('200 OK', []);
    return [body];
  }, { input, head: { method: 'POST' } });
  await x.done;
  assertComplete(x.out);
  assert.is(x.out.head0.status, 413);
  assert.is(x.out.body, '413 Content Too Large\n');
});

test('the app throws after the head: abort(), never a second head, iteration stops', async () => {
  const sync = run(app(function* () {
    yield 'partial';
    throw new Error('mid-body');
  }));
  await sync.done;
  assertAborted(sync.out);
  assert.is(sync.out.body, 'partial');
  assert.is(sync.log.errors.length, 1);

  const asyncGen = run(app(async function* () {
    yield 'partial';
    await turns(1);
    throw new Error('mid-body');
  }));
  await asyncGen.done;
  assertAborted(asyncGen.out);
  assert.is(asyncGen.out.body, 'partial');

  const bad = run(app(function* () { yield 'ok'; yield {} as unknown as Chunk; }));
  await bad.done;
  assertAborted(bad.out);
});

// ---- close() / return() -----------------------------------------------------------------

test('result.close() is called once on a normal end', async () => {
  const result = closable(['a', 'b']);
  const x = run(app(() => result));
  await x.done;
  assertComplete(x.out);
  assert.is(result.closed, 1);
  assert.is(x.out.body, 'ab');
});

test('result.close() is called when an array result ends', async () => {
  let closed = 0;
  const x = run(app(() => Object.assign(['x'], { close: () => { closed++; } })));
  await x.done;
  assert.is(closed, 1);
});

test('result.close() is called when the app fails mid-iteration (after the head)', async () => {
  const result = closable(['a', new Error('mid'), 'never']);
  const x = run(app(() => result));
  await x.done;
  assertAborted(x.out);
  assert.is(result.closed, 1);
});

test('result.close() is called when the app fails before the head', async () => {
  const result = closable([new Error('first step')]);
  const x = run(app(() => result));
  await x.done;
  assert500(x.out);
  assert.is(result.closed, 1);
});

test('a close() that throws is logged; the response is not disturbed', async () => {
  const x = run(app(() => Object.assign(['fine'], { close: () => { throw new Error('close failed'); } })));
  await x.done;
  assertComplete(x.out);
  assert.is(x.out.body, 'fine');
  assert.is(x.log.errors.length, 1);
});

test('client gone while the runner waits for drain: close() and return() run, nothing more is sent', async () => {
  const out = new RecordingResponder();
  out.blocked = true;
  let finallyRan = 0;
  let pulls = 0;
  const gen = function* () {
    try {
      while (pulls < 100) { // bounded, so a runner that ignores backpressure fails instead of hanging
        pulls++;
        yield `chunk${pulls}`;
      }
    } finally {
      finallyRan++;
    }
  };
  let closed = 0;
  const x = run((_env, startResponse) => {
    startResponse('200 OK', []);
    const it = gen();
    return { [Symbol.iterator]: () => it, close: () => { closed++; } };
  }, { out });
  await eventually(() => out.waiting, 'the runner to wait for drain');
  assert.is(pulls, 1);
  out.clientGone();
  await x.done;
  assert.is(finallyRan, 1, 'the generator\'s finally ran (return() was called)');
  assert.is(closed, 1, 'close() ran');
  assert.is(pulls, 1, 'no chunk pulled after the client left');
  assert.equal(out.chunks, ['chunk1']);
  assert.equal(out.aborts, [], 'abort() is for app errors; the peer is already gone');
  assert.is(x.doneCalls(), 1);
});

test('client gone while an async generator is busy: its next chunk is dropped and its finally runs', async () => {
  const out = new RecordingResponder();
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let finallyRan = false;
  let afterSecond = false;
  const x = run(app(async function* () {
    try {
      yield 'first';
      await gate;
      yield 'second';
      afterSecond = true;
      yield 'third';
    } finally {
      finallyRan = true;
    }
  }), { out });
  await eventually(() => out.chunks.length === 1, 'the first chunk');
  out.clientGone();
  release();
  await x.done;
  await eventually(() => finallyRan, 'the async generator\'s finally');
  assert.equal(out.chunks, ['first']);
  assert.not.ok(afterSecond, 'not resumed after the client left');
});

test('client gone before an async app resolves: no head, close() still called', async () => {
  const out = new RecordingResponder();
  let resolveApp!: () => void;
  const gate = new Promise<void>((r) => { resolveApp = r; });
  let closed = 0;
  const x = run(async (_env, startResponse) => {
    startResponse('200 OK', []);
    await gate;
    return Object.assign(['late'], { close: () => { closed++; } });
  }, { out });
  await turns();
  out.clientGone();
  resolveApp();
  await x.done;
  assert.equal(out.events, []);
  assert.is(closed, 1);
});

// ---- backpressure -----------------------------------------------------------------------

test('backpressure: a sync generator is not pulled again until drain', async () => {
  const out = new RecordingResponder();
  out.blocked = true;
  let pulls = 0;
  const x = run(app(function* () {
    for (let i = 1; i <= 4; i++) {
      pulls++;
      yield `c${i}`;
    }
  }), { out });
  await eventually(() => out.waiting, 'a drain wait');
  await turns();
  assert.is(pulls, 1, 'one chunk pulled while blocked');
  assert.equal(out.chunks, ['c1']);
  out.release(true); // one drain, still blocked after the next write
  await eventually(() => out.waiting && pulls === 2, 'the second pull and wait');
  await turns();
  assert.is(pulls, 2);
  assert.equal(out.chunks, ['c1', 'c2']);
  out.release();
  await x.done;
  assert.is(pulls, 4);
  assertComplete(out);
  assert.equal(out.chunks, ['c1', 'c2', 'c3', 'c4']);
});

test('backpressure: an async generator is not pulled again until drain', async () => {
  const out = new RecordingResponder();
  out.blocked = true;
  let pulls = 0;
  const x = run(app(async function* () {
    for (let i = 1; i <= 3; i++) {
      pulls++;
      yield `c${i}`;
    }
  }), { out });
  await eventually(() => out.waiting, 'a drain wait');
  await turns();
  assert.is(pulls, 1);
  out.release(true);
  await eventually(() => out.waiting && pulls === 2, 'the second pull and wait');
  await turns();
  assert.is(pulls, 2);
  out.release();
  await x.done;
  assert.is(pulls, 3);
  assertComplete(out);
  assert.equal(out.chunks, ['c1', 'c2', 'c3']);
});

test('backpressure: an array result waits for drain between chunks', async () => {
  const out = new RecordingResponder();
  out.blocked = true;
  const x = run(app(() => ['a', 'b', 'c']), { out });
  await eventually(() => out.waiting, 'a drain wait');
  await turns();
  assert.equal(out.chunks, ['a']);
  out.release();
  await x.done;
  assertComplete(out);
  assert.equal(out.chunks, ['a', 'b', 'c']);
});

test('no drain wait when write() accepts: a sync app completes without one', () => {
  const x = run(app(function* () { yield 'a'; yield 'b'; }));
  assert.is(x.doneCalls(), 1, 'done synchronously');
  assert.is(x.out.drainCalls, 0);
  assertComplete(x.out);
});

test.run();
