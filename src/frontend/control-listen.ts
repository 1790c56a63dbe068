// The front's control endpoint for backends on other hosts (`--control-listen HOST:PORT`): the
// same one-JSON-line protocol as the Unix control socket, over mutual TLS with the files of the
// links (--backend-tls-cert/-key: the front's certificate; --backend-tls-ca: the CA that signs
// the backends', which is who may connect). --control-allow still decides which addresses a
// request may add. Used by the single front and by the primary of --processes N alike.
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { type Address, formatAddress } from '../common/address.js';
import { closeListener, listenOn } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import { type TlsContext, tlsReason } from '../common/tls.js';
import { ConfigError } from '../protocol/errors.js';
import type { ControlHandler } from '../common/control.js';
import { ControlServer } from './control.js';

/** A request that took longer than this to arrive is dropped (a control request is one short line). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ControlEndpoints {
  /** The --control-listen address bound, if any. */
  readonly tcpAddress: Address | null;
  close(): Promise<void>;
}

export interface ControlConfig {
  control?: string;
  controlListen?: Address;
  controlAllow: string[];
  socketMode: number;
}

/**
 * Opens what the config asks for: the Unix control socket (--control), the TLS one
 * (--control-listen, which needs the --backend-tls-* files), both, or neither (null).
 */
export async function openControl(config: ControlConfig, tls: TlsContext | null, handle: ControlHandler, log: Logger): Promise<ControlEndpoints | null> {
  if (config.control === undefined && config.controlListen === undefined) return null;
  if (config.controlListen !== undefined && tls === null) {
    throw new ConfigError('--control-listen takes registrations from other hosts over mutual TLS: give --backend-tls-cert, '
      + '--backend-tls-key (the front\'s certificate) and --backend-tls-ca (the CA that signs the backends\')');
  }
  const control = new ControlServer(config.control ?? null, handle, log, config.controlAllow);
  await control.listen(config.socketMode);
  let tcp: Server | null = null;
  let tcpAddress: Address | null = null;
  if (config.controlListen !== undefined) {
    const secure = createTlsServer({ ...tls!.options, requestCert: true, rejectUnauthorized: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS },
      (socket: TLSSocket) => {
        if (!socket.authorized) {
          const why = socket.authorizationError === undefined ? 'it showed none' : `not accepted: ${socket.authorizationError}`;
          log.warn(`control: refused ${socket.remoteAddress}:${socket.remotePort}: certificate ${why} `
            + `(a backend's --tls-cert must be signed by --backend-tls-ca ${tls!.files.ca})`);
          socket.destroy();
          return;
        }
        control.accept(socket);
      });
    secure.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      log.warn(`control: a TLS handshake failed: ${tlsReason(err)} (does the backend trust the CA of --backend-tls-cert?)`);
    });
    tls!.onReload = ((previous) => (options) => {
      previous?.(options);
      secure.setSecureContext(options);
    })(tls!.onReload);
    tcp = createServer((socket: Socket) => secure.emit('connection', socket));
    try {
      tcpAddress = await listenOn(tcp, config.controlListen, config.socketMode);
    } catch (err) {
      await control.close();
      throw err;
    }
    log.info(`control on tls ${formatAddress(tcpAddress)}: backends on other hosts register here`);
  }
  return {
    tcpAddress,
    async close() {
      await control.close();
      if (tcp !== null) await closeListener(tcp);
    },
  };
}
