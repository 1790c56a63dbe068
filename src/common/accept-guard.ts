// Running out of descriptors, made visible. When accept() fails with EMFILE, libuv accepts the
// pending connections on a spare descriptor and closes them, and nothing reaches JavaScript: the
// clients see a closed connection and the process says nothing. So a listening server refuses,
// counts and logs (once per burst) the connections it accepts within a few descriptors of the
// limit, which also keeps those few for backend links, files and the admin server; an accept
// error that does reach the server as an 'error' event is counted and logged the same way
// instead of ending the process.
import { readFileSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { rawErrorResponse, TsgiError } from '../protocol/errors.js';
import type { Logger } from './log.js';

/** Connections refused (or accept() failures) by code since start, for tsgi_accept_errors_total{code}. */
export const acceptErrors = new Map<string, number>();

function count(code: string): void {
  acceptErrors.set(code, (acceptErrors.get(code) ?? 0) + 1);
}

/** The soft limit on open descriptors (Linux's /proc/self/limits), or 0 if unknown. */
function descriptorLimit(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

const LIMIT = descriptorLimit();
/** Descriptors kept free: a connection accepted onto one of them is refused. */
export const RESERVED_DESCRIPTORS = LIMIT === 0 ? 0 : Math.min(64, Math.max(8, Math.floor(LIMIT / 16)));
/** The first descriptor number a connection may not take (Linux hands out the lowest free one). */
const CEILING = LIMIT === 0 ? Number.POSITIVE_INFINITY : LIMIT - RESERVED_DESCRIPTORS;

const OUT_OF_DESCRIPTORS = rawErrorResponse(new TsgiError('TSGI_ERR_OVERLOADED', 'out of file descriptors'));

/**
 * An HTTP listener's answer to a refused connection: a 503 handed to the kernel, and the
 * descriptor closed at once (waiting for the client to read it would hold the descriptor while
 * the next connections arrive).
 */
export function refuse503(socket: Socket): void {
  socket.write(OUT_OF_DESCRIPTORS, 'latin1');
}

function fdOf(socket: Socket): number {
  return (socket as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
}

export interface GuardOptions {
  log: Logger;
  /** Names the server in the log ('HTTP', 'backend', 'uwsgi'); a function is asked when a line is written. */
  name: string | (() => string);
  /** Answers a refused connection (a 503 for HTTP) before it is destroyed. */
  refuse?: (socket: Socket) => void;
}

/** Counts and logs refused connections (once per burst): `admit` for each accepted one, `failed` for an accept error. */
export class AcceptGuard {
  readonly #opts: GuardOptions;
  #refused = 0;
  #burstCode = '';

  constructor(opts: GuardOptions) {
    this.#opts = opts;
  }

  #name(): string {
    const { name } = this.#opts;
    return typeof name === 'string' ? name : name();
  }

  #begin(code: string, detail: string): void {
    count(code);
    if (this.#refused++ === 0) {
      this.#burstCode = code;
      this.#opts.log.warn(`${this.#name()} listener: ${detail}; refusing new connections until descriptors are freed `
        + '(raise the limit: `ulimit -n`, systemd LimitNOFILE=)');
    }
  }

  /** False: the connection on descriptor `fd` is to be refused (counted and logged here). */
  admit(fd: number): boolean {
    if (fd >= CEILING) {
      this.#begin('EMFILE', `out of file descriptors (descriptor ${fd} of a limit of ${LIMIT}, ${RESERVED_DESCRIPTORS} kept free)`);
      return false;
    }
    if (this.#refused > 0) {
      this.#opts.log.warn(`${this.#name()} listener: accepting connections again; ${this.#refused} refused for want of descriptors (${this.#burstCode})`);
      this.#refused = 0;
    }
    return true;
  }

  /** accept() itself failed. */
  failed(err: NodeJS.ErrnoException): void {
    this.#begin(err.code ?? 'unknown', `accept failed: ${err.message}`);
  }
}

/**
 * Puts the guard in front of the server's 'connection' listeners and handles its 'error' events.
 * Call after the listeners are added (createServer's), before listening.
 */
export function guardAccept(server: Server, opts: GuardOptions): AcceptGuard {
  const guard = new AcceptGuard(opts);
  const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (!guard.admit(fdOf(socket))) {
      socket.on('error', () => {});
      // Closed before the next connection is accepted: refusing never takes a kept descriptor.
      opts.refuse?.(socket);
      socket.destroy();
      return;
    }
    for (const l of listeners) l.call(server, socket);
  });
  server.on('error', (err: NodeJS.ErrnoException) => {
    if (!server.listening) return; // a bind error: listenOn reports it
    guard.failed(err);
  });
  return guard;
}
