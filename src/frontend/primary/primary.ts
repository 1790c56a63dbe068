// `tsgi front --processes N`: a primary process and N front workers (primary/worker.ts), each a
// full front with its own connections to every backend. The primary owns what is shared — the
// listening socket, the control socket, the admin server — and its signal handlers; it keeps
// the workers at N, replacing one that dies after a backoff.
//
// How connections are shared: the primary listens (listenOn, as a single front does) and hands
// each accepted connection to the ready worker with the fewest open, over IPC. That is node:cluster's
// SCHED_RR mechanism (the primary accepts, passes the fd), but with the listener our own:
// - the socket lives as long as the primary, not as long as some worker: connections wait in
//   the backlog while every worker restarts, and `--listen 127.0.0.1:0` keeps its port;
// - listenOn's rules hold: a live Unix socket is never taken over, the file is born with
//   --socket-mode, and stopping never deletes a newer front's socket file (cluster's handle,
//   closed with its last worker, unlinks whatever file is at the path);
// - fewest-connections instead of blind round-robin: a replacement worker gets the new
//   connections first, where round-robin would leave it at 1/N of them beside old keep-alives.
// The hand-off costs one sendmsg per client connection, none per request. Sharing the listening
// fd itself (SCHED_NONE: each worker accepts) saves that, but Linux then spreads connections
// unevenly (Node's cluster docs), and no reusePort in Node 20.
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress, parseAddress } from '../../common/address.js';
import { type AdminServer, recordErrors, startAdmin } from '../../common/admin-server.js';
import { Backoff } from '../../common/backoff.js';
import { shutdownDelayOf } from '../../common/shutdown.js';
import { type Child, ChildSet, type Delivery, forkWithConfig, type SpawnChild } from '../../common/children.js';
import type { ControlRequest, ControlResponse } from '../../common/control.js';
import { closeListener, listenOn } from '../../common/listen.js';
import { createLogger, type Logger, type LogLevel } from '../../common/log.js';
import { guardAccept, refuse503 } from '../../common/accept-guard.js';
import { defineMetric, defineProcessMetrics, promClient, RecentErrors } from '../../common/metrics.js';
import { resolveOptions } from '../../common/options.js';
import { aggregate, ChildSnapshots } from '../../common/worker-metrics.js';
import { ConfigError } from '../../protocol/errors.js';
import { mergeAnswers } from '../control.js';
import { type ControlEndpoints, openControl } from '../control-listen.js';
import { FRONT_TLS_FLAGS, TlsContext, tlsFiles } from '../../common/tls.js';
import type { FrontConfig } from '../index.js';
import { addTotals, type FrontStatus, type FrontTotals, noTotals, sumStatuses } from '../observe/metrics.js';
import { presentStatus } from '../../common/rolling.js';
import { processUsage } from '../../common/process-usage.js';

/** A backend the workers route to, and where it came from (--backend/--config, or the control socket). */
export interface BackendEntry {
  address: Address;
  source: 'config' | 'control';
}

/** What a worker is started with (JSON in TSGI_FRONT_WORKER). */
export interface FrontWorkerConfig {
  front: FrontConfig;
  /** The address the primary bound. */
  listen: Address;
  /** The backends as of now: --backend/--config ones and those added over the control socket. */
  backends: BackendEntry[];
  logLevel: LogLevel;
}

export type PrimaryMessage =
  | { type: 'connection' }
  /** Make the backends these (the worker's pool drains the others). */
  | { type: 'backends'; backends: BackendEntry[] }
  | { type: 'control'; id: number; request: ControlRequest }
  | { type: 'reopen' }
  | { type: 'reload-tls' }
  | { type: 'metrics'; id: number }
  | { type: 'status'; id: number }
  | { type: 'stop'; graceful: boolean };

export type FrontWorkerMessage =
  | { type: 'ready' }
  /** start() failed: the message, and whether it is a configuration error (exit code 2). */
  | { type: 'failed'; message: string; config: boolean }
  /** Heartbeat: client connections open now. */
  | { type: 'load'; connections: number }
  | { type: 'answer'; id: number; value: unknown };

