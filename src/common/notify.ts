// Readiness for systemd (Type=notify): READY=1 once the listeners are bound and the app is
// loaded. Node cannot send on a Unix datagram socket without a native module, so the message
// goes through the systemd-notify program, which waits until systemd has taken it (the unit
// needs NotifyAccess=all: the sender is that child, not the main process).
import { spawn } from 'node:child_process';
import type { Logger } from './log.js';

/** Tells systemd the service is ready, when started by it with Type=notify; resolves when done. */
export function notifyReady(status: string, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn('systemd-notify', ['--ready', `--status=${status}`], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    child.once('error', (e) => {
      log.warn(`NOTIFY_SOCKET is set but systemd-notify could not run (${(e as NodeJS.ErrnoException).code ?? e.message}); `
        + 'systemd will not hear READY=1: use Type=simple, or install systemd');
      resolve();
    });
    child.once('close', (code) => {
      if (code !== 0) log.warn(`systemd-notify --ready failed (exit ${code}): ${err.trim()}; does the unit set NotifyAccess=all?`);
      resolve();
    });
  });
}
