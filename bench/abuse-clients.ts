// bench:abuse, the client side: HTTP clients that misbehave towards `tsgi front` (raw sockets,
// so nothing in a client library smooths them over). Each attack caps what it sends.
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AttackSpec } from './abuse-measure.js';

/** No attack sends more than this (the attacker must not blow up itself). */
export const SEND_CAP = 256 * 2 ** 20;
const MIB = 2 ** 20;

export const mib = (n: number) => (n < MIB ? `${(n / 1024).toFixed(0)} KiB` : `${(n / MIB).toFixed(n < 10 * MIB ? 1 : 0)} MiB`);

/** A raw TCP connection to the front that never reads unless told to. */
function raw(port: number, opts: { allowHalfOpen?: boolean } = {}): Socket {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? false });
  socket.on('error', () => {});
  return socket;
}

/** Opens `n` sockets, `batch` at a time with a pause between batches (the accept queue is finite). */
async function many(n: number, open: (i: number) => Socket, batch = 100): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i++) {
    out.push(open(i));
    if (i % batch === batch - 1) await sleep(20);
  }
  return out;
}

const closed = (sockets: Socket[]) => sockets.filter((s) => s.destroyed).length;

/** Bytes that left this process for the peer (written and no longer queued here). */
const taken = (s: Socket) => s.bytesWritten - s.writableLength;

/** Writes `piece()` while the socket takes it, up to SEND_CAP; stops when told or when it closes. */
function stream(socket: Socket, piece: () => Buffer, stop: { now: boolean }): void {
  const more = () => {
    while (!stop.now && !socket.destroyed && socket.bytesWritten < SEND_CAP) {
      if (!socket.write(piece())) return void socket.once('drain', more);
    }
  };
  socket.once('connect', more);
}

/** The status line of the first response on a socket that is read (and the rest discarded). */
function firstStatus(socket: Socket): () => string {
  let head = '';
  socket.on('data', (c: Buffer) => {
    if (head.length < 64) head += c.toString('latin1', 0, 64);
  });
  return () => (head === '' ? 'no response' : head.slice(0, head.indexOf('\r\n') >>> 0).replace(/^HTTP\/1\.\d /, ''));
}

/** "250 x 503 Service Unavailable, 50 x 200 OK". */
export function tally(items: string[]): string {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(i, (counts.get(i) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} x ${k}`).join(', ');
}

export const pipelineNoRead: AttackSpec = {
  name: 'pipeline-no-read',
  what: 'one connection pipelines 3,000 GETs of 192 KiB responses and never reads',
  async start(w) {
    const socket = raw(w.port);
    socket.write(Buffer.from('GET /kib?n=192 HTTP/1.1\r\nHost: abuse\r\n\r\n'.repeat(3000)));
    return async () => {
      const note = `${socket.destroyed ? 'closed by the front' : 'still open'} (asked ${mib(3000 * 192 * 1024)})`;
      socket.destroy();
      return note;
    };
  },
};

export const lingerLockout: AttackSpec = {
  name: 'linger-lockout',
  what: '--max-connections 50; 300 sockets send a request with Connection: close, read it, never close, 1 byte/s after',
  frontArgs: ['--max-connections', '50'],
  probeFresh: true,
  async start(w) {
    const statuses: (() => string)[] = [];
    let finned = 0;
    const sockets = await many(300, () => {
      const s = raw(w.port, { allowHalfOpen: true });
      s.write('GET / HTTP/1.1\r\nHost: abuse\r\nConnection: close\r\n\r\n');
      statuses.push(firstStatus(s));
      s.once('end', () => finned++);
      return s;
    });
    const drip = setInterval(() => {
      for (const s of sockets) if (!s.destroyed && s.writable) s.write('x');
    }, 1000);
    return async () => {
      clearInterval(drip);
      const note = `answers: ${tally(statuses.map((f) => f()))}; ${finned} got FIN, ${300 - closed(sockets)} still open at the end`;
      for (const s of sockets) s.destroy();
      return note;
    };
  },
};

export const noReadClients: AttackSpec = {
  name: 'no-read-clients',
  what: '1,024 clients each GET 4 MiB and never read',
  async start(w) {
    const sockets = await many(1024, () => {
      const s = raw(w.port);
      s.write('GET /kib?n=4096 HTTP/1.1\r\nHost: abuse\r\n\r\n');
      return s;
    }, 128);
    return async () => {
      const note = `${1024 - closed(sockets)} of 1024 still open at the end`;
      for (const s of sockets) s.destroy();
      return note;
    };
  },
};

export const slowUpload: AttackSpec = {
  name: 'slow-upload',
  what: '500 clients POST a 1 MiB body one byte every 2 s',
  async start(w) {
    const sockets = await many(500, () => {
      const s = raw(w.port);
      s.write('POST /read HTTP/1.1\r\nHost: abuse\r\nContent-Length: 1048576\r\n\r\n');
      s.resume();
      return s;
    });
    const drip = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write('x');
    }, 2000);
    return async () => {
      clearInterval(drip);
      const note = `${500 - closed(sockets)} of 500 still open at the end`;
      for (const s of sockets) s.destroy();
      return note;
    };
  },
};

export const unreadChunkedBody: AttackSpec = {
  name: 'unread-chunked-body',
  what: '--max-body-size 1m; one client streams an endless chunked body to an app that answers without reading it',
  frontArgs: ['--max-body-size', '1m'],
  async start(w) {
    const socket = raw(w.port);
    const status = firstStatus(socket);
    socket.write('POST /noread HTTP/1.1\r\nHost: abuse\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x62), Buffer.from('\r\n')]);
    const stop = { now: false };
    stream(socket, () => chunk, stop);
    return async () => {
      stop.now = true;
      const note = `the front took ${mib(taken(socket))}${taken(socket) >= SEND_CAP ? ' (the attacker\'s cap)' : ''} of the body `
        + `(--max-body-size 1 MiB; kernel buffers included); response: ${status()}`
        + `${socket.destroyed ? '; closed by the front' : ''}`;
      socket.destroy();
      return note;
    };
  },
};

export const chunkExtensions: AttackSpec = {
  name: 'chunk-extensions',
  what: 'a chunked POST whose chunk lines carry 1 MiB of extensions each (1 data byte per chunk)',
  async start(w) {
    const socket = raw(w.port);
    const status = firstStatus(socket);
    socket.write('POST /read HTTP/1.1\r\nHost: abuse\r\nTransfer-Encoding: chunked\r\n\r\n');
    const line = Buffer.from(`1${';ext=value'.repeat(MIB / 10)}\r\na\r\n`);
    const stop = { now: false };
    stream(socket, () => line, stop);
    return async () => {
      stop.now = true;
      const note = `the front took ${mib(taken(socket))} of chunk lines; response: ${status()}${socket.destroyed ? '; closed by the front' : ''}`;
      socket.destroy();
      return note;
    };
  },
};

export const CLIENT_ATTACKS: AttackSpec[] = [pipelineNoRead, lingerLockout, noReadClients, slowUpload, unreadChunkedBody, chunkExtensions];