/** What the CLI drives, in one process or under a primary. */
export interface FrontProcess {
  readonly address: Address;
  setBackends(addresses: Address[]): void;
  reopenLogs(): void;
  reloadTls(): void;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export type PrimaryConfig = FrontConfig & { processes: number; logLevel?: LogLevel };

/** A front worker, keyed by its slot (0 to N-1): a replacement takes the slot of the one it replaces. */
interface Worker extends Child {
  /** Client connections open, by its last heartbeat plus those handed to it since. */
  connections: number;
  /** Its last /status: what it served stays in the totals after it exits. */
  lastStatus: FrontStatus | null;
}

/** What the primary runs on besides its config: how a worker starts, the clock, the log. */
export interface PrimaryDeps {
  /** Default: fork front-worker.js; a test passes fake children. */
  spawn?: SpawnChild<FrontWorkerConfig>;
  now?: () => number;
  log?: Logger;
}

const ASK_TIMEOUT_MS = 2000;

const spawnFrontWorker = forkWithConfig<FrontWorkerConfig>(fileURLToPath(new URL('./worker.js', import.meta.url)),
  // The single front's V8 flag (see runFront in cli.ts) for each worker.
  'TSGI_FRONT_WORKER', { execArgv: [...process.execArgv, '--no-incremental-marking'] });

/** Each accepted connection goes to the ready worker with the fewest. */
const CONNECTION: Delivery<Worker> = {
  message: { type: 'connection' } satisfies PrimaryMessage,
  load: (w) => w.connections,
  charge: (w, n) => { w.connections += n; },
};

export class FrontPrimary implements FrontProcess {
  readonly #config: ReturnType<typeof resolveOptions<'front', PrimaryConfig>>;
  readonly #n: number;
  readonly #log: Logger;
  readonly #recent: RecentErrors | null;
  readonly #server: Server;
  readonly #workers: ChildSet<FrontWorkerConfig, Worker>;
  readonly #now: () => number;
  readonly #backoff: Backoff[];
  /** When each empty slot may be filled again (a worker that died waits out its backoff). */
  readonly #spawnAfter: number[];
  readonly #snapshots = new ChildSnapshots();
  readonly #gone: FrontTotals = noTotals();
  /** The backends every worker should have: new workers start with them. */
  readonly #backends = new Map<string, BackendEntry>();
  readonly #since = Date.now();
  #address: Address | null = null;
  #control: ControlEndpoints | null = null;
  /** --control-listen's certificates (the links' files), reloaded on SIGHUP with the workers'. */
  #controlTls: TlsContext | null = null;
  #admin: AdminServer | null = null;
  #restarts = 0;
  #stopping = false;
  /** A graceful stop began: /readyz fails, though connections are still taken for --shutdown-delay. */
  #unready = false;
  #stopped: Promise<void> | null = null;
  /** Until start() resolves: a worker of the first set failing to start fails start(). */
  #starting: { resolve(): void; reject(err: Error): void } | null = null;

