// One persistent, multiplexed connection from the front to one backend address: connects,
// handshakes, re-connects with backoff when lost, and drains (then reconnects) on GOAWAY.
import { connect, type Socket } from 'node:net';
import { type Address, formatAddress } from '../common/address.js';
import type { Logger } from '../common/log.js';
import { socketWriter } from '../common/socket-writer.js';
import { Connection } from '../protocol/connection.js';

export type LinkState = 'connecting' | 'ready' | 'draining' | 'down' | 'stopped';

export interface LinkOptions {
  address: Address;
  log: Logger;
  window?: number;
  maxFrameSize?: number;
  /** Called whenever the link may take new streams. */
  onReady: (link: BackendLink) => void;
}

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;

export class BackendLink {
  readonly address: Address;
  readonly name: string;
  state: LinkState = 'down';
  conn: Connection | null = null;
  /** Requests sent to this backend since start. */
  requests = 0;
  #opts: LinkOptions;
  #socket: Socket | null = null;
  #backoff = MIN_BACKOFF_MS;
  #retryTimer: NodeJS.Timeout | null = null;
  #failures = 0;
  #everReady = false;

  constructor(opts: LinkOptions) {
    this.#opts = opts;
    this.address = opts.address;
    this.name = formatAddress(opts.address);
  }

  /** Streams in flight on this link. */
  get load(): number {
    return this.conn?.streams.size ?? 0;
  }

  get canOpen(): boolean {
    return this.state === 'ready' && this.conn !== null && this.conn.canOpen;
  }

  connect(): void {
    if (this.state === 'stopped' || this.state === 'connecting') return;
    this.state = 'connecting';
    const a = this.address;
    const socket = a.kind === 'unix' ? connect(a.path) : connect({ host: a.host, port: a.port, noDelay: true });
    this.#socket = socket;
    const conn = new Connection({
      role: 'client',
      write: socketWriter(socket),
      initialWindow: this.#opts.window,
      maxFrameSize: this.#opts.maxFrameSize,
      software: 'tsgi-front',
      onReady: () => {
        if (this.#failures > 0) this.#opts.log.info(`backend ${this.name} is back`);
        else this.#opts.log.debug(`connected to backend ${this.name}`);
        this.#failures = 0;
        this.#everReady = true;
        this.#backoff = MIN_BACKOFF_MS;
        this.state = 'ready';
        this.#opts.onReady(this);
      },
      onGoAway: (_last, _code, message) => {
        this.#opts.log.info(`backend ${this.name} is going away${message ? ` (${message})` : ''}; draining`);
        if (this.state === 'ready') this.state = 'draining';
        this.release();
      },
      onError: (err) => {
        this.#opts.log.error(`backend ${this.name}: ${err.message} [${err.code}]; closing the connection`);
        socket.destroy();
      },
    });
    this.conn = conn;
    socket.on('connect', () => conn.start());
    socket.on('data', (chunk: Buffer) => conn.receive(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.#failures++ > 0) return;
      if (this.#everReady) this.#opts.log.warn(`backend ${this.name} unreachable: ${err.code ?? err.message}; retrying`);
      else this.#opts.log.info(`waiting for backend ${this.name} (${err.code ?? err.message})`);
    });
    socket.on('close', () => {
      conn.destroy(`connection to backend ${this.name} lost`);
      if (this.conn === conn) this.conn = null;
      if (this.#socket === socket) this.#socket = null;
      if (this.state === 'stopped') return;
      const wasDraining = this.state === 'draining';
      this.state = 'down';
      // A drained backend is replaced at once (a new process may already listen there).
      const delay = wasDraining ? 0 : this.#backoff;
      if (!wasDraining) this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
      this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.connect(); }, delay);
      this.#retryTimer.unref();
    });
  }

  /** A stream on this link finished: a draining link closes once it has none left. */
  release(): void {
    if (this.state === 'draining' && this.load === 0) this.#socket?.end();
  }

  stop(): void {
    this.state = 'stopped';
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#socket?.destroy();
  }
}
