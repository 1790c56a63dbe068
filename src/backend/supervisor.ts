// The supervisor of `tsgi serve --workers N` (after gunicorn's arbiter): it owns the listening
// sockets, hands each accepted front connection to the ready worker with the fewest (the uwsgi
// socket, a connection per request, it binds and passes to every worker, which all accept on
// it, as uWSGI's workers do), and keeps the workers at the target. Signal handlers only record intent; one idempotent reconcile()
// spawns, retires and reaps to reach it. A reload is "bump the generation, reconcile".
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress } from '../common/address.js';
import { type Child, ChildSet, type Delivery, forkWithConfig, inheritedFd, type SpawnChild } from '../common/children.js';
import { CloseCode } from '../common/ws-frames.js';
import { EXIT } from '../common/exit-codes.js';
import { guardAccept } from '../common/accept-guard.js';
import { bindShared, closeListener, listenOn, reachable, type SharedSocket } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import { TsgiError } from '../protocol/errors.js';
import { ChildSnapshots } from '../common/worker-metrics.js';
import type { ServeReport } from './metrics.js';
import { splitAppSpec } from './load-app.js';
import type { SupervisorMessage, WorkerConfig, WorkerMessage } from './worker.js';

const HEARTBEAT_TIMEOUT_MS = 10_000;
/**
 * A worker with a request past --timeout is killed this long after it answered it 504: its
 * other requests get that much to finish (it takes no new ones: GOAWAY), then SIGKILL.
 */
const TIMEOUT_GRACE_MS = 1000;
/**
 * Heartbeats come every second: a ready worker silent for --timeout plus this long is stuck
 * (on the CPU, most likely) in a request past --timeout, and is killed at once.
 */
const HEARTBEAT_SLACK_MS = 1500;
/** How long a connection may wait for a starting worker before going to any ready one. */
const HOLD_FOR_STARTING_MS = 1000;
/** At most one connection moved between workers per this period. */
const SHED_COOLDOWN_MS = 2000;
/** A worker generation that cannot load the app is retried after this long. */
const LOAD_RETRY_MS = 5000;
/**
 * Respawning after a crash: the first at once; while replacements keep dying young (within
 * CRASH_RESET_MS), each waits twice as long as the last, from CRASH_FIRST_MS up to CRASH_MAX_MS,
 * so a worker that crashes on every request cannot make the supervisor fork in a loop.
 */
const CRASH_FIRST_MS = 100;
const CRASH_MAX_MS = 10_000;
const CRASH_RESET_MS = 30_000;

/** A worker: 'retiring' once it reached --max-requests (it serves until its replacement is ready). */
interface Worker extends Child {
  generation: number;
  connections: number;
  inFlight: number;
  served: number;
  lastBeat: number;
  /** The longest-running request at the last heartbeat. */
  oldest: { method: string; uri: string; ms: number } | null;
  everReady: boolean;
  /** --admin: its part of the status page, as of its last heartbeat. */
  report?: ServeReport;
  /** The copy of the app's entry module it loaded (see #codeOf). */
  appSnapshot?: string;
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
  /**
   * --timeout: a request running longer is answered 504 at once (by its worker, or by the front
   * when the worker is stuck) and its worker is killed after a short grace (0: never).
   */
  requestTimeoutMs: number;
  maxRequests: number;
  maxRequestsJitter: number;
  /** --admin: a worker's warning or error, for the recent errors of /status. */
  onWorkerLog?: (level: 'warn' | 'error', message: string) => void;
  /** Starts a worker (default: fork worker.js); a test passes fake children. */
  spawn?: SpawnChild<WorkerConfig>;
  /** The clock (ms since the epoch) heartbeats and the load retry are measured on. */
  now?: () => number;
}

/** A front connection goes to the worker with the fewest. */
const FRONT_CONNECTION: Delivery<Worker> = {
  message: { type: 'connection' } satisfies SupervisorMessage,
  load: (w) => w.connections,
  charge: (w, n) => { w.connections += n; },
};

const spawnWorker = forkWithConfig<WorkerConfig>(fileURLToPath(new URL('./worker.js', import.meta.url)),
  'TSGI_WORKER_CONFIG', { serialization: 'advanced' });

