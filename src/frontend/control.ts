// The front's control socket (`--control PATH`): backends register and withdraw themselves,
// and `tsgi ctl` lists, adds, drains and removes them, all while the front keeps serving. An
// address `tsgi ctl drain` drained is held: its backend's announcements do not bring it back
// (until `tsgi ctl add`, or a registration of a restarted backend).
// With --processes N the primary owns the socket, asks every process, and merges the answers.
// Whoever can open the socket chooses where requests go: an `add` is admitted only for a backend
// address that --control-allow lists (Unix sockets and loopback by default).
import { isIP, type Socket } from 'node:net';
import { type Address, parseAddress, formatAddress } from '../common/address.js';
import { type BackendInfo, type ControlHandler, ControlListener, type ControlRequest, type ControlResponse } from '../common/control.js';
import type { Logger } from '../common/log.js';
import { ProxyTrust } from '../common/trust-proxy.js';
import { mergeBackendRows } from './observe/merge.js';
import type { Pool } from './upstream/pool.js';

export function describeBackends(pool: Pool): BackendInfo[] {
  const rows: BackendInfo[] = pool.backends.map((b) => ({
    address: b.name,
    state: b.status,
    source: b.source,
    connections: b.links.filter((l) => l.state === 'ready' || l.state === 'draining').length,
    inFlight: b.inFlight,
    requests: b.requests,
    failures: b.failures,
  }));
  // Held addresses whose backend finished draining: listed as `drained` until `tsgi ctl add`.
  for (const name of pool.held.keys()) {
    if (!pool.backends.some((b) => b.name === name && b.state !== 'removed')) {
      rows.push({ address: name, state: 'drained', source: 'held', connections: 0, inFlight: 0, requests: 0, failures: 0 });
    }
  }
  return rows;
}

