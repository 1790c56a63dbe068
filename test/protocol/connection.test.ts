// The connection state machine as one conformance suite, run twice: over an in-memory pair that
// delivers each tick's writes glued into one chunk on a later turn, and over a real Unix socket.
// Frames are tapped on both ends, so tests check what went over the wire as well as the events.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  Connection, DEFAULTS, Flags, FrameDecoder, FrameType, GoAway, Hello, LOCAL_CONNECTION_LOST, PEER_LIMITS, Ping, REPLY_LIMITS,
  Request, Reset, ResetCode, Response, Trailers, TsgiError, Window, encodeFrame, frameHeader, packHeaders, unpackHeaders,
} from '../../src/protocol/index.js';
import type { ConnectionOptions, RequestHead, Stream, tsgi } from '../../src/protocol/index.js';
import { eventually, throwsCode } from '../helpers/assert.js';

// ---- transports --------------------------------------------------------------------------

/** One end of a byte pipe, as the I/O layer sees it. */
interface End {
  send(chunk: Uint8Array): void;
  /** Ends the pipe after what was already sent; both ends then get onClose. */
  close(): void;
  onData: (chunk: Buffer) => void;
  onClose: () => void;
}

interface Transport {
  name: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  pair(): Promise<[client: End, server: End]>;
}

class MemoryEnd implements End {
  peer: MemoryEnd | null = null;
  onData = (_chunk: Buffer): void => {};
  onClose = (): void => {};
  #queue: Buffer[] = [];
  #ended = false;
  #closed = false;

  send(chunk: Uint8Array): void {
    if (this.#ended) return;
    // Copied, as a socket would; everything written in one tick arrives as one chunk.
    if (this.#queue.push(Buffer.from(chunk)) === 1) setImmediate(() => this.#flush());
  }

  close(): void {
    const peer = this.peer!;
    if (this.#ended) return;
    this.#ended = peer.#ended = true;
    setImmediate(() => {
      this.#flush();
      peer.#flush();
      this.#notify();
      peer.#notify();
    });
  }

  #flush(): void {
    const chunks = this.#queue;
    this.#queue = [];
    if (chunks.length > 0 && !this.peer!.#closed) this.peer!.onData(Buffer.concat(chunks));
  }

  #notify(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose();
  }
}

const memoryTransport: Transport = {
  name: 'an in-memory pair',
  async setUp() {},
  async tearDown() {},
  async pair() {
    const client = new MemoryEnd();
    const server = new MemoryEnd();
    client.peer = server;
    server.peer = client;
    return [client, server];
  },
};

function socketEnd(socket: net.Socket): End {
  const end: End = {
    send: (chunk) => {
      if (!socket.writableEnded && !socket.destroyed) socket.write(chunk);
    },
    close: () => {
      socket.end();
    },
    onData: () => {},
    onClose: () => {},
  };
  socket.on('data', (chunk: Buffer) => end.onData(chunk));
  socket.on('close', () => end.onClose());
  socket.on('error', () => {}); // e.g. EPIPE after the peer closed; 'close' follows
  return end;
}

function unixTransport(): Transport {
  const file = path.join(os.tmpdir(), `tsgi-connection-test-${process.pid}-${Date.now().toString(36)}.sock`);
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  let accept: ((socket: net.Socket) => void) | null = null;
  return {
    name: 'a Unix socket',
    async setUp() {
      server = net.createServer((socket) => {
        sockets.add(socket);
        accept?.(socket);
      });
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(file, resolve);
      });
    },
    async tearDown() {
      for (const socket of sockets) socket.destroy();
      if (server !== null) await new Promise<void>((resolve) => server!.close(() => resolve()));
      fs.rmSync(file, { force: true });
    },
    async pair() {
      const accepted = new Promise<net.Socket>((resolve) => { accept = resolve; });
      const client = net.connect(file);
      sockets.add(client);
      await new Promise<void>((resolve, reject) => {
        client.once('connect', resolve);
        client.once('error', reject);
      });
      return [socketEnd(client), socketEnd(await accepted)];
    },
  };
}

// ---- a connected pair of Connections, with taps -------------------------------------------

/** 'client>' is what the client wrote; '>client' is what reached it. */
type Direction = 'client>' | 'server>' | '>client' | '>server';

interface Logged {
  dir: Direction;
  type: number;
  flags: number;
  stream: number;
  length: number;
  /** A copy of the payload, except for DATA. */
  payload: Buffer | null;
}

interface Pair {
  client: Connection;
  server: Connection;
  clientErrors: TsgiError[];
  serverErrors: TsgiError[];
  log: Logged[];
  /** Bytes from the client's end of the pipe that bypass the client Connection (forged frames). */
  rawToServer(bytes: Uint8Array): void;
  rawToClient(bytes: Uint8Array): void;
  close(): void;
  /** Both ends have seen the transport close. */
  readonly closed: boolean;
}

interface PairOptions {
  client?: Partial<ConnectionOptions>;
  server?: Partial<ConnectionOptions>;
  /** false: neither side sends HELLO, and nothing waits for the handshake. */
  start?: boolean;
}

function tap(dir: Direction, log: Logged[]): (chunk: Uint8Array) => void {
  const decoder = new FrameDecoder(DEFAULTS.maxFrameSize);
  let broken = false;
  return (chunk) => {
    if (broken) return;
    try {
      decoder.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), (type, flags, stream, payload) => {
        log.push({ dir, type, flags, stream, length: payload.length, payload: type === FrameType.DATA ? null : Buffer.from(payload) });
      });
    } catch {
      broken = true; // a forged bad frame: this direction is finished anyway
    }
  };
}

async function connect(transport: Transport, opened: Pair[], options: PairOptions = {}): Promise<Pair> {
  const [clientEnd, serverEnd] = await transport.pair();
  const log: Logged[] = [];
  let closedEnds = 0;
  const make = (role: 'client' | 'server', end: End, own: Partial<ConnectionOptions> = {}) => {
    const out = tap(role === 'client' ? 'client>' : 'server>', log);
    const into = tap(role === 'client' ? '>client' : '>server', log);
    const errors: TsgiError[] = [];
    const conn = new Connection({
      ...own,
      role,
      write: (chunk) => {
        out(chunk);
        end.send(chunk);
      },
      onError: (err) => {
        errors.push(err);
        own.onError?.(err);
        end.close(); // what the I/O layer does
      },
    });
    end.onData = (chunk) => {
      into(chunk);
      conn.receive(chunk);
    };
    end.onClose = () => {
      closedEnds++;
      conn.destroy('transport closed');
    };
    return { conn, errors };
  };
  const c = make('client', clientEnd, options.client);
  const s = make('server', serverEnd, options.server);
  const pair: Pair = {
    client: c.conn,
    server: s.conn,
    clientErrors: c.errors,
    serverErrors: s.errors,
    log,
    rawToServer: (bytes) => clientEnd.send(bytes),
    rawToClient: (bytes) => serverEnd.send(bytes),
    close: () => clientEnd.close(),
    get closed() {
      return closedEnds === 2;
    },
  };
  opened.push(pair);
  if (options.start !== false) {
    pair.client.start();
    pair.server.start();
    await eventually(() => pair.client.ready && pair.server.ready, 'HELLO both ways');
  }
  return pair;
}

