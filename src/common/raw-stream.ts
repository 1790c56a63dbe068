// Connections served on the libuv handle itself, without a net.Socket: for servers whose
// connections each carry one short exchange (uwsgi: a connection per request), where building
// the net.Socket, its two streams and their events costs more than the request.
//
// A net.Server's listening handle calls `onconnection(err, clientHandle)` for each accepted
// connection; net.Socket's constructor is what that normally feeds. `rawAccept` puts its own
// function there and hands on the client handle in a RawStream, which reads with `onread`
// into one buffer shared by every connection (the owner takes what it needs during the call),
// writes buffers with WriteWrap requests (most complete at once: libuv tries the write first),
// and closes. These are Node's internal stream bindings (`process.binding('stream_wrap')`),
// the ones net.Socket itself drives; where they are missing or not as expected (another Node),
// `rawAccept` returns false, changing nothing, and connections arrive as net.Sockets.
import { readSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { ReadSlabs } from './socket-reads.js';

/** What an owner of a RawStream hears. The chunk is valid during the call only: copy what is kept. */
export interface RawStreamOwner {
  _onData(chunk: Buffer): void;
  /** The peer ended its side (EOF). */
  _onEnd(): void;
  /** The handle is closed: nothing more happens on this stream. */
  _onClose(): void;
  _error(err: Error): void;
}

/** What RawStream and SocketStream (a net.Socket behind the same methods) both offer. */
export interface ByteStream {
  /** The chunks the owner hears are lent: valid during the call only (else they are its to keep). */
  readonly lent: boolean;
  /**
   * From the next read on, reads go into slabs of their own (ReadSlabs): the chunks are the
   * owner's to keep (no longer lent), with no copy. For a body that follows the head.
   */
  readIntoSlabs(): void;
  readonly destroyed: boolean;
  readonly writableLength: number;
  readonly writableNeedDrain: boolean;
  readonly writableFinished: boolean;
  start(owner: RawStreamOwner): void;
  peer(): string | null;
  pause(): void;
  resume(): void;
  write(data: Uint8Array): boolean;
  end(data?: Uint8Array): void;
  onDrain(callback: () => void): void;
  onFinish(callback: () => void): void;
  destroy(): void;
  /** destroy() for an owner done with the stream: it may hear nothing more (no _onClose). */
  release(): void;
  reset(): void;
}

interface Request {
  handle: StreamHandle | null;
  oncomplete: ((status: number) => void) | null;
  buffer?: Uint8Array | null;
  stream?: RawStream;
}

/** The methods of a libuv stream handle (Pipe, TCP) that RawStream uses. */
interface StreamHandle {
  fd: number;
  /** A function always (the binding refuses anything else). */
  onread: (this: StreamHandle, arrayBuffer: ArrayBuffer | undefined) => Buffer | undefined;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: Request, data: Uint8Array): number;
  shutdown(req: Request): number;
  close(callback?: () => void): void;
  useUserBuffer?(buffer: Uint8Array): void;
  /** TCP only: close with a reset. */
  reset?(callback?: () => void): number;
  getpeername?(out: { address?: string; port?: number }): number;
  [kStream]?: RawStream;
}

interface StreamWrapBinding {
  WriteWrap: new () => Request;
  ShutdownWrap: new () => Request;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

const kStream = Symbol('tsgi.rawStream');
/** libuv's UV_EOF. */
const UV_EOF = -4095;
/** write() says "wait for drain" above this many bytes not yet handed to the kernel. */
const HIGH_WATER_MARK = 64 * 1024;
/** The one buffer every RawStream reads into (a Unix socket's reads are at most this size here). */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

let binding: StreamWrapBinding | null | undefined;

function loadBinding(): StreamWrapBinding | null {
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof b.WriteWrap !== 'function' || typeof b.ShutdownWrap !== 'function' || !(b.streamBaseState instanceof Int32Array)
        || typeof b.kReadBytesOrError !== 'number' || typeof b.kArrayBufferOffset !== 'number'
        || typeof b.kLastWriteWasAsync !== 'number') return null;
    return b as StreamWrapBinding;
  } catch {
    return null;
  }
}

function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  let code = String(errno);
  try {
    code = getSystemErrorName(errno);
  } catch {
    // not an error number libuv knows: the number stands
  }
  const err = new Error(`${syscall} ${code}`) as NodeJS.ErrnoException;
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

