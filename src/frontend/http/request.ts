// A request as the front's handlers see it: the head, and the body through callbacks that the
// connection drives (pause, resume, discard within the connection's bounds).
import type { Socket } from 'node:net';
import type { ParsedRequestHead } from '../../protocol/http-request.js';
import type { TsgiError } from '../../protocol/errors.js';

/** What a request needs of its connection (connection.ts's Connection is one). */
export interface RequestConnection {
  readonly socket: Socket;
  pauseBody(): void;
  resumeBody(): void;
  discardStarted(): void;
}

/**
 * Who reads a request's body (undici's handler objects: methods on a prototype, no closures per
 * request). The connection calls these as the body arrives.
 */
export interface BodyReader {
  onBodyData(chunk: Buffer): void;
  onBodyEnd(): void;
  /** The body was malformed (a bad chunk): the reader answers, or cuts; false when it is done. */
  onBodyError(err: TsgiError): boolean;
}

/** A request as the front's handlers see it: the head, and the body through callbacks. */
export class HttpRequest {
  readonly method: string;
  readonly url: string;
  /** '1.1', '1.0', or '2.0' (HTTP/2). */
  readonly httpVersion: string;
  /** Header fields as sent: [name, value, name, value, …]. */
  readonly rawHeaders: string[];
  readonly socket: Socket;
  readonly expectContinue: boolean;
  readonly hasBody: boolean;
  /** The body's declared length (Content-Length framing, over 0), or -1: chunked, or no body. */
  readonly contentLength: number;
  /** The whole request, body included, has been read. */
  complete: boolean;
  /**
   * An HTTP/2 extended CONNECT for a WebSocket (RFC 8441): h2.ts made it a GET asking to upgrade,
   * and the stream carries the WebSocket once the backend's 101 comes.
   */
  extendedConnect = false;
  /** The body's trailer fields, flat [name, value, …], once it has ended with some; else null. */
  trailers: string[] | null = null;
  /** Who reads the body: set by readBody, cleared by discard. */
  reader: BodyReader | null = null;
  /** The request id (--request-id-header): its own, or one the front made; '' until assigned. */
  requestId = '';
  readonly #conn: RequestConnection;
  #headers: Record<string, string> | null = null;
  /** The handler asked for no more body for now (or has not asked for it yet). */
  paused: boolean;
  discarding = false;

  /** `httpVersion` '2.0' for a request that came over HTTP/2 (h2.ts); else the head's. */
  constructor(conn: RequestConnection, head: ParsedRequestHead, httpVersion?: string) {
    this.#conn = conn;
    this.socket = conn.socket;
    this.method = head.method;
    this.url = head.target;
    this.httpVersion = httpVersion ?? (head.minor === 1 ? '1.1' : '1.0');
    this.rawHeaders = head.headers;
    this.expectContinue = head.expectContinue;
    this.hasBody = head.framing !== 'none';
    this.contentLength = head.framing === 'length' ? head.contentLength : -1;
    this.complete = !this.hasBody;
    this.paused = this.hasBody;
  }

  /** Header values by lowercase name (repeated ones joined with ', '), made on first use. */
  get headers(): Record<string, string> {
    if (this.#headers === null) {
      const h: Record<string, string> = Object.create(null) as Record<string, string>;
      const raw = this.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!.toLowerCase();
        const prev = h[name];
        h[name] = prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`;
      }
      this.#headers = h;
    }
    return this.#headers;
  }

  /** Delivers the body to `reader`, starting now. */
  readBody(reader: BodyReader): void {
    this.reader = reader;
    this.resume();
  }

  pause(): void {
    if (this.complete || this.paused) return;
    this.paused = true;
    this.#conn.pauseBody();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.#conn.resumeBody();
  }

  /**
   * Nobody will read the rest of the body: it is read and dropped, within bounds (the
   * connection's maxDropBytes and linger timeout), and the connection stays usable if it ends
   * within them.
   */
  discard(): void {
    if (!this.discarding) this.#conn.discardStarted();
    this.discarding = true;
    this.reader = null;
    this.resume();
  }
}