function sent(p: Pair, dir: Direction, type: number, stream?: number): Logged[] {
  return p.log.filter((f) => f.dir === dir && f.type === type && (stream === undefined || f.stream === stream));
}

function dataBytes(p: Pair, dir: Direction, stream: number): number {
  return sent(p, dir, FrameType.DATA, stream).reduce((n, f) => n + f.length, 0);
}

function noErrors(p: Pair): void {
  assert.equal(p.clientErrors.map((e) => e.message), [], 'client connection errors');
  assert.equal(p.serverErrors.map((e) => e.message), [], 'server connection errors');
}

// ---- streams ------------------------------------------------------------------------------

interface Watched {
  head: tsgi.Response | null;
  chunks: Buffer[];
  bytes: number;
  ended: boolean;
  resets: [number, string][];
}

/** Records a stream's events; `consume` false plays a receiver that never reads. */
function watch(stream: Stream, consume = true): Watched {
  const w: Watched = { head: null, chunks: [], bytes: 0, ended: false, resets: [] };
  stream.handler = {
    onHead: (head, end) => {
      w.head = head;
      if (end) w.ended = true;
    },
    onData: (chunk, end) => {
      w.chunks.push(chunk);
      w.bytes += chunk.length;
      if (end) w.ended = true;
      if (consume) stream.consume(chunk.length);
    },
    onReset: (code, message) => w.resets.push([code, message]),
  };
  return w;
}

function requestHead(target: string): RequestHead {
  return { method: 'POST', target, headers: packHeaders(['Host', 'backend.test', 'X-Target', target]) };
}

