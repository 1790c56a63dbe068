// A worker process of `tsgi serve --workers N`: loads the application, takes the front
// connections its supervisor hands it over IPC, accepts uwsgi connections on the socket the
// supervisor bound (inherited as a descriptor, shared by every worker), reports heartbeats, and
// stops gracefully when told to (GOAWAY, finish in-flight requests, exit). Started by supervisor.ts with fork().
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EXIT } from '../common/exit-codes.js';
import { CloseCode } from '../common/ws-frames.js';
import { createLogger, setLogLevel, setLogTag, type Logger, type LogLevel } from '../common/log.js';
import { TsgiError } from '../protocol/errors.js';
import { loadApplication, splitAppSpec } from './load-app.js';
import { ServeMetrics, type ServeReport } from './metrics.js';
import { setRequestIdHeader } from './request-id.js';
import { ServeTracing } from './tracing.js';
import { SERVE_TLS_FLAGS, TlsContext, type TlsFiles } from '../common/tls.js';
import { BackendServer } from './server.js';
import { UwsgiServer } from './uwsgi-server.js';

export interface WorkerConfig {
  workerId: number;
  app: string;
  scriptName: string;
  maxStreams: number;
  window: number;
  maxFrameSize: number;
  /** --max-request-header-size, --ping-interval, --ping-timeout (BackendServer's defaults when absent). */
  maxHeadSize?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  gracefulTimeoutMs: number;
  maxRequests: number;
  logLevel: LogLevel;
  /** --request-id-header, and --otlp-endpoint (spans of each app call), if given. */
  requestIdHeader?: string;
  otlpEndpoint?: string;
  /** How many connections the front should open: the supervisor's worker target. */
  connections: number;
  /** --admin: count requests, and answer the supervisor's requests for metrics. */
  metrics?: boolean;
  /**
   * A file holding the app's entry module as its generation read it: the module is loaded from
   * it rather than from disk (whose file may have changed since, broken: a failed reload).
   */
  appSnapshot?: string;
  /** --timeout in ms (0: none): a request running longer is ended at once and reported. */
  requestTimeoutMs?: number;
  /** --tls-cert/--tls-key/--tls-ca: read by each worker (a reload's new workers read them again). */
  tls?: TlsFiles | null;
  /** The uwsgi socket the supervisor bound, inherited as this descriptor: the worker listens and accepts on it. */
  uwsgiFd?: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'heartbeat'; connections: number; inFlight: number; served: number;
      oldest: { method: string; uri: string; ms: number } | null;
      /** --admin: this worker's part of the status page. */
      report?: ServeReport }
  | { type: 'retire'; served: number }
  /** Requests that ran past --timeout, just answered 504 (or cut): the worker is to be replaced. */
  | { type: 'timeout'; requests: { method: string; uri: string; ms: number }[] }
  /** This worker's register.getMetricsAsJSON(): the answer to request `id`, or (id 0) with a heartbeat. */
  | { type: 'metrics'; id: number; metrics: object[] }
  /** --admin: a warning or error this worker logged, for the supervisor's recent errors. */
  | { type: 'log'; level: 'warn' | 'error'; message: string };

export type SupervisorMessage =
  /** A front's connection, handed over (uwsgi connections come to the worker from the kernel). */
  | { type: 'connection' }
  /**
   * Stop gracefully, giving requests `graceMs` (default --graceful-timeout) to finish; open
   * WebSockets close with closeCode (1001 on a stop, the default; 1012 on a reload).
   */
  | { type: 'stop'; graceMs?: number; closeCode?: number }
  /** Move one front connection to another worker. */
  | { type: 'shed' }
  /** The worker target changed: the connection count to advertise to fronts. */
  | { type: 'target'; workers: number }
  /** Send your metrics (--admin). */
  | { type: 'metrics'; id: number };

const HEARTBEAT_MS = 1000;
/** How often requests are checked against --timeout. */
const EXPIRE_EVERY_MS = 100;

