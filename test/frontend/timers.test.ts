// The front's request timers on a clock of the test's own (node:test's mock timers: setTimeout
// and Date), in-process: the queue deadline (--queue-timeout), the response timeout
// (--response-timeout) and the body stall (--body-timeout), each fired by advancing the clock
// exactly to its limit and never a millisecond before. The HTTP edge is the real HttpServer
// over an in-memory connection; the backend is a recording stream, so no time passes for real.
import { mock } from 'node:test';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Logger } from '../../src/common/log.js';
import { Exchange } from '../../src/frontend/exchange.js';
import { HttpServer } from '../../src/frontend/http/server.js';
import type { Link, LinkStream } from '../../src/frontend/upstream/link.js';
import { Pool, type Waiter } from '../../src/frontend/upstream/pool.js';
import { ResetCode } from '../../src/protocol/constants.js';
import type { StreamHandler } from '../../src/protocol/stream.js';
import type { TsgiError } from '../../src/protocol/errors.js';

const lines: string[] = [];
const log = {
  debug: () => {}, info: () => {},
  warn: (m: string) => { lines.push(m); }, error: (m: string) => { lines.push(m); },
} as unknown as Logger;

/** A client connection in memory. */
class FakeSocket extends Duplex {
  remoteAddress = '192.0.2.7';
  out: Buffer[] = [];
  constructor() {
    super({ allowHalfOpen: true });
  }
  setNoDelay(): this { return this; }
  destroySoon(): void { this.end(); }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.out.push(Buffer.from(chunk));
    done();
  }
  send(text: string): void {
    this.push(Buffer.from(text, 'latin1'));
  }
  get text(): string {
    return Buffer.concat(this.out).toString('latin1');
  }
}

/** A backend stream that records what the exchange does with it and never answers. */
class SilentStream implements LinkStream {
  handler: StreamHandler | null = null;
  closed = false;
  localEnded = false;
  remoteEnded = false;
  blocked = false;
  credited = false;
  tunnel = false;
  written = 0;
  /** The stream was opened with the end of the request (a request without a body). */
  endedAtOpen = false;
  resets: [number, string][] = [];
  write(chunk: Uint8Array): boolean {
    this.written += chunk.length;
    return true;
  }
  end(): void {
    this.localEnded = true;
  }
  sendTrailers(): void {
    this.end();
  }
  consume(): void {}
  reset(code: number, message = ''): void {
    this.resets.push([code, message]);
    this.closed = true;
  }
}

/** A pool of one link whose streams never answer; admission is always granted. */
function silentPool(stream: SilentStream): Pool {
  const link = {
    name: 'unix:/silent.sock', owner: { requests: 0, failures: 0, unanswered() {} }, state: 'ready', requests: 0,
    load: 0, canOpen: true, peerSoftware: 'test',
    conn: { open: (_head: unknown, end: boolean) => { stream.endedAtOpen = end; return stream; }, peerSoftware: 'test', peerConnections: 1 },
    release() {}, drain() {}, close() {},
  } as unknown as Link;
  return {
    admit: () => null, leave() {}, release() {},
    acquire: (w: Waiter) => w.dispatch(link),
  } as unknown as Pool;
}

interface Setup {
  client: FakeSocket;
  stream: SilentStream;
  server: HttpServer;
}

function front(opts: { responseTimeoutMs: number; bodyTimeoutMs: number }): Setup {
  const stream = new SilentStream();
  const pool = silentPool(stream);
  const server = new HttpServer({
    log, keepAliveTimeoutMs: 0, headersTimeoutMs: 0, maxHeaderSize: 16384, maxConnections: 0, sweeper: false,
    onRequest: (req, res) => new Exchange(req, res, { pool, log, maxHeaders: 100, maxBodySize: 0, ...opts }).start(),
  });
  const client = new FakeSocket();
  server.accept(client as unknown as Socket);
  return { client, stream, server };
}

