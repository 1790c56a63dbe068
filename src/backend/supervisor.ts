// The supervisor of `tsgi serve --workers N` (after gunicorn's arbiter): it owns the listening
// sockets, hands each accepted front connection to the ready worker with the fewest (and each
// uwsgi connection, one request, to the least busy), and keeps
// the workers at the target. Signal handlers only record intent; one idempotent reconcile()
// spawns, retires and reaps to reach it. A reload is "bump the generation, reconcile".
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress } from '../common/address.js';
import { EXIT } from '../common/exit-codes.js';
import { guardAccept } from '../common/accept-guard.js';
import { closeListener, listenOn, reachable } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import { TsgiError } from '../protocol/errors.js';
import { ChildSnapshots, Replies } from '../common/worker-metrics.js';
import type { ConnectionProtocol, SupervisorMessage, WorkerConfig, WorkerMessage } from './worker.js';

const HEARTBEAT_TIMEOUT_MS = 10_000;
/** How long a connection may wait for a starting worker before going to any ready one. */
const HOLD_FOR_STARTING_MS = 1000;
/** At most one connection moved between workers per this period. */
const SHED_COOLDOWN_MS = 2000;
/** A worker generation that cannot load the app is retried after this long. */
const LOAD_RETRY_MS = 5000;
/** Marks a socket that was already held once for a starting worker. */
const kHeld = Symbol('tsgi.held');
/** Marks a socket that was already re-routed once after a worker failed to take it. */
const kRerouted = Symbol('tsgi.rerouted');
/** The protocol an accepted socket speaks: tsgi frames or uwsgi packets. */
const kProtocol = Symbol('tsgi.protocol');
type TaggedSocket = Socket & { [kHeld]?: boolean; [kRerouted]?: boolean; [kProtocol]?: ConnectionProtocol };

type WorkerState = 'starting' | 'ready' | 'retiring' | 'stopping';

interface Worker {
  id: number;
  child: ChildProcess;
  generation: number;
  state: WorkerState;
  connections: number;
  inFlight: number;
  /** uwsgi connections handed to it since its last heartbeat (which counts them in inFlight). */
  handed: number;
  served: number;
  lastBeat: number;
  /** The longest-running request at the last heartbeat. */
  oldest: { method: string; uri: string; ms: number } | null;
  killTimer: NodeJS.Timeout | null;
  /** A connection could not be handed to it: it is dying; route nothing more there. */
  unreachable: boolean;
  everReady: boolean;
}

export interface SupervisorOptions {
  /** The tsgi socket (null: uwsgi only). */
  address: Address | null;
  /** The uwsgi socket (--uwsgi-socket / --uwsgi-listen), or null. */
  uwsgiAddress?: Address | null;
  workers: number;
  worker: Omit<WorkerConfig, 'workerId' | 'maxRequests' | 'connections'>;
  log: Logger;
  socketMode?: number;
  gracefulTimeoutMs: number;
  /** The app cannot be loaded and no worker is serving: the supervisor has stopped. */
  onFatal?: (err: TsgiError) => void;
  /** A request running longer than this gets its worker replaced (0: never). */
  requestTimeoutMs: number;
  maxRequests: number;
  maxRequestsJitter: number;
  /** --admin: a worker's warning or error, for the recent errors of /status. */
  onWorkerLog?: (level: 'warn' | 'error', message: string) => void;
}

