// The batching socket writer: frames written in one turn leave in one write, in order, and
// ending the socket right after writing still delivers them (the batch is flushed first).
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

test.run();
