// `tsgi front --processes N`: a primary process and N front workers (front-worker.ts), each a
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
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Address, formatAddress, parseAddress } from '../common/address.js';
import { type AdminServer, recordErrors, startAdmin } from '../common/admin-server.js';
import { Backoff } from '../common/backoff.js';
import type { ControlRequest, ControlResponse } from '../common/control.js';
import { closeListener, listenOn } from '../common/listen.js';
import { createLogger, type Logger, type LogLevel } from '../common/log.js';
import { guardAccept, refuse503 } from '../common/accept-guard.js';
import { defineMetric, defineProcessMetrics, promClient, RecentErrors } from '../common/metrics.js';
import { aggregate, ChildSnapshots, Replies } from '../common/worker-metrics.js';
import { ConfigError } from '../protocol/errors.js';
import { ControlServer, mergeAnswers } from './control.js';
import type { FrontConfig } from './index.js';
import { addTotals, type FrontStatus, type FrontTotals, noTotals, sumStatuses } from './metrics.js';

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
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export type PrimaryConfig = FrontConfig & { processes: number; logLevel?: LogLevel };

type WorkerState = 'starting' | 'ready' | 'stopping';

interface Worker {
  slot: number;
  child: ChildProcess;
  state: WorkerState;
  /** Client connections open, by its last heartbeat plus those handed to it since. */
  connections: number;
  started: number;
  /** A connection could not be handed to it: it is dying; route nothing more there. */
  unreachable: boolean;
  /** Its last /status: what it served stays in the totals after it exits. */
  lastStatus: FrontStatus | null;
}

const ASK_TIMEOUT_MS = 2000;
/** Connections held while no worker is ready (all restarting); more are closed. */
const MAX_PENDING = 1024;

export class FrontPrimary implements FrontProcess {
  readonly #config: PrimaryConfig;
  readonly #n: number;
  readonly #log: Logger;
  readonly #recent: RecentErrors | null;
  readonly #server: Server;
  readonly #workers = new Map<number, Worker>();
  readonly #backoff: Backoff[];
  readonly #replies = new Replies();
  readonly #snapshots = new ChildSnapshots();
  readonly #gone: FrontTotals = noTotals();
  /** The backends every worker should have: new workers start with them. */
  readonly #backends = new Map<string, BackendEntry>();
  readonly #since = Date.now();
  #address: Address | null = null;
  #control: ControlServer | null = null;
  #admin: AdminServer | null = null;
  #pending: Socket[] = [];
  #nextPick = 0;
  #restarts = 0;
  #stopping = false;
  #stopped: Promise<void> | null = null;
  #exitWaiters: (() => void)[] = [];
  /** Until start() resolves: a worker of the first set failing to start fails start(). */
  #starting: { resolve(): void; reject(err: Error): void } | null = null;