function noise(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// ---- the suite ----------------------------------------------------------------------------

function conformance(transport: Transport): void {
  const test = suite(`protocol/connection over ${transport.name}`);
  const opened: Pair[] = [];
  const open = (options?: PairOptions): Promise<Pair> => connect(transport, opened, options);

  test.before(() => transport.setUp());
  test.after(() => transport.tearDown());
  test.after.each(async () => {
    const pairs = opened.splice(0);
    for (const p of pairs) p.close();
    await eventually(() => pairs.every((p) => p.closed), 'transports to close');
  });

  test('HELLO both ways: ready, the highest common version, the peer settings learnt', async () => {
    const readies = { client: 0, server: 0 };
    const p = await open({
      client: { versions: [1, 2, 3], software: 'front/1', initialWindow: 100_000, maxStreams: 0, onReady: () => readies.client++ },
      server: {
        versions: [2, 3, 4], software: 'app/2', maxFrameSize: 65536, initialWindow: 70_000, maxStreams: 3,
        onReady: () => readies.server++,
      },
    });
    assert.equal(readies, { client: 1, server: 1 });
    assert.is(p.client.version, 3);
    assert.is(p.server.version, 3);
    assert.ok(p.client.valueEncoder.transient && p.server.valueEncoder.transient, 'version 3: transient values on');
    assert.equal(
      [p.client.peerSoftware, p.client.peerMaxFrameSize, p.client.peerInitialWindow, p.client.peerMaxStreams],
      ['app/2', 65536, 70_000, 3]);
    assert.equal(
      [p.server.peerSoftware, p.server.peerMaxFrameSize, p.server.peerInitialWindow, p.server.peerMaxStreams],
      ['front/1', DEFAULTS.maxFrameSize, 100_000, 0]);
    for (const dir of ['client>', 'server>'] as const) {
      const first = p.log.find((f) => f.dir === dir)!;
      assert.equal([first.type, first.stream], [FrameType.HELLO, 0], `${dir} starts with HELLO on stream 0`);
    }
    // The server's maxStreams caps what the client opens.
    const streams = [0, 1, 2].map((i) => p.client.open(requestHead(`/${i}`), true));
    assert.equal(streams.map((s) => s.id), [1, 3, 5]);
    assert.is(streams[0]!.sendWindow, 70_000, 'send credit is the peer\'s initial window');
    assert.not.ok(p.client.canOpen);
    throwsCode(() => p.client.open(requestHead('/3'), true), TsgiError, 'TSGI_ERR_STREAM_REFUSED');
    noErrors(p);
  });

  test('no common version: TSGI_ERR_VERSION on both sides, and both close', async () => {
    const p = await open({ client: { versions: [1] }, server: { versions: [2, 3] }, start: false });
    p.client.start();
    p.server.start();
    await eventually(() => p.closed, 'the transport to close');
    for (const [side, errors] of [['client', p.clientErrors], ['server', p.serverErrors]] as const) {
      assert.equal(errors.map((e) => e.code), ['TSGI_ERR_VERSION'], `${side} errors`);
    }
    assert.not.ok(p.client.ready);
    assert.not.ok(p.server.ready);
    assert.ok(p.client.closed && p.server.closed);
  });

  test('version 2: an upgrade request is answered by a 101 and the stream carries bytes both ways, each half-closed on its own', async () => {
    const heads: tsgi.Request[] = [];
    const p = await open({
      server: {
        onRequest: (stream, head, end) => {
          heads.push(head);
          assert.not.ok(end, 'an upgrade request keeps its stream open');
          assert.ok(stream.upgrade);
          stream.sendResponse({ status: 101, headers: packHeaders(['Upgrade', 'websocket', 'Connection', 'Upgrade']) }, false);
          assert.ok(stream.tunnel);
          stream.handler = {
            onData: (chunk, end) => {
              stream.consume(chunk.length);
              if (chunk.length > 0) stream.write(Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1'));
              if (end) stream.end();
            },
          };
        },
      },
    });
    assert.ok(p.client.version >= 2, 'tunnels need version 2 or later');
    const stream = p.client.open({ ...requestHead('/ws'), method: 'GET', upgrade: true }, false);
    assert.ok(stream.upgrade);
    const w = watch(stream);
    await eventually(() => w.head !== null, 'the 101');
    assert.is(w.head!.status, 101);
    assert.ok(stream.tunnel);
    assert.equal(unpackHeaders(w.head!.headers).map((x) => x.toLowerCase()), ['upgrade', 'websocket', 'connection', 'upgrade'],
      'the 101 carries its headers (hop-by-hop ones included)');
    stream.write(Buffer.from('hello'));
    await eventually(() => w.bytes === 5, 'the echo');
    assert.is(Buffer.concat(w.chunks).toString(), 'HELLO');
    stream.end();
    await eventually(() => w.ended, 'the server half-closes after the client did');
    assert.is(heads[0]!.upgrade, true);
    await eventually(() => p.client.streams.size === 0 && p.server.streams.size === 0, 'both stream tables to empty');
    noErrors(p);
  });

  test('version 1: a peer that speaks only 1 never gets an upgrade request, and a 101 it did not ask for is refused', async () => {
    const seen: [boolean, boolean][] = [];
    const p = await open({
      client: { versions: [1, 2] },
      server: {
        versions: [1],
        onRequest: (stream, head, end) => {
          seen.push([head.upgrade, end]);
          assert.not.ok(stream.upgrade);
          try {
            stream.sendResponse({ status: 101, headers: {} }, false);
            assert.unreachable('a 101 without an upgrade request');
          } catch (err) {
            assert.is((err as TsgiError).code, 'TSGI_ERR_PROTOCOL');
          }
          stream.sendResponse({ status: 200, headers: {} }, true);
        },
      },
    });
    assert.is(p.client.version, 1);
    assert.is(p.server.version, 1);
    assert.not.ok(p.client.valueEncoder.transient || p.server.valueEncoder.transient, 'no transient values before version 3');
    const stream = p.client.open({ ...requestHead('/ws'), method: 'GET', upgrade: true }, true);
    assert.not.ok(stream.upgrade, 'not sent as an upgrade to a version-1 peer');
    const w = watch(stream);
    await eventually(() => w.ended, 'the response');
    assert.is(w.head!.status, 200);
    assert.equal(seen, [[false, true]]);
    const req = sent(p, 'client>', FrameType.REQUEST)[0]!;
    assert.is(Request.decode(req.payload!).upgrade, false, 'no upgrade field on the wire');
    noErrors(p);
  });

  test('a 101 to a stream that did not ask to upgrade resets it with PROTOCOL_ERROR', async () => {
    const p = await open({
      server: {
        onRequest: (stream) => {
          p.rawToClient(encodeFrame(FrameType.RESPONSE, 0, stream.id, Response.encode({ status: 101 }).finish()));
        },
      },
    });
    const stream = p.client.open(requestHead('/plain'), true);
    const w = watch(stream);
    await eventually(() => w.resets.length === 1, 'the reset');
    assert.is(w.resets[0]![0], ResetCode.PROTOCOL_ERROR);
    assert.is(w.head, null);
  });

  test('a frame before HELLO: onError, GOAWAY(PROTOCOL_ERROR), the connection destroyed', async () => {
    const early = [
      encodeFrame(FrameType.PING, 0, 0, Ping.encode({ id: 1 }).finish()),
      encodeFrame(FrameType.REQUEST, 0, 1, new Uint8Array(0)),
    ];
    for (const frame of early) {
      const p = await open({ start: false });
      p.server.start();
      p.rawToServer(frame);
      await eventually(() => p.closed, 'the transport to close');
      assert.equal(p.serverErrors.map((e) => e.code), ['TSGI_ERR_PROTOCOL']);
      assert.ok(p.server.closed);
      assert.equal(p.log.filter((f) => f.dir === 'server>').map((f) => f.type), [FrameType.HELLO, FrameType.GOAWAY]);
      assert.is(GoAway.decode(sent(p, 'server>', FrameType.GOAWAY)[0]!.payload!).code, ResetCode.PROTOCOL_ERROR);
    }
  });

  test('200 concurrent streams, requests, responses and bodies interleaved, each demultiplexed', async () => {
    const N = 200;
    const p = await open({
      server: {
        onRequest: (stream, head) => {
          const target = head.target;
          stream.sendResponse({ status: 200, headers: packHeaders(['X-Target', target, 'X-Stream', String(stream.id)]) }, false);
          (stream.handler ??= {}).onData = (chunk, end) => {
            stream.consume(chunk.length);
            if (chunk.length > 0) stream.write(chunk);
            if (end) stream.end();
          };
        },
      },
    });
    const bodies = Array.from({ length: N }, (_, i) => noise((i * 2113) % 9000, i + 1));
    const streams = bodies.map((_, i) => p.client.open(requestHead(`/item/${i}`), false));
    const watched = streams.map((s) => watch(s));
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < N; i++) {
        const body = bodies[i]!;
        const third = Math.ceil(body.length / 3);
        streams[i]!.write(body.subarray(round * third, (round + 1) * third), round === 2);
      }
      await nextTurn(); // let responses start while requests are still being written
    }
    await eventually(() => watched.every((w) => w.ended), 'every response to end');
    const ids = new Set(streams.map((s) => s.id));
    assert.is(ids.size, N, 'stream ids are distinct');
    assert.ok([...ids].every((id) => id % 2 === 1), 'client stream ids are odd');
    for (let i = 0; i < N; i++) {
      const w = watched[i]!;
      assert.equal(w.resets, [], `stream ${i} resets`);
      assert.is(w.head?.status, 200);
      assert.equal(unpackHeaders(w.head!.headers), ['X-Target', `/item/${i}`, 'X-Stream', String(streams[i]!.id)]);
      assert.ok(Buffer.concat(w.chunks).equals(bodies[i]!), `stream ${i}: body echoed intact (${w.bytes} of ${bodies[i]!.length} bytes)`);
    }
    await eventually(() => p.client.streams.size === 0 && p.server.streams.size === 0, 'both stream tables to empty');
    noErrors(p);
  });

  test('flow control: a sender never exceeds the window; a receiver that does not consume gets exactly it', async () => {
    const WINDOW = 64 * 1024;
    const TOTAL = 2 * 1024 * 1024;
    let receiver: { stream: Stream; watched: Watched } | null = null;
    let consumeUntil = 0; // the receiver consumes what arrives while it has consumed less than this
    let consumed = 0;
    const pongs: number[] = [];
    const p = await open({
      client: { onPong: (id) => pongs.push(id) },
      server: {
        initialWindow: WINDOW,
        onRequest: (stream) => {
          const watched = watch(stream, false);
          const record = stream.handler!.onData!;
          (stream.handler ??= {}).onData = (chunk, end) => {
            record(chunk, end);
            if (consumed < consumeUntil) {
              consumed += chunk.length;
              stream.consume(chunk.length);
            }
          };
          receiver = { stream, watched };
        },
      },
    });
    const body = noise(TOTAL, 7);
    const tail = Buffer.from('and a little more');
    const s = p.client.open(requestHead('/upload'), false);
    let sentAtDrain = -1;
    (s.handler ??= {}).onDrain = () => {
      if (sentAtDrain < 0) sentAtDrain = dataBytes(p, 'client>', s.id);
    };
    /** A PONG comes back after the server has read everything the client sent before the PING. */
    const roundTrip = async (id: number): Promise<void> => {
      p.client.ping(id);
      await eventually(() => pongs.includes(id), `PONG ${id}`);
    };
    assert.is(s.write(body), false, 'write() asks the producer to pause');
    assert.ok(s.blocked);

    await eventually(() => receiver !== null && receiver.watched.bytes >= WINDOW, 'the first window of data');
    await roundTrip(1);
    const r = receiver!;
    assert.is(r.watched.bytes, WINDOW, 'the receiver has exactly its window, no more');
    assert.is(dataBytes(p, 'client>', s.id), WINDOW, 'the sender wrote exactly the window');
    assert.ok(s.blocked, 'still blocked');
    assert.is(s.write(tail), false, 'a further write() still says pause');
    assert.is(sentAtDrain, -1, 'no onDrain without credit');

    // Consume up to 1 MiB, then stop again: exactly the credit granted arrives, no more.
    consumeUntil = 1024 * 1024;
    consumed = r.watched.bytes;
    r.stream.consume(r.watched.bytes);
    await eventually(() => r.watched.bytes >= consumed + WINDOW || r.watched.resets.length > 0, 'data up to the credit');
    await roundTrip(2);
    assert.equal(r.watched.resets, [], 'the receiver saw no more than it granted');
    assert.ok(consumed >= consumeUntil && consumed < TOTAL);
    assert.is(r.watched.bytes, consumed + WINDOW, 'received: what was consumed plus one window');
    assert.ok(s.blocked, 'blocked again');
    assert.is(sentAtDrain, -1, 'no onDrain while data waits');

    consumeUntil = Infinity;
    r.stream.consume(r.watched.bytes - consumed);
    await eventually(() => sentAtDrain >= 0 || r.watched.resets.length > 0, 'onDrain');
    assert.is(sentAtDrain, TOTAL + tail.length, 'onDrain fires once everything queued has gone');
    s.end();
    await eventually(() => r.watched.ended, 'END_STREAM at the receiver');
    assert.ok(Buffer.concat(r.watched.chunks).equals(Buffer.concat([body, tail])), 'the body arrived intact and in order');

    // Replay the wire: DATA written by the client against credit that had reached it.
    let outstanding = 0;
    let most = 0;
    for (const f of p.log) {
      if (f.stream !== s.id) continue;
      if (f.dir === 'client>' && f.type === FrameType.DATA) outstanding += f.length;
      if (f.dir === '>client' && f.type === FrameType.WINDOW) outstanding -= Window.decode(f.payload!).increment;
      assert.ok(outstanding <= WINDOW, `${outstanding} bytes outstanding, over the ${WINDOW}-byte window`);
      most = Math.max(most, outstanding);
    }
    assert.is(most, WINDOW, 'the sender used the whole window');
    noErrors(p);
  });

  test('a body ended while blocked: END_STREAM follows its last byte once the credit lets it through', async () => {
    const WINDOW = 16 * 1024;
    const served = new Map<string, Watched>();
    const p = await open({
      server: { initialWindow: WINDOW, onRequest: (stream, head) => void served.set(head.target, watch(stream)) },
    });
    const body = noise(100_000, 11);
    // The end either rides on a write that does not fit the window, or on one queued behind another.
    const one = p.client.open(requestHead('/one'), false);
    assert.is(one.write(body, true), false);
    const two = p.client.open(requestHead('/two'), false);
    assert.is(two.write(body.subarray(0, 50_000)), false);
    assert.is(two.write(body.subarray(50_000), true), false, 'queued behind the first part');
    assert.not.ok(one.localEnded || two.localEnded, 'not ended while data waits');
    await eventually(() => served.get('/one')?.ended === true && served.get('/two')?.ended === true, 'END_STREAM at the server');
    for (const [target, s] of [['/one', one], ['/two', two]] as const) {
      assert.ok(Buffer.concat(served.get(target)!.chunks).equals(body), `${target}: the body arrived intact`);
      assert.ok(s.localEnded);
      const flags = sent(p, 'client>', FrameType.DATA, s.id).map((f) => f.flags & Flags.END_STREAM);
      assert.is(flags.indexOf(Flags.END_STREAM), flags.length - 1, `${target}: END_STREAM once, on the last DATA frame`);
    }
    noErrors(p);
  });

  test('DATA beyond the credit granted resets the stream with FLOW_CONTROL_ERROR on both sides', async () => {
    const WINDOW = 16 * 1024;
    const served: Watched[] = [];
    const p = await open({
      server: {
        initialWindow: WINDOW,
        onRequest: (stream, head) => {
          served.push(watch(stream, false));
          if (head.target === '/after') stream.sendResponse({ status: 204 }, true);
        },
      },
    });
    const s = p.client.open(requestHead('/upload'), false);
    const w = watch(s);
    assert.is(s.write(noise(WINDOW, 3)), false, 'the window is used up');
    await eventually(() => served.length === 1 && served[0]!.bytes === WINDOW, 'the window of data');
    p.rawToServer(encodeFrame(FrameType.DATA, 0, s.id, Buffer.from([1]))); // one byte the client had no credit for
    await eventually(() => served[0]!.resets.length > 0 && w.resets.length > 0, 'both ends to see the reset');
    assert.equal(served[0]!.resets.map(([code]) => code), [ResetCode.FLOW_CONTROL_ERROR], 'server stream');
    assert.equal(w.resets.map(([code]) => code), [ResetCode.FLOW_CONTROL_ERROR], 'client stream');
    const reset = sent(p, 'server>', FrameType.RESET, s.id);
    assert.is(reset.length, 1);
    assert.is(Reset.decode(reset[0]!.payload!).code, ResetCode.FLOW_CONTROL_ERROR);
    assert.not.ok(p.server.streams.has(s.id));
    assert.not.ok(p.client.streams.has(s.id));
    // Only the stream failed: the connection carries on.
    const after = watch(p.client.open(requestHead('/after'), true));
    await eventually(() => after.ended, 'the next response');
    assert.is(after.head?.status, 204);
    noErrors(p);
  });

  test('RESET from either side reaches the other\'s onReset; frames in flight are dropped quietly', async () => {
    const served = new Map<string, { stream: Stream; watched: Watched }>();
    const p = await open({
      server: {
        onRequest: (stream, head) => {
          served.set(head.target, { stream, watched: watch(stream) });
          if (head.target === '/a') {
            stream.sendResponse({ status: 200 }, false);
            stream.write(noise(2000, 5));
          }
        },
      },
    });
    const a = p.client.open(requestHead('/a'), false);
    const aWatched = watch(a);
    a.reset(ResetCode.CANCEL, 'client gave up'); // the server's response is already on its way
    const b = p.client.open(requestHead('/b'), false);
    const bWatched = watch(b);
    await eventually(() => served.get('/a')?.watched.resets.length === 1 && served.has('/b'), 'the server to see the RESET');
    assert.equal(served.get('/a')!.watched.resets, [[ResetCode.CANCEL, 'client gave up']]);
    assert.is(a.write(Buffer.from('late')), false, 'a reset stream takes no more data');

    served.get('/b')!.stream.reset(ResetCode.INTERNAL_ERROR);
    await eventually(() => bWatched.resets.length === 1, 'the client to see the RESET');
    assert.equal(bWatched.resets, [[ResetCode.INTERNAL_ERROR, 'INTERNAL_ERROR']], 'no message: the code is named');
    assert.equal(served.get('/b')!.watched.resets, [], 'resetting does not call one\'s own onReset');

    await eventually(() => sent(p, '>client', FrameType.DATA, a.id).length > 0, 'the in-flight response to arrive');
    await nextTurn();
    assert.is(aWatched.head, null, 'RESPONSE for a stream reset locally is ignored');
    assert.equal([aWatched.bytes, aWatched.resets.length], [0, 0]);
    assert.equal([p.client.streams.size, p.server.streams.size], [0, 0]);
    assert.ok(p.client.ready && p.server.ready);
    noErrors(p);
  });

  test('GOAWAY from the server: streams above lastStreamId refused on the client, later REQUESTs refused', async () => {
    const served: Stream[] = [];
    const goaways: [number, number, string][] = [];
    const p = await open({
      client: { onGoAway: (last, code, message) => goaways.push([last, code, message]) },
      server: { onRequest: (stream) => void served.push(stream) },
    });
    const early = [p.client.open(requestHead('/1'), true), p.client.open(requestHead('/3'), true)];
    const earlyWatched = early.map((s) => watch(s));
    await eventually(() => served.length === 2, 'both requests at the server');
    p.server.goAway(ResetCode.NO_ERROR, 'reloading');
    // The client has not read the GOAWAY yet, so it still opens a stream.
    const late = p.client.open(requestHead('/5'), true);
    const lateWatched = watch(late);
    await eventually(() => lateWatched.resets.length > 0 && goaways.length > 0, 'the GOAWAY to reach the client');
    assert.equal(goaways, [[3, ResetCode.NO_ERROR, 'reloading']]);
    assert.equal(lateWatched.resets.map(([code]) => code), [ResetCode.REFUSED_STREAM]);
    assert.not.ok(p.client.canOpen);
    throwsCode(() => p.client.open(requestHead('/7'), true), TsgiError, 'TSGI_ERR_STREAM_REFUSED', 'open after GOAWAY');

    // The server refused the late REQUEST itself, without handing it to the application.
    await eventually(() => sent(p, 'server>', FrameType.RESET, late.id).length === 1, 'the server to refuse stream 5');
    assert.is(Reset.decode(sent(p, 'server>', FrameType.RESET, late.id)[0]!.payload!).code, ResetCode.REFUSED_STREAM);
    assert.is(served.length, 2, 'onRequest not called for a request after GOAWAY');

    // Streams up to lastStreamId are still served.
    for (const stream of served) stream.sendResponse({ status: 200 }, true);
    await eventually(() => earlyWatched.every((w) => w.ended), 'the early responses');
    assert.equal(earlyWatched.map((w) => [w.head?.status, w.resets.length]), [[200, 0], [200, 0]]);
    assert.equal(lateWatched.resets.length, 1, 'refused once, not again by the RESET that followed');
    noErrors(p);
  });

  test('a GOAWAY makes the client refuse, at once, its streams above lastStreamId', async () => {
    const served: Stream[] = [];
    const p = await open({ server: { onRequest: (stream) => void served.push(stream) } });
    const streams = [1, 2, 3, 4].map((i) => p.client.open(requestHead(`/${i}`), false));
    const watched = streams.map((s) => watch(s));
    await eventually(() => served.length === 4, 'the streams at the server');
    // Forged, so only the client's handling of GOAWAY is at work: the server never refuses these.
    p.rawToClient(encodeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: 3, code: ResetCode.NO_ERROR }).finish()));
    await eventually(() => p.client.goAwayReceived, 'the GOAWAY');
    assert.equal(watched.map((w) => w.resets.map(([code]) => code)), [[], [], [ResetCode.REFUSED_STREAM], [ResetCode.REFUSED_STREAM]]);
    assert.equal([...p.client.streams.keys()], [1, 3]);
    assert.not.ok(p.client.canOpen);
    // What the server still sends on a refused stream is dropped; the others are served.
    for (const stream of served) stream.sendResponse({ status: 200 }, true);
    await eventually(() => watched[0]!.head !== null && watched[1]!.head !== null, 'responses on streams 1 and 3');
    await eventually(() => sent(p, '>client', FrameType.RESPONSE).length === 4, 'every response to arrive');
    await nextTurn();
    assert.equal(watched.map((w) => w.head?.status ?? null), [200, 200, null, null]);
    noErrors(p);
  });

  test('PING is answered with a PONG carrying the same id, both ways', async () => {
    const pongs = { client: [] as number[], server: [] as number[] };
    const p = await open({
      client: { onPong: (id) => pongs.client.push(id) },
      server: { onPong: (id) => pongs.server.push(id) },
    });
    for (const id of [0, 1, 0xffffffff]) p.client.ping(id);
    p.server.ping(77);
    await eventually(() => pongs.client.length === 3 && pongs.server.length === 1, 'the PONGs');
    assert.equal(pongs, { client: [0, 1, 0xffffffff], server: [77] });
    const pings = sent(p, 'client>', FrameType.PING).map((f) => f.payload!);
    const answers = sent(p, 'server>', FrameType.PONG).map((f) => f.payload!);
    assert.equal(answers, pings, 'PONG payloads are the PING payloads');
    noErrors(p);
  });

  const garbage: { name: string; to: 'client' | 'server'; bytes: Buffer; code: string }[] = [
    { name: 'an oversized DATA header', to: 'server', bytes: frameHeader(FrameType.DATA, 0, 1, DEFAULTS.maxFrameSize + 1), code: 'TSGI_ERR_FRAME_TOO_LARGE' },
    { name: 'an HTTP request', to: 'server', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), code: 'TSGI_ERR_FRAME_TOO_LARGE' },
    { name: 'a WINDOW with a truncated protobuf', to: 'client', bytes: encodeFrame(FrameType.WINDOW, 0, 1, Buffer.from([0x08])), code: 'TSGI_ERR_PROTOCOL' },
    { name: 'a stream id with the high bit set', to: 'client', bytes: frameHeader(FrameType.PING, 0, 0x80000000, 0), code: 'TSGI_ERR_PROTOCOL' },
  ];
  for (const g of garbage) {
    test(`${g.name} sent to the ${g.to}: onError, connection destroyed, every open stream sees LOCAL_CONNECTION_LOST`, async () => {
      const served: Watched[] = [];
      const p = await open({ server: { onRequest: (stream) => void served.push(watch(stream)) } });
      const clientWatched = [1, 2, 3, 4, 5].map((i) => watch(p.client.open(requestHead(`/${i}`), false)));
      await eventually(() => served.length === 5, 'the streams at the server');
      if (g.to === 'server') p.rawToServer(g.bytes);
      else p.rawToClient(g.bytes);
      await eventually(() => p.closed, 'the transport to close');
      const [failed, other] = g.to === 'server' ? [p.serverErrors, p.clientErrors] : [p.clientErrors, p.serverErrors];
      assert.equal(failed.map((e) => e.code), [g.code], `${g.to} errors`);
      assert.equal(other.map((e) => e.message), [], 'the other side saw no protocol error');
      const goaway = sent(p, g.to === 'server' ? 'server>' : 'client>', FrameType.GOAWAY);
      assert.is(goaway.length, 1, 'the failing side says GOAWAY');
      assert.is(GoAway.decode(goaway[0]!.payload!).code, ResetCode.PROTOCOL_ERROR);
      for (const [side, list] of [['client', clientWatched], ['server', served]] as const) {
        for (const w of list) assert.equal(w.resets.map(([code]) => code), [LOCAL_CONNECTION_LOST], `${side} stream resets`);
      }
      assert.ok(p.client.closed && p.server.closed);
      assert.equal([p.client.streams.size, p.server.streams.size], [0, 0]);
    });
  }

  test('destroy() resets every open stream once and is idempotent', async () => {
    const served: Watched[] = [];
    const p = await open({ server: { onRequest: (stream) => void served.push(watch(stream)) } });
    const streams = [1, 2, 3].map((i) => p.client.open(requestHead(`/${i}`), false));
    const watched = streams.map((s) => watch(s));
    await eventually(() => served.length === 3, 'the streams at the server');
    p.client.destroy('shutting down');
    p.client.destroy('again');
    for (const w of watched) assert.equal(w.resets, [[LOCAL_CONNECTION_LOST, 'shutting down']]);
    assert.ok(p.client.closed);
    assert.not.ok(p.client.ready);
    assert.is(p.client.streams.size, 0);

    const written = p.log.filter((f) => f.dir === 'client>').length;
    p.client.ping(9);
    p.client.goAway();
    assert.is(streams[0]!.write(Buffer.from('x')), false);
    streams[1]!.reset(ResetCode.CANCEL);
    p.client.receive(encodeFrame(FrameType.PING, 0, 0, Ping.encode({ id: 3 }).finish()));
    throwsCode(() => p.client.open(requestHead('/4'), true), TsgiError, 'TSGI_ERR_STREAM_REFUSED');
    assert.is(p.log.filter((f) => f.dir === 'client>').length, written, 'nothing written after destroy');

    p.close(); // the I/O layer closes the transport and destroys again
    await eventually(() => p.closed, 'the transport to close');
    for (const w of watched) assert.is(w.resets.length, 1, 'still reset once');
    for (const w of served) assert.equal(w.resets.map(([code]) => code), [LOCAL_CONNECTION_LOST], 'server streams');
    noErrors(p);
  });

  test.run();
}

