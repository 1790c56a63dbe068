// A client connection uploading a large body reads it in large reads: from the body's start the
// socket reads with `onread` (common/socket-reads.ts) into 256 KiB slabs of its own, and each
// read goes to the connection's 'data' listener as before. Node's own reads are 64 KiB into a
// fresh buffer each, and an upload that waits for backend credit pauses and resumes its socket
// around every one of them; a read of up to 256 KiB takes what the client sent meanwhile.
//
// Once switched, a socket reads this way until it closes: between large bodies into small slabs
// (16 KiB), so that an idle connection holds little. HTTP/2 and TLS sockets are left alone.
import type { Socket } from 'node:net';
import { ReadSlabs, readInto } from '../../common/socket-reads.js';

/** A body declared at least this long is read in large reads. */
export const LARGE_BODY = 512 * 1024;

const kReads = Symbol('tsgi.bodyReads');

class BodyReads {
  readonly #socket: Socket;
  readonly #large = new ReadSlabs();
  #small: ReadSlabs | null = null;
  /** A large body is being read: the next read gets large room. */
  large = true;
  readonly next = (): Buffer => (this.large ? this.#large.next() : (this.#small ??= new ReadSlabs(16 * 1024, 4 * 1024)).next());
  readonly onRead = (n: number, into: Buffer): boolean => {
    const chunk = this.#large.filled(n, into);
    this.#small?.filled(n, into);
    this.#socket.emit('data', chunk);
    return true;
  };

  constructor(socket: Socket) {
    this.#socket = socket;
  }
}

type WithReads = Socket & { [kReads]?: BodyReads | null };

/** A large body starts on `socket` (an HTTP/1.1 connection's): its reads are large until largeBodyEnds. */
export function largeBodyStarts(socket: Socket): void {
  const s = socket as WithReads;
  const reads = s[kReads];
  if (reads === null) return; // this socket cannot read with onread
  if (reads !== undefined) {
    reads.large = true;
    return;
  }
  if (socket.readableLength > 0) return; // bytes wait in the socket's own buffer: next time
  const fresh = new BodyReads(socket);
  s[kReads] = readInto(socket, fresh.next, fresh.onRead) ? fresh : null;
}

/** The large body on `socket` is over: its reads go back to small room. */
export function largeBodyEnds(socket: Socket): void {
  const reads = (socket as WithReads)[kReads];
  if (reads != null) reads.large = false;
}
