// An upgraded connection at the front (a WebSocket, say): after the backend's 101 the client's
// socket and the backend stream carry raw bytes both ways, each under flow control (the socket
// pauses while the stream waits for credit; credit goes back only as the socket drains), so a
// slow reader on either side holds at most a window here. A FIN is a half-close (END_STREAM),
// a RESET or a cut socket an abort. Tunnels counts them for --max-tunnels, the metrics and
// /status, and closes them on a graceful stop: a WebSocket gets a close frame each way, sent
// between two frames.
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { CloseCode, FrameTracker, clientCloseFrame, serverCloseFrame } from '../common/ws-frames.js';
import { LOCAL_CONNECTION_LOST, type StreamHandler } from '../protocol/connection.js';
import { RESET_CODE_NAMES, ResetCode } from '../protocol/constants.js';
import { TsgiError } from '../protocol/errors.js';
import type { SocketTaker } from './http/response.js';
import type { LinkStream } from './upstream/link.js';
import { retain } from './upstream/read-buffers.js';

/** RFC 6455 7.4.1: the server met a condition that kept it from serving (the app reset the stream). */
const CLOSE_INTERNAL_ERROR = 1011;

/** Why a tunnel closed (the label of tsgi_tunnels_closed_total). */
export type TunnelCloseReason = 'closed' | 'client_abort' | 'backend_reset' | 'backend_lost' | 'idle_timeout' | 'shutdown';

/** The front's tunnels: the --max-tunnels cap, --tunnel-idle-timeout, and the counts. */
export class Tunnels {
  readonly max: number;
  /** --tunnel-idle-timeout in ms (0: none). */
  readonly idleMs: number;
  readonly log: Logger;
  readonly open = new Set<Tunnel>();
  /** Upgrade requests admitted and not answered yet: they count against the cap. */
  pending = 0;
  opened = 0;
  readonly closed: Record<string, number> = {};
  /** Bytes client to backend, and backend to client, of every tunnel (open ones included). */
  bytesIn = 0;
  bytesOut = 0;
  #stopping = false;

  constructor(max: number, idleMs: number, log: Logger) {
    this.max = max;
    this.idleMs = idleMs;
    this.log = log;
  }

  /** Admits an upgrade request, or refuses it (503) at --max-tunnels; release() when it is not upgraded. */
  reserve(): TsgiError | null {
    if (this.max > 0 && this.open.size + this.pending >= this.max) {
      return new TsgiError('TSGI_ERR_TOO_MANY_TUNNELS', `over --max-tunnels ${this.max}: `
        + `${this.open.size} upgraded connections open, ${this.pending} being set up`);
    }
    this.pending++;
    return null;
  }

  release(): void {
    this.pending--;
  }

  /** A 101 answered a reserved request. */
  opening(t: Tunnel): void {
    this.pending--;
    this.open.add(t);
    this.opened++;
    if (this.#stopping) t.shutdown();
  }

  closing(t: Tunnel, reason: TunnelCloseReason): void {
    if (!this.open.delete(t)) return;
    this.closed[reason] = (this.closed[reason] ?? 0) + 1;
  }

  /**
   * A graceful stop: every tunnel is closed the polite way (see Tunnel.shutdown), spread evenly
   * over `spreadMs` so that the clients do not all reconnect in the same instant.
   */
  shutdown(spreadMs: number): void {
    this.#stopping = true;
    const list = [...this.open];
    if (list.length === 0) return;
    const step = list.length > 1 ? spreadMs / (list.length - 1) : 0;
    this.log.info(list.length === 1 ? 'closing 1 upgraded connection'
      : `closing ${list.length} upgraded connections, spread over ${Math.round(spreadMs)} ms`);
    list.forEach((t, i) => {
      if (i === 0 || step === 0) t.shutdown();
      else setTimeout(shutdownOne, i * step, t).unref();
    });
  }
}

function shutdownOne(t: Tunnel): void {
  t.shutdown();
}

/** One upgraded connection: the client's socket piped to its backend stream, both ways. */
export class Tunnel implements SocketTaker, StreamHandler {
  readonly #tunnels: Tunnels;
  readonly #socket: Socket;
  readonly #stream: LinkStream;
  /** `METHOD target` for log lines. */
  readonly #what: string;
  /** Bytes from the client to the backend, and back. */
  bytesIn = 0;
  bytesOut = 0;
  /** Bytes written to the client and not yet granted back to the backend. */
  #pendingCredit = 0;
  #awaitingDrain = false;
  /** The socket is paused: the stream waits for credit. */
  #readPaused = false;
  #reason: TunnelCloseReason | null = null;
  /** What the idle sweep last saw (bytes both ways), and since when. */
  #mark = -1;
  #since = 0;
  /** Frame boundaries each way, for a WebSocket (null for any other upgraded protocol). */
  readonly #toClient: FrameTracker | null;
  readonly #toBackend: FrameTracker | null;
  /** A graceful close was asked: the close frames wait for a boundary each way, then bytes are dropped. */
  #closingToClient = false;
  #closingToBackend = false;
  #closeSentToClient = false;
  #closeSentToBackend = false;

