// The batching socket writer: frames written in one turn leave in one write, in order, and
// ending the socket right after writing still delivers them (the batch is flushed first). With
// nothing else in flight (alone), a callback's frames leave at its end, before the check phase.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { endSocket, socketWriter } from '../../src/common/socket-writer.js';

interface Ctx { dir: string; server: Server; received: Promise<Buffer>; client: Socket; chunks: number }
const test = suite<Ctx>('common/socket-writer', {} as Ctx);

test.before.each(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-writer-'));
  const path = join(ctx.dir, 's.sock');
  let resolve!: (b: Buffer) => void;
  ctx.received = new Promise((r) => { resolve = r; });
  ctx.chunks = 0;
  ctx.server = createServer((s) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => { parts.push(d); ctx.chunks++; });
    s.on('end', () => resolve(Buffer.concat(parts)));
  });
  await new Promise<void>((r) => ctx.server.listen(path, r));
  ctx.client = connect(path);
  await new Promise((r) => ctx.client.once('connect', r));
});

test.after.each(async (ctx) => {
  ctx.client.destroy();
  await new Promise((r) => ctx.server.close(r));
  rmSync(ctx.dir, { recursive: true, force: true });
});

test('frames written and the socket ended in the same turn all arrive, in order (regression: the last frames were dropped)', async (ctx) => {
  const write = socketWriter(ctx.client);
  const frames = Array.from({ length: 100 }, (_, i) => Buffer.from(`frame-${i};`));
  for (const f of frames) write(f);
  write(Buffer.alloc(100_000, 7)); // past the copy limit: sent by reference in a writev
  endSocket(ctx.client);
  const got = await ctx.received;
  assert.ok(got.equals(Buffer.concat([...frames, Buffer.alloc(100_000, 7)])));
});

test('small frames of one turn are coalesced into few writes', async (ctx) => {
  const write = socketWriter(ctx.client);
  for (let i = 0; i < 500; i++) write(Buffer.from([i & 0xff]));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
  endSocket(ctx.client);
  const got = await ctx.received;
  assert.is(got.length, 500);
  assert.ok(ctx.chunks <= 2, `arrived in ${ctx.chunks} read(s), not 500`);
});

/** Counts the writes `socket` is given (the writer's system calls, at most one each). */
function countWrites(socket: Socket): { n: number } {
  const count = { n: 0 };
  const real = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    count.n++;
    return real(...args);
  }) as Socket['write'];
  return count;
}

/** Runs `first` and `second` as two timer callbacks of one loop turn (one timers list, both due), then waits for the check phase. */
function twoCallbacks(first: () => void, second: () => void): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(first, 1);
    setTimeout(() => {
      second();
      setImmediate(resolve);
    }, 1);
  });
}

test('alone: a callback\'s frames and those of the promise jobs it queued leave in one write, before the check phase', async (ctx) => {
  const write = socketWriter(ctx.client, undefined, () => true);
  const writes = countWrites(ctx.client);
  let atCheck = -1;
  await new Promise<void>((resolve) => {
    setTimeout(() => {
      // Queued before the first frame: with a flush at the check phase it would run first and see none.
      setImmediate(() => {
        atCheck = writes.n;
        resolve();
      });
      write(Buffer.from('head;'));
      void Promise.resolve().then(() => write(Buffer.from('body;'))).then(() => write(Buffer.from('end;')));
    }, 1);
  });
  assert.is(atCheck, 1);
  endSocket(ctx.client);
  assert.is((await ctx.received).toString(), 'head;body;end;');
  assert.is(writes.n, 1);
});

test('not alone: frames of two callbacks in one turn share one write (the batching under load stays)', async (ctx) => {
  const write = socketWriter(ctx.client, undefined, () => false);
  const writes = countWrites(ctx.client);
  await twoCallbacks(() => write(Buffer.from('one;')), () => write(Buffer.from('two;')));
  assert.is(writes.n, 1);
  endSocket(ctx.client);
  assert.is((await ctx.received).toString(), 'one;two;');
});

test('alone is asked when a batch begins: frames of two callbacks leave in two writes, in order', async (ctx) => {
  let asked = 0;
  const write = socketWriter(ctx.client, undefined, () => ++asked > 0);
  const writes = countWrites(ctx.client);
  await twoCallbacks(() => {
    write(Buffer.from('one;'));
    write(Buffer.from('two;'));
  }, () => write(Buffer.from('three;')));
  assert.is(asked, 2);
  assert.is(writes.n, 2);
  endSocket(ctx.client);
  assert.is((await ctx.received).toString(), 'one;two;three;');
});

test.run();
