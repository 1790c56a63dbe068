// `tsgi/hono`: Hono's WebSocket helper for apps served by tsgi (import { upgradeWebSocket } from 'tsgi/hono').
export { upgradeWebSocket, CloseEvent, type WSContext, type WSEvents } from './backend/hono.js';