conformance(memoryTransport);
conformance(unixTransport());

// ---- a peer that does not play fair -----------------------------------------------------------
// One Connection fed hand-made frames, over a transport the test controls: it can say it holds
// too much (write returns false) and drain later, as the socket writer does.

interface Rig {
  conn: Connection;
  /** Frames the connection wrote, decoded. */
  out: { type: number; flags: number; stream: number; payload: Buffer }[];
  /** Bytes the connection wrote. */
  bytes: number;
  /** What write() answers: false plays a peer that does not read. */
  room: boolean;
  errors: TsgiError[];
  warnings: string[];
  /** receive()'s answers, in order. */
  answers: boolean[];
  feed(...frames: Buffer[]): boolean;
}

function rig(role: 'client' | 'server', own: Partial<ConnectionOptions> = {}, hello: Partial<tsgi.Hello.$Properties> = {}): Rig {
  const decoder = new FrameDecoder(64 * 1024 * 1024, { fragmentData: false });
  const r: Rig = {
    conn: null as unknown as Connection, out: [], bytes: 0, room: true, errors: [], warnings: [], answers: [],
    feed: (...frames) => {
      const ok = r.conn.receive(Buffer.concat(frames));
      r.answers.push(ok);
      return ok;
    },
  };
  r.conn = new Connection({
    ...own,
    role,
    write: (chunk) => {
      r.bytes += chunk.length;
      decoder.push(Buffer.from(chunk), (type, flags, stream, payload) => r.out.push({ type, flags, stream, payload: Buffer.from(payload) }));
      return r.room;
    },
    onError: (err) => r.errors.push(err),
    onWarning: (message) => r.warnings.push(message),
  });
  r.conn.start();
  r.feed(helloFrame(hello));
  return r;
}

