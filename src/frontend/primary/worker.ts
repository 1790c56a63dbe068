// A worker process of `tsgi front --processes N`: a full front (startWorker) whose client
// connections the primary accepts and hands over; it applies the primary's control ops, backend
// lists and log reopens, answers its questions (metrics, status), and stops when told to.
// Started by primary/primary.ts with fork(); the primary handles the signals.
import type { Socket } from 'node:net';
import { EXIT } from '../../common/exit-codes.js';
import { createLogger, setLogLevel } from '../../common/log.js';
import { ConfigError } from '../../protocol/errors.js';
import { handleControl } from '../control.js';
import { startWorker, type WorkerFront } from '../index.js';
import type { BackendEntry, FrontWorkerConfig, FrontWorkerMessage, PrimaryMessage } from './primary.js';

const HEARTBEAT_MS = 1000;

const send = (msg: FrontWorkerMessage) => {
  if (process.connected) process.send!(msg, undefined, {}, () => {}); // EPIPE while exiting is fine
};

/** The pool's backends become `entries`: new ones are added, others drained (as SIGHUP does). */
function syncBackends(front: WorkerFront, entries: BackendEntry[]): void {
  front.setBackends(entries.filter((e) => e.source === 'config').map((e) => e.address));
  const names = new Set(entries.map((e) => front.pool.add(e.address, e.source).name));
  // An address found by DNS stays while its name is listed (its source is that name).
  for (const backend of [...front.pool.backends]) if (!names.has(backend.name) && !names.has(backend.source)) backend.drain();
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.TSGI_FRONT_WORKER ?? 'null') as FrontWorkerConfig | null;
  if (config === null || typeof process.send !== 'function') {
    throw new Error('front-worker.js is started by `tsgi front --processes N`, not by hand');
  }
  setLogLevel(config.logLevel);
  const log = createLogger('front');
  let front: WorkerFront | null = null;
  let stopping: Promise<void> | null = null;
  const stop = (graceful: boolean) => {
    stopping ??= (async () => {
      await front?.stop({ graceful });
      process.exit(EXIT.OK);
    })();
  };
  // Installed before start(): a stop that arrives while starting is not lost.
  process.on('message', (msg: PrimaryMessage, handle?: Socket) => {
    if (msg.type === 'stop') {
      stop(msg.graceful);
      return;
    }
    if (front === null) {
      handle?.destroy();
      return;
    }
    switch (msg.type) {
      case 'connection':
        if (handle !== undefined) front.accept(handle);
        return;
      case 'backends':
        syncBackends(front, msg.backends);
        return;
      case 'control':
        send({ type: 'answer', id: msg.id, value: handleControl(front.pool, msg.request, log) });
        return;
      case 'reopen':
        front.reopenLogs();
        return;
      case 'reload-tls':
        front.reloadTls();
        return;
      case 'metrics': {
        const id = msg.id;
        void (front.metrics?.registry.getMetricsAsJSON() ?? Promise.resolve(null))
          .then((value) => send({ type: 'answer', id, value }));
        return;
      }
      case 'status':
        send({ type: 'answer', id: msg.id, value: front.metrics?.status() ?? null });
        return;
    }
  });
  // The primary decides: Ctrl-C (and Ctrl-\) reach the whole process group, and a terminal's hangup too.
  for (const signal of ['SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const) process.on(signal, () => {});
  process.on('SIGTERM', () => stop(true));
  process.on('SIGUSR1', () => front?.reopenLogs()); // a signal to the whole group (the primary also asks)
  process.on('disconnect', () => stop(true)); // the primary is gone
  try {
    const backends = config.backends.filter((e) => e.source === 'config').map((e) => e.address);
    front = await startWorker({ ...config.front, backends }, config.listen);
  } catch (err) {
    // The primary reports it (as a single front would) and stops: the message, then the exit.
    const code = err instanceof ConfigError ? EXIT.USAGE : EXIT.FAILURE;
    const msg: FrontWorkerMessage = { type: 'failed', message: (err as Error).message, config: err instanceof ConfigError };
    process.send!(msg, undefined, {}, () => process.exit(code));
    return;
  }
  for (const e of config.backends) if (e.source === 'control') front.pool.add(e.address, 'control');
  const started = front;
  setInterval(() => send({ type: 'load', connections: started.connections }), HEARTBEAT_MS).unref();
  send({ type: 'ready' });
}

main().catch((err) => {
  createLogger('front').error('front worker failed', err);
  process.exit(EXIT.FAILURE);
});
