// The tsgi package: the gateway types for application authors, the two programs as functions
// for embedding — serve() a backend, front() an HTTP front — and adapters both ways: other
// apps in (fromFetch, fromNodeHandler), a gateway app out to node:http and fetch servers.
import { type TsgiWebSocket as AppWebSocket, tsgiWebSocketClass } from './backend/websocket.js';
export type {
  Application, AppResult, Chunk, Environ, ErrorStream, FetchHandler, StartResponse, Write,
} from './backend/types.js';
export { start as serve, type Backend, type BackendConfig } from './backend/index.js';
export { start as front, type Front, type FrontConfig } from './frontend/index.js';
export { fromFetch, upgradeWebSocket } from './backend/fetch-adapter.js';
export {
  fromHttpServer, fromNodeHandler, type NodeHandler, type NodeHandlerOptions, type UpgradeHandler,
} from './backend/node-adapter.js';
export { toFetch, toNodeHandler, type PortableOptions } from './backend/portable.js';
export type { WebSocketOptions } from './backend/websocket.js';
/** ws's WebSocket with an async iterator of messages, as environ['tsgi.websocket']() returns it. */
export const TsgiWebSocket = tsgiWebSocketClass();
export type TsgiWebSocket = AppWebSocket;
export { onDrain, type DrainNotice } from './backend/draining.js';
export { CloseCode } from './common/ws-frames.js';
export { InputStream } from './backend/input.js';
export { parseAddress, type Address } from './common/address.js';
export { TsgiError, ProtocolError, GatewayError, ConfigError, type TsgiErrorCode } from './protocol/errors.js';
