// What the pool and the per-request exchange use of a link to a backend, whatever protocol the
// backend speaks: a persistent multiplexed tsgi connection (tsgi-link.ts), or a uwsgi link
// that opens one connection per request (uwsgi-link.ts).
import type { Address } from '../../common/address.js';
import type { Logger } from '../../common/log.js';
import type { TlsContext } from '../../common/tls.js';
import type { HeaderFields, RequestHead, StreamHandler } from '../../protocol/connection.js';

export type LinkState = 'connecting' | 'ready' | 'draining' | 'closed';

/** The parts of a tsgi Connection a link's users touch. */
export interface LinkConnection {
  /** Opens a request stream and sends its head. */
  open(head: RequestHead, endStream: boolean): LinkStream;
  /** The backend's software, from its HELLO (for logs). */
  readonly peerSoftware: string;
  /** Connections the backend asks for (one per worker). */
  readonly peerConnections: number;
  /** The backend's hard limit on a request's run time (its --timeout), in ms; 0 or absent: none. */
  readonly peerRequestTimeoutMs?: number;
}

/**
 * What a link and the exchanges on it tell the backend the link belongs to (upstream/backend.ts):
 * its counters. An interface here, so that links need not know the Backend class.
 */
export interface LinkOwner {
  /** Requests sent, and requests that failed because of this backend (lost, reset, timed out). */
  requests: number;
  failures: number;
  /** A request on `link` was refused or lost before its head: the link has not proven itself. */
  unanswered(link: Link): void;
}

export interface Link {
  readonly name: string;
  /** The backend this link belongs to (its counters and state). */
  readonly owner: LinkOwner;
  state: LinkState;
  /** Requests sent on this link. */
  requests: number;
  /** Requests in flight on it. */
  readonly load: number;
  readonly canOpen: boolean;
  /** The backend can carry an upgraded connection (a tsgi link of protocol version 2 and up; never a uwsgi one). */
  readonly tunnels: boolean;
  readonly conn: LinkConnection;
  /** A request on this link finished: a draining link closes once it has none left. */
  release(): void;
  /** Stops taking requests; closes when the in-flight ones are done. */
  drain(): void;
  close(): void;
}

export interface LinkEvents {
  onReady(link: Link): void;
  onGoAway(link: Link, message: string): void;
  /**
   * The link closed; `established` tells whether it ever became ready; `tlsFailed`, that the TLS
   * handshake failed (a certificate not trusted, or ours refused): retrying soon would fail again.
   */
  onClose(link: Link, established: boolean, error: string | null, tlsFailed?: boolean): void;
}

export interface LinkOptions {
  owner: LinkOwner;
  address: Address;
  name: string;
  log: Logger;
  window?: number;
  maxFrameSize?: number;
  /** --max-response-header-size: the largest response head taken from the backend, decoded. */
  maxResponseHeaderSize?: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** --backend-tls-*: for a tls: address, the front's certificate and the CA it trusts. */
  tls?: TlsContext | null;
  /** --backend-tls-servername: the name the backend's certificate must carry (else the address's). */
  tlsServername?: string;
}

/**
 * The parts of a tsgi Stream the per-request exchange (exchange.ts) uses. A uwsgi request
 * implements exactly these, so the exchange drives both kinds of backend the same way.
 */
export interface LinkStream {
  handler: StreamHandler | null;
  readonly closed: boolean;
  readonly localEnded: boolean;
  readonly remoteEnded: boolean;
  /** Data waits for credit: the producer stops until the handler's onDrain. */
  readonly blocked: boolean;
  /** The backend granted flow-control credit: it took the stream (a uwsgi request always counts as taken). */
  readonly credited: boolean;
  /** A 101 answered the upgrade request: DATA carries the upgraded connection's bytes both ways. */
  readonly tunnel: boolean;
  write(chunk: Uint8Array): boolean;
  end(): void;
  /** Ends the request body with trailer fields (a backend that cannot carry them just sees the end). */
  sendTrailers(headers: HeaderFields): void;
  consume(n: number): void;
  reset(code: number, message?: string): void;
}
