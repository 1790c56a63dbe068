// The plumbing both process managers share (`tsgi serve --workers N`'s supervisor, `tsgi front
// --processes N`'s primary): a set of child processes, each forked with its config, that take
// accepted sockets over IPC (least loaded first, held while none can take them, re-routed once
// if a child fails to take one), answer questions, and stop on a message with SIGKILL after a
// grace period. What to spawn, when and why is the manager's policy; `spawn` is injected, so
// that a manager can run on fake children in a test.
import { fork } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Logger } from './log.js';

/**
 * Questions to child processes and their answers, matched by id: `ask` sends `make(id)` and
 * resolves with the value the child sends back for that id (handed to `answer`), or with
 * `fallback()` if the child does not answer within `timeoutMs` or the message cannot be sent.
 */
class Replies {
  #nextId = 0;
  readonly #waiting = new Map<number, (value: unknown) => void>();

  ask<T>(child: ChildHandle, make: (id: number) => object, timeoutMs: number, fallback: () => T): Promise<T> {
    const id = ++this.#nextId;
    return new Promise<T>((resolve) => {
      const timer = setTimeout(() => settle(fallback()), timeoutMs);
      const settle = (value: T) => {
        clearTimeout(timer);
        this.#waiting.delete(id);
        resolve(value);
      };
      this.#waiting.set(id, (value) => settle(value as T));
      child.send(make(id), undefined, (err) => {
        if (err) this.#waiting.get(id)?.(fallback());
      });
    });
  }

  /** A child answered question `id` (an id nobody waits for any more is ignored). */
  answer(id: number, value: unknown): void {
    this.#waiting.get(id)?.(value);
  }
}

/**
 * What a manager needs of a child process (a node:child_process ChildProcess is one). It emits
 * 'message' (msg, handle?), 'exit' (code, signal), 'close' once no message can arrive any more,
 * and 'error' when a message cannot be sent.
 */
export interface ChildHandle extends EventEmitter {
  readonly pid?: number | undefined;
  readonly connected: boolean;
  send(message: object, handle?: Socket, callback?: (err: Error | null) => void): boolean;
  kill(signal?: NodeJS.Signals): boolean;
}

/** Starts a child with its config (the real one forks a script). */
/** Starts a child; `inherit` are descriptors it gets as 4, 5, … (after its IPC channel, 3). */
export type SpawnChild<C> = (config: C, inherit?: readonly number[]) => ChildHandle;

/** The descriptor a child sees for the `index`th of the descriptors it inherits. */
export const inheritedFd = (index: number): number => 4 + index;

/** A spawn that forks `module` with the config as JSON in the environment variable `envName`. */
export function forkWithConfig<C>(module: string, envName: string,
  opts: { execArgv?: string[]; serialization?: 'json' | 'advanced' } = {}): SpawnChild<C> {
  return (config, inherit = []) => fork(module, [], {
    env: { ...process.env, [envName]: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...inherit],
    ...opts,
  });
}

/**
 * 'starting' until it says it is ready; 'retiring' while it still serves but is to go (its
 * manager retires it once a replacement is ready); 'stopping' once told to stop.
 */
export type ChildState = 'starting' | 'ready' | 'retiring' | 'stopping';

export interface Child {
  /** The manager's key for it (a worker id, a slot). */
  readonly id: number;
  readonly handle: ChildHandle;
  state: ChildState;
  /** When it was spawned (ms since the epoch). */
  readonly started: number;
  /** A socket could not be handed to it: it is dying; route nothing more there. */
  unreachable: boolean;
  killTimer: NodeJS.Timeout | null;
}

/** How an accepted socket is handed over: the message that goes with it, and how load is counted. */
export interface Delivery<W extends Child> {
  readonly message: object;
  /** The child's load for this kind of socket (the lowest gets it). */
  load(w: W): number;
  /** Counts the socket against the child (+1), or takes it back (-1) when the hand-off failed. */
  charge(w: W, n: 1 | -1): void;
}

interface Pending<W extends Child> {
  socket: Socket;
  delivery: Delivery<W>;
  /** Already held once for a starting child. */
  held: boolean;
  /** Already re-routed once after a child failed to take it. */
  rerouted: boolean;
}

export interface ChildSetOptions<C, W extends Child> {
  spawn: SpawnChild<C>;
  log: Logger;
  /** How children are named in log lines ('worker', 'front worker'). */
  name: string;
  onMessage(w: W, msg: unknown): void;
  /** Called once it has left the set. */
  onExit(w: W, code: number | null, signal: NodeJS.Signals | null): void;
  /** Its IPC channel closed: no message of its can still arrive. */
  onClose?(w: W): void;
  /** Whether a child may be handed sockets (besides being ready and reachable), or held for. */
  accepts?(w: W): boolean;
  /** How long a socket may wait for a starting child before going to any ready one (0: no hold). */
  holdForStartingMs?: number;
  /** Sockets held while no child can take them; more are closed. */
  maxPending?: number;
  now?: () => number;
}

export class ChildSet<C, W extends Child> {
  readonly #opts: ChildSetOptions<C, W>;
  readonly #children = new Map<number, W>();
  readonly #replies = new Replies();
  readonly #now: () => number;
  #pending: Pending<W>[] = [];
  #holdTimer: NodeJS.Timeout | null = null;
  #nextPick = 0;
  #closed = false;
  #emptyWaiters: (() => void)[] = [];

