// Clients that try to exhaust, lock out or confuse the front, against the real processes: a
// pipeliner that never reads, sockets that linger after the front is done with them, clients
// that never read a response, an upload slower than --response-timeout, an endless unread body,
// a flood of refused connections, and a client that half-closes after its requests. Each test
// asserts the bound (requests let through, descriptors, statuses, log lines), never a duration.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call, newAgent, newCtx, poll, setUp, type Ctx } from '../helpers/e2e.js';
import { fixture, startBackend, startFront, tempDir } from '../helpers/procs.js';
import { getRequest, openSocket, parseResponse, statusOf } from '../helpers/raw-http.js';

const MIB = 1024 * 1024;
const H = 'Host: tsgi.test\r\n';

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** A client that keeps its side open after the server's FIN (allowHalfOpen): it never closes. */
function stubbornSocket(port: number): Promise<{ socket: Socket; received: string; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const state = { socket, received: '', ended: false };
    socket.on('data', (c: Buffer) => { state.received += c.toString('latin1'); });
    socket.on('end', () => { state.ended = true; });
    socket.on('close', () => { state.ended = true; });
    socket.on('error', () => {});
    socket.once('error', reject);
    socket.once('connect', () => resolve(state));
  });
}

interface Counts { big: number; streams: number; aborted: number }

async function counts(url: string): Promise<Counts> {
  return JSON.parse((await call(`${url}/count`)).text) as Counts;
}

interface HostileCtx extends Ctx {
  files?: string;
}

const s = suite<HostileCtx>('e2e/hostile-clients', newCtx());
setUp(s, async (ctx) => {
  ctx.files = tempDir('tsgi-e2e-hostile-');
  writeFileSync(join(ctx.files, 'big.bin'), Buffer.alloc(32 * MIB, 0x62));
  ctx.backend = await startBackend(fixture('hostile.js'));
  ctx.front = await startFront([ctx.backend.socket], [
    '--send-timeout', '1', '--linger-timeout', '1', '--response-timeout', '1', '--max-body-size', '1m',
    '--static', `/files=${ctx.files}`,
  ]);
  ctx.agent = newAgent();
});

s('a client that pipelines and never reads gets no more requests parsed than its socket can hold', async (ctx) => {
  const front = ctx.front!;
  const before = await counts(front.url);
  const rssBefore = rss(front.pid);
  const socket = await openSocket(front.port);
  socket.pause(); // reads nothing
  const requests = 300;
  socket.write(Array.from({ length: requests }, (_, i) => `GET /big?kb=192&i=${i} HTTP/1.1\r\n${H}\r\n`).join(''));
  // The front gives up on it at --send-timeout: until then it parsed only what the socket took.
  await front.waitForStderr(/closed the connection of 127\.0\.0\.1: .*could not be written for --send-timeout \(1 s\)/);
  const peak = rss(front.pid);
  socket.destroy();
  const after = await counts(front.url);
  const parsed = after.big - before.big;
  assert.ok(parsed >= 1, 'the first request was served');
  assert.ok(parsed < requests / 3, `the front parsed ${parsed} of ${requests} pipelined requests for a client reading none`);
  assert.ok(peak - rssBefore < 50 * MIB, `front RSS grew by ${((peak - rssBefore) / MIB).toFixed(1)} MiB`);
  assert.is((await call(`${front.url}/count`, { dispatcher: ctx.agent })).status, 200, 'others are served');
});

s('a response the client never reads is abandoned at --send-timeout, and the app is told', async (ctx) => {
  const front = ctx.front!;
  const before = await counts(front.url);
  const socket = await openSocket(front.port);
  socket.pause();
  socket.write(getRequest('/stream', { close: false }));
  await front.waitForStderr(/the response to GET \/stream could not be written for --send-timeout \(1 s\), \d+ bytes unsent/);
  socket.resume(); // reads what was sent, then the close
  await socket.gone;
  await poll(async () => ((await counts(front.url)).aborted > before.aborted ? true : undefined), 'the app to see tsgi.signal abort');
});

s('a static file the client never reads is abandoned at --send-timeout too', async (ctx) => {
  const front = ctx.front!;
  const socket = await openSocket(front.port);
  socket.pause();
  socket.write(getRequest('/files/big.bin', { close: false }));
  await front.waitForStderr(/the response to GET \/files\/big\.bin could not be written for --send-timeout/);
  socket.resume();
  await socket.gone;
});

