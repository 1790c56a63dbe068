// The request id (--request-id-header, X-Request-Id by default): the one a request came with, or
// a new one the front adds to what the backend gets, so the app, the access log and the log lines
// about the request all name it. Always on, so it must be cheap: a per-process random prefix and
// a counter (measured in bench/request-id.ts), no crypto call and no object per request.
import { randomBytes } from 'node:crypto';
import type { RequestHead } from '../../protocol/connection.js';
import { ConfigError } from '../../protocol/errors.js';
import { TOKEN } from '../../protocol/http-grammar.js';
import type { HttpRequest } from '../http/server.js';

export class RequestIds {
  /** The header's name, lowercase. */
  readonly header: string;
  /** 12 base64url characters (72 random bits) and a dash: ids differ across processes and restarts. */
  readonly #prefix = `${randomBytes(9).toString('base64url')}-`;
  #next = 0;

  constructor(header: string) {
    if (!TOKEN.test(header)) {
      throw new ConfigError(`--request-id-header ${JSON.stringify(header)} is not a header name (letters, digits and !#$%&'*+-.^_\`|~)`);
    }
    this.header = header.toLowerCase();
  }

  /**
   * Sets req.requestId: the request's own id (the first non-empty value of the header), else a
   * new one. True when it is new (the backend does not have it yet: see addTo).
   */
  assign(req: HttpRequest): boolean {
    const raw = req.rawHeaders;
    const name = this.header;
    const len = name.length;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length === len && (n === name || n.toLowerCase() === name) && raw[i + 1] !== '') {
        req.requestId = raw[i + 1]!;
        return false;
      }
    }
    req.requestId = this.#prefix + (++this.#next).toString(36);
    return true;
  }

  /**
   * Gives a new id to the head the backend gets: in the REQUEST's request_id, not as a header (a
   * value new on every request would churn the connection's value tables: 6 µs of CPU per
   * request at the front, measured on the hello app). The backend adds it as the header.
   */
  addTo(head: RequestHead, id: string): void {
    head.requestId = id;
  }
}