/** Returns where the next read goes, when that changes (the binding takes a returned buffer so). */
function onRead(this: StreamHandle, arrayBuffer: ArrayBuffer | undefined): Buffer | undefined {
  const stream = this[kStream];
  if (stream === undefined) return undefined;
  const state = binding!.streamBaseState;
  const nread = state[binding!.kReadBytesOrError]!;
  if (nread > 0) {
    return stream._data(nread, arrayBuffer === undefined ? null : Buffer.from(arrayBuffer, state[binding!.kArrayBufferOffset]!, nread));
  }
  if (nread < 0) stream._eof(nread);
  return undefined;
}

function ignoreRead(): undefined {
  return undefined;
}

function onWritten(this: Request, status: number): void {
  const stream = this.stream!;
  this.stream = undefined;
  this.buffer = null;
  stream._written(status);
}

function onShutdown(this: Request, status: number): void {
  const stream = this.stream!;
  this.stream = undefined;
  stream._shutdown(status);
}

/** One accepted connection on its libuv handle. */
export class RawStream implements ByteStream {
  readonly #handle: StreamHandle;
  /** Reads go into READ_BUFFER (lent chunks) until readIntoSlabs(); then here. */
  #slabs: ReadSlabs | null = null;
  /** The buffer the next read goes into, with slabs (null: READ_BUFFER). */
  #into: Buffer | null = null;
  /** The handle reads into a buffer of ours (useUserBuffer); else the binding allocates each read. */
  readonly #userBuffer: boolean;
  #owner: RawStreamOwner | null = null;
  /** The handle has our read callback and buffer (set when it first reads). */
  #armed = false;
  destroyed = false;
  #reading = false;
  /** The peer's EOF was read. */
  #eof = false;
  /** end() was called: a shutdown is on its way or done. */
  #ended = false;
  /** The shutdown completed: everything written is in the kernel and the FIN sent. */
  #finished = false;
  /** Writes handed to libuv and not complete. */
  #pending = 0;
  #pendingBytes = 0;
  #onDrain: (() => void) | null = null;
  #onFinish: (() => void) | null = null;

  constructor(handle: StreamHandle) {
    this.#handle = handle;
    handle[kStream] = this;
    this.#userBuffer = typeof handle.useUserBuffer === 'function';
  }

  /**
   * Starts the handle's reads, giving it our read callback and buffer the first time: an
   * exchange done with the read at accept (most uwsgi requests) never sets them (each is a
   * call into the binding).
   */
  #readStart(): number {
    const handle = this.#handle;
    if (!this.#armed) {
      this.#armed = true;
      handle.onread = onRead;
      if (this.#userBuffer) handle.useUserBuffer!(this.#into ?? READ_BUFFER);
    }
    return handle.readStart();
  }

  /** Lent until a read has landed in a slab (the read that switches is still READ_BUFFER's). */
  get lent(): boolean {
    return this.#userBuffer && this.#into === null;
  }

