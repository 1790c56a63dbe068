// Binding servers to addresses: TCP, or a Unix socket whose stale file is replaced only when
// nothing answers on it (a live socket is never stolen, nor one bound at the same moment),
// created with a restrictive mode.
// Closing one never removes a socket file that another process has put on the path since.
import { existsSync, lstatSync } from 'node:fs';
import { chmod, link, lstat, open, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import * as net from 'node:net';
import { connect, type ListenOptions, type Server } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { dirname, resolve as absolute } from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { type Address, formatAddress } from './address.js';

/**
 * An address could not be bound: the message says where and the real cause (a missing
 * directory, a port in use, a permission), in one line; `address` lets the command line name
 * the option that gave it.
 */
export class ListenError extends ConfigError {
  readonly address: Address;
  constructor(address: Address, message: string) {
    super(message);
    this.address = address;
  }
}

/** The cause of a failed bind, as an operator would say it. */
function bindCause(address: Address, err: NodeJS.ErrnoException): string {
  const who = typeof process.getuid === 'function' ? `uid ${process.getuid()}` : 'this user';
  if (address.kind === 'unix') {
    const dir = dirname(absolute(address.path));
    switch (err.code) {
      case 'ENOENT': return `the directory ${dir} does not exist`;
      case 'ENOTDIR': return `a component of ${dir} is not a directory`;
      case 'EACCES': case 'EPERM': return `permission denied: ${who} may not create files in ${dir}`;
      case 'EROFS': return `${dir} is on a read-only file system`;
      case 'EADDRINUSE': return 'the path is in use';
      case 'ENAMETOOLONG': case 'EINVAL': return `the path is too long for a Unix socket (${Buffer.byteLength(address.path)} bytes; at most 107)`;
    }
  } else {
    switch (err.code) {
      case 'EADDRINUSE': return `port ${address.port} is in use on ${address.host || 'all addresses'}: another process is listening on it`;
      case 'EACCES': case 'EPERM': return `permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (running as ${who})`;
      case 'EADDRNOTAVAIL': return `${address.host} is not an address of this machine`;
      case 'ENOTFOUND': case 'EAI_AGAIN': return `the host name ${address.host} does not resolve`;
    }
  }
  return err.code !== undefined ? `${err.code}: ${err.message}` : err.message;
}

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
 * While a stale file on a Unix socket path is cleared and the new socket bound, the process holds
 * PATH.lock, a file beside the socket that only those who may write the socket's directory can
 * create (they can replace the socket anyway). Without it, two processes starting on one path
 * could both find the old file stale, and the second could unlink the socket the first had just
 * bound, leaving it listening unreachable.
 *
 * Node has no flock(), so the lock is a file holding its owner's pid, made whole in a temporary
 * file and put in place with link() (which, like O_EXCL, fails when the name exists: the lock
 * never exists empty). A lock whose pid is dead (kill(pid, 0): ESRCH) is stale, left by a process
 * killed while binding; it is removed by whoever first creates PATH.lock.INODE (named after that
 * stale file's inode, by the same link() rule): that file's holder alone may unlink the stale one,
 * and does so only after reading it again and finding the same inode and the same dead pid.
 */
async function lockPath(path: string): Promise<() => Promise<void>> {
  return takeLock(`${absolute(path)}.lock`, path, 0);
}

/**
 * The lock files (dev:inode) this process made and has not removed: a lock holding our own pid
 * that is not one of them was left by an earlier process with our pid (pid 1 in a container).
 * Entered before link(), so a lock of ours is never taken for stale, even by ourselves.
 */
const ownLocks = new Set<string>();

/** Reads a lock file: its dev:inode and the pid it holds (NaN if unreadable); null if it is gone. */
async function readLock(lock: string): Promise<{ id: string; pid: number } | null> {
  let fh;
  try {
    fh = await open(lock, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const { dev, ino } = await fh.stat();
    const pid = Number((await fh.readFile('utf8')).trim());
    return { id: `${dev}:${ino}`, pid: Number.isInteger(pid) && pid > 0 ? pid : NaN };
  } finally {
    await fh.close();
  }
}

/** Whether a lock's owner may still be running (an unreadable pid counts as alive: never removed). */
function alive(held: { id: string; pid: number }): boolean {
  if (Number.isNaN(held.pid)) return true;
  if (held.pid === process.pid) return ownLocks.has(held.id);
  try {
    process.kill(held.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'; // EPERM: alive, someone else's
  }
}

/** Creates `lock` holding our pid, clearing a stale one first, or throws; resolves with its release. */
async function takeLock(lock: string, path: string, depth: number): Promise<() => Promise<void>> {
  const temp = `${lock}.${process.pid}.${randomBytes(6).toString('hex')}`;
  await writeFile(temp, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
  let id = '';
  let taken = false;
  try {
    const st = await lstat(temp);
    id = `${st.dev}:${st.ino}`;
    ownLocks.add(id);
    for (let attempt = 0; ; attempt++) {
      try {
        await link(temp, lock);
        taken = true;
        return async () => {
          // Ours until we unlink it: nobody else removes a lock whose owner is alive.
          const now = await lstat(lock).catch(() => null);
          if (now !== null && `${now.dev}:${now.ino}` === id) await unlink(lock).catch(() => {});
          ownLocks.delete(id);
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const held = await readLock(lock);
      if (held === null) continue; // released meanwhile: try again
      if (attempt > 0 || depth > 8 || alive(held)) {
        const who = Number.isNaN(held.pid) ? `${lock} holds no pid` : `pid ${held.pid} holds ${lock}`;
        throw new ConfigError(`${path} is being bound by another process right now (${who}; `
          + 'if no such process is starting there, remove that file)');
      }
      // Stale: whoever creates LOCK.INODE first removes it; the others are refused.
      const release = await takeLock(`${lock}.${held.id.split(':')[1]}`, path, depth + 1);
      try {
        const again = await readLock(lock);
        if (again !== null && again.id === held.id && again.pid === held.pid) await unlink(lock);
      } finally {
        await release();
      }
    }
  } finally {
    if (!taken) ownLocks.delete(id);
    await unlink(temp).catch(() => {});
  }
}

/** Listens on the address; resolves with the address actually bound (port 0 resolved). */
export async function listenOn(server: Server, address: Address, socketMode = 0o660): Promise<Address> {
  try {
    const unlock = address.kind === 'unix' ? await lockPath(address.path) : null;
    try {
      return await bind(server, address, socketMode);
    } finally {
      await unlock?.();
    }
  } catch (err) {
    throw listenError(address, err);
  }
}

/** A failure to bind `address` as a ListenError that names the address and the cause. */
function listenError(address: Address, err: unknown): ListenError {
  if (err instanceof ListenError) return err;
  if (err instanceof ConfigError) return new ListenError(address, err.message);
  return new ListenError(address, `cannot listen on ${formatAddress(address)}: ${bindCause(address, err as NodeJS.ErrnoException)}`);
}

/** server.listen(options), resolved once it listens, rejected with its error. */
function listening(server: Server, options: ListenOptions | { fd: number; backlog: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function bind(server: Server, address: Address, socketMode: number): Promise<Address> {
  if (address.kind === 'unix') {
    await clearStaleSocket(address.path);
    // bind() runs inside listen(): under this umask the file is born with the mode, so there
    // is no moment between bind and chmod at which anyone else may connect.
    const umask = process.umask(~socketMode & 0o777);
    let bound: Promise<void>;
    try {
      bound = listening(server, { path: address.path, backlog: LISTEN_BACKLOG });
    } finally {
      process.umask(umask);
    }
    await bound;
    boundSockets.set(server, await ownSocketFile(address.path, socketMode));
    return address;
  }
  await listening(server, { port: address.port, host: address.host, backlog: LISTEN_BACKLOG });
  const bound = server.address();
  return typeof bound === 'object' && bound !== null ? { kind: 'tcp', host: address.host, port: bound.port } : address;
}

/** A Unix socket file we created (inode numbers are reused: ctime too), to recognise it. */
interface SocketFile {
  path: string;
  ino: number;
  ctimeMs: number;
}

/** Gives the socket file just bound its mode, and notes which file it is. */
async function ownSocketFile(path: string, socketMode: number): Promise<SocketFile> {
  await chmod(path, socketMode);
  const st = await lstat(path);
  return { path, ino: st.ino, ctimeMs: st.ctimeMs };
}

/** Whether `file` is still the one at its path (false once deleted or replaced). */
function stillThere(file: SocketFile): boolean {
  const st = lstatSync(file.path, { throwIfNoEntry: false });
  return st !== undefined && st.ino === file.ino && st.ctimeMs === file.ctimeMs;
}

/** Another process's socket file is on the path now: closing ours would unlink it. */
function replaced(file: SocketFile): boolean {
  return !stillThere(file) && existsSync(file.path);
}

/** The Unix socket file each server created. */
const boundSockets = new WeakMap<Server, SocketFile>();

/**
 * Whether a new connection can still reach this server: false for a Unix socket whose file was
 * deleted or replaced since it listened. (True for TCP, and for servers not bound by listenOn.)
 */
export function reachable(server: Server): boolean {
  const bound = boundSockets.get(server);
  return bound === undefined || stillThere(bound);
}

/**
 * Closes a listener; resolves once it is closed. Node removes a Unix socket's path when its
 * server closes, whatever file is there by then: if the path now holds another socket (our file
 * was deleted and a new backend listens there), closing would delete that one. Such a server can
 * no longer be reached (nothing refers to its file), so it is left open, unreferenced, instead.
 */
/**
 * A socket bound on an address and not listened on here: its descriptor goes to the processes
 * that listen and accept on it (a supervisor's workers, each with listenOnDescriptor), so that
 * each connection reaches one of them straight from the kernel, with no hand-over.
 */
export interface SharedSocket {
  readonly address: Address;
  /** The bound socket's descriptor in this process. */
  readonly fd: number;
  /** Lets other processes bind the path again (a Unix socket's PATH.lock): call once a process listens. */
  release(): Promise<void>;
  /** Closes it here: the socket file goes too, unless another process has put its own on the path since. */
  close(): void;
}

interface BoundHandle {
  readonly fd: number;
  close(): void;
  getsockname?(out: { port?: number }): number;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number, fd?: number, flags?: number) => BoundHandle | number;

/**
 * Binds `address` without listening (as node:cluster's primary does for its workers). The Unix
 * socket path is cleared and bound under the same rules as listenOn, and its lock is held until
 * release(): until a worker listens, a connection is refused, and a second process must not take
 * the path for stale meanwhile.
 */
export async function bindShared(address: Address, socketMode = 0o660): Promise<SharedSocket> {
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') throw new ListenError(address, `cannot share ${formatAddress(address)}: this Node has no net._createServerHandle`);
  let unlock: (() => Promise<void>) | null = null;
  try {
    let handle: BoundHandle | number;
    if (address.kind === 'unix') {
      unlock = await lockPath(address.path);
      await clearStaleSocket(address.path);
      const umask = process.umask(~socketMode & 0o777);
      try {
        handle = create(address.path, -1, -1);
      } finally {
        process.umask(umask);
      }
    } else {
      const ip = net.isIP(address.host) !== 0 ? address.host : (await lookup(address.host)).address;
      handle = create(ip, address.port, net.isIP(ip));
    }
    if (typeof handle === 'number') {
      const err = new Error(`bind ${getSystemErrorName(handle)}`) as NodeJS.ErrnoException;
      err.code = getSystemErrorName(handle);
      throw err;
    }
    const bound = handle;
    let file: SocketFile | null = null;
    let at = address;
    if (address.kind === 'unix') {
      file = await ownSocketFile(address.path, socketMode);
    } else {
      const out: { port?: number } = {};
      bound.getsockname?.(out);
      at = { kind: 'tcp', host: address.host, port: out.port ?? address.port };
    }
    let closed = false;
    return {
      address: at,
      fd: bound.fd,
      release: async () => {
        const u = unlock;
        unlock = null;
        await u?.();
      },
      close: () => {
        if (closed) return;
        closed = true;
        // Another process's socket on the path now: our descriptor is left to our exit.
        if (file !== null && replaced(file)) return;
        bound.close();
      },
    };
  } catch (err) {
    await unlock?.();
    throw listenError(address, err);
  }
}

/** Listens on a socket another process bound (a SharedSocket's descriptor, inherited as `fd`). */
export function listenOnDescriptor(server: Server, fd: number): Promise<void> {
  return listening(server, { fd, backlog: LISTEN_BACKLOG });
}

export function closeListener(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  const bound = boundSockets.get(server);
  if (bound !== undefined && replaced(bound)) {
    server.unref();
    return Promise.resolve();
  }
  return new Promise((resolve) => server.close(() => resolve()));
}

export { formatAddress };