function helloFrame(fields: Partial<tsgi.Hello.$Properties> = {}): Buffer {
  return encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({
    versions: [1], maxFrameSize: DEFAULTS.maxFrameSize, initialWindow: DEFAULTS.initialWindow, maxStreams: 64, software: 'peer', ...fields,
  }).finish());
}

const pingFrame = (id: number): Buffer => encodeFrame(FrameType.PING, 0, 0, Ping.encode({ id }).finish());

function requestFrame(id: number, headers: tsgi.HeaderBlock.$Properties, end = true): Buffer {
  return encodeFrame(FrameType.REQUEST, end ? Flags.END_STREAM : 0, id, Request.encode({ method: 'GET', target: '/', headers }).finish());
}

function responseFrame(id: number, headers: tsgi.HeaderBlock.$Properties, end = true): Buffer {
  return encodeFrame(FrameType.RESPONSE, end ? Flags.END_STREAM : 0, id, Response.encode({ status: 200, headers }).finish());
}

const peer = suite('protocol/connection against a peer that does not play fair');

peer('PINGs from a peer that does not read the PONGs: reading pauses, and a flood closes the connection (PONGs were queued without bound)', () => {
  const r = rig('server');
  r.room = false;
  // A few PINGs: answered; reading goes on while fewer replies than REPLY_LIMITS.pause are owed.
  // (The first PONG finds the transport with room; it answers false, and the replies after it are owed.)
  for (let i = 1; i <= REPLY_LIMITS.pause; i++) assert.ok(r.feed(pingFrame(i)), `ping ${i}: reading goes on`);
  assert.not.ok(r.feed(pingFrame(100)), 'reading pauses once REPLY_LIMITS.pause replies are owed');
  assert.is(r.conn.repliesOwed, REPLY_LIMITS.pause);
  // The transport drained: nothing is owed, reading resumes.
  r.conn.drained();
  r.room = true;
  assert.is(r.conn.repliesOwed, 0);
  assert.ok(r.feed(pingFrame(101)));
  // A flood in one read: closed with a protocol error, after a bounded number of PONGs.
  r.room = false;
  const before = r.out.filter((f) => f.type === FrameType.PONG).length;
  const flood = Buffer.concat(Array.from({ length: 100_000 }, (_, i) => pingFrame(i + 1)));
  r.feed(flood);
  assert.is(r.errors.length, 1, 'the connection failed');
  assert.match(r.errors[0]!.message, /^PING flood: more than 256 PINGs while the peer did not read the PONGs$/);
  assert.is(r.errors[0]!.code, 'TSGI_ERR_PROTOCOL');
  const pongs = r.out.filter((f) => f.type === FrameType.PONG).length - before;
  assert.ok(pongs <= REPLY_LIMITS.pongs + 1, `at most ${REPLY_LIMITS.pongs + 1} PONGs for the flood, not ${pongs}`);
  assert.ok(r.bytes < 64 * 1024, `bytes written stay bounded (${r.bytes})`);
  assert.is(r.out.at(-1)!.type, FrameType.GOAWAY, 'GOAWAY says why');
  assert.ok(r.conn.closed);
});