export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #server: Server;
  readonly #uwsgiServer: Server;
  readonly #workers = new Map<number, Worker>();
  #target: number;
  #generation = 1;
  #nextId = 1;
  #stopping = false;
  #fatal: TsgiError | null = null;
  #pending: Socket[] = [];
  #pendingTimer: NodeJS.Timeout | null = null;
  #lastShed = 0;
  #imbalanced = 0;
  #spawnAfter = 0;
  #started = false;
  #watchdog: NodeJS.Timeout | null = null;
  #readyWaiters: ((err?: Error) => void)[] = [];
  #exitWaiters: (() => void)[] = [];
  /** Workers replaced other than by a reload or scaling, by reason (crash, timeout, heartbeat, max-requests). */
  readonly restartsByReason = new Map<string, number>([['crash', 0], ['timeout', 0], ['heartbeat', 0], ['max-requests', 0]]);
  /** Requests served by workers that have exited. */
  #servedByGone = 0;
  readonly #replies = new Replies();
  /**
   * --admin: each worker's latest metrics snapshot (from its heartbeats and our asks), and the
   * counters and histograms of workers that exited, kept in the sums so that those never go
   * down (Prometheus would read a drop as a counter reset).
   */
  readonly #snapshots = new ChildSnapshots();

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#target = opts.workers;
    this.#server = createServer({ pauseOnConnect: true }, (socket) => this.#route(socket));
    this.#uwsgiServer = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      (socket as TaggedSocket)[kProtocol] = 'uwsgi';
      this.#route(socket);
    });
    guardAccept(this.#server, { log: opts.log, name: 'backend' });
    guardAccept(this.#uwsgiServer, { log: opts.log, name: 'uwsgi' });
  }

  get target(): number {
    return this.#target;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Workers replaced other than by a reload or scaling. */
  get restarts(): number {
    let n = 0;
    for (const v of this.restartsByReason.values()) n += v;
    return n;
  }

  /** Requests served by all workers so far (the live ones as of their last heartbeat). */
  get served(): number {
    let n = this.#servedByGone;
    for (const w of this.#workers.values()) n += w.served;
    return n;
  }

  #restarted(reason: string): void {
    this.restartsByReason.set(reason, (this.restartsByReason.get(reason) ?? 0) + 1);
  }

  /**
   * Each live worker's metrics (register.getMetricsAsJSON()), asked over IPC; a worker that
   * does not answer within `timeoutMs` is left out of this scrape.
   */
  async workerMetrics(timeoutMs = 2000): Promise<object[][]> {
    const asked = [...this.#workers.values()].filter((w) => w.child.connected && w.everReady);
    // No answer in time: its last snapshot stands in.
    const answers = await Promise.all(asked.map((w) => this.#replies.ask<object[] | null>(w.child,
      (id) => ({ type: 'metrics', id } satisfies SupervisorMessage), timeoutMs, () => null)));
    return this.#snapshots.all(new Map(asked.map((w, i) => [w.id, answers[i]!])), (id) => !this.#workers.has(id));
  }

  /** Listens, starts the first generation, resolves when all of it is ready, with the addresses bound. */
  async start(): Promise<{ address: Address | null; uwsgiAddress: Address | null }> {
    const o = this.#opts;
    const bound = o.address !== null ? await listenOn(this.#server, o.address, o.socketMode) : null;
    const uwsgi = o.uwsgiAddress ? await listenOn(this.#uwsgiServer, o.uwsgiAddress, o.socketMode) : null;
    const where = [bound && formatAddress(bound), uwsgi && `uwsgi ${formatAddress(uwsgi)}`].filter(Boolean).join(' and ');
    this.#opts.log.info(`supervisor (pid ${process.pid}) on ${where}: starting ${this.#target} worker(s)`);
    this.#watchdog = setInterval(() => this.#checkHealth(), 1000);
    this.#watchdog.unref();
    this.reconcile();
    await new Promise<void>((resolve, reject) => {
      this.#readyWaiters.push((err) => (err ? reject(err) : resolve()));
    });
    this.#started = true;
    if (bound !== null) this.#opts.log.info(`serving on ${formatAddress(bound)} with ${this.#target} worker(s)`);
    if (uwsgi !== null) this.#opts.log.info(`accepting uwsgi on ${formatAddress(uwsgi)} with ${this.#target} worker(s)`);
    return { address: bound, uwsgiAddress: uwsgi };
  }

  /** SIGHUP: a new generation re-reads the app; the old one retires once the new is ready. */
  reload(): void {
    if (this.#stopping) return;
    this.#generation++;
    this.#opts.log.info(`reload: starting generation ${this.#generation}`);
    this.reconcile();
  }

  /** SIGTTIN / SIGTTOU. */
  scale(delta: number): void {
    this.#target = Math.max(1, this.#target + delta);
    this.#opts.log.info(`workers: target is now ${this.#target}`);
    this.#broadcast({ type: 'target', workers: this.#target });
    this.reconcile();
  }

  /** Brings the workers to the target: spawn what is missing, retire what is extra or old. */
  reconcile(): void {
    if (this.#stopping) return;
    const live = () => [...this.#workers.values()].filter((w) => w.generation === this.#generation
      && (w.state === 'starting' || w.state === 'ready'));
    if (Date.now() >= this.#spawnAfter) for (let i = live().length; i < this.#target; i++) this.#spawn();
    const current = live();
    const ready = current.filter((w) => w.state === 'ready');
    // Too many in the current generation: retire the newest extra ones.
    if (current.length > this.#target) {
      for (const w of current.slice(this.#target).reverse()) this.#retire(w, 'scaled down');
    }
    // Old generations retire once the current one is fully ready.
    if (ready.length >= this.#target) {
      for (const w of this.#workers.values()) {
        if (w.generation !== this.#generation && (w.state === 'ready' || w.state === 'starting')) {
          this.#retire(w, `replaced by generation ${this.#generation}`);
        }
      }
    }
    if (ready.length > 0 && !current.some((w) => w.state === 'starting')) this.#flushPending();
    if (ready.length >= this.#target && this.#readyWaiters.length > 0) {
      for (const w of this.#readyWaiters.splice(0)) w();
    }
  }

  #spawn(): Worker {
    const id = this.#nextId++;
    const o = this.#opts;
    const jitter = o.maxRequestsJitter > 0 ? Math.floor(Math.random() * (o.maxRequestsJitter + 1)) : 0;
    const config: WorkerConfig = {
      ...o.worker, workerId: id, maxRequests: o.maxRequests > 0 ? o.maxRequests + jitter : 0, connections: this.#target,
    };
    const child = fork(fileURLToPath(new URL('./worker.js', import.meta.url)), [], {
      env: { ...process.env, TSGI_WORKER_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    const worker: Worker = {
      id, child, generation: this.#generation, state: 'starting', connections: 0, inFlight: 0, handed: 0, served: 0,
      lastBeat: Date.now(), oldest: null, killTimer: null, everReady: false, unreachable: false,
    };
    this.#workers.set(id, worker);
    child.on('message', (msg: WorkerMessage) => this.#onMessage(worker, msg));
    child.on('exit', (code, signal) => this.#onExit(worker, code, signal));
    // After 'close' no message of its can still arrive: its last metrics are final.
    child.once('close', () => this.#snapshots.closed(worker.id));
    // A message to a worker that is exiting fails with EPIPE: the exit handler deals with it.
    child.on('error', (err) => this.#opts.log.debug(`worker ${id}: ${err.message}`));
    return worker;
  }

  #onMessage(worker: Worker, msg: WorkerMessage): void {
    switch (msg.type) {
      case 'ready':
        worker.everReady = true;
        worker.lastBeat = Date.now();
        if (worker.state === 'starting') worker.state = 'ready';
        this.#opts.log.info(`worker ${worker.id} (pid ${worker.child.pid}, generation ${worker.generation}) ready`);
        this.reconcile();
        return;
      case 'heartbeat':
        worker.lastBeat = Date.now();
        worker.connections = msg.connections;
        worker.inFlight = msg.inFlight;
        worker.handed = 0;
        worker.served = msg.served;
        worker.oldest = msg.oldest;
        return;
      case 'metrics':
        this.#snapshots.update(worker.id, msg.metrics);
        if (msg.id !== 0) this.#replies.answer(msg.id, msg.metrics);
        return;
      case 'log':
        this.#opts.onWorkerLog?.(msg.level, msg.message);
        return;
      case 'retire':
        // max-requests reached: replace it first, then let it drain.
        if (worker.state !== 'ready') return;
        this.#restarted('max-requests');
        this.#opts.log.info(`worker ${worker.id} served ${msg.served} requests (max-requests); recycling it`);
        worker.state = 'retiring';
        this.reconcile();
        this.#whenReplaced(worker);
        return;
    }
  }

  /** Stops a retiring worker once a replacement is ready (or at once if none is needed). */
  #whenReplaced(worker: Worker): void {
    const check = () => {
      const ready = [...this.#workers.values()].filter((w) => w.state === 'ready' && w.generation === this.#generation);
      if (ready.length > 0 || this.#stopping) this.#retire(worker, 'recycled');
      else setTimeout(check, 50).unref();
    };
    check();
  }

  #retire(worker: Worker, why: string): void {
    if (worker.state === 'stopping') return;
    worker.state = 'stopping';
    this.#opts.log.info(`worker ${worker.id} (pid ${worker.child.pid}) retiring: ${why}`);
    if (!worker.child.connected) worker.child.kill('SIGTERM');
    else worker.child.send({ type: 'stop' } satisfies SupervisorMessage, (err) => { if (err) worker.child.kill('SIGTERM'); });
    worker.killTimer = setTimeout(() => {
      this.#opts.log.warn(`worker ${worker.id} (pid ${worker.child.pid}) did not stop within the graceful timeout; killing it`);
      worker.child.kill('SIGKILL');
    }, this.#opts.gracefulTimeoutMs + 1000);
    worker.killTimer.unref();
  }

  #onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    if (worker.killTimer !== null) clearTimeout(worker.killTimer);
    this.#workers.delete(worker.id);
    this.#servedByGone += worker.served;
    const how = signal ?? `code ${code}`;
    if (this.#stopping || worker.state === 'stopping') {
      this.#opts.log.debug(`worker ${worker.id} exited (${how})`);
    } else if (code === EXIT.APP_LOAD && !worker.everReady) {
      this.#loadFailed(worker);
    } else {
      this.#restarted('crash');
      this.#opts.log.warn(`worker ${worker.id} (pid ${worker.child.pid}) died (${how}); respawning`);
    }
    this.reconcile();
    if (this.#workers.size === 0) for (const w of this.#exitWaiters.splice(0)) w();
  }

  /**
   * A worker could not load the application. With nothing serving, that is fatal (exit code 3,
   * no respawn loop). Otherwise the workers that serve keep serving: a failed reload falls back
   * to the generation that works, and a failed respawn is retried later, not in a loop.
   */
  #loadFailed(worker: Worker): void {
    const serving = [...this.#workers.values()].filter((w) => w.state === 'ready' || w.state === 'retiring');
    if (serving.length === 0) {
      const fatal = new TsgiError('TSGI_ERR_APP_LOAD',
        `worker ${worker.id} could not load the application (exit code ${EXIT.APP_LOAD}); not respawning`);
      this.#fatal = fatal;
      for (const w of this.#readyWaiters.splice(0)) w(fatal);
      void this.stop({ graceful: false }).catch(() => {});
      if (this.#started) this.#opts.onFatal?.(fatal);
      return;
    }
    const working = Math.max(...serving.map((w) => w.generation));
    if (worker.generation > working) {
      this.#opts.log.error(`reload failed: generation ${worker.generation} cannot load the application; `
        + `generation ${working} keeps serving`);
      for (const w of this.#workers.values()) {
        if (w.generation > working && w.state === 'starting') this.#retire(w, 'its generation failed to load');
      }
      this.#generation = working;
    } else {
      this.#opts.log.error(`worker ${worker.id} could not load the application; retrying in ${LOAD_RETRY_MS / 1000} s`);
      this.#spawnAfter = Date.now() + LOAD_RETRY_MS;
    }
  }

  #broadcast(msg: SupervisorMessage): void {
    for (const w of this.#workers.values()) if (w.child.connected) w.child.send(msg, () => {});
  }

  /**
   * Keeps front connections spread over the workers: when one worker holds two more than
   * another (after a crash, a reload or SIGTTIN), it asks the front to move one.
   */
  #rebalance(): void {
    const now = Date.now();
    if (now - this.#lastShed < SHED_COOLDOWN_MS) return;
    const ready = [...this.#workers.values()].filter((w) => w.state === 'ready' && w.generation === this.#generation);
    if (ready.length < 2) return;
    let min = ready[0]!;
    let max = ready[0]!;
    let total = 0;
    for (const w of ready) {
      total += w.connections;
      if (w.connections < min.connections) min = w;
      if (w.connections > max.connections) max = w;
    }
    const fewerThanWorkers = total > 0 && total < this.#target && min.connections === 0 && max.connections >= 1;
    // Counts come from heartbeats, which can lag a hand-over by a beat: act on an imbalance
    // only when two checks in a row see it.
    if (!(max.connections - min.connections >= 2 || fewerThanWorkers)) {
      this.#imbalanced = 0;
      return;
    }
    if (++this.#imbalanced >= 2) {
      this.#imbalanced = 0;
      // A front can follow a GOAWAY only by connecting again: not once our socket file is gone.
      if (!reachable(this.#server)) return;
      this.#lastShed = now;
      // The count is left as it is until the next heartbeat, so that the connection the front
      // opens in its place goes to the less busy worker rather than back here on a tie.
      max.child.send({ type: 'shed' } satisfies SupervisorMessage, () => {});
      this.#opts.log.debug(`moving a connection off worker ${max.id} (${max.connections} vs ${min.connections})`);
    }
  }

  /** Hangs and runaway requests: heartbeats that stop, or a request past --timeout. */
  #checkHealth(): void {
    const now = Date.now();
    const limit = this.#opts.requestTimeoutMs;
    for (const w of this.#workers.values()) {
      if (w.state === 'stopping') continue;
      const silent = now - w.lastBeat;
      const request = w.oldest ? `${w.oldest.method} ${w.oldest.uri} (running ${((w.oldest.ms + silent) / 1000).toFixed(1)} s)` : null;
      if (limit > 0 && w.oldest !== null && w.oldest.ms + silent > limit) {
        this.#opts.log.error(`worker ${w.id} (pid ${w.child.pid}): request ${request} exceeded --timeout ${limit / 1000} s; replacing the worker`);
        this.#restarted('timeout');
        this.#retire(w, 'request timeout');
        this.#hardStopSoon(w);
      } else if (silent > Math.max(HEARTBEAT_TIMEOUT_MS, limit)) {
        this.#opts.log.error(`worker ${w.id} (pid ${w.child.pid}) sent no heartbeat for ${(silent / 1000).toFixed(1)} s`
          + `${request ? `; last seen busy with ${request}` : ''}; killing it`);
        this.#restarted('heartbeat');
        w.state = 'stopping';
        w.child.kill('SIGKILL');
      }
    }
    this.reconcile();
    this.#rebalance();
  }

  /** A worker stuck in a request gets a short grace after SIGTERM, then SIGKILL. */
  #hardStopSoon(w: Worker): void {
    const t = setTimeout(() => w.child.kill('SIGKILL'), Math.min(this.#opts.gracefulTimeoutMs, 5000));
    t.unref();
  }

  /**
   * Hands an accepted front connection to the ready worker with the fewest connections; a uwsgi
   * connection (one request) to the one with the fewest requests in flight by its last heartbeat
   * plus those handed to it since.
   */
  #route(socket: Socket): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const held = socket as TaggedSocket;
    const protocol = held[kProtocol] ?? 'tsgi';
    const load = protocol === 'uwsgi' ? (w: Worker) => w.inFlight + w.handed : (w: Worker) => w.connections;
    let best: Worker | null = null;
    for (const w of this.#workers.values()) {
      if (w.state !== 'ready' || w.generation !== this.#generation || !w.child.connected || w.unreachable) continue;
      if (best === null || load(w) < load(best)) best = w;
    }
    const starting = [...this.#workers.values()].some((w) => w.state === 'starting' && w.generation === this.#generation);
    if (best === null || (starting && held[kHeld] !== true)) {
      // While a worker (re)starts, hold the connection a moment so that it lands on the new
      // worker rather than piling onto the survivors; with no worker ready at all, wait.
      if (this.#pending.length >= 1024) {
        socket.destroy();
        return;
      }
      held[kHeld] = true;
      this.#pending.push(socket);
      this.#pendingTimer ??= setTimeout(() => {
        this.#pendingTimer = null;
        this.#flushPending();
      }, HOLD_FOR_STARTING_MS);
      return;
    }
    if (protocol === 'uwsgi') best.handed++;
    else best.connections++;
    const chosen = best;
    chosen.child.send({ type: 'connection', protocol } satisfies SupervisorMessage, socket, (err) => {
      if (!err) return;
      // The worker died before the supervisor heard of it (its exit is not processed yet):
      // take it out of the rotation and give the connection to another worker, once.
      if (protocol === 'uwsgi') chosen.handed--;
      else chosen.connections--;
      chosen.unreachable = true;
      this.#opts.log.debug(`worker ${chosen.id} could not take a connection (${err.message}); routing it elsewhere`);
      if (held[kRerouted] === true || socket.destroyed) socket.destroy();
      else {
        held[kRerouted] = true;
        this.#route(socket);
      }
    });
  }

  #flushPending(): void {
    if (this.#pendingTimer !== null) clearTimeout(this.#pendingTimer);
    this.#pendingTimer = null;
    const pending = this.#pending.splice(0);
    for (const socket of pending) {
      if (!socket.destroyed) this.#route(socket);
    }
  }

  get workers(): { id: number; pid: number | undefined; generation: number; state: string; connections: number; inFlight: number; served: number }[] {
    return [...this.#workers.values()].map((w) => ({
      id: w.id, pid: w.child.pid, generation: w.generation, state: w.state,
      connections: w.connections, inFlight: w.inFlight, served: w.served,
    }));
  }

  /** Graceful: each worker sends GOAWAY and finishes its requests. Resolves when all exited. */
  async stop({ graceful = true }: { graceful?: boolean } = {}): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      if (this.#watchdog !== null) clearInterval(this.#watchdog);
      void closeListener(this.#server);
      void closeListener(this.#uwsgiServer);
      if (this.#pendingTimer !== null) clearTimeout(this.#pendingTimer);
      for (const s of this.#pending.splice(0)) s.destroy();
      for (const w of this.#workers.values()) {
        if (graceful) this.#retire(w, 'shutting down');
        else w.child.kill('SIGKILL');
      }
    }
    if (this.#workers.size > 0) await new Promise<void>((resolve) => this.#exitWaiters.push(resolve));
    if (this.#fatal !== null) throw this.#fatal;
  }
}
