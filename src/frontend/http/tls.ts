// TLS at the front's edge: the certificate and key (PEM; a chain in the certificate file), ALPN
// offering h2 and http/1.1, TLS 1.2 or later with the server's cipher order, session resumption
// by tickets (Node's default, keys rotated by the context). Sockets come in as plain TCP (from
// the listener, or handed over by the primary of --processes N) and leave as TLSSockets once the
// handshake is done; reload() swaps the pair for new connections without touching open ones.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type SecureContextOptions, type TLSSocket, Server as TlsServer } from 'node:tls';
import type { Logger } from '../../common/log.js';
import { ConfigError } from '../../protocol/errors.js';

export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3';

export interface TlsOptions {
  certFile: string;
  keyFile: string;
  minVersion: TlsMinVersion;
  /** Offer h2 by ALPN (else http/1.1 alone). */
  http2: boolean;
  /** Milliseconds a client has to complete the handshake (the head's timeout: --headers-timeout). */
  handshakeTimeoutMs: number;
  log: Logger;
}

/** The certificate and key files read and checked: a ConfigError naming the flag when either is unusable. */
function readPair(opts: TlsOptions): SecureContextOptions {
  const read = (path: string, flag: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const pair = { cert: read(opts.certFile, '--tls-cert'), key: read(opts.keyFile, '--tls-key') };
  return pair;
}

export class TlsEdge {
  readonly #server: TlsServer;
  readonly #opts: TlsOptions;
  /** Handshakes that failed since the last log line about them (a scanner makes many). */
  #failed = 0;
  #failedSince = 0;

  /** Throws a ConfigError when the pair cannot be read or does not match. */
  constructor(opts: TlsOptions, onSecure: (socket: TLSSocket) => void) {
    this.#opts = opts;
    let server: TlsServer;
    try {
      server = new TlsServer({
        ...readPair(opts),
        minVersion: opts.minVersion,
        honorCipherOrder: true,
        ALPNProtocols: opts.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
        handshakeTimeout: opts.handshakeTimeoutMs > 0 ? opts.handshakeTimeoutMs : 120_000,
        allowHalfOpen: true,
      }, onSecure);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`--tls-cert ${opts.certFile} / --tls-key ${opts.keyFile}: ${(err as Error).message}`);
    }
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => this.#clientError(err, socket));
    this.#server = server;
  }

  /** Starts the handshake on a plain TCP connection; a TLSSocket reaches onSecure once it is done. */
  accept(socket: Socket): void {
    this.#server.emit('connection', socket);
  }

  /**
   * Reads the files again (SIGHUP): new connections get the new pair, open ones keep theirs. A
   * bad file keeps the old pair, with a log line. True when the new pair is in use.
   */
  reload(): boolean {
    const opts = this.#opts;
    try {
      this.#server.setSecureContext({ ...readPair(opts), minVersion: opts.minVersion, honorCipherOrder: true });
    } catch (err) {
      opts.log.error(`TLS: could not reload ${opts.certFile} / ${opts.keyFile} (${(err as Error).message}); keeping the certificate in use`);
      return false;
    }
    opts.log.info(`TLS: certificate and key reloaded from ${opts.certFile} / ${opts.keyFile}`);
    return true;
  }

  /** A failed handshake: a line for the first, then one a minute at most with the count. */
  #clientError(err: NodeJS.ErrnoException, socket: TLSSocket): void {
    socket.destroy();
    const now = Date.now();
    this.#failed++;
    if (now - this.#failedSince < 60_000) return;
    const who = socket.remoteAddress ?? 'client';
    const count = this.#failed > 1 ? ` (${this.#failed} failed handshakes in the last minute)` : '';
    this.#opts.log.warn(`TLS handshake with ${who} failed: ${err.code ?? err.message}${count}`);
    this.#failed = 0;
    this.#failedSince = now;
  }
}