  constructor(config: PrimaryConfig, deps: PrimaryDeps = {}) {
    this.#config = resolveOptions('front', config);
    this.#n = config.processes;
    this.#recent = config.admin !== undefined ? new RecentErrors() : null;
    const log = deps.log ?? createLogger('front');
    this.#log = this.#recent !== null ? recordErrors(log, this.#recent) : log;
    this.#now = deps.now ?? Date.now;
    this.#backoff = Array.from({ length: this.#n }, () => new Backoff());
    this.#spawnAfter = Array.from({ length: this.#n }, () => 0);
    this.#workers = new ChildSet<FrontWorkerConfig, Worker>({
      spawn: deps.spawn ?? spawnFrontWorker, log: this.#log, name: 'front worker', now: this.#now,
      onMessage: (w, msg) => this.#onMessage(w, msg as FrontWorkerMessage),
      onExit: (w, code, signal) => this.#onExit(w, code, signal),
      onClose: (w) => this.#snapshots.closed(w.handle.pid!),
    });
    for (const address of this.#config.backends) this.#backends.set(formatAddress(address), { address, source: 'config' });
    this.#server = createServer({ pauseOnConnect: true }, (socket) => this.#route(socket));
    guardAccept(this.#server, { log: this.#log, name: 'HTTP', refuse: refuse503 });
  }

  get address(): Address {
    return this.#address!;
  }

  /** The workers' process ids. */
  pids(): number[] {
    return [...this.#workers.values()].flatMap((w) => (w.handle.pid === undefined ? [] : [w.handle.pid]));
  }

  /** Listens, opens the control socket, starts the workers; resolves when all are ready. */
  async start(): Promise<void> {
    const c = this.#config;
    this.#address = await listenOn(this.#server, c.listen, c.socketMode);
    try {
      // --control-listen's TLS uses the links' files (each worker reads them for its own links).
      const tls = tlsFiles({ cert: c.backendTlsCert, key: c.backendTlsKey, ca: c.backendTlsCa }, FRONT_TLS_FLAGS);
      this.#controlTls = tls === null ? null : new TlsContext(tls, FRONT_TLS_FLAGS);
      this.#control = await openControl(c, this.#controlTls, (req) => this.#controlOp(req), this.#log);
      await new Promise<void>((resolve, reject) => {
        this.#starting = { resolve, reject };
        this.reconcile();
      });
      this.#starting = null;
      if (c.admin !== undefined) {
        const own = this.#registry();
        this.#admin = await startAdmin({
          address: c.admin, log: this.#log, socketMode: c.socketMode,
          metrics: async () => aggregate(own, await this.#workerMetrics()),
          status: () => this.#status(),
          notReady: () => (this.#unready ? 'stopping' : null),
        });
      }
    } catch (err) {
      await this.stop({ graceful: false });
      throw err;
    }
    const pids = this.pids().join(', ');
    this.#log.info(`listening on ${this.#config.tlsCert === undefined ? 'http' : 'https'} ${formatAddress(this.#address)} with ${this.#n} processes (primary pid ${process.pid}, `
      + `workers ${pids}); backends: ${c.backends.map(formatAddress).join(', ') || 'none yet'}`);
  }

  /**
   * Fills every empty slot whose backoff is over. Idempotent: a worker's exit records when its
   * slot may be filled again and calls it then.
   */
  reconcile(): void {
    if (this.#stopping) return;
    const now = this.#now();
    for (let slot = 0; slot < this.#n; slot++) {
      if (this.#workers.get(slot) === undefined && now >= this.#spawnAfter[slot]!) this.#spawn(slot);
    }
  }

  #spawn(slot: number): void {
    const config: FrontWorkerConfig = {
      front: this.#config, listen: this.#address!, backends: [...this.#backends.values()],
      logLevel: this.#config.logLevel,
    };
    this.#workers.spawn(slot, config, { connections: 0, lastStatus: null });
  }

  #onMessage(worker: Worker, msg: FrontWorkerMessage): void {
    switch (msg.type) {
      case 'ready':
        if (worker.state !== 'starting') return;
        worker.state = 'ready';
        // Ops that reached the other workers while this one started: it catches up here.
        this.#workers.send(worker, { type: 'backends', backends: [...this.#backends.values()] } satisfies PrimaryMessage);
        this.#log.debug(`front worker ${worker.id} (pid ${worker.handle.pid}) ready`);
        if (this.#starting !== null && [...this.#workers.values()].every((w) => w.state === 'ready')) this.#starting.resolve();
        this.#workers.flush();
        return;
      case 'failed':
        if (this.#starting !== null) {
          this.#starting.reject(msg.config ? new ConfigError(msg.message) : new Error(msg.message));
        } else {
          this.#log.error(`front worker ${worker.id} (pid ${worker.handle.pid}) could not start: ${msg.message}`);
        }
        return;
      case 'load':
        worker.connections = msg.connections;
        return;
      case 'answer':
        this.#workers.answer(msg.id, msg.value);
        return;
    }
  }

  #onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    if (worker.lastStatus !== null) addTotals(this.#gone, worker.lastStatus);
    const how = signal ?? `code ${code}`;
    if (this.#stopping || worker.state === 'stopping') {
      this.#log.debug(`front worker ${worker.id} (pid ${worker.handle.pid}) exited (${how})`);
      return;
    }
    if (this.#starting !== null) {
      this.#starting.reject(new Error(`front worker ${worker.id} (pid ${worker.handle.pid}) exited (${how}) while starting`));
      return;
    }
    this.#restarts++;
    const delay = this.#backoff[worker.id]!.delay(this.#now() - worker.started);
    this.#spawnAfter[worker.id] = this.#now() + delay;
    this.#log.warn(`front worker ${worker.id} (pid ${worker.handle.pid}) died (${how}); respawning in ${delay} ms`);
    setTimeout(() => this.reconcile(), delay).unref();
  }

  /** Hands an accepted connection to the ready worker with the fewest; ties go round in turn. */
  #route(socket: Socket): void {
    if (this.#stopping) socket.destroy();
    else this.#workers.route(socket, CONNECTION);
  }

  /** Asks every ready worker; a worker that does not answer in time gives `fallback`'s answer. */
  #askAll<T>(make: (id: number) => PrimaryMessage, fallback: (w: Worker) => T): Promise<{ worker: Worker; value: T }[]> {
    return Promise.all(this.#workers.ready().map(async (worker) => ({
      worker, value: await this.#workers.ask<T>(worker, make, ASK_TIMEOUT_MS, () => fallback(worker)),
    })));
  }

  /** A control request, applied in every worker; `list` and the answers merged. */
  async #controlOp(req: ControlRequest): Promise<ControlResponse> {
    const answers = await this.#askAll<ControlResponse>((id) => ({ type: 'control', id, request: req }),
      (w) => ({ ok: false, error: `front process ${w.handle.pid} did not answer within ${ASK_TIMEOUT_MS} ms` }));
    const merged = mergeAnswers(answers.map((a) => a.value));
    if (merged.ok && merged.held !== true && req.op !== 'list' && typeof req.address === 'string') {
      // Remember it, so that a worker started later has the same backends.
      const address = parseAddress(req.address, 'address', true);
      const name = formatAddress(address);
      if (req.op === 'add') {
        if (!this.#backends.has(name)) this.#backends.set(name, { address, source: 'control' });
      } else {
        this.#backends.delete(name);
      }
    }
    return merged;
  }

  /** SIGHUP with --config: the configured backends become these, in every worker. */
  setBackends(addresses: Address[]): void {
    const names = new Set(addresses.map(formatAddress));
    for (const [name, entry] of this.#backends) if (entry.source === 'config' && !names.has(name)) this.#backends.delete(name);
    for (const address of addresses) {
      const name = formatAddress(address);
      if (!this.#backends.has(name)) this.#backends.set(name, { address, source: 'config' });
    }
    this.#workers.broadcast({ type: 'backends', backends: [...this.#backends.values()] } satisfies PrimaryMessage);
  }

  /** SIGUSR1: every worker reopens its access log. */
  reopenLogs(): void {
    this.#workers.broadcast({ type: 'reopen' } satisfies PrimaryMessage);
    if (this.#config.accessLog !== undefined) this.#log.info(`access log: asked ${this.#workers.size} front processes to reopen it`);
  }

  /** SIGHUP: every worker reads the TLS certificate and key, and its --backend-tls-* files, again. */
  reloadTls(): void {
    this.#controlTls?.reload(this.#log);
    if (this.#config.tlsCert !== undefined || this.#config.backendTlsCert !== undefined) {
      this.#workers.broadcast({ type: 'reload-tls' } satisfies PrimaryMessage);
    }
  }

  /** --admin: each worker's series (keyed by pid: a replacement is a new series source). */
  async #workerMetrics(): Promise<object[][]> {
    const answers = await this.#askAll<object[] | null>((id) => ({ type: 'metrics', id }), () => null);
    for (const { worker, value } of answers) if (value !== null) this.#snapshots.update(worker.handle.pid!, value);
    const live = new Map(answers.map(({ worker, value }) => [worker.handle.pid!, value]));
    const alive = new Set(this.pids());
    return this.#snapshots.all(live, (pid) => !alive.has(pid));
  }

  async #status(): Promise<unknown> {
    const answers = await this.#askAll<FrontStatus | null>((id) => ({ type: 'status', id }), (w) => w.lastStatus);
    for (const { worker, value } of answers) if (value !== null) worker.lastStatus = value;
    const parts = answers.flatMap((a) => (a.value === null ? [] : [a.value]));
    const c = this.#config;
    const sum = sumStatuses(parts, this.#gone, {
      pid: process.pid, uptime: (Date.now() - this.#since) / 1000, listen: formatAddress(this.#address!),
      recentErrors: this.#recent?.list() ?? [],
      limits: { queueSize: c.queueSize, maxInFlight: c.maxInFlight, maxConnections: c.maxConnections, processes: this.#workers.size },
    });
    sum.processUsage.unshift(processUsage('primary'));
    return {
      ...presentStatus(sum),
      restarts: this.#restarts,
      processes: [...this.#workers.values()].map((w) => ({
        slot: w.id, pid: w.handle.pid, state: w.state, connections: w.connections,
        requests: answers.find((a) => a.worker === w)?.value?.requests ?? 0,
      })),
    };
  }

  /** The primary's own series: the workers by state, the restarts, and its process metrics. */
  #registry() {
    const reg = new (promClient().Registry)();
    defineMetric(reg, 'tsgi_front_processes', 'front worker processes by state', 'gauge', () => {
      const counts = new Map<string, number>([['starting', 0], ['ready', 0], ['stopping', 0]]);
      for (const w of this.#workers.values()) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
      return [...counts].map(([state, value]) => ({ labels: { state }, value }));
    });
    defineMetric(reg, 'tsgi_front_process_restarts_total', 'front worker processes replaced after dying', 'counter',
      () => [{ value: this.#restarts }]);
    defineProcessMetrics(reg);
    promClient().collectDefaultMetrics({ register: reg });
    return reg;
  }

  /** Stops accepting, tells every worker to stop (graceful: finish in-flight requests), waits for all. */
  stop({ graceful = true }: { graceful?: boolean } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      this.#unready = true; // /readyz answers 503 from now on
      const delayMs = shutdownDelayOf(this.#config.shutdownDelay) * 1000;
      if (graceful && delayMs > 0) {
        this.#log.info(`stopping: /readyz answers 503; serving ${delayMs / 1000} s more (--shutdown-delay), then draining`);
        await new Promise((r) => setTimeout(r, delayMs));
      }
      this.#stopping = true;
      await this.#control?.close();
      const closed = closeListener(this.#server);
      this.#workers.close();
      const killAfter = graceful ? this.#config.gracefulTimeout * 1000 + 2000 : 2000;
      for (const w of this.#workers.values()) this.#workers.stop(w, { type: 'stop', graceful } satisfies PrimaryMessage, killAfter);
      await this.#workers.whenEmpty();
      await closed;
      await this.#admin?.close();
    })();
    return this.#stopped;
  }
}

/** `tsgi front --processes N` (N > 1): the primary, once every worker is ready. */
export async function startProcesses(config: PrimaryConfig): Promise<FrontProcess> {
  if (config.listen === undefined) throw new ConfigError('tsgi front needs --listen HOST:PORT or unix:PATH');
  const primary = new FrontPrimary(config);
  // A primary that exits (a second Ctrl-C) takes its workers with it.
  const killAll = () => {
    for (const pid of primary.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', killAll);
  await primary.start();
  return primary;
}