  readIntoSlabs(): void {
    if (this.#slabs !== null) return;
    this.#slabs = new ReadSlabs();
  }

  /**
   * Starts reading; the owner hears each read, the EOF and the close. The first read is tried
   * at once, so the owner may hear it (and answer, and close) before this returns.
   */
  start(owner: RawStreamOwner): void {
    this.#owner = owner;
    if (this.#reading || this.destroyed || this.#eof) return;
    this.#reading = true;
    // Only where the handle's own reads lend their chunks too (useUserBuffer): the owner was
    // told so by `lent`, and this read lends READ_BUFFER.
    if (this.#userBuffer) this.#readNow();
    // Still wanted after that read (the owner may have paused, ended or closed during it).
    if (!this.#reading || this.destroyed || this.#eof) return;
    const err = this.#readStart();
    if (err < 0) this.#fail(errnoError(err, 'read'));
  }

  /**
   * One read straight from the descriptor, before the handle waits for it to be readable: a
   * peer that connects to send one packet (nginx's uwsgi_pass) has mostly sent it by the time
   * its connection is accepted (95 % of connections at 50 clients, more at fewer), and taking
   * it now spares the wait for readiness (an epoll_ctl and a turn of the loop per connection).
   * Nothing there yet (EAGAIN) or an error: the handle's own read finds it, as before.
   */
  #readNow(): void {
    let n: number;
    try {
      n = readSync(this.#handle.fd, READ_BUFFER, 0, READ_BUFFER.length, null);
    } catch {
      return;
    }
    if (n === 0) {
      this._eof(UV_EOF);
      return;
    }
    // Where the next read goes (a slab, once the owner asked for them) is the handle's when
    // it starts reading.
    this._data(n, null);
  }

  get fd(): number {
    return this.#handle.fd;
  }

  /** `address:port` of a TCP peer; null for a Unix socket. */
  peer(): string | null {
    const out: { address?: string; port?: number } = {};
    if (this.destroyed || typeof this.#handle.getpeername !== 'function' || this.#handle.getpeername(out) !== 0) return null;
    return out.address === undefined ? null : `${out.address}:${out.port}`;
  }

  pause(): void {
    if (!this.#reading || this.destroyed) return;
    this.#reading = false;
    this.#handle.readStop();
  }

  resume(): void {
    if (this.#reading || this.destroyed || this.#eof) return;
    this.#reading = true;
    const err = this.#readStart();
    if (err < 0) this.#fail(errnoError(err, 'read'));
  }

  /** Bytes written and not yet in the kernel. */
  get writableLength(): number {
    return this.#pendingBytes;
  }

  get writableNeedDrain(): boolean {
    return this.#pendingBytes > HIGH_WATER_MARK;
  }

  get writableFinished(): boolean {
    return this.#finished;
  }

  /** Writes `data` (kept until written); false: wait for onDrain before writing more. */
  write(data: Uint8Array): boolean {
    if (this.destroyed || this.#ended || data.length === 0) return !this.destroyed;
    const req = new binding!.WriteWrap();
    req.handle = this.#handle;
    req.oncomplete = onWritten;
    const err = this.#handle.writeBuffer(req, data);
    if (err < 0) {
      this.#fail(errnoError(err, 'write'));
      return false;
    }
    if (binding!.streamBaseState[binding!.kLastWriteWasAsync] === 0) return true;
    req.buffer = data;
    req.stream = this;
    this.#pending++;
    this.#pendingBytes += data.length;
    return this.#pendingBytes <= HIGH_WATER_MARK;
  }

  /** `callback` runs once every write is in the kernel (at once if none is waiting). */
  onDrain(callback: () => void): void {
    if (this.#pending === 0 || this.destroyed) callback();
    else this.#onDrain = callback;
  }

  /** `callback` runs once end()'s shutdown completed (or the stream closed). */
  onFinish(callback: () => void): void {
    if (this.#finished || this.destroyed) callback();
    else this.#onFinish = callback;
  }

  _written(status: number): void {
    this.#pending--;
    if (this.#pending === 0) this.#pendingBytes = 0;
    if (status < 0) {
      this.#fail(errnoError(status, 'write'));
      return;
    }
    if (this.#pending === 0) {
      const drained = this.#onDrain;
      this.#onDrain = null;
      drained?.();
    }
  }

  /** Writes `data`, if any, then ends our side once everything is written (a FIN after the bytes). */
  end(data?: Uint8Array): void {
    if (this.destroyed || this.#ended) return;
    if (data !== undefined) this.write(data);
    if (this.destroyed) return;
    this.#ended = true;
    const req = new binding!.ShutdownWrap();
    req.handle = this.#handle;
    req.oncomplete = onShutdown;
    req.stream = this;
    const err = this.#handle.shutdown(req);
    if (err < 0) this.destroy();
  }

  _shutdown(status: number): void {
    if (this.destroyed) return;
    if (status < 0) {
      this.destroy();
      return;
    }
    this.#finished = true;
    const finished = this.#onFinish;
    this.#onFinish = null;
    finished?.();
    // Both sides have ended: nothing more can happen on it.
    if (this.#eof) this.destroy();
  }

  /** `nread` bytes read, into `allocated` (a handle without useUserBuffer) or our buffer. */
  _data(nread: number, allocated: Buffer | null): Buffer | undefined {
    if (allocated !== null) {
      this.#owner?._onData(allocated);
      return undefined;
    }
    const into = this.#into;
    if (into === null) {
      this.#owner?._onData(READ_BUFFER.subarray(0, nread));
    } else {
      this.#owner?._onData(this.#slabs!.filled(nread, into));
    }
    // Switched to slabs during this read, or past one: the next read goes into fresh room.
    if (this.#slabs === null || this.destroyed || !this.#userBuffer) return undefined;
    this.#into = this.#slabs.next();
    return this.#into;
  }

  _eof(code: number): void {
    this.#reading = false;
    this.#handle.readStop();
    if (code !== UV_EOF) {
      this.#fail(errnoError(code, 'read'));
      return;
    }
    this.#eof = true;
    this.#owner?._onEnd();
    if (this.#finished) this.destroy();
  }

  #fail(err: Error): void {
    if (this.destroyed) return;
    this.#owner?._error(err);
    this.destroy();
  }

  /** Closes the handle now; what is not yet written is dropped. */
  destroy(): void {
    this.#close(true);
  }

  /** destroy(), without the _onClose: no call back into JavaScript when the handle is gone. */
  release(): void {
    this.#close(false);
  }

  #close(tell: boolean): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#reading = false;
    this.#onDrain = null;
    this.#onFinish = null;
    const handle = this.#handle;
    if (this.#armed) handle.onread = ignoreRead;
    handle[kStream] = undefined;
    if (tell) handle.close(() => this.#owner?._onClose());
    else handle.close();
  }

  /** Closes with a reset where the transport has one (TCP), so that the peer sees a cut; else destroy(). */
  reset(): void {
    if (this.destroyed) return;
    const handle = this.#handle;
    if (typeof handle.reset !== 'function') {
      this.destroy();
      return;
    }
    this.destroyed = true;
    this.#reading = false;
    if (this.#armed) handle.onread = ignoreRead;
    handle[kStream] = undefined;
    if (handle.reset(() => this.#owner?._onClose()) < 0) handle.close(() => this.#owner?._onClose());
  }
}

/**
 * Takes the connections of a listening `server` as RawStreams: `onStream` gets each one (not
 * yet reading), `onError` an accept failure. Returns false, changing nothing, where the
 * bindings or the handle are not as expected; connections then keep arriving as net.Sockets.
 */
export function rawAccept(server: Server, onStream: (stream: RawStream) => void, onError: (err: NodeJS.ErrnoException) => void): boolean {
  binding ??= loadBinding();
  const handle = (server as unknown as { _handle: { onconnection?: unknown } | null })._handle;
  if (binding === null || handle === null || typeof handle.onconnection !== 'function') return false;
  handle.onconnection = (err: number, client: StreamHandle | undefined) => {
    if (err !== 0 || client === undefined) {
      onError(errnoError(err, 'accept'));
      return;
    }
    onStream(new RawStream(client));
  };
  return true;
}

const kOwner = Symbol('tsgi.streamOwner');
type OwnedSocket = Socket & { [kOwner]: RawStreamOwner };

function socketData(this: OwnedSocket, chunk: Buffer): void {
  this[kOwner]._onData(chunk);
}

function socketEnd(this: OwnedSocket): void {
  this[kOwner]._onEnd();
}

function socketError(this: OwnedSocket, err: Error): void {
  this[kOwner]._error(err);
}

function socketClose(this: OwnedSocket): void {
  this[kOwner]._onClose();
}

/** A net.Socket (one a supervisor handed over, or where rawAccept cannot be used) as a ByteStream. */
export class SocketStream implements ByteStream {
  readonly lent = false;
  readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
  }

  /** A net.Socket's reads are each a buffer of its own already. */
  readIntoSlabs(): void {}

  start(owner: RawStreamOwner): void {
    // One listener function per event for every connection, each finding its owner on the
    // socket: no closures made per connection.
    const socket = this.socket as OwnedSocket;
    socket[kOwner] = owner;
    socket.on('data', socketData);
    socket.on('end', socketEnd);
    socket.on('error', socketError);
    socket.on('close', socketClose);
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  get writableFinished(): boolean {
    return this.socket.writableFinished;
  }

  peer(): string | null {
    const s = this.socket;
    return s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : null;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  write(data: Uint8Array): boolean {
    return this.socket.write(data);
  }

  end(data?: Uint8Array): void {
    if (data === undefined) this.socket.end();
    else this.socket.end(data);
  }

  onDrain(callback: () => void): void {
    if (!this.socket.writableNeedDrain) callback();
    else this.socket.once('drain', callback);
  }

  onFinish(callback: () => void): void {
    if (this.socket.writableFinished) callback();
    else this.socket.once('finish', callback);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The socket's close still comes: an owner done with it ignores it. */
  release(): void {
    this.socket.destroy();
  }

  reset(): void {
    try {
      this.socket.resetAndDestroy(); // throws ERR_INVALID_HANDLE_TYPE for a Unix socket
    } catch {
      this.socket.destroy();
    }
  }
}
