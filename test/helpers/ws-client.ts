// The ws client as an end-to-end test drives it: open (bounded in time), a queue of the messages
// received, and the close seen (code and reason).
import WebSocket from 'ws';
import { within } from './tunnel-backend.js';

export interface WsClient {
  ws: WebSocket;
  /** The next message not yet taken (waits for it). */
  next(what?: string): Promise<{ data: Buffer; binary: boolean }>;
  /** The close: code and reason (never rejects). */
  closed: Promise<{ code: number; reason: string }>;
}

export async function openWs(url: string, protocols: string[] = [], opts: WebSocket.ClientOptions = {}): Promise<WsClient> {
  const ws = new WebSocket(url, protocols, { maxPayload: 64 * 1024 * 1024, ...opts });
  const queue: { data: Buffer; binary: boolean }[] = [];
  let wake: (() => void) | null = null;
  ws.on('message', (data: Buffer, binary: boolean) => {
    queue.push({ data, binary });
    wake?.();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => {
      resolve({ code, reason: reason.toString() });
      wake?.();
    });
  });
  ws.on('error', () => {}); // a failed handshake or a cut shows as the close (1006)
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    ws.once('close', (code: number) => reject(new Error(`closed (${code}) before it opened`)));
  }), `the WebSocket handshake to ${url}`);
  const next = async (what = 'a message') => {
    await within(new Promise<void>((resolve, reject) => {
      const check = () => {
        if (queue.length > 0) resolve();
        else if (ws.readyState === WebSocket.CLOSED) reject(new Error(`closed while waiting for ${what}`));
        else wake = check;
      };
      check();
    }), what);
    wake = null;
    return queue.shift()!;
  };
  return { ws, next, closed };
}