  constructor(tunnels: Tunnels, socket: Socket, stream: LinkStream, what: string, websocket: boolean) {
    this.#tunnels = tunnels;
    this.#socket = socket;
    this.#stream = stream;
    this.#what = what;
    this.#toClient = websocket ? new FrameTracker() : null;
    this.#toBackend = websocket ? new FrameTracker() : null;
  }

  /** Why it closed (null while open). */
  get reason(): TunnelCloseReason | null {
    return this.#reason;
  }

  /** Starts the flow: `held` (client bytes sent before the 101) goes first, then the socket is read. */
  start(held: Buffer | null): void {
    this.#tunnels.opening(this);
    if (held !== null) this.onSocketData(held);
    if (!this.#readPaused && !this.#socket.destroyed) this.#socket.resume();
  }

  // The client side (the connection hands over its socket's events).

  onSocketData(chunk: Buffer): void {
    const n = chunk.length;
    this.bytesIn += n;
    this.#tunnels.bytesIn += n;
    const stream = this.#stream;
    if (stream.closed || stream.localEnded || this.#closeSentToBackend) return;
    let out = chunk;
    const tracker = this.#toBackend;
    if (tracker !== null) {
      if (this.#closingToBackend && tracker.atBoundary) {
        this.#sendCloseToBackend();
        return;
      }
      const took = tracker.advance(chunk, this.#closingToBackend);
      if (took < n) out = chunk.subarray(0, took);
    }
    if (!stream.write(out)) this.#pauseReads();
    if (this.#closingToBackend && tracker!.atBoundary) this.#sendCloseToBackend();
  }

  onSocketEnd(): void {
    const stream = this.#stream;
    if (!stream.closed && !stream.localEnded) stream.end();
  }

  onSocketDrain(): void {
    this.#awaitingDrain = false;
    const n = this.#pendingCredit;
    this.#pendingCredit = 0;
    this.#stream.consume(n);
  }

  checkIdle(now: number): void {
    const ms = this.#tunnels.idleMs;
    if (ms === 0 || this.#reason !== null) return;
    const moved = this.bytesIn + this.bytesOut;
    if (moved !== this.#mark) {
      this.#mark = moved;
      this.#since = now;
    } else if (now - this.#since > ms) {
      this.#tunnels.log.warn(`closed the upgraded connection of ${this.#socket.remoteAddress ?? 'a unix client'} `
        + `(${this.#what}): no byte either way for --tunnel-idle-timeout (${ms / 1000} s)`);
      this.#abort('idle_timeout', ResetCode.TIMEOUT, `no byte either way for ${ms / 1000} s`);
    }
  }

  /** The socket closed: the tunnel is over (a stream still open is cancelled). */
  socketClosed(): void {
    const stream = this.#stream;
    if (!stream.closed) {
      this.#reason ??= 'client_abort';
      stream.reset(ResetCode.CANCEL, 'client went away');
    }
    this.#reason ??= 'closed';
    this.#tunnels.closing(this, this.#reason);
  }

  // The backend side: the stream's events.

  onData(chunk: Buffer, end: boolean): void {
    const socket = this.#socket;
    const n = chunk.length;
    if (n > 0) {
      this.bytesOut += n;
      this.#tunnels.bytesOut += n;
      if (this.#closeSentToClient || socket.destroyed) {
        this.#stream.consume(n); // after our close frame the client takes no more frames
      } else {
        let out = chunk;
        const tracker = this.#toClient;
        if (tracker !== null) {
          const took = tracker.advance(chunk, this.#closingToClient);
          if (took < n) {
            out = chunk.subarray(0, took);
            this.#stream.consume(n - took);
          }
        }
        this.#write(out);
        if (this.#closingToClient && tracker!.atBoundary) this.#sendCloseToClient();
      }
    }
    if (end && !socket.destroyed) socket.end();
  }

  onDrain(): void {
    if (this.#readPaused) {
      this.#readPaused = false;
      if (!this.#socket.destroyed) this.#socket.resume();
    }
  }

  onReset(code: number, message: string): void {
    const lost = code === LOCAL_CONNECTION_LOST;
    this.#tunnels.log.debug(`${this.#what}: upgraded connection ${lost ? 'lost with its backend' : `reset by the backend: `
      + `${RESET_CODE_NAMES[code] ?? code}`}${message ? ` (${message})` : ''}`);
    this.#reason ??= lost ? 'backend_lost' : 'backend_reset';
    const socket = this.#socket;
    if (this.#toClient !== null && this.#toClient.atBoundary && !this.#closeSentToClient && !socket.destroyed) {
      // A WebSocket between two frames gets a close frame rather than a cut: 1012 when its backend
      // went away (a restart: reconnect), 1011 when the app reset it.
      this.#closeSentToClient = true;
      this.#write(serverCloseFrame(lost ? CloseCode.SERVICE_RESTART : CLOSE_INTERNAL_ERROR,
        lost ? 'backend went away' : 'backend failed'), false);
      socket.end();
      return;
    }
    socket.resetAndDestroy(); // an abort: the client sees a reset, not a clean end
  }

  /**
   * Closes the tunnel the polite way (a graceful stop): a WebSocket gets a 1001 close frame to
   * the client and a client's close frame to the application, each between two frames of its
   * direction (at once when the direction is between frames, else at the next boundary), and
   * no more bytes after them; the ends follow from the peers' own closes. Any other protocol
   * gets a half-close each way.
   */
  shutdown(): void {
    if (this.#reason !== null) return;
    this.#reason = 'shutdown';
    if (this.#toClient === null) {
      this.onSocketEnd();
      this.#socket.end();
      return;
    }
    this.#closingToClient = true;
    this.#closingToBackend = true;
    if (this.#toClient.atBoundary) this.#sendCloseToClient();
    if (this.#toBackend!.atBoundary) this.#sendCloseToBackend();
  }

  #sendCloseToClient(): void {
    if (this.#closeSentToClient) return;
    this.#closeSentToClient = true;
    this.#write(serverCloseFrame(CloseCode.GOING_AWAY, 'server shutting down'), false);
  }

  #sendCloseToBackend(): void {
    if (this.#closeSentToBackend) return;
    this.#closeSentToBackend = true;
    const stream = this.#stream;
    if (!stream.closed && !stream.localEnded) stream.write(clientCloseFrame(CloseCode.GOING_AWAY, 'proxy shutting down'));
  }

  /** Writes to the client; the backend gets the credit back once the socket takes it. */
  #write(chunk: Buffer, credit = true): void {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) {
      if (credit) this.#stream.consume(chunk.length);
      return;
    }
    const more = socket.write(chunk, retain(chunk));
    if (!credit) return;
    if (more && !this.#awaitingDrain) this.#stream.consume(chunk.length);
    else {
      this.#pendingCredit += chunk.length;
      this.#awaitingDrain = true;
    }
  }

  #pauseReads(): void {
    if (!this.#readPaused) {
      this.#readPaused = true;
      this.#socket.pause();
    }
  }

  #abort(reason: TunnelCloseReason, code: number, message: string): void {
    this.#reason ??= reason;
    this.#stream.reset(code, message);
    this.#socket.resetAndDestroy();
  }
}
