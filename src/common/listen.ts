// Binding servers to addresses: TCP, or a Unix socket whose stale file is replaced only when
// nothing answers on it (a live socket is never stolen, nor one bound at the same moment),
// created with a restrictive mode.
// Closing one never removes a socket file that another process has put on the path since.
import { existsSync, lstatSync } from 'node:fs';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import { resolve as absolute } from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { type Address, formatAddress } from './address.js';

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new ConfigError(`${path} exists and is not a socket; refusing to replace it`);
  if (await probe(path)) throw new ConfigError(`${path} is in use: another process is listening on it`);
  await unlink(path).catch(() => {});
}

/**
 * Pending connections the kernel may queue (capped by net.core.somaxconn). Node's default,
 * 511, is too few for nginx's one-connection-per-request uwsgi_pass at 1,000 clients (EAGAIN).
 */
const LISTEN_BACKLOG = 4096;

/**
 * Holds a lock named after a socket path while a stale file on it is cleared and the new socket
 * bound: a Linux abstract socket, which the kernel frees when its process dies (null elsewhere).
 * Without it, two processes starting on one path could both find the old file stale, and the
 * second could unlink the socket the first had just bound, leaving it listening unreachable.
 */
async function lockPath(path: string): Promise<Server | null> {
  if (process.platform !== 'linux') return null;
  const name = `\0tsgi-bind-${createHash('sha256').update(absolute(path)).digest('hex').slice(0, 32)}`;
  const lock = createServer();
  await new Promise<void>((ok, fail) => {
    lock.once('error', (err: NodeJS.ErrnoException) => fail(err.code === 'EADDRINUSE'
      ? new ConfigError(`${path} is being bound by another process right now`) : err));
    lock.listen(name, ok);
  });
  return lock;
}

/** Listens on the address; resolves with the address actually bound (port 0 resolved). */
export async function listenOn(server: Server, address: Address, socketMode = 0o660): Promise<Address> {
  const lock = address.kind === 'unix' ? await lockPath(address.path) : null;
  try {
    return await bind(server, address, socketMode);
  } finally {
    lock?.close();
  }
}

async function bind(server: Server, address: Address, socketMode: number): Promise<Address> {
  if (address.kind === 'unix') await clearStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    const done = () => { server.off('error', onError); resolve(); };
    if (address.kind === 'unix') {
      // bind() runs inside listen(): under this umask the file is born with the mode, so there
      // is no moment between bind and chmod at which anyone else may connect.
      const umask = process.umask(~socketMode & 0o777);
      try {
        server.listen({ path: address.path, backlog: LISTEN_BACKLOG }, done);
      } finally {
        process.umask(umask);
      }
    } else {
      server.listen({ port: address.port, host: address.host, backlog: LISTEN_BACKLOG }, done);
    }
  });
  if (address.kind === 'unix') {
    await chmod(address.path, socketMode);
    const st = await lstat(address.path);
    boundSockets.set(server, { path: address.path, ino: st.ino, ctimeMs: st.ctimeMs });
    return address;
  }
  const bound = server.address();
  return typeof bound === 'object' && bound !== null ? { kind: 'tcp', host: address.host, port: bound.port } : address;
}

/** The Unix socket file each server created (inode numbers are reused: ctime too), to recognise it. */
const boundSockets = new WeakMap<Server, { path: string; ino: number; ctimeMs: number }>();

/**
 * Whether a new connection can still reach this server: false for a Unix socket whose file was
 * deleted or replaced since it listened. (True for TCP, and for servers not bound by listenOn.)
 */
export function reachable(server: Server): boolean {
  const bound = boundSockets.get(server);
  if (bound === undefined) return true;
  try {
    const st = lstatSync(bound.path);
    return st.ino === bound.ino && st.ctimeMs === bound.ctimeMs;
  } catch {
    return false;
  }
}

/**
 * Closes a listener; resolves once it is closed. Node removes a Unix socket's path when its
 * server closes, whatever file is there by then: if the path now holds another socket (our file
 * was deleted and a new backend listens there), closing would delete that one. Such a server can
 * no longer be reached (nothing refers to its file), so it is left open, unreferenced, instead.
 */
export function closeListener(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  const bound = boundSockets.get(server);
  if (bound !== undefined && !reachable(server) && existsSync(bound.path)) {
    server.unref();
    return Promise.resolve();
  }
  return new Promise((resolve) => server.close(() => resolve()));
}

export { formatAddress };
