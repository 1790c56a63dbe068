// Mutual TLS on the links between a front and its backends: the certificate, key and CA files
// read into a secure context (again on SIGHUP: a failed reload keeps the old one), the options
// each side hands node:tls, and how a failed handshake is told from any other socket error.
import { readFileSync } from 'node:fs';
import type * as NodeTls from 'node:tls';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { ConfigError } from '../protocol/errors.js';
import { onFirstUse } from './load-on-use.js';
import type { Logger } from './log.js';

/**
 * node:tls, loaded by the first TLS context, listener or connection: a process that uses no TLS
 * does not carry it (with the modules it brings, about 0.8 MiB of heap that every major
 * collection would mark).
 */
export const nodeTls = onFirstUse<typeof NodeTls>('node:tls');

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** The flags that named the files, for messages (`--tls-cert` or `--backend-tls-cert`). */
export interface TlsFlags {
  cert: string;
  key: string;
  ca: string;
}

export const SERVE_TLS_FLAGS: TlsFlags = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' };
export const FRONT_TLS_FLAGS: TlsFlags = { cert: '--backend-tls-cert', key: '--backend-tls-key', ca: '--backend-tls-ca' };

function read(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The files as a context; a ConfigError names the flag whose file is missing or wrong. */
function load(files: TlsFiles, flags: TlsFlags): { options: SecureContextOptions; context: SecureContext } {
  const options: SecureContextOptions = {
    cert: read(files.cert, flags.cert), key: read(files.key, flags.key), ca: read(files.ca, flags.ca), minVersion: 'TLSv1.2',
  };
  try {
    return { options, context: nodeTls().createSecureContext(options) };
  } catch (err) {
    throw new ConfigError(`${flags.cert} ${files.cert} / ${flags.key} ${files.key} / ${flags.ca} ${files.ca}: `
      + `${(err as Error).message} (a PEM certificate, its private key, and the PEM CA that signs the peer's)`);
  }
}

/** A secure context made from files, swapped whole by reload(). */
export class TlsContext {
  readonly files: TlsFiles;
  readonly #flags: TlsFlags;
  #loaded: { options: SecureContextOptions; context: SecureContext };
  /** Called after each successful reload (a TLS server takes the new options). */
  onReload: ((options: SecureContextOptions) => void) | null = null;

  constructor(files: TlsFiles, flags: TlsFlags) {
    this.files = files;
    this.#flags = flags;
    this.#loaded = load(files, flags);
  }

  /** For a client: the context to connect with. */
  get context(): SecureContext {
    return this.#loaded.context;
  }

  /** For a server: what tls.createServer and setSecureContext take. */
  get options(): SecureContextOptions {
    return this.#loaded.options;
  }

  /** Reads the files again (SIGHUP); on an error the old context stays and the error is logged. */
  reload(log: Logger): boolean {
    try {
      this.#loaded = load(this.files, this.#flags);
      this.onReload?.(this.#loaded.options);
      log.info(`TLS: certificates reloaded from ${this.files.cert}, ${this.files.key} and ${this.files.ca}`);
      return true;
    } catch (err) {
      log.error(`TLS: reload failed, keeping the certificates in use: ${(err as Error).message}`);
      return false;
    }
  }
}

/**
 * The three files, or null when none is given; a ConfigError when only some are (mutual TLS
 * needs all three: our certificate, its key, and the CA that signs the peer's).
 */
export function tlsFiles(given: Partial<TlsFiles>, flags: TlsFlags): TlsFiles | null {
  const named = (['cert', 'key', 'ca'] as const).filter((k) => given[k] !== undefined && given[k] !== '');
  if (named.length === 0) return null;
  if (named.length < 3) {
    const missing = (['cert', 'key', 'ca'] as const).filter((k) => !named.includes(k)).map((k) => flags[k]);
    throw new ConfigError(`${named.map((k) => flags[k]).join(' and ')} given without ${missing.join(' and ')}: `
      + 'links are mutual TLS, so each side needs its certificate, its key and the CA that signs the other side\'s');
  }
  return given as TlsFiles;
}

/** Codes of errors that come from the TLS layer (a handshake refused or a certificate not trusted). */
export function isTlsError(err: NodeJS.ErrnoException & { library?: string; reason?: string }): boolean {
  const code = err.code ?? '';
  return code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || err.library === 'SSL routines'
    || /CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME_MISMATCH/.test(code);
}

/** One line for a TLS error: Node's message, with its code when it adds something. */
export function tlsReason(err: NodeJS.ErrnoException & { reason?: string }): string {
  const message = err.reason ?? err.message;
  return err.code !== undefined && !message.includes(err.code) ? `${message} [${err.code}]` : message;
}
