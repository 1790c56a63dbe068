// A child of `tsgi run --reload`: takes its configuration over IPC, serves the app on node:http
// (run.ts serveHere), says 'ready' or why not, and stops on SIGTERM or when its parent is gone.
import { EXIT } from '../common/exit-codes.js';
import { createLogger, setLogLevel, setLogTag } from '../common/log.js';
import { ConfigError, TsgiError } from '../protocol/errors.js';
import { type RunChildMessage, type RunConfig, serveHere } from './run.js';

setLogTag('run');
const log = createLogger('run');
const send = (msg: RunChildMessage) => process.send?.(msg);

process.once('message', (config: RunConfig) => {
  setLogLevel(config.logLevel);
  serveHere(config, log).then((server) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      void server.stop().then(() => process.exit(EXIT.OK));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', () => {}); // the parent decides; Ctrl-C reaches the whole group
    process.on('disconnect', stop);
    send({ kind: 'ready', address: server.address });
  }, (err: unknown) => {
    const config = err instanceof ConfigError;
    const code = config ? EXIT.USAGE : err instanceof TsgiError && err.code === 'TSGI_ERR_APP_LOAD' ? EXIT.APP_LOAD : EXIT.FAILURE;
    // The parent logs the message; exit even if the half-loaded app left timers behind.
    process.send!({ kind: 'failed', config, message: (err as Error).message } satisfies RunChildMessage, () => process.exit(code));
  });
});
