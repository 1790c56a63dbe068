// The front's control socket (`--control PATH`): backends register and withdraw themselves,
// and `tsgi ctl` lists, adds, drains and removes them, all while the front keeps serving.
// With --processes N the primary owns the socket, asks every process, and merges the answers.
// Whoever can open the socket chooses where requests go: an `add` is admitted only for a backend
// address that --control-allow lists (Unix sockets and loopback by default).
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { type Address, parseAddress, formatAddress } from '../common/address.js';
import type { BackendInfo, ControlRequest, ControlResponse } from '../common/control.js';
import { closeListener, listenOn } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import { ProxyTrust } from '../common/trust-proxy.js';
import { mergeBackendRows } from './observe/merge.js';
import type { Pool } from './upstream/pool.js';

const MAX_LINE = 64 * 1024;

export function describeBackends(pool: Pool): BackendInfo[] {
  return pool.backends.map((b) => ({
    address: b.name,
    state: b.status,
    source: b.source,
    connections: b.links.filter((l) => l.state === 'ready' || l.state === 'draining').length,
    inFlight: b.inFlight,
    requests: b.requests,
    failures: b.failures,
  }));
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
      if (req.op === 'add') {
        pool.add(address, 'control');
        return { ok: true, backends: describeBackends(pool) };
      }
      const backend = pool.find(address);
      if (backend === undefined) return { ok: false, error: `no backend ${formatAddress(address)}` };
      log.info(`control: ${req.op} ${backend.name}`);
      if (req.op === 'drain') backend.drain();
      else backend.remove();
      return { ok: true, backends: describeBackends(pool) };
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify((req as { op?: unknown }).op)}; use list, add, drain or remove` };
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

/** Answers one control request: in this process (its pool), or from all of them (the primary). */
export type ControlHandler = (req: ControlRequest) => ControlResponse | Promise<ControlResponse>;

export class ControlServer {
  readonly #server: Server;
  readonly #path: string;
  readonly #log: Logger;
  readonly #allow: ProxyTrust;

  constructor(path: string, handle: ControlHandler, log: Logger, allow: readonly string[] = CONTROL_ALLOW_DEFAULT) {
    this.#path = path;
    this.#log = log;
    this.#allow = new ProxyTrust(allow);
    this.#server = createServer((socket) => this.#serve(socket, handle));
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

  async listen(socketMode?: number): Promise<void> {
    await listenOn(this.#server, { kind: 'unix', path: this.#path }, socketMode);
    this.#log.info(`control socket on ${this.#path}`);
  }

  #serve(socket: Socket, handle: ControlHandler): void {
    let buffer = '';
    // Answers go out in the order of the requests, even when one takes longer (the primary's).
    let previous: Promise<void> = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_LINE) {
        socket.end(JSON.stringify({ ok: false, error: 'request line too long' }) + '\n');
        return;
      }
      let nl;
      while ((nl = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let answer: Promise<ControlResponse>;
        try {
          const req = JSON.parse(line) as ControlRequest;
          const refused = this.#refuse(req);
          answer = refused !== null ? Promise.resolve(refused) : Promise.resolve(handle(req)).catch((err: Error) => ({ ok: false, error: err.message }));
        } catch {
          answer = Promise.resolve({ ok: false, error: 'malformed request: send one JSON object per line, e.g. {"op":"list"}' });
        }
        previous = previous.then(() => answer).then((a) => { socket.write(JSON.stringify(a) + '\n'); });
      }
    });
  }

  close(): Promise<void> {
    return closeListener(this.#server);
  }
}