export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #server: Server;
  /** The uwsgi socket, bound here, listened and accepted on by every worker. */
  #uwsgi: SharedSocket | null = null;
  readonly #workers: ChildSet<WorkerConfig, Worker>;
  readonly #now: () => number;
  #target: number;
  #generation = 1;
  #nextId = 1;
  #stopping = false;
  #fatal: TsgiError | null = null;
  #lastShed = 0;
  #imbalanced = 0;
  /** The warning that the socket file is gone (nothing can be rebalanced) was written. */
  #unreachableSaid = false;
  #spawnAfter = 0;
  /** The wait before the respawn after the next crash (0: at once). */
  #crashDelay = 0;
  #started = false;
  #watchdog: NodeJS.Timeout | null = null;
  #readyWaiters: ((err?: Error) => void)[] = [];
  /** Workers replaced other than by a reload or scaling, by reason (crash, timeout, heartbeat, max-requests). */
  readonly restartsByReason = new Map<string, number>([['crash', 0], ['timeout', 0], ['heartbeat', 0], ['max-requests', 0]]);
  /** Requests served by workers that have exited. */
  #servedByGone = 0;
  /**
   * --admin: each worker's latest metrics snapshot (from its heartbeats and our asks), and the
   * counters and histograms of workers that exited, kept in the sums so that those never go
   * down (Prometheus would read a drop as a counter reset).
   */
  readonly #snapshots = new ChildSnapshots();
  /**
   * What each generation loads: the app's path resolved then (a symlink swapped later does not
   * move it) and a copy of its entry module, so that a worker respawned after a failed reload
   * runs the code of the generation that serves, not the broken file on disk.
   */
  readonly #code = new Map<number, { app: string; appSnapshot?: string }>();
  #codeDir: string | null = null;
  readonly #codeFiles = new Set<string>();

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#target = opts.workers;
    this.#now = opts.now ?? Date.now;
    const spawn = opts.spawn ?? spawnWorker;
    this.#workers = new ChildSet<WorkerConfig, Worker>({
      spawn: (config) => spawn(config, this.#uwsgi === null ? [] : [this.#uwsgi.fd]),
      log: opts.log, name: 'worker', now: this.#now,
      onMessage: (w, msg) => this.#onMessage(w, msg as WorkerMessage),
      onExit: (w, code, signal) => this.#onExit(w, code, signal),
      // After 'close' no message of its can still arrive: its last metrics are final.
      onClose: (w) => this.#snapshots.closed(w.id),
      // Connections go to the current generation; while one of it starts, they wait a moment
      // for it rather than pile onto the survivors.
      accepts: (w) => w.generation === this.#generation,
      holdForStartingMs: HOLD_FOR_STARTING_MS,
    });
    this.#server = createServer({ pauseOnConnect: true }, (socket) => this.#route(socket, FRONT_CONNECTION));
    guardAccept(this.#server, { log: opts.log, name: 'backend' });
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
    const asked = [...this.#workers.values()].filter((w) => w.handle.connected && w.everReady);
    // No answer in time: its last snapshot stands in.
    const answers = await Promise.all(asked.map((w) => this.#workers.ask<object[] | null>(w,
      (id) => ({ type: 'metrics', id } satisfies SupervisorMessage), timeoutMs, () => null)));
    return this.#snapshots.all(new Map(asked.map((w, i) => [w.id, answers[i]!])), (id) => this.#workers.get(id) === undefined);
  }

  /** Listens, starts the first generation, resolves when all of it is ready, with the addresses bound. */
  async start(): Promise<{ address: Address | null; uwsgiAddress: Address | null }> {
    const o = this.#opts;
    const bound = o.address !== null ? await listenOn(this.#server, o.address, o.socketMode) : null;
    const shared = o.uwsgiAddress ? await bindShared(o.uwsgiAddress, o.socketMode) : null;
    this.#uwsgi = shared;
    const uwsgi = shared?.address ?? null;
    const where = [bound && formatAddress(bound), uwsgi && `uwsgi ${formatAddress(uwsgi)}`].filter(Boolean).join(' and ');
    this.#opts.log.info(`supervisor (pid ${process.pid}) on ${where}: starting ${this.#target} worker(s)`);
    this.#watchdog = setInterval(() => this.#checkHealth(), 1000);
    this.#watchdog.unref();
    this.reconcile();
    try {
      await new Promise<void>((resolve, reject) => {
        this.#readyWaiters.push((err) => (err ? reject(err) : resolve()));
      });
    } finally {
      // A ready worker listens on the uwsgi socket: a second process now finds it in use.
      await shared?.release();
    }
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
    this.#workers.broadcast({ type: 'target', workers: this.#target } satisfies SupervisorMessage);
    this.reconcile();
  }

  /**
   * Brings the workers to the target: spawn what is missing, retire what is extra, old, or
   * retiring once its replacement is ready. Idempotent: every event ends by calling it.
   */
  reconcile(): void {
    if (this.#stopping) return;
    const live = () => [...this.#workers.values()].filter((w) => w.generation === this.#generation
      && (w.state === 'starting' || w.state === 'ready'));
    if (this.#now() >= this.#spawnAfter) for (let i = live().length; i < this.#target; i++) this.#spawn();
    const current = live();
    const ready = current.filter((w) => w.state === 'ready');
    // Too many in the current generation: retire the newest extra ones.
    if (current.length > this.#target) {
      for (const w of current.slice(this.#target).reverse()) this.#retire(w, 'scaled down');
    }
    // Old generations, and workers past --max-requests, retire once the current generation is
    // fully ready (a retiring worker does not count: its replacement is ready then).
    if (ready.length >= this.#target) {
      for (const w of this.#workers.values()) {
        if (w.state === 'retiring') this.#retire(w, 'recycled');
        else if (w.generation !== this.#generation && (w.state === 'ready' || w.state === 'starting')) {
          this.#retire(w, `replaced by generation ${this.#generation}`);
        }
      }
    }
    if (ready.length > 0 && !current.some((w) => w.state === 'starting')) this.#workers.flush();
    if (ready.length >= this.#target && this.#readyWaiters.length > 0) {
      for (const w of this.#readyWaiters.splice(0)) w();
    }
  }

  #spawn(): Worker {
    const id = this.#nextId++;
    const o = this.#opts;
    const jitter = o.maxRequestsJitter > 0 ? Math.floor(Math.random() * (o.maxRequestsJitter + 1)) : 0;
    const code = this.#codeOf(this.#generation);
    const config: WorkerConfig = {
      ...o.worker, ...code, workerId: id, maxRequests: o.maxRequests > 0 ? o.maxRequests + jitter : 0, connections: this.#target,
      ...(this.#uwsgi !== null ? { uwsgiFd: inheritedFd(0) } : {}),
    };
    return this.#workers.spawn(id, config, {
      generation: this.#generation, connections: 0, inFlight: 0, served: 0,
      lastBeat: this.#now(), oldest: null, everReady: false, appSnapshot: code.appSnapshot,
    });
  }

  /** The code of a generation: taken when its first worker spawns, kept while it may respawn. */
  #codeOf(generation: number): { app: string; appSnapshot?: string } {
    let code = this.#code.get(generation);
    if (code !== undefined) return code;
    const spec = this.#opts.worker.app;
    const { file, exportName } = splitAppSpec(spec);
    code = { app: spec };
    try {
      const real = realpathSync(file);
      const source = readFileSync(real);
      this.#codeDir ??= mkdtempSync(join(tmpdir(), 'tsgi-serve-'));
      const snapshot = join(this.#codeDir, `generation-${generation}-${this.#nextId}`);
      writeFileSync(snapshot, source, { mode: 0o600 });
      this.#codeFiles.add(snapshot);
      code = { app: exportName === null ? real : `${real}:${exportName}`, appSnapshot: snapshot };
    } catch (err) {
      // Unreadable now: the worker loads from disk and reports what is wrong.
      this.#opts.log.debug(`generation ${generation}: no copy of ${file} (${(err as Error).message})`);
    }
    this.#code.set(generation, code);
    return code;
  }

  /** Drops the copies of code that no generation to come and no worker left uses. */
  #forgetCode(): void {
    const workers = [...this.#workers.values()];
    for (const g of this.#code.keys()) {
      if (g < this.#generation && !workers.some((w) => w.generation === g)) this.#code.delete(g);
    }
    const kept = new Set([...this.#code.values()].map((c) => c.appSnapshot));
    for (const w of workers) kept.add(w.appSnapshot);
    for (const file of this.#codeFiles) {
      if (!kept.has(file)) {
        rmSync(file, { force: true });
        this.#codeFiles.delete(file);
      }
    }
  }

  #onMessage(worker: Worker, msg: WorkerMessage): void {
    switch (msg.type) {
      case 'ready':
        worker.everReady = true;
        worker.lastBeat = this.#now();
        if (worker.state === 'starting') worker.state = 'ready';
        this.#opts.log.info(`worker ${worker.id} (pid ${worker.handle.pid}, generation ${worker.generation}) ready`);
        this.reconcile();
        return;
      case 'heartbeat':
        worker.lastBeat = this.#now();
        worker.connections = msg.connections;
        worker.inFlight = msg.inFlight;
        worker.served = msg.served;
        worker.oldest = msg.oldest;
        worker.report = msg.report;
        return;
      case 'metrics':
        this.#snapshots.update(worker.id, msg.metrics);
        if (msg.id !== 0) this.#workers.answer(msg.id, msg.metrics);
        return;
      case 'log':
        this.#opts.onWorkerLog?.(msg.level, msg.message);
        return;
      case 'timeout': {
        if (worker.state === 'stopping') return;
        const limit = this.#opts.requestTimeoutMs;
        const what = msg.requests.map((r) => `${r.method} ${r.uri} (running ${(r.ms / 1000).toFixed(1)} s)`).join(', ');
        const grace = Math.min(TIMEOUT_GRACE_MS, this.#opts.gracefulTimeoutMs);
        this.#opts.log.error(`worker ${worker.id} (pid ${worker.handle.pid}): request ${what} exceeded --timeout `
          + `${limit / 1000} s: answered 504; killing the worker in ${grace / 1000} s`);
        this.#restarted('timeout');
        this.#workers.stop(worker, { type: 'stop', graceMs: grace, closeCode: CloseCode.SERVICE_RESTART } satisfies SupervisorMessage, grace);
        this.reconcile();
        return;
      }
      case 'retire':
        // max-requests reached: it serves on until its replacement is ready (reconcile).
        if (worker.state !== 'ready') return;
        this.#restarted('max-requests');
        this.#opts.log.info(`worker ${worker.id} served ${msg.served} requests (max-requests); recycling it`);
        worker.state = 'retiring';
        this.reconcile();
        return;
    }
  }

  #retire(worker: Worker, why: string, killAfterMs = this.#opts.gracefulTimeoutMs + 1000): void {
    if (worker.state === 'stopping') return;
    this.#opts.log.info(`worker ${worker.id} (pid ${worker.handle.pid}) retiring: ${why}`);
    // Its WebSockets close with 1001 Going Away when the backend stops, else 1012 Service
    // Restart (a reload, a recycled or replaced worker: the service goes on, reconnect).
    const closeCode = this.#stopping ? CloseCode.GOING_AWAY : CloseCode.SERVICE_RESTART;
    this.#workers.stop(worker, { type: 'stop', closeCode } satisfies SupervisorMessage, killAfterMs);
  }

  #onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.#servedByGone += worker.served;
    this.#forgetCode();
    const how = signal ?? `code ${code}`;
    if (this.#stopping || worker.state === 'stopping') {
      this.#opts.log.debug(`worker ${worker.id} exited (${how})`);
    } else if (code === EXIT.APP_LOAD && !worker.everReady) {
      this.#loadFailed(worker);
    } else {
      this.#restarted('crash');
      const now = this.#now();
      if (now - worker.started >= CRASH_RESET_MS) this.#crashDelay = 0;
      const delay = this.#crashDelay;
      this.#crashDelay = Math.min(CRASH_MAX_MS, Math.max(CRASH_FIRST_MS, delay * 2));
      this.#opts.log.warn(`worker ${worker.id} (pid ${worker.handle.pid}) died (${how}); `
        + `${delay === 0 ? 'respawning' : `respawning in ${delay / 1000} s (it keeps dying)`}`);
      if (delay > 0) {
        this.#spawnAfter = Math.max(this.#spawnAfter, now + delay);
        setTimeout(() => this.reconcile(), delay).unref();
      }
    }
    this.reconcile();
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
      if (this.#codeDir !== null) rmSync(this.#codeDir, { recursive: true, force: true }); // onFatal may exit
      this.#codeDir = null;
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
      // The next reload reads the code afresh (the copy goes when its last worker has exited).
      for (const g of this.#code.keys()) if (g > working) this.#code.delete(g);
    } else {
      this.#opts.log.error(`worker ${worker.id} could not load the application; retrying in ${LOAD_RETRY_MS / 1000} s`);
      this.#spawnAfter = this.#now() + LOAD_RETRY_MS;
    }
  }

  /**
   * Keeps front connections spread over the workers: when one worker holds two more than
   * another (after a crash, a reload or SIGTTIN), it asks the front to move one.
   */
  #rebalance(): void {
    const now = this.#now();
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
      if (!reachable(this.#server)) {
        if (!this.#unreachableSaid) {
          this.#unreachableSaid = true;
          this.#opts.log.warn(`connections are unbalanced across workers (${max.connections} vs ${min.connections}), `
            + 'but the listening socket is gone: no connection is moved (a front could not reconnect)');
        }
        return;
      }
      this.#lastShed = now;
      // The count is left as it is until the next heartbeat, so that the connection the front
      // opens in its place goes to the less busy worker rather than back here on a tie.
      this.#workers.send(max, { type: 'shed' } satisfies SupervisorMessage);
      this.#opts.log.debug(`moving a connection off worker ${max.id} (${max.connections} vs ${min.connections})`);
    }
  }

  /**
   * Hangs: a worker whose heartbeats stop. With --timeout, a ready worker silent for longer than
   * it is stuck in a request past it (its own check cannot run): killed at once, the request
   * named when a heartbeat saw it. (The front, told --timeout in HELLO, has answered it 504.)
   */
  #checkHealth(): void {
    const now = this.#now();
    const limit = this.#opts.requestTimeoutMs;
    for (const w of this.#workers.values()) {
      if (w.state === 'stopping') continue;
      const silent = now - w.lastBeat;
      const request = w.oldest ? `${w.oldest.method} ${w.oldest.uri} (running ${((w.oldest.ms + silent) / 1000).toFixed(1)} s)` : null;
      if (limit > 0 && w.everReady && silent > limit + HEARTBEAT_SLACK_MS) {
        this.#opts.log.error(`worker ${w.id} (pid ${w.handle.pid}) is stuck: no heartbeat for ${(silent / 1000).toFixed(1)} s, `
          + `past --timeout ${limit / 1000} s, ${request !== null ? `last seen busy with ${request}` : 'in a request that started after its last heartbeat (the front\'s 504 line names it)'}; killing it`);
        this.#restarted('timeout');
        w.state = 'stopping';
        w.handle.kill('SIGKILL');
      } else if (silent > HEARTBEAT_TIMEOUT_MS) {
        this.#opts.log.error(`worker ${w.id} (pid ${w.handle.pid}) sent no heartbeat for ${(silent / 1000).toFixed(1)} s`
          + `${request ? `; last seen busy with ${request}` : ''}; killing it`);
        this.#restarted('heartbeat');
        w.state = 'stopping';
        w.handle.kill('SIGKILL');
      }
    }
    this.reconcile();
    this.#rebalance();
  }

  /** Hands an accepted connection to the least busy ready worker of the current generation. */
  #route(socket: Socket, delivery: Delivery<Worker>): void {
    if (this.#stopping) socket.destroy();
    else this.#workers.route(socket, delivery);
  }

  get workers(): { id: number; pid: number | undefined; generation: number; state: string; connections: number; inFlight: number;
    served: number; report?: ServeReport }[] {
    return [...this.#workers.values()].map((w) => ({
      id: w.id, pid: w.handle.pid, generation: w.generation, state: w.state,
      connections: w.connections, inFlight: w.inFlight, served: w.served, report: w.report,
    }));
  }

  /** Graceful: each worker sends GOAWAY and finishes its requests. Resolves when all exited. */
  async stop({ graceful = true }: { graceful?: boolean } = {}): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      if (this.#watchdog !== null) clearInterval(this.#watchdog);
      void closeListener(this.#server);
      this.#uwsgi?.close();
      this.#workers.close();
      for (const w of this.#workers.values()) {
        if (graceful) this.#retire(w, 'shutting down');
        else w.handle.kill('SIGKILL');
      }
    }
    await this.#workers.whenEmpty();
    if (this.#codeDir !== null) rmSync(this.#codeDir, { recursive: true, force: true });
    this.#codeDir = null;
    if (this.#fatal !== null) throw this.#fatal;
  }
}