/** Lets the in-memory writes and the parser's ticks run (real immediates; only setTimeout is mocked). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

const test = suite('frontend/timers');
test.before.each(() => {
  lines.length = 0;
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
});
test.after.each(() => {
  mock.timers.reset();
});

test('--response-timeout: 504 exactly at the limit after the request, the stream reset with TIMEOUT', async () => {
  const { client, stream } = front({ responseTimeoutMs: 30_000, bodyTimeoutMs: 0 });
  client.send('GET /slow HTTP/1.1\r\nHost: t\r\n\r\n');
  await settle();
  assert.ok(stream.endedAtOpen, 'the request went to the backend whole');
  mock.timers.tick(29_999);
  await settle();
  assert.is(client.text, '', 'nothing a millisecond before the limit');
  assert.equal(stream.resets, []);
  mock.timers.tick(1);
  await settle();
  assert.match(client.text, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
  assert.equal(stream.resets.map(([code]) => code), [ResetCode.TIMEOUT]);
  assert.ok(lines.some((l) => /504 GET \/slow: no response from unix:\/silent\.sock within --response-timeout 30 s/.test(l)), lines.join('\n'));
});

test('--response-timeout counts from the end of the request body, not from its start', async () => {
  const { client } = front({ responseTimeoutMs: 10_000, bodyTimeoutMs: 0 });
  client.send('POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab');
  await settle();
  mock.timers.tick(50_000); // a slow upload: no response timeout runs while the body comes
  await settle();
  assert.is(client.text, '', 'no 504 while the body is still coming');
  client.send('cd');
  await settle();
  mock.timers.tick(9_999);
  await settle();
  assert.is(client.text, '');
  mock.timers.tick(1);
  await settle();
  assert.match(client.text, /^HTTP\/1\.1 504 /);
});

test('--body-timeout: a body that stalls gets 408 at the limit, the backend stream reset', async () => {
  const { client, stream } = front({ responseTimeoutMs: 0, bodyTimeoutMs: 5_000 });
  client.send('POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabcde');
  await settle();
  mock.timers.tick(4_999);
  await settle();
  assert.is(client.text, '', 'nothing a millisecond before the limit');
  mock.timers.tick(1);
  await settle();
  assert.match(client.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(client.text, /\r\nconnection: close\r\n/i, 'the rest of the body is not read: the connection closes');
  assert.equal(stream.resets.map(([code]) => code), [ResetCode.TIMEOUT]);
  assert.is(stream.written, 5, 'what came before the stall went to the backend');
  assert.ok(lines.some((l) => /request body stalled for --body-timeout 5 s after 5 bytes/.test(l)), lines.join('\n'));
});

test('--queue-timeout: a request waiting for a backend gets its 503 at the deadline, not before', () => {
  const pool = new Pool({ log, queueSize: 10, queueTimeoutMs: 5_000 });
  const outcomes: (TsgiError | undefined)[] = [];
  const waiter: Waiter = { cancelled: false, dispatch: (link, err) => { assert.is(link, null); outcomes.push(err); } };
  pool.acquire(waiter);
  assert.is(pool.queued, 1);
  mock.timers.tick(4_999);
  assert.is(outcomes.length, 0, 'still waiting a millisecond before');
  mock.timers.tick(1);
  assert.is(outcomes.length, 1);
  assert.is(outcomes[0]!.code, 'TSGI_ERR_NO_BACKEND');
  assert.is(outcomes[0]!.status, 503);
  assert.is(pool.queued, 0);
  pool.stop();
});

test('--queue-timeout: a waiter whose client left is dropped from the queue without an answer', () => {
  const pool = new Pool({ log, queueSize: 10, queueTimeoutMs: 1_000 });
  const gone: Waiter = { cancelled: false, dispatch: () => assert.unreachable('a cancelled waiter is not answered') };
  pool.acquire(gone);
  (gone as { cancelled: boolean }).cancelled = true;
  mock.timers.tick(1_000);
  assert.is(pool.queued, 0);
  pool.stop();
});

test.run();
