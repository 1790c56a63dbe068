// The front's control socket (`--control PATH`): backends register and withdraw themselves,
// and `tsgi ctl` lists, adds, drains and removes them, all while the front keeps serving.
import { createServer, type Server, type Socket } from 'node:net';
import { parseAddress, formatAddress } from '../common/address.js';
import type { BackendInfo, ControlRequest, ControlResponse } from '../common/control.js';
import { closeListener, listenOn } from '../common/listen.js';
import type { Logger } from '../common/log.js';
import type { Pool } from './pool.js';

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

export class ControlServer {
  readonly #server: Server;
  readonly #path: string;
  readonly #log: Logger;

  constructor(path: string, pool: Pool, log: Logger) {
    this.#path = path;
    this.#log = log;
    this.#server = createServer((socket) => this.#serve(socket, pool));
  }

  async listen(socketMode?: number): Promise<void> {
    await listenOn(this.#server, { kind: 'unix', path: this.#path }, socketMode);
    this.#log.info(`control socket on ${this.#path}`);
  }

  #serve(socket: Socket, pool: Pool): void {
    let buffer = '';
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
        let answer: ControlResponse;
        try {
          answer = handleControl(pool, JSON.parse(line) as ControlRequest, this.#log);
        } catch {
          answer = { ok: false, error: 'malformed request: send one JSON object per line, e.g. {"op":"list"}' };
        }
        socket.write(JSON.stringify(answer) + '\n');
      }
    });
  }

  close(): Promise<void> {
    return closeListener(this.#server);
  }
}
