// Fake child processes for the process managers' unit tests: each is an EventEmitter the test
// drives ('message', 'exit', 'close'), records what its manager sent it (and the sockets handed
// with it), and can be made to refuse a hand-off the way a dying child's IPC channel does.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Address } from '../../src/common/address.js';
import type { ChildHandle } from '../../src/common/children.js';
import type { Logger, LogLevel } from '../../src/common/log.js';

export interface Sent {
  message: { type: string; [key: string]: unknown };
  handle: Socket | undefined;
}

let nextPid = 4_000_000;

export class FakeChild extends EventEmitter implements ChildHandle {
  readonly pid = nextPid++;
  readonly config: unknown;
  /** The descriptors it was spawned to inherit (as 4, 5, …). */
  readonly inherit: readonly number[];
  connected = true;
  exited = false;
  readonly sent: Sent[] = [];
  readonly signals: NodeJS.Signals[] = [];
  /** The next hand-offs of a socket fail with this (as sendmsg on a closed channel does). */
  refuseSockets: Error | null = null;
  /** Exit (code 0) when told to stop, as a worker with nothing in flight does. */
  exitOnStop = false;

  constructor(config: unknown, inherit: readonly number[] = []) {
    super();
    this.config = config;
    this.inherit = inherit;
  }

  send(message: object, handle?: Socket, callback?: (err: Error | null) => void): boolean {
    const err = !this.connected ? new Error('channel closed')
      : handle !== undefined ? this.refuseSockets : null;
    if (err === null) {
      this.sent.push({ message: message as Sent['message'], handle });
      this.emit('sent', this.sent[this.sent.length - 1]);
      if (this.exitOnStop && (message as Sent['message']).type === 'stop') setImmediate(() => this.exit(0));
    }
    // Node calls back on a later turn, as here.
    setImmediate(() => callback?.(err));
    return err === null;
  }

  /** A signal: SIGKILL (or any signal to a fake with no handler) ends it on a later turn. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal);
    if (signal === 'SIGKILL') setImmediate(() => this.exit(null, 'SIGKILL'));
    return !this.exited;
  }

  /** It sends its manager `msg`. */
  say(msg: object): void {
    this.emit('message', msg);
  }

  /** It exits; its channel closes. */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.exited) return;
    this.exited = true;
    this.connected = false;
    this.emit('exit', code, signal);
    this.emit('close', code, signal);
  }

  /** The messages of `type` it was sent. */
  got(type: string): Sent[] {
    return this.sent.filter((s) => s.message.type === type);
  }

  /** Resolves with the next message of `type` it is sent. */
  next(type: string): Promise<Sent> {
    return new Promise((resolve) => {
      const on = (s: Sent) => {
        if (s.message.type !== type) return;
        this.off('sent', on);
        resolve(s);
      };
      this.on('sent', on);
    });
  }

  /** Resolves with the first message of `type` it was sent, now or later. */
  when(type: string): Promise<Sent> {
    const past = this.got(type)[0];
    return past !== undefined ? Promise.resolve(past) : this.next(type);
  }

  /** From now on it exits when told to stop; if it was told already, it exits now. */
  obey(): void {
    this.exitOnStop = true;
    if (this.got('stop').length > 0) setImmediate(() => this.exit(0));
  }

  /** Closes the sockets handed to it. */
  closeSockets(): void {
    for (const s of this.sent) s.handle?.destroy();
  }
}

export interface FakeSpawn<C> {
  spawn: (config: C, inherit?: readonly number[]) => FakeChild;
  /** Every child made, in order. */
  children: FakeChild[];
  /** Resolves once `n` children were made in all. */
  made(n: number): Promise<FakeChild[]>;
}

/** A spawn function that makes fake children. */
export function fakeSpawn<C>(): FakeSpawn<C> {
  const children: FakeChild[] = [];
  const waiting: { n: number; resolve: (c: FakeChild[]) => void }[] = [];
  return {
    children,
    spawn: (config, inherit) => {
      const child = new FakeChild(config, inherit);
      children.push(child);
      for (const w of waiting.filter((x) => x.n <= children.length)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(children);
      }
      return child;
    },
    made: (n) => (children.length >= n ? Promise.resolve(children)
      : new Promise((resolve) => waiting.push({ n, resolve }))),
  };
}

/** The first of `children` to be sent a message of `type`, and the message. */
export function firstTo(children: FakeChild[], type: string): Promise<{ child: FakeChild; sent: Sent }> {
  return Promise.race(children.map((child) => child.next(type).then((sent) => ({ child, sent }))));
}

/** A Logger that keeps its lines ("level: message"), for asserting what was said. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: LogLevel) => (m: string) => { lines.push(`${level}: ${m}`); };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), enabled: () => true };
}

/** A settable clock. */
export function fakeClock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

/** One turn of the event loop: what the manager does on a callback has happened. */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A client connection to the TCP address a manager bound, kept in `clients` for closing. */
export function connectTo(address: Address, clients: Socket[]): Socket {
  if (address.kind !== 'tcp') throw new Error('a tcp address was bound');
  const socket = connect(address.port, address.host);
  socket.on('error', () => {});
  clients.push(socket);
  return socket;
}

/**
 * Ends a test: closes the clients and the sockets handed to the children (a real child holds
 * them, and its manager's server closes only once they are closed), then stops the manager,
 * its children exiting as told.
 */
export async function teardown(clients: Socket[], children: FakeChild[], stop: () => Promise<void>): Promise<void> {
  for (const s of clients.splice(0)) s.destroy();
  for (const c of children) c.closeSockets();
  for (const c of children) c.obey();
  await stop().catch(() => {});
}