  constructor(config: PrimaryConfig) {
    this.#config = config;
    this.#n = config.processes;
    this.#recent = config.admin !== undefined ? new RecentErrors() : null;
    const log = createLogger('front');
    this.#log = this.#recent !== null ? recordErrors(log, this.#recent) : log;
    this.#backoff = Array.from({ length: this.#n }, () => new Backoff());
    for (const address of config.backends) this.#backends.set(formatAddress(address), { address, source: 'config' });
    this.#server = createServer({ pauseOnConnect: true }, (socket) => this.#route(socket));
    guardAccept(this.#server, { log: this.#log, name: 'HTTP', refuse: refuse503 });
  }

  get address(): Address {
    return this.#address!;
  }

  /** The workers' process ids. */
  pids(): number[] {
    return [...this.#workers.values()].flatMap((w) => (w.child.pid === undefined ? [] : [w.child.pid]));
  }

  /** Listens, opens the control socket, starts the workers; resolves when all are ready. */
  async start(): Promise<void> {
    const c = this.#config;
    this.#address = await listenOn(this.#server, c.listen, c.socketMode);
    try {
      if (c.control !== undefined) {
        this.#control = new ControlServer(c.control, (req) => this.#controlOp(req), this.#log);
        await this.#control.listen(c.socketMode);
      }
      await new Promise<void>((resolve, reject) => {
        this.#starting = { resolve, reject };
        for (let slot = 0; slot < this.#n; slot++) this.#spawn(slot);
      });
      this.#starting = null;
      if (c.admin !== undefined) {
        const own = this.#registry();
        this.#admin = await startAdmin({
          address: c.admin, log: this.#log, socketMode: c.socketMode,
          metrics: async () => aggregate(own, await this.#workerMetrics()),
          status: () => this.#status(),
        });
      }
    } catch (err) {
      await this.stop({ graceful: false });
      throw err;
    }
    const pids = [...this.#workers.values()].map((w) => w.child.pid).join(', ');
    this.#log.info(`listening on http ${formatAddress(this.#address)} with ${this.#n} processes (primary pid ${process.pid}, `
      + `workers ${pids}); backends: ${c.backends.map(formatAddress).join(', ') || 'none yet'}`);
  }

  #spawn(slot: number): void {
    const config: FrontWorkerConfig = {
      front: this.#config, listen: this.#address!, backends: [...this.#backends.values()],
      logLevel: this.#config.logLevel ?? 'info',
    };
    const child = fork(fileURLToPath(new URL('./front-worker.js', import.meta.url)), [], {
      env: { ...process.env, TSGI_FRONT_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // The single front's V8 flag (see runFront in cli.ts) for each worker.
      execArgv: [...process.execArgv, '--no-incremental-marking'],
    });
    const worker: Worker = {
      slot, child, state: 'starting', connections: 0, started: Date.now(), unreachable: false, lastStatus: null,
    };
    this.#workers.set(slot, worker);
    child.on('message', (msg: FrontWorkerMessage) => this.#onMessage(worker, msg));
    child.on('exit', (code, signal) => this.#onExit(worker, code, signal));
    child.once('close', () => this.#snapshots.closed(child.pid!));
    // A message to a worker that is exiting fails with EPIPE: the exit handler deals with it.
    child.on('error', (err) => this.#log.debug(`front worker ${slot}: ${err.message}`));
  }

  #onMessage(worker: Worker, msg: FrontWorkerMessage): void {
    switch (msg.type) {
      case 'ready':
        if (worker.state !== 'starting') return;
        worker.state = 'ready';
        // Ops that reached the other workers while this one started: it catches up here.
        this.#send(worker, { type: 'backends', backends: [...this.#backends.values()] });
        this.#log.debug(`front worker ${worker.slot} (pid ${worker.child.pid}) ready`);
        if (this.#starting !== null && [...this.#workers.values()].every((w) => w.state === 'ready')) this.#starting.resolve();
        this.#flushPending();
        return;
      case 'failed':
        if (this.#starting !== null) {
          this.#starting.reject(msg.config ? new ConfigError(msg.message) : new Error(msg.message));
        } else {
          this.#log.error(`front worker ${worker.slot} (pid ${worker.child.pid}) could not start: ${msg.message}`);
        }
        return;
      case 'load':
        worker.connections = msg.connections;
        return;
      case 'answer':
        this.#replies.answer(msg.id, msg.value);
        return;
    }
  }

  #onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#workers.get(worker.slot) === worker) this.#workers.delete(worker.slot);
    if (worker.lastStatus !== null) addTotals(this.#gone, worker.lastStatus);
    const how = signal ?? `code ${code}`;
    if (this.#stopping || worker.state === 'stopping') {
      this.#log.debug(`front worker ${worker.slot} (pid ${worker.child.pid}) exited (${how})`);
      this.#checkStopped();
      return;
    }
    if (this.#starting !== null) {
      this.#starting.reject(new Error(`front worker ${worker.slot} (pid ${worker.child.pid}) exited (${how}) while starting`));
      return;
    }
    this.#restarts++;
    const delay = this.#backoff[worker.slot]!.delay(Date.now() - worker.started);
    this.#log.warn(`front worker ${worker.slot} (pid ${worker.child.pid}) died (${how}); respawning in ${delay} ms`);
    setTimeout(() => {
      if (!this.#stopping) this.#spawn(worker.slot);
    }, delay).unref();
  }

  #send(worker: Worker, msg: PrimaryMessage): void {
    if (worker.child.connected) worker.child.send(msg, () => {});
  }

  #ready(): Worker[] {
    return [...this.#workers.values()].filter((w) => w.state === 'ready' && w.child.connected && !w.unreachable);
  }

  /** Hands an accepted connection to the ready worker with the fewest; ties go round in turn. */
  #route(socket: Socket, rerouted = false): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    const ready = this.#ready();
    if (ready.length === 0) {
      if (this.#pending.length >= MAX_PENDING) socket.destroy();
      else this.#pending.push(socket);
      return;
    }
    let best = ready[this.#nextPick++ % ready.length]!;
    for (const w of ready) if (w.connections < best.connections) best = w;
    best.connections++;
    best.child.send({ type: 'connection' } satisfies PrimaryMessage, socket, (err) => {
      if (!err) return;
      // The worker died before the primary heard of it: route elsewhere, once.
      best.connections--;
      best.unreachable = true;
      this.#log.debug(`front worker ${best.slot} could not take a connection (${err.message}); routing it elsewhere`);
      if (rerouted || socket.destroyed) socket.destroy();
      else this.#route(socket, true);
    });
  }

  #flushPending(): void {
    for (const socket of this.#pending.splice(0)) if (!socket.destroyed) this.#route(socket);
  }

  /** Asks every ready worker; a worker that does not answer in time gives `fallback`'s answer. */
  #askAll<T>(make: (id: number) => PrimaryMessage, fallback: (w: Worker) => T): Promise<{ worker: Worker; value: T }[]> {
    return Promise.all(this.#ready().map(async (worker) => ({
      worker, value: await this.#replies.ask<T>(worker.child, make, ASK_TIMEOUT_MS, () => fallback(worker)),
    })));
  }

  /** A control request, applied in every worker; `list` and the answers merged. */
  async #controlOp(req: ControlRequest): Promise<ControlResponse> {
    const answers = await this.#askAll<ControlResponse>((id) => ({ type: 'control', id, request: req }),
      (w) => ({ ok: false, error: `front process ${w.child.pid} did not answer within ${ASK_TIMEOUT_MS} ms` }));
    const merged = mergeAnswers(answers.map((a) => a.value));
    if (merged.ok && req.op !== 'list' && typeof req.address === 'string') {
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
    for (const w of this.#workers.values()) this.#send(w, { type: 'backends', backends: [...this.#backends.values()] });
  }

  /** SIGUSR1: every worker reopens its access log. */
  reopenLogs(): void {
    for (const w of this.#workers.values()) this.#send(w, { type: 'reopen' });
    if (this.#config.accessLog !== undefined) this.#log.info(`access log: asked ${this.#workers.size} front processes to reopen it`);
  }

  /** --admin: each worker's series (keyed by pid: a replacement is a new series source). */
  async #workerMetrics(): Promise<object[][]> {
    const answers = await this.#askAll<object[] | null>((id) => ({ type: 'metrics', id }), () => null);
    for (const { worker, value } of answers) if (value !== null) this.#snapshots.update(worker.child.pid!, value);
    const live = new Map(answers.map(({ worker, value }) => [worker.child.pid!, value]));
    const alive = new Set([...this.#workers.values()].map((w) => w.child.pid!));
    return this.#snapshots.all(live, (pid) => !alive.has(pid));
  }

  async #status(): Promise<unknown> {
    const answers = await this.#askAll<FrontStatus | null>((id) => ({ type: 'status', id }), (w) => w.lastStatus);
    for (const { worker, value } of answers) if (value !== null) worker.lastStatus = value;
    const parts = answers.flatMap((a) => (a.value === null ? [] : [a.value]));
    return {
      ...sumStatuses(parts, this.#gone, {
        pid: process.pid, uptime: (Date.now() - this.#since) / 1000, listen: formatAddress(this.#address!),
        recentErrors: this.#recent?.list() ?? [],
      }),
      restarts: this.#restarts,
      processes: [...this.#workers.values()].map((w) => ({
        slot: w.slot, pid: w.child.pid, state: w.state, connections: w.connections,
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

  #checkStopped(): void {
    if (this.#workers.size === 0) for (const w of this.#exitWaiters.splice(0)) w();
  }

  /** Stops accepting, tells every worker to stop (graceful: finish in-flight requests), waits for all. */
  stop({ graceful = true }: { graceful?: boolean } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      await this.#control?.close();
      const closed = closeListener(this.#server);
      for (const s of this.#pending.splice(0)) s.destroy();
      const killAfter = graceful ? (this.#config.gracefulTimeout ?? 30) * 1000 + 2000 : 2000;
      for (const w of this.#workers.values()) {
        w.state = 'stopping';
        if (w.child.connected) w.child.send({ type: 'stop', graceful } satisfies PrimaryMessage, () => {});
        else w.child.kill('SIGTERM');
        setTimeout(() => {
          if (w.child.exitCode === null && w.child.signalCode === null) {
            this.#log.warn(`front worker ${w.slot} (pid ${w.child.pid}) did not stop in time; killing it`);
            w.child.kill('SIGKILL');
          }
        }, killAfter).unref();
      }
      if (this.#workers.size > 0) await new Promise<void>((resolve) => this.#exitWaiters.push(resolve));
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
