// bench:abuse, the peer side: fake fronts that talk to `tsgi serve` and fake backends the front
// connects to, writing frames with the project's own encoders (src/protocol). Each caps what it
// sends and closes everything it opened when the attack ends.
import { rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FRAME_TYPE_NAMES, Flags, FrameDecoder, FrameType, GoAway, Hello, Ping, Request, Response, STATIC_NAMES, encodeFrame,
} from '../src/protocol/index.js';
import type { AttackSpec } from './abuse-measure.js';
import { SEND_CAP, mib, tally } from './abuse-clients.js';

const MIB = 2 ** 20;

function hello(fields: { initialWindow?: number; software?: string } = {}): Buffer {
  return encodeFrame(FrameType.HELLO, 0, 0, Hello.encode({
    versions: [1], maxFrameSize: MIB, initialWindow: fields.initialWindow ?? 256 * 1024, maxStreams: 64,
    software: fields.software ?? 'abuse',
  }).finish());
}

/** 64 KiB or so of PING frames, written again and again by a flood. */
const PINGS = (() => {
  const one = encodeFrame(FrameType.PING, 0, 0, Ping.encode({ id: 1 }).finish());
  return Buffer.concat(Array.from({ length: Math.floor(65536 / one.length) }, () => one));
})();

/** Total bytes a flood sent, over all its sockets. */
class Flood {
  sent = 0;
  stopped = false;

  /** Writes PINGs on `socket` while it takes them, until stopped or the cap is reached. */
  run(socket: Socket): void {
    const more = () => {
      while (!this.stopped && !socket.destroyed && this.sent < SEND_CAP) {
        this.sent += PINGS.length;
        if (!socket.write(PINGS)) return void socket.once('drain', more);
      }
    };
    more();
  }
}

/** A Unix-socket server standing in for a backend; the sockets still open are kept for closing. */
class FakeBackend {
  readonly path: string;
  readonly sockets = new Set<Socket>();
  /** Connections accepted so far. */
  accepted = 0;
  #server: Server;

  constructor(dir: string, onSocket: (socket: Socket) => void) {
    this.path = join(dir, `fake-${Math.random().toString(36).slice(2, 8)}.sock`);
    this.#server = createServer((socket) => {
      this.accepted++;
      socket.on('error', () => {});
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      onSocket(socket);
    });
  }

  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.path, () => resolve(`unix:${this.path}`));
    });
  }

  close(): void {
    this.#server.close();
    for (const s of this.sockets) s.destroy();
    rmSync(this.path, { force: true });
  }
}

/** A fake front's connection to `tsgi serve`, which never reads. */
function fakeFront(path: string): Socket {
  const socket = connect(path);
  socket.on('error', () => {});
  return socket;
}

/**
 * After the window, what a fake front's peer had queued for it: the socket is read for a moment
 * and the frames counted by type ("1 HELLO, 8 RESPONSE, 3.9 MiB DATA").
 */
async function peek(socket: Socket, ms = 300): Promise<string> {
  if (socket.destroyed) return 'closed by the backend';
  const counts = new Map<string, number>();
  let data = 0;
  const decoder = new FrameDecoder(64 * MIB, { fragmentData: true });
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk, (type, _flags, _stream, payload) => {
        if (type === FrameType.DATA) data += payload.length;
        else counts.set(FRAME_TYPE_NAMES[type] ?? `type ${type}`, (counts.get(FRAME_TYPE_NAMES[type] ?? `type ${type}`) ?? 0) + 1);
      });
    } catch {
      socket.destroy();
    }
  });
  socket.resume();
  await sleep(ms);
  const frames = [...counts].map(([k, n]) => `${n} ${k}`);
  if (data > 0) frames.push(`${mib(data)} DATA`);
  return `read for ${ms} ms after the window: ${frames.length === 0 ? 'nothing' : frames.join(', ')}`;
}

