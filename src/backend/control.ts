// A backend's own control socket (`tsgi serve --control PATH`): `tsgi ctl` lists its workers,
// scales them (as SIGTTIN / SIGTTOU do) and reloads them (as SIGHUP does), with no pid to look up.
import type { ControlRequest, ControlResponse, WorkerInfo } from '../common/control.js';
import type { Logger } from '../common/log.js';

/** What the socket acts on: the supervisor (--workers), or the one process (list only). */
export interface WorkerControl {
  list(): { workers: WorkerInfo[]; generation: number; target: number };
  /** Workers more (or fewer); null without --workers. */
  scale: ((delta: number) => void) | null;
  /** A rolling reload; null without --workers. */
  reload: (() => void) | null;
}

/** The most workers `scale` may ask for at once (--workers' own maximum). */
const MAX_WORKERS = 256;

export function handleServeControl(c: WorkerControl, req: ControlRequest, log: Logger): ControlResponse {
  const op = (req as { op?: unknown }).op;
  const answer = (): ControlResponse => ({ ok: true, ...c.list() });
  switch (op) {
    case 'list':
      return answer();
    case 'scale': {
      if (c.scale === null) return { ok: false, error: 'scale needs --workers (a supervisor); this backend is one process' };
      const { target } = c.list();
      let delta: number;
      if (req.workers !== undefined) {
        if (!Number.isInteger(req.workers) || req.workers < 1 || req.workers > MAX_WORKERS) {
          return { ok: false, error: `scale: workers must be an integer from 1 to ${MAX_WORKERS}, got ${JSON.stringify(req.workers)}` };
        }
        delta = req.workers - target;
      } else if (Number.isInteger(req.delta) && req.delta !== 0 && target + req.delta! >= 1 && target + req.delta! <= MAX_WORKERS) {
        delta = req.delta!;
      } else {
        return { ok: false, error: `scale: give workers N (1-${MAX_WORKERS}) or a delta (+N or -N) that keeps 1 to ${MAX_WORKERS}; the target is ${target}` };
      }
      log.info(`control: scale by ${delta > 0 ? '+' : ''}${delta}`);
      if (delta !== 0) c.scale(delta);
      return answer();
    }
    case 'reload':
      if (c.reload === null) return { ok: false, error: 'reload needs --workers (a supervisor); this backend is one process' };
      log.info('control: reload');
      c.reload();
      return answer();
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(op)} for a backend's control socket; use list, scale or reload`
        + (op === 'add' || op === 'drain' || op === 'remove' ? ` (${op} is an op of a front's control socket: tsgi front --control PATH)` : '') };
  }
}