peer('a peer that reads its PONGs may ping as often as it likes', () => {
  const r = rig('client');
  for (let i = 1; i <= 5000; i++) {
    assert.ok(r.feed(pingFrame(i)));
    if (i % 100 === 0) r.conn.drained(); // the transport handed its batch on
  }
  assert.equal(r.errors, []);
  assert.is(r.out.filter((f) => f.type === FrameType.PONG).length, 5000);
});

peer('REQUESTs over max_streams from a peer that does not read the RESETs: reading pauses, then the connection closes', () => {
  const r = rig('server', { maxStreams: 4, onRequest: () => {} });
  for (let id = 1; id <= 7; id += 2) r.feed(requestFrame(id, { names: [], values: [] }, false));
  r.room = false;
  const refused = Buffer.concat(Array.from({ length: 2000 }, (_, i) => requestFrame(9 + 2 * i, { names: [], values: [] })));
  r.feed(refused);
  assert.is(r.errors.length, 1);
  assert.match(r.errors[0]!.message, /streams refused or failed while the peer did not read the RESETs/);
  const resets = r.out.filter((f) => f.type === FrameType.RESET).length;
  assert.ok(resets <= 4 + REPLY_LIMITS.pongs + 1, `RESETs written stay bounded (${resets})`);
});

peer('HELLO sizes and counts past PEER_LIMITS are clamped, with one warning for the connection', () => {
  const r = rig('server', {}, { initialWindow: 0xffffffff, maxFrameSize: 0xffffffff, maxStreams: 0xffffffff, connections: 0xffffffff });
  assert.is(r.conn.peerInitialWindow, PEER_LIMITS.initialWindow);
  assert.is(r.conn.peerInitialWindow, 16 * 1024 * 1024);
  assert.is(r.conn.peerMaxFrameSize, PEER_LIMITS.maxFrameSize);
  assert.is(r.conn.peerMaxStreams, PEER_LIMITS.maxStreams);
  assert.is(r.conn.peerConnections, PEER_LIMITS.connections);
  assert.equal(r.warnings, ['peer HELLO (peer) clamped: max_frame_size 4294967295 to 16777216, initial_window 4294967295 to 16777216, '
    + 'max_streams 4294967295 to 2147483647, connections 4294967295 to 256']);
  // A response to a peer that never grants credit: no more than the clamped window is written for it.
  let stream: Stream | null = null;
  const s = rig('server', { onRequest: (st) => { stream = st; } }, { initialWindow: 0xffffffff });
  s.feed(requestFrame(1, { names: [], values: [] }));
  stream!.sendResponse({ status: 200, headers: { names: [], values: [] } }, false);
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 64; i++) stream!.write(chunk);
  const data = s.out.filter((f) => f.type === FrameType.DATA).reduce((n, f) => n + f.payload.length, 0);
  assert.is(data, 16 * 1024 * 1024, 'DATA written without credit: the clamped window');
  assert.is(s.warnings.length, 1);
  // Values within the limits: no warning.
  assert.equal(rig('client', {}, { initialWindow: 16 * 1024 * 1024, connections: 256 }).warnings, []);
});

