// The backend, `tsgi serve`: loads the application and serves it on a tsgi socket (and/or a
// uwsgi socket for nginx), in this process or (--workers N) in N workers under a supervisor. start(config) and
// stop({ graceful }) are the lifecycle verbs, as for the front.
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { type Address, formatAddress } from '../common/address.js';
import { type AdminServer, packageVersion, recordErrors, startAdmin } from '../common/admin-server.js';
import { ControlListener, controlRequest, type WorkerInfo } from '../common/control.js';
import { createLogger, type Logger } from '../common/log.js';
import { RecentErrors } from '../common/metrics.js';
import { processUsage, type ProcessUsage } from '../common/process-usage.js';
import { mergeResponses, type RecentResponse } from '../common/recent-responses.js';
import { presentStatus, type RollingPoints, sumPoints } from '../common/rolling.js';
import { shutdownDelayOf } from '../common/shutdown.js';
import { SERVE_TLS_FLAGS, TlsContext, tlsFiles } from '../common/tls.js';
import { type Options, resolveOptions } from '../common/options.js';
import { aggregate } from '../common/worker-metrics.js';
import { ConfigError } from '../protocol/errors.js';
import { handleServeControl } from './control.js';
import { loadApplication } from './load-app.js';
import { ServeMetrics, type ServeReport, supervisorRegistry } from './metrics.js';
import { setRequestIdHeader } from './request-id.js';
import { ServeTracing } from './tracing.js';
import { BackendServer } from './server.js';
import { Supervisor } from './supervisor.js';
import type { Application } from './types.js';
import { UwsgiServer } from './uwsgi-server.js';

/**
 * A backend's configuration: the options of `tsgi serve` (the table in common/options.ts, by key),
 * all optional; what is left out takes the table's default. Plus the app, and a callback.
 */
export type BackendConfig = Partial<Options<'serve'>> & {
  /** Path to the application module, or (single process only) the application itself. */
  app: string | Application;
  /** Supervisor mode: the app can no longer be loaded and nothing serves; the backend stopped. */
  onFatal?: (err: Error) => void;
};