export const pingFloodServe: AttackSpec = {
  name: 'ping-flood-serve',
  what: 'a fake front says HELLO to tsgi serve, floods PINGs and never reads',
  async start(w) {
    const flood = new Flood();
    const socket = fakeFront(w.backendSocket);
    socket.once('connect', () => {
      socket.write(hello());
      flood.run(socket);
    });
    return async () => {
      flood.stopped = true;
      const note = `sent ${mib(flood.sent)} of PINGs${socket.destroyed ? '; closed by the backend' : ''}`;
      socket.destroy();
      return note;
    };
  },
};

export const pingFloodFront: AttackSpec = (() => {
  const flood = new Flood();
  let fake: FakeBackend;
  let armed = false;
  return {
    name: 'ping-flood-front',
    what: 'a fake backend (a second --backend) floods PINGs at the front and never reads',
    async peers(dir) {
      // Until the window opens it is a quiet backend that answers PINGs; then it floods.
      fake = new FakeBackend(dir, (socket) => {
        socket.write(hello());
        if (armed) flood.run(socket);
        else frames(socket, () => {});
      });
      return [await fake.listen()];
    },
    async start() {
      armed = true;
      for (const s of fake.sockets) {
        s.removeAllListeners('data');
        s.pause();
        flood.run(s);
      }
      return async () => {
        flood.stopped = true;
        const open = fake.sockets.size;
        fake.close();
        return `sent ${mib(flood.sent)} of PINGs on ${fake.accepted} connection(s), ${open} still open`;
      };
    },
  };
})();

export const absurdWindow: AttackSpec = {
  name: 'absurd-hello-window',
  what: 'a fake front says HELLO with initial_window 2^32-1, opens 8 streams for 128 MiB each, never reads',
  async start(w) {
    const socket = fakeFront(w.backendSocket);
    socket.once('connect', () => {
      socket.write(hello({ initialWindow: 0xffffffff }));
      for (let i = 0; i < 8; i++) {
        socket.write(encodeFrame(FrameType.REQUEST, Flags.END_STREAM, 1 + 2 * i, Request.encode({
          method: 'GET', target: '/kib?n=131072', headers: { names: [1], values: ['abuse'] },
        }).finish()));
      }
    });
    return async () => {
      const note = `asked 8 x 128 MiB; ${await peek(socket)}`;
      socket.destroy();
      return note;
    };
  },
};

export const absurdSoftware: AttackSpec = {
  name: 'absurd-hello-software',
  what: '100 fake fronts each say HELLO with a 900 KB software string and stay, never reading',
  async start(w) {
    const frame = hello({ software: 's'.repeat(900_000) });
    const sockets: Socket[] = [];
    for (let i = 0; i < 100; i++) {
      const s = fakeFront(w.backendSocket);
      s.once('connect', () => s.write(frame));
      sockets.push(s);
    }
    return async () => {
      const open = sockets.filter((s) => !s.destroyed).length;
      const first = `the first connection, ${await peek(sockets[0]!)}`;
      for (const s of sockets) s.destroy();
      return `sent ${mib(100 * frame.length)}; ${open} of 100 still open; ${first}`;
    };
  },
};

/** The frames a fake backend receives, with PINGs answered so that the front keeps it. */
function frames(socket: Socket, onFrame: (type: number, flags: number, stream: number, payload: Buffer) => void): void {
  const decoder = new FrameDecoder(16 * MIB);
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk, (type, flags, stream, payload) => {
        if (type === FrameType.PING) socket.write(encodeFrame(FrameType.PONG, 0, 0, payload));
        else onFrame(type, flags, stream, payload);
      });
    } catch {
      socket.destroy();
    }
  });
}

const BOMB_REFS = 300_000;

