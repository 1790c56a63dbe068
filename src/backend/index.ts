// The backend, `tsgi serve`: loads the application and serves it on a tsgi socket.
// start(config) and stop({ graceful }) are the lifecycle verbs, as for the front.
import { type Address } from '../common/address.js';
import { createLogger } from '../common/log.js';
import { ConfigError } from '../protocol/errors.js';
import { loadApplication } from './load-app.js';
import { BackendServer } from './server.js';
import type { Application } from './types.js';

export interface BackendConfig {
  /** Path to the application module, or the application itself. */
  app: string | Application;
  listen?: Address;
  socket?: string;
  scriptName?: string;
  maxStreams?: number;
  window?: number;
  maxFrameSize?: number;
  socketMode?: number;
  gracefulTimeout?: number;
}

export interface Backend {
  readonly address: Address;
  readonly server: BackendServer;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export async function start(config: BackendConfig): Promise<Backend> {
  const log = createLogger('serve');
  const address: Address | undefined = config.listen ?? (config.socket ? { kind: 'unix', path: config.socket } : undefined);
  if (address === undefined) throw new ConfigError('tsgi serve needs --socket PATH or --listen HOST:PORT|unix:PATH');
  const app = typeof config.app === 'function' ? config.app : await loadApplication(config.app);
  const server = new BackendServer({
    address, app, log,
    scriptName: config.scriptName,
    maxStreams: config.maxStreams,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
    socketMode: config.socketMode,
  });
  const bound = await server.listen();
  const gracefulMs = (config.gracefulTimeout ?? 30) * 1000;
  return {
    address: bound,
    server,
    stop: ({ graceful = true } = {}) => server.stop({ graceful, timeoutMs: gracefulMs }),
  };
}

export { loadApplication } from './load-app.js';
export { fromFetch } from './fetch-adapter.js';
export { runApplication, type Responder } from './gateway.js';
export { buildEnviron } from './environ.js';
export { InputStream } from './input.js';
export type * from './types.js';