export interface Backend {
  /** The tsgi address; for a uwsgi-only backend, its uwsgi address (protocol 'uwsgi'). */
  readonly address: Address;
  /** The uwsgi address, when --uwsgi-socket or --uwsgi-listen was given. */
  readonly uwsgiAddress: Address | null;
  /** SIGHUP: rolling reload of the workers (supervisor mode); a no-op in a single process. */
  reload(): void;
  /** SIGTTIN / SIGTTOU: one worker more or less (supervisor mode). */
  scale(delta: number): void;
  /** The admin server's address, if --admin was given. */
  readonly adminAddress: Address | null;
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

const REGISTER_EVERY_MS = 10_000;
/** While the front cannot be reached, announcing again after 0.1 s, doubling up to REGISTER_EVERY_MS. */
const REGISTER_RETRY_FIRST_MS = 100;

/**
 * What --register announces: the --advertise address, or the one bound (refused when it is a
 * wildcard, which a front elsewhere cannot dial); tls: when the link is mutual TLS.
 */
function advertised(bound: Address, advertise: Address | undefined, tls: boolean): Address {
  const a: Address = advertise === undefined ? bound : { ...advertise, ...(bound.protocol !== undefined ? { protocol: bound.protocol } : {}) };
  if (a.kind === 'unix') return { ...a, path: resolve(a.path) };
  if (advertise === undefined && (a.host === '' || a.host === '0.0.0.0' || a.host === '::' || a.host === '[::]')) {
    throw new ConfigError(`--register: this backend listens on ${formatAddress(a)}, a wildcard address that a front cannot dial; `
      + `give --advertise HOST:${a.port} with the address fronts reach it at (in Kubernetes, the pod's IP from the downward API)`);
  }
  return tls ? { ...a, tls: true } : a;
}

/**
 * Announces the backend to a front's control socket, and again periodically (fronts restart);
 * while the front cannot be reached, sooner (a backend started before its front registers as
 * soon as the front is up). Each start is a new registration: a front holding the address
 * drained (`tsgi ctl drain`) keeps it drained through the announcements of this one.
 */
function registration(path: string, address: Address, log: Logger, tls: TlsContext | null): { withdraw(): Promise<void> } {
  const name = formatAddress(address);
  const id = randomUUID();
  let failing = false;
  let held = false;
  let registered = false;
  let retryMs = REGISTER_RETRY_FIRST_MS;
  let timer: NodeJS.Timeout | null = null;
  let withdrawn = false;
  const announce = () => controlRequest(path, { op: 'add', address: name, registration: id }, 5000, tls).then((r) => {
    if (!r.ok) throw new Error(r.error);
    if (r.held === true) {
      if (!held) log.warn(`the front at ${path} holds ${name} drained (tsgi ctl drain): it routes nothing here until tsgi ctl add`);
    } else if (!registered || held) {
      log.info(`registered ${name} with the front at ${path}`);
    } else if (failing) {
      log.info(`registered with the front at ${path} again`);
    }
    held = r.held === true;
    registered = true;
    failing = false;
    retryMs = REGISTER_RETRY_FIRST_MS;
  }).catch((err: Error) => {
    if (!failing) log.warn(`cannot register with the front at ${path}: ${err.message}; will keep trying`);
    failing = true;
  }).finally(() => {
    if (withdrawn) return;
    const wait = failing ? retryMs : REGISTER_EVERY_MS;
    if (failing) retryMs = Math.min(REGISTER_EVERY_MS, retryMs * 2);
    timer = setTimeout(announce, wait);
    timer.unref();
  });
  void announce();
  return {
    async withdraw() {
      withdrawn = true;
      if (timer !== null) clearTimeout(timer);
      await controlRequest(path, { op: 'drain', address: name, registration: id }, 5000, tls).catch((err: Error) => {
        log.warn(`could not withdraw from the front at ${path}: ${err.message}`);
      });
    },
  };
}

/** The tsgi server's options from the config: the same for a worker of --workers and for one process. */
function tsgiServerOptions(config: Options<'serve'>) {
  return {
    scriptName: config.scriptName,
    maxStreams: config.maxStreams,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
    maxHeadSize: config.maxRequestHeaderSize,
    pingIntervalMs: config.pingInterval * 1000,
    pingTimeoutMs: config.pingTimeout * 1000,
  };
}

/** The /status document of `tsgi serve`. */
interface ServeStatus {
  requests: number;
  inFlight: number;
  connections: number;
  generation: number;
  workersTarget: number;
  restarts: Record<string, number>;
  workers: { id: number; pid: number | undefined; generation: number; state: string; connections: number;
    inFlight: number; requests: number; window?: RollingPoints }[];
  /** All the workers' last minutes (summarized as `recent`). */
  window?: RollingPoints;
  /** The requests running, the longest-running first, with the worker running each. */
  requestsInFlight: { method: string; path: string; worker: number; ageMs: number }[];
  /** The app's last 5xx responses, newest first. */
  recentResponses: RecentResponse[];
  /** CPU and memory of the supervisor and each worker (or of the one process). */
  processUsage: ProcessUsage[];
}

/** The serve status's parts that come from the processes running the app. */
function fromReports(reports: { id: number; report?: ServeReport }[]): Pick<ServeStatus, 'window' | 'requestsInFlight' | 'recentResponses'> {
  const withReport = reports.filter((r): r is { id: number; report: ServeReport } => r.report !== undefined);
  return {
    window: sumPoints(withReport.map((r) => r.report.window)),
    requestsInFlight: withReport.flatMap(({ id, report }) => report.requests.map((q) => {
      const i = q.uri.indexOf('?');
      return { method: q.method, path: i === -1 ? q.uri : `${q.uri.slice(0, i)}?…`, worker: id, ageMs: q.ms };
    })).sort((a, b) => b.ageMs - a.ageMs).slice(0, 50),
    recentResponses: mergeResponses(withReport.map((r) => r.report.responses)),
  };
}

export async function start(given: BackendConfig): Promise<Backend> {
  const config = resolveOptions('serve', given); // each option checked, each default from the table
  const started = Date.now();
  // With --admin, warnings and errors are also kept for /status and the status page.
  const recent = config.admin !== undefined ? new RecentErrors() : null;
  const log = recent !== null ? recordErrors(createLogger('serve'), recent) : createLogger('serve');
  let adminMetrics: (() => Promise<{ contentType: string; body: string }>) | null = null;
  let adminStatus: (() => ServeStatus) | null = null;
  const address: Address | null = config.listen ?? (config.socket ? { kind: 'unix', path: config.socket } : null);
  const uwsgiAddress: Address | null = config.uwsgiListen ?? (config.uwsgiSocket ? { kind: 'unix', path: config.uwsgiSocket } : null);
  if (address === null && uwsgiAddress === null) {
    throw new ConfigError('tsgi serve needs --socket PATH or --listen HOST:PORT|unix:PATH (tsgi), or --uwsgi-socket PATH or --uwsgi-listen HOST:PORT (uwsgi), or both');
  }
  const tls = tlsFiles({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa }, SERVE_TLS_FLAGS);
  if (tls !== null && (address === null || address.kind !== 'tcp')) {
    throw new ConfigError('--tls-cert/--tls-key/--tls-ca secure a TCP link: give --listen HOST:PORT (a Unix socket needs no TLS)');
  }
  // Read now, in this process, so that a wrong file stops start-up with the flag that named it.
  const tlsContext = tls !== null ? new TlsContext(tls, SERVE_TLS_FLAGS) : null;
  const gracefulMs = config.gracefulTimeout * 1000;
  const shutdownDelayMs = shutdownDelayOf(config.shutdownDelay) * 1000;
  /** Why /readyz answers 503, or null: the moment a graceful stop begins, before anything drains. */
  let notReady: (() => string | null) = () => null;
  let stopReason: string | null = null;
  let stopServing: (graceful: boolean) => Promise<void>;
  let reload = () => log.warn('SIGHUP: reload needs --workers (a supervisor); ignored');
  let workerList: () => { workers: WorkerInfo[]; generation: number; target: number };
  let scale = (_delta: number) => log.warn('SIGTTIN/SIGTTOU: scaling needs --workers (a supervisor); ignored');
  let bound: Address | null;
  let uwsgiBound: Address | null = null;

  if (config.workers !== undefined) {
    if (typeof config.app !== 'string') throw new ConfigError('--workers needs the application as a module path');
    const supervisor = new Supervisor({
      address, uwsgiAddress, log, socketMode: config.socketMode, workers: config.workers,
      gracefulTimeoutMs: gracefulMs,
      onFatal: config.onFatal,
      requestTimeoutMs: config.timeout * 1000,
      maxRequests: config.maxRequests,
      maxRequestsJitter: config.maxRequestsJitter,
      onWorkerLog: recent !== null ? (level, message) => recent.push(level, message) : undefined,
      worker: {
        app: resolve(config.app),
        ...tsgiServerOptions(config),
        gracefulTimeoutMs: gracefulMs,
        logLevel: config.logLevel,
        metrics: config.admin !== undefined,
        requestIdHeader: config.requestIdHeader,
        otlpEndpoint: config.otlpEndpoint,
        requestTimeoutMs: config.timeout * 1000,
        tls,
      },
    });
    ({ address: bound, uwsgiAddress: uwsgiBound } = await supervisor.start());
    if (config.admin !== undefined) {
      const own = supervisorRegistry(supervisor);
      adminMetrics = async () => aggregate(own, await supervisor.workerMetrics());
      adminStatus = () => {
        const all = supervisor.workers;
        const workers = all.map((w) => ({
          id: w.id, pid: w.pid, generation: w.generation, state: w.state, connections: w.connections,
          inFlight: w.inFlight, requests: w.served, window: w.report?.window,
        }));
        return {
          ...fromReports(all),
          processUsage: [processUsage('supervisor'), ...all.flatMap((w) => (w.report ? [w.report.usage] : []))],
          requests: supervisor.served,
          inFlight: workers.reduce((n, w) => n + w.inFlight, 0),
          connections: workers.reduce((n, w) => n + w.connections, 0),
          generation: supervisor.generation,
          workersTarget: supervisor.target,
          restarts: Object.fromEntries(supervisor.restartsByReason),
          workers,
        };
      };
    }
    stopServing = (graceful) => supervisor.stop({ graceful });
    workerList = () => ({
      workers: supervisor.workers.map((w) => ({ id: w.id, pid: w.pid, generation: w.generation, state: w.state,
        connections: w.connections, inFlight: w.inFlight, requests: w.served })),
      generation: supervisor.generation, target: supervisor.target,
    });
    notReady = () => (supervisor.workers.some((w) => w.state === 'ready') ? null : 'no worker is ready');
    reload = () => {
      // The new workers read the certificates again: check them here first, so that a broken file
      // keeps the running workers instead of replacing them with ones that cannot serve.
      if (tls !== null) {
        try {
          new TlsContext(tls, SERVE_TLS_FLAGS);
        } catch (err) {
          log.error(`SIGHUP: ${(err as Error).message}; keeping the running workers and their certificates`);
          return;
        }
      }
      supervisor.reload();
    };
    scale = (delta) => supervisor.scale(delta);
  } else {
    setRequestIdHeader(config.requestIdHeader);
    const app = typeof config.app === 'function' ? config.app : await loadApplication(config.app);
    const tracing = config.otlpEndpoint !== undefined ? await ServeTracing.start(config.otlpEndpoint, log) : null;
    const metrics = config.admin !== undefined ? new ServeMetrics(true) : undefined;
    const server = address === null ? null : new BackendServer({
      address, app, log,
      ...tsgiServerOptions(config),
      requestTimeoutMs: config.timeout * 1000,
      socketMode: config.socketMode,
      metrics,
      tls: tlsContext,
    });
    if (tlsContext !== null) reload = () => { tlsContext.reload(log); };
    const uwsgi = uwsgiAddress === null ? null : new UwsgiServer({
      address: uwsgiAddress, app, log,
      scriptName: config.scriptName,
      window: config.window,
      socketMode: config.socketMode,
      metrics,
    });
    if (metrics !== undefined) {
      metrics.attach(server, uwsgi);
      adminMetrics = async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() });
      adminStatus = () => {
        const report = metrics.report();
        return {
          ...fromReports([{ id: 0, report }]),
          processUsage: [report.usage],
          requests: metrics.statuses.total,
          inFlight: metrics.inFlight,
          connections: metrics.connections,
          generation: 1,
          workersTarget: 1,
          restarts: {},
          workers: [{
            id: 0, pid: process.pid, generation: 1, state: 'ready', connections: metrics.connections,
            inFlight: metrics.inFlight, requests: metrics.statuses.total, window: report.window,
          }],
        };
      };
    }
    workerList = () => ({
      workers: [{ id: 0, pid: process.pid, generation: 1, state: 'ready', connections: server?.connections ?? 0,
        inFlight: (server?.inFlight ?? 0) + (uwsgi?.inFlight ?? 0), requests: (server?.served ?? 0) + (uwsgi?.served ?? 0) }],
      generation: 1, target: 1,
    });
    bound = server === null ? null : await server.listen();
    try {
      uwsgiBound = uwsgi === null ? null : await uwsgi.listen();
    } catch (err) {
      await server?.stop({ graceful: false });
      throw err;
    }
    // --timeout in one process: a request past it is answered 504 (or cut) and logged; there is
    // no worker to replace (an app stuck on the CPU is answered by the front alone).
    const limit = config.timeout * 1000;
    const expiry = limit > 0 ? setInterval(() => {
      for (const r of [...server?.expire(limit) ?? [], ...uwsgi?.expire(limit) ?? []]) {
        log.error(`request ${r.method} ${r.uri} (running ${(r.ms / 1000).toFixed(1)} s) exceeded --timeout ${limit / 1000} s: answered 504`);
      }
    }, 100) : null;
    expiry?.unref();
    stopServing = async (graceful) => {
      if (expiry !== null) clearInterval(expiry);
      await Promise.all([
        server?.stop({ graceful, timeoutMs: gracefulMs }),
        uwsgi?.stop({ graceful, timeoutMs: gracefulMs }),
      ]);
      await tracing?.stop();
    };
  }

  const announced: Address = bound ?? { ...uwsgiBound!, protocol: 'uwsgi' };
  if (tls !== null) log.info(`TLS on ${formatAddress(announced)}: fronts must show a certificate signed by ${tls.ca}`);
  let admin: AdminServer | null = null;
  if (config.admin !== undefined && adminMetrics !== null && adminStatus !== null) {
    const status = adminStatus;
    try {
      admin = await startAdmin({
        address: config.admin, log, socketMode: config.socketMode, metrics: adminMetrics,
        notReady: () => stopReason ?? notReady(),
        status: () => ({
          kind: 'serve', version: packageVersion(), pid: process.pid, uptime: (Date.now() - started) / 1000,
          listen: formatAddress(announced), ...presentStatus(status()), recentErrors: recent!.list(),
        }),
      });
    } catch (err) {
      await stopServing(false);
      throw err;
    }
  }
  let control: ControlListener | null = null;
  if (config.control !== undefined) {
    const supervised = config.workers !== undefined;
    control = new ControlListener(config.control, (req) => handleServeControl({
      list: workerList, scale: supervised ? scale : null, reload: supervised ? reload : null,
    }, req, log), log);
    try {
      await control.listen(config.socketMode);
    } catch (err) {
      await stopServing(false);
      await admin?.close();
      throw err;
    }
  }
  let reg: { withdraw(): Promise<void> } | null = null;
  if (config.register) {
    try {
      if (config.register.startsWith('tls:') && tls === null) {
        throw new ConfigError(`--register ${config.register}: registration over TCP is mutual TLS, as the links: give --tls-cert, --tls-key and --tls-ca`);
      }
      if (!config.register.startsWith('tls:') && /^[^/.][^/]*:\d+$/.test(config.register)) {
        throw new ConfigError(`--register ${config.register}: over TCP, write tls:${config.register} (a front's --control-listen speaks mutual TLS only)`);
      }
      // The same files serve both ways: our certificate, and the CA that signs the fronts'.
      reg = registration(config.register, advertised(announced, config.advertise, tls !== null), log,
        config.register.startsWith('tls:') ? tlsContext : null);
    } catch (err) {
      await admin?.close();
      await stopServing(false);
      throw err;
    }
  }
  let stopped: Promise<void> | null = null;
  return {
    address: announced,
    uwsgiAddress: uwsgiBound,
    adminAddress: admin?.address ?? null,
    reload: () => reload(),
    scale: (delta) => scale(delta),
    stop({ graceful = true } = {}) {
      stopped ??= (async () => {
        stopReason = 'stopping';
        if (graceful && shutdownDelayMs > 0) {
          // The orchestrator sees /readyz fail and takes this backend out of its Service; the fronts
          // that still route here meanwhile are served.
          log.info(`stopping: /readyz answers 503; serving ${shutdownDelayMs / 1000} s more (--shutdown-delay), then draining`);
          await new Promise((r) => setTimeout(r, shutdownDelayMs));
        }
        // Withdraw first, so the front stops routing here before our GOAWAY arrives.
        if (reg !== null && graceful) await reg.withdraw();
        await control?.close();
        await stopServing(graceful);
        await admin?.close();
      })();
      return stopped;
    },
  };
}

export { loadApplication } from './load-app.js';
export { fromFetch } from './fetch-adapter.js';
export { fromNodeHandler, type NodeHandler } from './node-adapter.js';
export { runApplication, type Responder } from './gateway.js';
export { buildEnviron, buildEnvironFromVars } from './environ.js';
export { InputStream } from './input.js';
export { BackendServer } from './server.js';
export { UwsgiServer } from './uwsgi-server.js';
export { Supervisor } from './supervisor.js';
export type * from './types.js';