peer('text a peer chose is cut to 256 characters: HELLO software, RESET and GOAWAY messages, versions', () => {
  const long = 'x'.repeat(900_000);
  const r = rig('client', {}, { software: long });
  assert.is(r.conn.peerSoftware.length, 256);
  const stream = r.conn.open({ method: 'GET', target: '/', headers: { names: [], values: [] } }, true);
  const resets: string[] = [];
  (stream.handler ??= {}).onReset = (_code, message) => resets.push(message);
  const goAways: string[] = [];
  const g = rig('client', { onGoAway: (_l, _c, message) => goAways.push(message) });
  r.feed(encodeFrame(FrameType.RESET, 0, stream.id, Reset.encode({ code: 2, message: long }).finish()));
  g.feed(encodeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: 0, code: 0, message: long }).finish()));
  assert.is(resets.length, 1);
  assert.is(resets[0]!.length, 256);
  assert.is(goAways[0]!.length, 256);
  const v = new Connection({ role: 'client', write: () => true, onError: (err) => resets.push(err.message) });
  v.receive(encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({ versions: Array.from({ length: 100_000 }, (_, i) => i + 1000), maxFrameSize: 65536 }).finish()));
  assert.ok(resets[1]!.startsWith('no common protocol version'));
  assert.ok(resets[1]!.length < 400, `the version error is short (${resets[1]!.length})`);
});