  constructor(opts: ChildSetOptions<C, W>) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#children.size;
  }

  get(id: number): W | undefined {
    return this.#children.get(id);
  }

  values(): IterableIterator<W> {
    return this.#children.values();
  }

  /** Starts a child with `config`; `extra` is the manager's own state for it. */
  spawn(id: number, config: C, extra: Omit<W, keyof Child>): W {
    const handle = this.#opts.spawn(config);
    const w = { ...extra, id, handle, state: 'starting', started: this.#now(), unreachable: false, killTimer: null } as W;
    this.#children.set(id, w);
    handle.on('message', (msg: unknown) => this.#opts.onMessage(w, msg));
    handle.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.#onExit(w, code, signal));
    handle.once('close', () => this.#opts.onClose?.(w));
    // A message to a child that is exiting fails with EPIPE: its exit deals with it.
    handle.on('error', (err: Error) => this.#opts.log.debug(`${this.#opts.name} ${id}: ${err.message}`));
    return w;
  }

  #onExit(w: W, code: number | null, signal: NodeJS.Signals | null): void {
    if (w.killTimer !== null) clearTimeout(w.killTimer);
    w.killTimer = null;
    if (this.#children.get(w.id) === w) this.#children.delete(w.id);
    this.#opts.onExit(w, code, signal);
    if (this.#children.size === 0) for (const resolve of this.#emptyWaiters.splice(0)) resolve();
  }

  /** Resolves once no child is left. */
  whenEmpty(): Promise<void> {
    if (this.#children.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#emptyWaiters.push(resolve));
  }

  /** Sends `msg` if the child can still hear it (a failure is its exit's business). */
  send(w: W, msg: object): void {
    if (w.handle.connected) w.handle.send(msg, undefined, () => {});
  }

  broadcast(msg: object): void {
    for (const w of this.#children.values()) this.send(w, msg);
  }

  /** Sends `make(id)` and resolves with the child's answer to `id`, or `fallback()` after `timeoutMs`. */
  ask<T>(w: W, make: (id: number) => object, timeoutMs: number, fallback: () => T): Promise<T> {
    return this.#replies.ask(w.handle, make, timeoutMs, fallback);
  }

  /** A child answered question `id`. */
  answer(id: number, value: unknown): void {
    this.#replies.answer(id, value);
  }

  /**
   * Tells a child to stop with `msg` (SIGTERM if it cannot hear it), and SIGKILLs it if it has not
   * exited after `killAfterMs`.
   */
  stop(w: W, msg: object, killAfterMs: number): void {
    if (w.state === 'stopping') return;
    w.state = 'stopping';
    if (!w.handle.connected) w.handle.kill('SIGTERM');
    else w.handle.send(msg, undefined, (err) => { if (err) w.handle.kill('SIGTERM'); });
    w.killTimer = setTimeout(() => {
      this.#opts.log.warn(`${this.#opts.name} ${w.id} (pid ${w.handle.pid}) did not stop within ${killAfterMs / 1000} s; killing it`);
      w.handle.kill('SIGKILL');
    }, killAfterMs);
    w.killTimer.unref();
  }

  #eligible(w: W): boolean {
    return this.#opts.accepts?.(w) ?? true;
  }

  /** The children a socket may be handed to now. */
  ready(): W[] {
    return [...this.#children.values()].filter((w) => w.state === 'ready' && w.handle.connected && !w.unreachable
      && this.#eligible(w));
  }

  /**
   * Hands an accepted socket to the ready child with the lowest load (ties go round in turn).
   * With none ready, or while one starts (held once, for at most holdForStartingMs, so that it
   * lands on the new child rather than piling onto the others), it waits in a capped queue.
   */
  route(socket: Socket, delivery: Delivery<W>): void {
    this.#route({ socket, delivery, held: false, rerouted: false });
  }

  #route(p: Pending<W>): void {
    if (this.#closed) {
      p.socket.destroy();
      return;
    }
    const ready = this.ready();
    const hold = this.#opts.holdForStartingMs ?? 0;
    const starting = hold > 0 && !p.held
      && [...this.#children.values()].some((w) => w.state === 'starting' && this.#eligible(w));
    if (ready.length === 0 || starting) {
      if (this.#pending.length >= (this.#opts.maxPending ?? 1024)) {
        p.socket.destroy();
        return;
      }
      p.held = true;
      if (starting) {
        this.#holdTimer ??= setTimeout(() => {
          this.#holdTimer = null;
          this.flush();
        }, hold);
      }
      this.#pending.push(p);
      return;
    }
    const { delivery } = p;
    let best = ready[this.#nextPick++ % ready.length]!;
    for (const w of ready) if (delivery.load(w) < delivery.load(best)) best = w;
    delivery.charge(best, 1);
    const chosen = best;
    chosen.handle.send(delivery.message, p.socket, (err) => {
      if (!err) return;
      // The child died before its manager heard of it (its exit is not processed yet): take it
      // out of the rotation and give the socket to another child, once.
      delivery.charge(chosen, -1);
      chosen.unreachable = true;
      this.#opts.log.debug(`${this.#opts.name} ${chosen.id} could not take a connection (${err.message}); routing it elsewhere`);
      if (p.rerouted || p.socket.destroyed) p.socket.destroy();
      else {
        p.rerouted = true;
        this.#route(p);
      }
    });
  }

  /** Routes the waiting sockets again (a child became ready, or the hold is over). */
  flush(): void {
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    this.#holdTimer = null;
    for (const p of this.#pending.splice(0)) if (!p.socket.destroyed) this.#route(p);
  }

  /** Stops routing: waiting and later sockets are closed. */
  close(): void {
    this.#closed = true;
    if (this.#holdTimer !== null) clearTimeout(this.#holdTimer);
    this.#holdTimer = null;
    for (const p of this.#pending.splice(0)) p.socket.destroy();
  }
}