/** With --admin, the worker's warnings and errors also go to the supervisor (its /status). */
function forwardErrors(log: Logger, id: number, send: (msg: WorkerMessage) => void): Logger {
  return {
    ...log,
    warn: (m) => { log.warn(m); send({ type: 'log', level: 'warn', message: `worker ${id}: ${m}` }); },
    error: (m, err) => {
      log.error(m, err);
      send({ type: 'log', level: 'error', message: `worker ${id}: ${err instanceof Error ? `${m}: ${err.message}` : m}` });
    },
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.TSGI_WORKER_CONFIG ?? 'null') as WorkerConfig | null;
  if (config === null || typeof process.send !== 'function') {
    throw new Error('worker.js is started by the tsgi supervisor, not by hand');
  }
  setLogLevel(config.logLevel);
  setLogTag(`worker ${config.workerId}`);
  const send = (msg: WorkerMessage) => {
    if (process.connected) process.send!(msg, undefined, {}, () => {}); // EPIPE while exiting is fine
  };
  const log = config.metrics === true
    ? forwardErrors(createLogger(`worker ${config.workerId}`), config.workerId, send) : createLogger(`worker ${config.workerId}`);
  const metrics = config.metrics === true ? new ServeMetrics(false) : undefined;
  if (metrics !== undefined) metrics.name = `worker ${config.workerId}`;
  /** With --admin, the worker's metrics ride along each heartbeat (id 0), and go once more at exit. */
  const sendMetrics = async () => {
    if (metrics === undefined || !process.connected) return;
    const m = await metrics.registry.getMetricsAsJSON();
    await new Promise<void>((resolve) => {
      if (process.connected) process.send!({ type: 'metrics', id: 0, metrics: m } satisfies WorkerMessage, undefined, {}, () => resolve());
      else resolve();
    });
  };
  let server: BackendServer | null = null;
  let uwsgi: UwsgiServer | null = null;
  const oldest = () => {
    const a = server?.oldestRequest() ?? null;
    const b = uwsgi?.oldestRequest() ?? null;
    return a === null ? b : b === null || a.ms >= b.ms ? a : b;
  };
  const served = () => (server?.served ?? 0) + (uwsgi?.served ?? 0);
  const beat = () => {
    send({
      type: 'heartbeat', connections: server?.connections ?? 0, inFlight: (server?.inFlight ?? 0) + (uwsgi?.inFlight ?? 0),
      served: served(), oldest: oldest(), report: metrics?.report(),
    });
    if (metrics !== undefined) void sendMetrics();
  };
  const timer = setInterval(beat, HEARTBEAT_MS);

  if (config.requestIdHeader !== undefined) setRequestIdHeader(config.requestIdHeader);
  const tracing = config.otlpEndpoint !== undefined ? await ServeTracing.start(config.otlpEndpoint, log) : null;
  let app;
  try {
    if (config.appSnapshot !== undefined) {
      // Only when the file changed since its generation read it (the hooks cost a thread).
      const file = resolve(splitAppSpec(config.app).file);
      const source = readFileSync(config.appSnapshot, 'utf8');
      let now: string | null = null;
      try {
        now = readFileSync(file, 'utf8');
      } catch {
        // gone: loadApplication says so
      }
      if (now !== null && now !== source) {
        log.info(`${file} changed on disk since this generation read it; loading the copy it read`);
        register(new URL('./snapshot-hooks.js', import.meta.url), { data: { url: pathToFileURL(file).href, source } });
      }
    }
    app = await loadApplication(config.app);
  } catch (err) {
    log.error((err as Error).message, (err as TsgiError).cause);
    process.exit(EXIT.APP_LOAD);
  }
  let retiring = false;
  const onServed = () => {
    const total = served();
    if (!retiring && config.maxRequests > 0 && total >= config.maxRequests) {
      retiring = true;
      send({ type: 'retire', served: total });
    }
  };
  server = new BackendServer({
    address: null, app, log,
    scriptName: config.scriptName,
    multiprocess: true,
    maxStreams: config.maxStreams,
    window: config.window,
    maxFrameSize: config.maxFrameSize,
    maxHeadSize: config.maxHeadSize,
    pingIntervalMs: config.pingIntervalMs,
    pingTimeoutMs: config.pingTimeoutMs,
    connectionsHint: config.connections,
    requestTimeoutMs: config.requestTimeoutMs,
    tls: config.tls ? new TlsContext(config.tls, SERVE_TLS_FLAGS) : null,
    onServed,
    metrics,
  });
  uwsgi = new UwsgiServer({
    address: null, app, log,
    scriptName: config.scriptName,
    multiprocess: true,
    window: config.window,
    onServed,
    metrics,
  });
  metrics?.attach(server, uwsgi);
  let stopping = false;
  // --timeout, checked while the event loop is free: a request past it is ended at once (504)
  // and reported; the supervisor logs it and replaces this worker. One spinning on the CPU
  // cannot be checked here: the front (told the limit in HELLO) and the supervisor (no
  // heartbeat) act on it.
  const limit = config.requestTimeoutMs ?? 0;
  const expiry = limit > 0 ? setInterval(() => {
    const requests = [...server!.expire(limit), ...uwsgi!.expire(limit)];
    if (requests.length > 0) send({ type: 'timeout', requests });
  }, EXPIRE_EVERY_MS) : null;
  expiry?.unref();
  const stop = async (graceMs = config.gracefulTimeoutMs, closeCode: number = CloseCode.GOING_AWAY) => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    await Promise.all([
      server!.stop({ graceful: true, timeoutMs: graceMs, closeCode }),
      uwsgi!.stop({ graceful: true, timeoutMs: graceMs }),
    ]);
    await sendMetrics().catch(() => {});
    await tracing?.stop().catch(() => {});
    process.exit(EXIT.OK);
  };
  process.on('message', (msg: SupervisorMessage, handle?: Socket) => {
    if (msg.type === 'connection' && handle) {
      if (stopping) handle.destroy();
      else server!.accept(handle);
    } else if (msg.type === 'stop') {
      void stop(msg.graceMs, msg.closeCode);
    } else if (msg.type === 'shed') {
      server!.shedConnection();
    } else if (msg.type === 'target') {
      server!.connectionsHint = msg.workers;
    } else if (msg.type === 'metrics') {
      const id = msg.id;
      void (metrics?.registry.getMetricsAsJSON() ?? Promise.resolve([])).then((m) => send({ type: 'metrics', id, metrics: m }));
    }
  });
  process.on('SIGTERM', () => void stop());
  // The supervisor decides: Ctrl-C (INT), Ctrl-\ (QUIT) and a kill of the process group reach
  // the workers too, and must not stop, suspend or open the inspector of a worker on their own.
  for (const signal of ['SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU'] as const) process.on(signal, () => {});
  process.on('disconnect', () => void stop()); // the supervisor is gone
  if (config.uwsgiFd !== undefined) await uwsgi.listenOnDescriptor(config.uwsgiFd);
  send({ type: 'ready' });
  beat();
}

main().catch((err) => {
  createLogger('worker').error('worker failed', err);
  process.exit(EXIT.FAILURE);
});