export const referenceBomb: AttackSpec = (() => {
  let fake: FakeBackend;
  let bombs = 0;
  let received = 0;
  const statuses: string[] = [];
  return {
    name: 'reference-bomb',
    what: `a fake backend (the only one) answers with a head naming one 4 KiB table value ${BOMB_REFS.toLocaleString('en')} times, in one frame`,
    realBackend: false,
    async peers(dir) {
      fake = new FakeBackend(dir, (socket) => {
        socket.write(hello());
        /** The id of the 4 KiB value in the front's table for this connection (0: not sent yet). */
        let seed = 0;
        let inserted = 0;
        const name = STATIC_NAMES.indexOf('x-powered-by');
        frames(socket, (type, _flags, stream, payload) => {
          if (type !== FrameType.REQUEST) return;
          const target = Request.decode(payload).target;
          if (target === '/bomb' && seed !== 0) {
            bombs++;
            const head = Response.encode({ status: 200, headers: { names: new Array(BOMB_REFS).fill(name), refs: new Array(BOMB_REFS).fill(seed) } }).finish();
            socket.write(encodeFrame(FrameType.RESPONSE, Flags.END_STREAM, stream, head));
          } else if (target === '/seed' || target === '/bomb') {
            socket.write(encodeFrame(FrameType.RESPONSE, Flags.END_STREAM, stream, Response.encode({
              status: 200, headers: { names: [0], literalNames: ['x-pad'], values: ['p'.repeat(4096)] },
            }).finish()));
            seed = ++inserted;
          } else {
            socket.write(encodeFrame(FrameType.RESPONSE, 0, stream, Response.encode({ status: 200 }).finish()));
            socket.write(encodeFrame(FrameType.DATA, Flags.END_STREAM, stream, Buffer.from('ok\n')));
          }
        });
      });
      return [await fake.listen()];
    },
    async start(w) {
      let stopped = false;
      let current: Socket | null = null;
      const loop = (async () => {
        while (!stopped) {
          await new Promise<void>((resolve) => {
            const s = current = connect(w.port, '127.0.0.1');
            // The seed's answer (a 4 KiB header), then the bomb's: its status line is the second.
            let head = '';
            s.on('error', () => {});
            s.on('data', (c: Buffer) => {
              received += c.length;
              if (head.length < 16384) head += c.toString('latin1', 0, 16384);
              if (received > SEND_CAP) s.destroy();
            });
            s.once('close', () => {
              const line = [...head.matchAll(/HTTP\/1\.1 (\d{3}[^\r\n]*)/g)][1]?.[1] ?? 'no response';
              statuses.push(line);
              resolve();
            });
            s.write('GET /seed HTTP/1.1\r\nHost: abuse\r\n\r\nGET /bomb HTTP/1.1\r\nHost: abuse\r\nConnection: close\r\n\r\n');
          });
        }
      })();
      return async () => {
        stopped = true;
        current?.destroy();
        await loop;
        fake.close();
        return `${bombs} bomb head(s) sent; the clients got ${mib(received)}; answers to /bomb: ${tally(statuses)}`;
      };
    },
  };
})();

export const goawayLoop: AttackSpec = (() => {
  let fake: FakeBackend;
  return {
    name: 'goaway-loop',
    what: 'a fake backend (a second --backend) sends GOAWAY right after HELLO',
    async peers(dir) {
      fake = new FakeBackend(dir, (socket) => {
        socket.write(Buffer.concat([hello(), encodeFrame(FrameType.GOAWAY, 0, 0, GoAway.encode({ lastStreamId: 0, code: 0, message: 'go away' }).finish())]));
        frames(socket, () => {});
      });
      return [await fake.listen()];
    },
    async start() {
      const before = fake.accepted;
      return async () => {
        const during = fake.accepted - before;
        fake.close();
        return `the front opened ${during} connection(s) to it in the window (${before} before)`;
      };
    },
  };
})();

export const PEER_ATTACKS: AttackSpec[] = [pingFloodServe, pingFloodFront, absurdWindow, absurdSoftware, referenceBomb, goawayLoop];
