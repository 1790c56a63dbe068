// What `tsgi front --check` and `tsgi serve --check` verify besides the options' syntax, without
// binding anything (as nginx -t): that the directory of every Unix socket to create exists and
// may be written, that --static directories exist, that the access log can be opened. Each
// problem is a ConfigError naming the option and the cause.
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../protocol/errors.js';
import { type Address, formatAddress } from './address.js';
import type { StaticMount } from './options.js';

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** The directory a file is to be created in exists, is a directory, and may be written. */
function writableDir(what: string, dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    throw new ConfigError(code(err) === 'ENOENT' ? `${what}: the directory ${dir} does not exist` : `${what}: ${dir}: ${code(err)}`);
  }
  if (!st.isDirectory()) throw new ConfigError(`${what}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    const uid = typeof process.getuid === 'function' ? `uid ${process.getuid()}` : 'this user';
    throw new ConfigError(`${what}: permission denied: ${uid} may not create files in ${dir}`);
  }
}

/** A Unix socket to be created at this address (TCP addresses are checked by binding only). */
export function checkSocketPath(flag: string, address: Address | string | undefined): void {
  if (address === undefined) return;
  const path = typeof address === 'string' ? address : address.kind === 'unix' ? address.path : null;
  if (path === null) return;
  writableDir(`${flag} ${typeof address === 'string' ? path : formatAddress(address)}`, dirname(resolve(path)));
}

export function checkStatic(mounts: readonly StaticMount[]): void {
  for (const { prefix, dir } of mounts) {
    const what = `--static ${prefix}=${dir}`;
    let st;
    try {
      st = statSync(resolve(dir));
    } catch (err) {
      throw new ConfigError(code(err) === 'ENOENT' ? `${what}: the directory ${resolve(dir)} does not exist` : `${what}: ${code(err)}`);
    }
    if (!st.isDirectory()) throw new ConfigError(`${what}: ${resolve(dir)} is not a directory`);
  }
}

/** The access log file can be appended to, or created. */
export function checkLogFile(flag: string, path: string | undefined): void {
  if (path === undefined || path === '-') return;
  const file = resolve(path);
  try {
    accessSync(file, constants.W_OK);
    return;
  } catch (err) {
    if (code(err) !== 'ENOENT') throw new ConfigError(`${flag}: cannot write ${file}: ${code(err)}`);
  }
  writableDir(`${flag} ${path}`, dirname(file));
}
