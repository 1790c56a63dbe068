// One persistent, multiplexed connection from the front to a backend: connects, handshakes,
// answers for its health with pings, and drains on GOAWAY. A link is used once: when it
// closes, its Backend opens a new one (with backoff if the address keeps failing).
import { connect, isIP, type OnReadOpts, type Socket } from 'node:net';
import { checkServerIdentity, connect as connectTls, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import { isTlsError, tlsReason } from '../../common/tls.js';
import { closeAfterError, endSocket, socketWriter } from '../../common/socket-writer.js';
import { Connection } from '../../protocol/connection.js';
import { TUNNEL_VERSION } from '../../protocol/constants.js';
import { ReadBuffers } from './read-buffers.js';
import type { Link, LinkOwner, LinkEvents, LinkOptions, LinkState } from './link.js';

export type { LinkEvents, LinkOptions, LinkState } from './link.js';

export class BackendLink implements Link {
  readonly name: string;
  /** The backend this link belongs to (its counters and state). */
  readonly owner: LinkOwner;
  state: LinkState = 'connecting';
  readonly conn: Connection;
  /** Requests sent on this link. */
  requests = 0;
  #socket: Socket;
  #error: string | null = null;
  #tlsFailed = false;
  /** TLS: the TCP connection was made, and the TLS handshake completed (our side of it). */
  #tcpConnected = false;
  #secured = false;
  /** Something was read from the backend. */
  #gotBytes = false;
  #established = false;
  #pingTimer: NodeJS.Timeout | null = null;
  #pingSeq = 0;
  #awaitingPong = 0;
  #pingSentAt = 0;

  constructor(opts: LinkOptions, events: LinkEvents) {
    this.name = opts.name;
    this.owner = opts.owner;
    const a = opts.address;
    // Reads go into shared slabs (read-buffers.ts) and straight to the frame decoder.
    const reads = new ReadBuffers();
    // Returning false stops the reads while replies to the backend pile up unread (a flood); the
    // socket writer's drain resumes them.
    let paused = false;
    const onread: OnReadOpts = {
      buffer: () => reads.next(),
      callback: (n, into) => {
        this.#gotBytes = true;
        if (conn.receive(reads.filled(n, into as Buffer))) return true;
        paused = true;
        return false;
      },
    };
    let socket: Socket;
    if (a.kind === 'unix') socket = connect({ path: a.path, onread });
    else if (a.tls !== true) socket = connect({ host: a.host, port: a.port, noDelay: true, onread });
    else {
      if (opts.tls == null) throw new Error(`backend ${this.name}: a tls: address without --backend-tls-* reached a link`);
      // The backend's certificate must name what we asked for: --backend-tls-servername, the DNS
      // name it was found under, or the host (an IP address is checked against the IP SANs).
      const servername = opts.tlsServername ?? a.servername ?? a.host;
      // onread works for tls.connect as for net.connect (Node's docs), though @types/node leaves it out.
      socket = connectTls({
        host: a.host, port: a.port, onread, secureContext: opts.tls.context,
        servername: isIP(servername) === 0 ? servername : undefined,
        checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(servername, cert),
      } as ConnectionOptions);
      socket.setNoDelay(true);
    }
    this.#socket = socket;
    // A connection that never completes the HELLO exchange (accepted by a process that died,
    // or by one that hangs) is given up after --ping-timeout, so that a fresh one is tried.
    const handshake = setTimeout(() => {
      if (this.state !== 'connecting') return;
      opts.log.warn(`backend ${this.name} did not complete the handshake within ${opts.pingTimeoutMs / 1000} s; reconnecting`);
      this.#error = 'handshake timeout';
      socket.destroy();
    }, opts.pingTimeoutMs);
    handshake.unref();
    const conn: Connection = new Connection({
      role: 'client',
      write: socketWriter(socket, () => {
        conn.drained();
        if (paused) {
          paused = false;
          socket.resume();
        }
      }, () => conn.streams.size <= 1),
      initialWindow: opts.window,
      maxFrameSize: opts.maxFrameSize,
      maxHeadSize: opts.maxResponseHeaderSize,
      maxHeadSizeName: '--max-response-header-size',
      software: 'tsgi-front',
      onWarning: (message) => opts.log.warn(`backend ${this.name}: ${message}`),
      onReady: () => {
        clearTimeout(handshake);
        if (this.state !== 'connecting') return;
        this.state = 'ready';
        this.#established = true;
        this.#startPings(opts);
        events.onReady(this);
      },
      onGoAway: (_last, _code, message) => {
        if (this.state === 'ready' || this.state === 'connecting') this.state = 'draining';
        events.onGoAway(this, message);
        this.release();
      },
      onPong: (id) => {
        if (id === this.#awaitingPong) this.#awaitingPong = 0;
      },
      onError: (err) => {
        opts.log.error(`backend ${this.name}: ${err.message} [${err.code}]; closing the connection`);
        this.#error = err.message;
        closeAfterError(socket);
      },
    });
    this.conn = conn;
    const tls = a.kind === 'tcp' && a.tls === true;
    socket.on(tls ? 'secureConnect' : 'connect', () => {
      this.#secured = tls;
      conn.start();
    });
    if (tls) socket.once('connect', () => { this.#tcpConnected = true; });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Before the HELLO exchange is done, a TLS error is a failed handshake: with TLS 1.3 a client
      // certificate the backend refuses shows only once the first bytes are read.
      if (!this.#established && tls && (isTlsError(err) || (this.#tcpConnected && !this.#secured))) {
        this.#tlsFailed = true;
        this.#error = `TLS handshake failed: ${tlsReason(err)}`;
      }
      this.#error ??= err.code ?? err.message;
    });
    socket.on('close', () => {
      if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
      clearTimeout(handshake);
      this.state = 'closed';
      if (tls && this.#secured && !this.#established && !this.#tlsFailed && !this.#gotBytes
        && (this.#error === null || this.#error === 'ECONNRESET' || this.#error === 'EPIPE')) {
        // The backend took our handshake and closed before a byte: it refused our certificate
        // (node:tls servers close without an alert); its log names the reason.
        this.#tlsFailed = true;
        this.#error = 'TLS: the backend closed the connection right after the handshake: it refused the front\'s certificate '
          + '(--backend-tls-cert must be signed by the backend\'s --tls-ca; its log says why)';
      }
      reads.close();
      conn.destroy(`connection to backend ${this.name} lost${this.#error ? ` (${this.#error})` : ''}`);
      events.onClose(this, this.#established, this.#error, this.#tlsFailed);
    });
  }

  /** Streams in flight on this link. */
  get load(): number {
    return this.conn.streams.size;
  }

  get canOpen(): boolean {
    return this.state === 'ready' && this.conn.canOpen;
  }

  /** The backend agreed a protocol version with tunnels in HELLO. */
  get tunnels(): boolean {
    return this.conn.version >= TUNNEL_VERSION;
  }

  #startPings(opts: LinkOptions): void {
    if (opts.pingIntervalMs <= 0) return;
    this.#pingTimer = setInterval(() => {
      if (this.#awaitingPong !== 0) {
        if (Date.now() - this.#pingSentAt >= opts.pingTimeoutMs) {
          opts.log.warn(`backend ${this.name} did not answer a ping within ${opts.pingTimeoutMs / 1000} s; closing the connection`);
          this.#error = 'ping timeout';
          this.#socket.destroy();
        }
        return;
      }
      this.#pingSeq = (this.#pingSeq % 0xffffffff) + 1;
      this.#awaitingPong = this.#pingSeq;
      this.#pingSentAt = Date.now();
      this.conn.ping(this.#pingSeq);
    }, Math.min(opts.pingIntervalMs, opts.pingTimeoutMs));
    this.#pingTimer.unref();
  }

  /** A stream on this link finished: a draining link closes once it has none left. */
  release(): void {
    if (this.state === 'draining' && this.load === 0) endSocket(this.#socket);
  }

  /** Stops taking requests; closes when the in-flight ones are done. */
  drain(): void {
    if (this.state === 'closed') return;
    this.state = 'draining';
    this.release();
  }

  close(): void {
    this.#socket.destroy();
  }
}