/** A response head of `count` references to value 1 of the table (a 4 KiB value the first head put there). */
function referencingHeads(count: number): { first: Buffer; flood: Buffer } {
  const index = 98; // a static name ('x-cache')
  return {
    first: responseFrame(1, { names: [index], values: ['v'.repeat(4096)] }),
    flood: responseFrame(3, { names: new Array(count).fill(index), refs: new Array(count).fill(1) }),
  };
}

peer('a response head that decodes past maxHeadSize fails its stream with TOO_LARGE, counted as references expand; the table stays in step', () => {
  const r = rig('client', { maxHeadSizeName: '--max-response-header-size' });
  const streams = [1, 3, 5, 7].map(() => r.conn.open({ method: 'GET', target: '/', headers: { names: [], values: [] } }, true));
  const seen = streams.map((st) => watch(st));
  // 30 references to a 4 KiB value: a few bytes framed, 120 KiB decoded.
  const { first, flood } = referencingHeads(30);
  r.feed(first, flood);
  assert.is(seen[0]!.head?.status, 200);
  assert.is(seen[1]!.head, null, 'no head for the stream over the limit');
  // The owner hears a protocol error (a 502 at the front); the backend is told TOO_LARGE.
  assert.equal(seen[1]!.resets, [[ResetCode.PROTOCOL_ERROR, 'response head over --max-response-header-size (65536 bytes of decoded header fields)']]);
  const reset = r.out.find((f) => f.type === FrameType.RESET && f.stream === 3);
  assert.is(Reset.decode(reset!.payload).code, ResetCode.TOO_LARGE, 'the backend is told');
  // The value table followed every head: a reference to value 1 still resolves.
  r.feed(responseFrame(5, { names: [98], refs: [1] }));
  assert.equal(unpackHeaders(seen[2]!.head!.headers), ['x-cache', 'v'.repeat(4096)]);
  // A plain head of many fields (under twice the limit framed, over it decoded): the same.
  r.feed(responseFrame(7, { names: new Array(20_000).fill(98), joinedValues: new Array(20_000).fill('a').join('\n') }));
  assert.is(seen[3]!.resets[0]?.[0], ResetCode.PROTOCOL_ERROR);
  assert.equal(r.errors, []);
});

peer('a head frame over twice the limit closes the connection before it is decoded (300,000 references, 250,000 fields)', () => {
  for (const flood of [referencingHeads(300_000).flood,
    responseFrame(3, { names: new Array(250_000).fill(98), joinedValues: new Array(250_000).fill('a').join('\n') })]) {
    const r = rig('client', { maxHeadSizeName: '--max-response-header-size' });
    const streams = [1, 3].map(() => r.conn.open({ method: 'GET', target: '/', headers: { names: [], values: [] } }, true));
    const seen = streams.map((st) => watch(st));
    assert.ok(flood.length < DEFAULTS.maxFrameSize, 'the flood fits in one frame');
    r.feed(referencingHeads(1).first, flood);
    assert.is(seen[0]!.head?.status, 200);
    assert.equal(r.errors.map((e) => e.message), [`a head frame of ${flood.length - 10} bytes: its fields cannot fit --max-response-header-size (65536 bytes)`]);
    assert.is(seen[1]!.resets[0]?.[0], LOCAL_CONNECTION_LOST, 'the stream ends with the connection');
    const goaway = r.out.find((f) => f.type === FrameType.GOAWAY);
    assert.ok(goaway !== undefined, 'the peer is told why (GOAWAY)');
  }
});

peer('trailers past maxHeadSize fail their stream', () => {
  const r = rig('client', { maxHeadSize: 1024 });
  const w = watch(r.conn.open({ method: 'GET', target: '/', headers: { names: [], values: [] } }, true));
  r.feed(responseFrame(1, { names: [], values: [] }, false));
  r.feed(encodeFrame(FrameType.TRAILERS, Flags.END_STREAM, 1, Trailers.encode({ headers: { names: [98], values: ['t'.repeat(2000)] } }).finish()));
  assert.is(w.resets[0]?.[0], ResetCode.PROTOCOL_ERROR);
  assert.is(Reset.decode(r.out.find((f) => f.type === FrameType.RESET)!.payload).code, ResetCode.TOO_LARGE);
});

peer('a request head that decodes past maxHeadSize is refused with TOO_LARGE and a warning; the next one is served', () => {
  const heads: string[] = [];
  const r = rig('server', { maxHeadSize: 8192, maxHeadSizeName: '--max-request-header-size', onRequest: (_s, head) => heads.push(head.target) });
  r.feed(requestFrame(1, { names: [98], values: ['v'.repeat(4096)] }));
  r.feed(requestFrame(3, { names: [98, 98, 98], refs: [1, 1, 1] }));
  r.feed(requestFrame(5, { names: [98], refs: [1] }));
  assert.is(heads.length, 2, 'streams 1 and 5 reach the application');
  const reset = r.out.find((f) => f.type === FrameType.RESET && f.stream === 3);
  const { code, message } = Reset.decode(reset!.payload);
  assert.equal({ code, message }, { code: ResetCode.TOO_LARGE, message: 'request head over --max-request-header-size (8192 bytes of decoded header fields)' });
  assert.equal(r.warnings, ['stream 3 refused: request head over --max-request-header-size (8192 bytes of decoded header fields)']);
  assert.equal(r.errors, []);
});

peer.run();
