// The response `send` writes a static file to: the part of Node's ServerResponse it uses (status,
// header get/set, a Writable the file is piped into, 'finish' and 'close'), over the front's own
// HttpResponse. Only static requests pay for a stream; proxied ones never see this.
import { Writable } from 'node:stream';
import type { HttpRequest, HttpResponse, ResponseHandler } from '../http/server.js';

export class StaticResponse extends Writable implements ResponseHandler {
  readonly #res: HttpResponse;
  readonly req: HttpRequest;
  readonly #headers = new Map<string, [string, string]>();
  #committed = false;
  statusCode = 200;

  constructor(res: HttpResponse) {
    super({ highWaterMark: 64 * 1024 });
    this.#res = res;
    this.req = res.req;
    res.handler = this;
  }

  /** The client went away (or the connection was cut): the stream piped in stops. */
  onResponseClose(): void {
    if (!this.#res.ended) this.destroy();
  }

  /** The response underneath (the access log reads its status and whether a head went out). */
  get response(): HttpResponse {
    return this.#res;
  }

  get socket(): HttpRequest['socket'] {
    return this.#res.socket;
  }

  get headersSent(): boolean {
    return this.#committed;
  }

  /** on-finished (used by send) asks this. */
  get finished(): boolean {
    return this.writableEnded;
  }

  setHeader(name: string, value: string | number | readonly string[]): this {
    this.#headers.set(name.toLowerCase(), [name, Array.isArray(value) ? value.join(', ') : String(value)]);
    return this;
  }

  getHeader(name: string): string | undefined {
    return this.#headers.get(name.toLowerCase())?.[1];
  }

  removeHeader(name: string): void {
    this.#headers.delete(name.toLowerCase());
  }

  getHeaderNames(): string[] {
    return [...this.#headers.keys()];
  }

  writeHead(status: number, headers?: Record<string, string | number>): this {
    this.statusCode = status;
    if (headers !== undefined) for (const name in headers) this.setHeader(name, headers[name]!);
    this.#commit();
    return this;
  }

  #commit(): void {
    if (this.#committed) return;
    this.#committed = true;
    const flat: string[] = [];
    for (const [name, value] of this.#headers.values()) flat.push(name, value);
    this.#res.writeHead(this.statusCode, undefined, flat);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#commit();
    this.#res.write(chunk, () => callback());
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#commit();
    this.#res.end(undefined, () => callback());
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Destroyed before it ended (a read error after the head, the client gone): the response is cut.
    if (!this.writableFinished) this.#res.destroy();
    callback(err);
  }
}