s('a socket that keeps sending after Connection: close is closed at --linger-timeout', async (ctx) => {
  const socket = await openSocket(ctx.front!.port);
  socket.write(getRequest('/count'));
  // One byte every 50 ms: an idle timer would never fire; the linger deadline does.
  const dribble = setInterval(() => { if (!socket.destroyed) socket.write('x'); }, 50);
  try {
    await socket.gone;
  } finally {
    clearInterval(dribble);
  }
  assert.is(statusOf(socket.received()), 200, 'the response came first');
});

s('a refused request\'s socket that keeps sending is closed at --linger-timeout', async (ctx) => {
  const socket = await openSocket(ctx.front!.port);
  socket.write('GET / HTTP/1.1\r\n\r\n'); // no Host: 400
  const dribble = setInterval(() => { if (!socket.destroyed) socket.write('x'); }, 50);
  try {
    await socket.gone;
  } finally {
    clearInterval(dribble);
  }
  assert.is(statusOf(socket.received()), 400);
});

s('an upload slower than --response-timeout is not a silent backend', async (ctx) => {
  const socket = await openSocket(ctx.front!.port);
  const parts = 5;
  socket.write(`POST /read HTTP/1.1\r\n${H}Content-Length: ${parts * 1000}\r\nConnection: close\r\n\r\n`);
  for (let i = 0; i < parts; i++) {
    await sleep(400); // the client's pace: 2 s in all, twice the response timeout
    socket.write('u'.repeat(1000));
  }
  await socket.gone;
  const res = parseResponse(socket.received());
  assert.is(res.status, 200);
  assert.is(res.body, `read ${parts * 1000}`);
});

s('an endless body the app does not read is dropped within bounds, then the connection closed', async (ctx) => {
  const front = ctx.front!;
  const socket = await openSocket(front.port);
  socket.write(`POST /ignore HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`);
  const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x63), Buffer.from('\r\n')]);
  let sent = 0;
  const limit = 256 * MIB;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (!socket.destroyed && sent < limit) {
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      resolve();
    };
    socket.once('close', () => resolve());
    pump();
  });
  await socket.gone;
  assert.ok(sent < limit, `the front kept taking the body: ${sent} bytes sent`);
  assert.is(statusOf(socket.received()), 200, 'the answer came first');
  await front.waitForStderr(/closing the connection of 127\.0\.0\.1: dropped \d+ bytes of the unread body of POST \/ignore, over 1048576/);
});

s('a client that half-closes after its requests gets every answer, then the close', async (ctx) => {
  const socket = await openSocket(ctx.front!.port);
  socket.end(`GET /count?a HTTP/1.1\r\n${H}\r\nGET /big?kb=64 HTTP/1.1\r\n${H}\r\nGET /count?c HTTP/1.1\r\n${H}\r\n`);
  await socket.gone;
  let rest = socket.received();
  const statuses: number[] = [];
  while (rest.length > 0) {
    const r = parseResponse(rest);
    statuses.push(r.status);
    rest = r.rest;
  }
  // A 100 Continue may come first: the front's probe of whether a half-closed client is still there.
  assert.equal(statuses.filter((st) => st !== 100), [200, 200, 200]);
  assert.ok(statuses.filter((st) => st === 100).length <= 2, 'two probes at most');
});

s.run();

// ---------------------------------------------------------------------------------------------
const refused = suite<Ctx>('e2e/refused-connections', newCtx());
setUp(refused, async (ctx) => {
  ctx.backend = await startBackend(fixture('hostile.js'));
  ctx.front = await startFront([ctx.backend.socket], ['--max-connections', '5']);
  ctx.agent = newAgent();
});

refused('a flood of connections over --max-connections holds a bounded number of descriptors', async (ctx) => {
  const front = ctx.front!;
  const baseline = fds(front.pid);
  const held = await Promise.all(Array.from({ length: 5 }, () => openSocket(front.port)));
  for (const h of held) h.write('GET /count HTTP/1.1\r\n'); // a head begun: the connection stays
  // Clients that never close their side: each refused socket would stay as long as they like.
  const flood = await Promise.all(Array.from({ length: 200 }, () => stubbornSocket(front.port)));
  // Every refused one got its 503 and the front's FIN (or was cut once too many lingered).
  await poll(async () => (flood.every((f) => f.ended) ? true : undefined), 'every refused connection answered');
  const peak = fds(front.pid);
  for (const f of [...flood.map((f) => f.socket), ...held]) f.destroy();
  assert.ok(peak - baseline <= 5 + 64 + 4, `the front holds ${peak - baseline} descriptors for 5 connections and 200 refused`);
  assert.ok(flood.some((f) => statusOf(f.received) === 503), 'refused ones are told 503');
});

refused.run();
