// An accepted socket read with onread (readInto) into ReadSlabs: its reads are larger than
// Node's 64 KiB ones, land in the slabs, and the bytes handed on stay intact (a slab is never
// written twice); a callback returning false stops the reads and resume() starts them again.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadSlabs, readInto } from '../../src/common/socket-reads.js';

interface Ctx { dir: string; server: Server; accepted: Promise<Socket>; clients: Socket[] }
const test = suite<Ctx>('common/socket-reads', {} as Ctx);

const SLAB = 256 * 1024;

test.before.each(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-reads-'));
  ctx.clients = [];
  let resolve!: (s: Socket) => void;
  ctx.accepted = new Promise((r) => { resolve = r; });
  // Paused on connect: the test decides when the first read happens.
  ctx.server = createServer({ pauseOnConnect: true }, resolve);
  await new Promise<void>((r) => ctx.server.listen(join(ctx.dir, 's.sock'), r));
});

test.after.each(async (ctx) => {
  for (const c of ctx.clients) c.destroy();
  await new Promise((r) => ctx.server.close(r));
  rmSync(ctx.dir, { recursive: true, force: true });
});

/** Connects, writes `body` and the FIN, and resolves once the kernel holds it all. */
async function send(ctx: Ctx, body: Buffer): Promise<Socket> {
  const client = connect(join(ctx.dir, 's.sock'));
  ctx.clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once('error', reject);
    client.end(body, () => resolve());
  });
  return ctx.accepted;
}

/** Reads `socket` with readInto until its end: the chunks as handed to the callback. */
function readAll(socket: Socket, stopFirst = false): { chunks: Buffer[]; ended: Promise<void>; ok: boolean } {
  const slabs = new ReadSlabs();
  const chunks: Buffer[] = [];
  let stopped = false;
  const ok = readInto(socket, () => slabs.next(), (n, into) => {
    chunks.push(slabs.filled(n, into));
    if (stopFirst && !stopped) {
      stopped = true;
      setImmediate(() => socket.resume());
      return false;
    }
    return true;
  });
  const ended = new Promise<void>((resolve) => socket.once('end', resolve));
  return { chunks, ended, ok };
}

test('a 150 KiB body waiting in the socket comes in one read, into a slab, intact', async (ctx) => {
  const body = randomBytes(150 * 1024);
  const socket = await send(ctx, body);
  const r = readAll(socket);
  assert.ok(r.ok, 'readInto took the accepted socket');
  socket.resume();
  await r.ended;
  assert.ok(r.chunks.length > 0);
  assert.ok(Buffer.concat(r.chunks).equals(body));
  assert.is(r.chunks[0]!.length, body.length, 'one read (Node reads at most 64 KiB at a time)');
  for (const c of r.chunks) assert.is(c.buffer.byteLength, SLAB);
});

test('4 MiB across many reads and slabs: every view handed on still holds its bytes at the end; a false stops and resume() restarts', async (ctx) => {
  const body = randomBytes(4 * 1024 * 1024);
  const client = connect(join(ctx.dir, 's.sock'));
  ctx.clients.push(client);
  const socket = await ctx.accepted;
  const r = readAll(socket, true);
  assert.ok(r.ok);
  socket.resume();
  client.end(body);
  await r.ended;
  assert.ok(r.chunks.length > 1);
  assert.ok(Buffer.concat(r.chunks).equals(body), 'no slab was written over while its views were held');
  const slabs = new Set(r.chunks.map((c) => c.buffer));
  assert.ok(slabs.size >= (4 * 1024 * 1024) / SLAB, `${slabs.size} slabs for 4 MiB`);
});

test.run();
