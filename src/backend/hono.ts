// Hono's upgradeWebSocket for apps served by tsgi (as hono/deno's is for Deno), built on the
// fetch-style upgradeWebSocket: `app.get('/ws', upgradeWebSocket((c) => ({ onMessage(evt, ws) {…} })))`.
// Written against Hono's helper contract (events, WSContext members) without importing hono.
import type { WebSocketOptions } from './websocket.js';
import { upgradeWebSocket as upgradeRequest } from './fetch-adapter.js';

/** The WebSocket as Hono's event handlers get it (the members of Hono's WSContext). */
export interface WSContext {
  send(source: string | ArrayBuffer | Uint8Array, options?: { compress?: boolean }): void;
  close(code?: number, reason?: string): void;
  readonly readyState: 0 | 1 | 2 | 3;
  /** The ws WebSocket underneath. */
  readonly raw: unknown;
  readonly url: URL | null;
  readonly protocol: string | null;
  binaryType: 'arraybuffer' | 'blob';
}

export interface WSEvents {
  onOpen?: (evt: Event, ws: WSContext) => void;
  onMessage?: (evt: MessageEvent, ws: WSContext) => void;
  onClose?: (evt: CloseEvent, ws: WSContext) => void;
  onError?: (evt: Event, ws: WSContext) => void;
}

/** The bits of Hono's Context this helper uses. */
interface HonoContext {
  req: { raw: Request; url: string; header(name: string): string | undefined };
}

/** A close event (Node 20 has no global CloseEvent). */
export class CloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

/**
 * Hono middleware that upgrades a WebSocket request and runs the events `createEvents(c)`
 * returns; any other request goes on to next().
 */
export function upgradeWebSocket<C extends HonoContext>(
  createEvents: (c: C) => WSEvents | Promise<WSEvents>, options?: WebSocketOptions,
): (c: C, next: () => Promise<void>) => Promise<Response | void> {
  return async (c, next) => {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      await next();
      return;
    }
    const events = await createEvents(c);
    const { socket, response } = upgradeRequest(c.req.raw, options);
    const ctx: WSContext = {
      send: (source, opts) => socket.send(source, { compress: opts?.compress }),
      close: (code, reason) => socket.close(code, reason),
      get readyState() { return socket.readyState; },
      raw: socket,
      url: new URL(c.req.url),
      get protocol() { return socket.protocol || null; },
      binaryType: 'arraybuffer',
    };
    socket.on('open', () => events.onOpen?.(new Event('open'), ctx));
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      const value = isBinary ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer : data.toString('utf8');
      events.onMessage?.(new MessageEvent('message', { data: value }), ctx);
    });
    socket.on('close', (code: number, reason: Buffer) => {
      events.onClose?.(new CloseEvent('close', { code, reason: reason.toString('utf8'), wasClean: code !== 1006 }) as never, ctx);
    });
    socket.on('error', (error: Error) => events.onError?.(Object.assign(new Event('error'), { error }), ctx));
    return response;
  };
}