export function handleControl(pool: Pool, req: ControlRequest, log: Logger): ControlResponse {
  switch (req.op) {
    case 'list':
      return { ok: true, backends: describeBackends(pool), queued: pool.queued };
    case 'add':
    case 'drain':
    case 'remove': {
      if (typeof req.address !== 'string') return { ok: false, error: `${req.op} needs an address` };
      let address;
      try {
        address = parseAddress(req.address, 'address', true);
      } catch (err) {
        return { ok: false, error: (err as Error).message };
      }
      const name = formatAddress(address);
      const registration = typeof req.registration === 'string' ? req.registration : undefined;
      if (req.op === 'add') {
        if (registration !== undefined) {
          // A backend announcing itself: not while `tsgi ctl drain` holds the address for this
          // registration; a new registration (the backend restarted) ends the hold.
          const held = pool.held.get(name);
          if (held !== undefined && held === registration) return { ok: true, held: true, backends: describeBackends(pool) };
          if (held !== undefined) {
            pool.held.delete(name);
            log.info(`control: ${name} registered anew (the backend restarted); no longer held drained`);
          }
          pool.registrations.set(name, registration);
        } else if (pool.held.delete(name)) {
          log.info(`control: add ${name}: no longer held drained`);
        }
        try {
          pool.add(address, 'control');
        } catch (err) {
          return { ok: false, error: (err as Error).message };
        }
        return { ok: true, backends: describeBackends(pool) };
      }
      const backend = pool.find(address);
      if (backend === undefined) {
        if (req.op === 'remove' && pool.held.delete(name)) return { ok: true, backends: describeBackends(pool) };
        return { ok: false, error: `no backend ${name}` };
      }
      log.info(`control: ${req.op} ${backend.name}${registration !== undefined ? ' (the backend withdraws)' : ''}`);
      if (req.op === 'drain') {
        // `tsgi ctl drain` holds the address; a backend withdrawing itself (graceful stop) does not.
        if (registration === undefined) pool.held.set(name, pool.registrations.get(name) ?? null);
        backend.drain();
      } else {
        pool.held.delete(name);
        backend.remove();
      }
      return { ok: true, backends: describeBackends(pool) };
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify((req as { op?: unknown }).op)}; use list, add, drain or remove`
        + ((req as { op?: unknown }).op === 'scale' || (req as { op?: unknown }).op === 'reload' ? ' (scale and reload are ops of a backend\'s control socket: tsgi serve --control PATH)' : '') };
  }
}

/**
 * One answer from the answers of every front process: the backends by address, their counts
 * summed and their states joined when the processes disagree ('up/connecting'); ok only if every
 * process said ok.
 */
export function mergeAnswers(answers: ControlResponse[]): ControlResponse {
  const failed = answers.find((a) => !a.ok);
  if (failed !== undefined) return failed;
  const merged: ControlResponse = { ok: true };
  const lists = answers.flatMap((a) => (a.backends === undefined ? [] : [a.backends]));
  if (lists.length > 0) {
    merged.backends = mergeBackendRows(lists, 'address', ['connections', 'inFlight', 'requests', 'failures']);
  }
  if (answers.some((a) => a.held === true)) merged.held = true;
  if (answers.some((a) => a.queued !== undefined)) merged.queued = answers.reduce((n, a) => n + (a.queued ?? 0), 0);
  return merged;
}

/** --control-allow's default: backends on Unix sockets and on loopback addresses. */
export const CONTROL_ALLOW_DEFAULT: readonly string[] = ['unix', 'loopback'];

/**
 * Why --control-allow refuses to add a backend at this address, or null if it admits it. A host
 * name is refused (it could resolve elsewhere by the time the front connects), except
 * `localhost` where loopback is allowed.
 */
export function controlRefusal(address: Address, allow: ProxyTrust): string | null {
  const name = formatAddress(address);
  const admitted = `--control-allow admits ${allow.entries.join(', ') || 'nothing'}`;
  if (address.kind === 'unix') return allow.trusts(undefined, true) ? null : `${name} is not allowed: ${admitted}`;
  const host = address.host.toLowerCase();
  if (isIP(host) !== 0) return allow.trusts(host, false) ? null : `${name} is not allowed: ${admitted}`;
  if (host === 'localhost' && allow.trusts('127.0.0.1', false) && allow.trusts('::1', false)) return null;
  return `${name} is not allowed: ${admitted}, checked against IP addresses; give ${host}'s address instead of its name`;
}

/** The front's control socket: --control-allow checked on each `add`, then `handle` (this process's pool, or all of them: the primary). */
export class ControlServer {
  readonly #listener: ControlListener;
  readonly #log: Logger;
  readonly #allow: ProxyTrust;

  /** `path`: the Unix socket; null when requests come only over --control-listen (accept()). */
  constructor(path: string | null, handle: ControlHandler, log: Logger, allow: readonly string[] = CONTROL_ALLOW_DEFAULT) {
    this.#log = log;
    this.#allow = new ProxyTrust(allow);
    this.#listener = new ControlListener(path, (req) => this.#refuse(req) ?? handle(req), log);
  }

  /** The answer to an `add` that --control-allow refuses (logged), or null. */
  #refuse(req: ControlRequest): ControlResponse | null {
    if (req === null || typeof req !== 'object' || req.op !== 'add' || typeof req.address !== 'string') return null;
    let address;
    try {
      address = parseAddress(req.address, 'address', true);
    } catch {
      return null; // the handler says what is wrong with it
    }
    const why = controlRefusal(address, this.#allow);
    if (why === null) return null;
    this.#log.warn(`control: refused add: ${why}`);
    return { ok: false, error: why };
  }

  /** Serves a connection accepted elsewhere (--control-listen's TLS listener). */
  accept(socket: Socket): void {
    this.#listener.accept(socket);
  }

  listen(socketMode?: number): Promise<void> {
    return this.#listener.listen(socketMode);
  }

  close(): Promise<void> {
    return this.#listener.close();
  }
}
