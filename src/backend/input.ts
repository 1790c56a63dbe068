// tsgi.input: the request body as an async-iterable stream with backpressure. Bytes are
// pushed in by the transport; credit goes back to the sender only as the app takes chunks,
// so a body the app reads slowly is never buffered beyond the flow-control window.
import { TsgiError } from '../protocol/errors.js';

type Waiter = { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void };

export class InputStream implements AsyncIterable<Buffer> {
  #chunks: Buffer[] = [];
  #ended = false;
  #error: unknown = null;
  #waiter: Waiter | null = null;
  #onConsume: ((n: number) => void) | null;
  #received = 0;
  #iterating = false;
  /**
   * The request's trailer fields, flat [name, value, …], once the body has ended with them
   * (chunked HTTP/1.1 or HTTP/2 trailers the client sent); null before the end or without any.
   */
  trailers: string[] | null = null;

  constructor(onConsume: ((n: number) => void) | null = null) {
    this.#onConsume = onConsume;
  }

  /** Bytes received so far. */
  get received(): number {
    return this.#received;
  }

  /** True once the whole body has arrived (it may not all have been read). */
  get complete(): boolean {
    return this.#ended;
  }

  push(chunk: Buffer): void {
    if (this.#ended || this.#error !== null || chunk.length === 0) return;
    this.#received += chunk.length;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      this.#onConsume?.(chunk.length);
      w.resolve({ value: chunk, done: false });
    } else {
      this.#chunks.push(chunk);
    }
  }

  end(): void {
    if (this.#ended || this.#error !== null) return;
    this.#ended = true;
    const w = this.#waiter;
    if (w !== null && this.#chunks.length === 0) {
      this.#waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }

  /** The body can never complete (client gone, stream reset): readers get this error. */
  fail(err: unknown): void {
    if (this.#ended || this.#error !== null) return;
    this.#error = err;
    this.#chunks.length = 0;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.reject(err);
    }
  }

  /** The next chunk, or null at the end of the body. */
  next(): Promise<IteratorResult<Buffer>> {
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      this.#onConsume?.(chunk.length);
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    if (this.#waiter !== null) return Promise.reject(new TsgiError('TSGI_ERR_APP', 'tsgi.input is already being read'));
    return new Promise((resolve, reject) => { this.#waiter = { resolve, reject }; });
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.#iterating) throw new TsgiError('TSGI_ERR_APP', 'tsgi.input can be iterated only once');
    this.#iterating = true;
    return {
      next: () => this.next(),
      return: async () => ({ value: undefined, done: true }),
    };
  }

  /** The whole remaining body in one buffer, at most `limit` bytes (else it rejects). */
  async read(limit = Infinity): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    for (;;) {
      const r = await this.next();
      if (r.done) break;
      size += r.value.length;
      if (size > limit) throw new TsgiError('TSGI_ERR_BODY_TOO_LARGE', `request body exceeds ${limit} bytes`);
      parts.push(r.value);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
  }

  async text(): Promise<string> {
    return (await this.read()).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}
