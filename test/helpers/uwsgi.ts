// Talking uwsgi by hand, as nginx's uwsgi_pass does: build a packet (header, vars, body), send
// it on a fresh connection, and collect everything the server writes until it closes.
import { connect, type Socket } from 'node:net';

/** A packet written out by hand (not with the codec under test): header, vars, then `body`. */
export function packet(vars: [string, string][], body: Buffer = Buffer.alloc(0), modifier1 = 0): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of vars) {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    const kl = Buffer.alloc(2);
    kl.writeUInt16LE(kb.length);
    const vl = Buffer.alloc(2);
    vl.writeUInt16LE(vb.length);
    parts.push(kl, kb, vl, vb);
  }
  const block = Buffer.concat(parts);
  const header = Buffer.from([modifier1, 0, 0, 0]);
  header.writeUInt16LE(block.length, 1);
  return Buffer.concat([header, block, body]);
}

export interface RawResponse {
  raw: Buffer;
  status: number;
  statusLine: string;
  /** Lower-case names. */
  headers: Map<string, string>;
  body: Buffer;
}

/** Splits a raw HTTP/1.1 response (a close-delimited or Content-Length body). */
export function parseRaw(raw: Buffer): RawResponse {
  const split = raw.indexOf('\r\n\r\n');
  if (split === -1) throw new Error(`no complete response head in ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const [statusLine, ...lines] = raw.subarray(0, split).toString('latin1').split('\r\n');
  const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { raw, status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1]), statusLine: statusLine!, headers, body: raw.subarray(split + 4) };
}

/** Connects to a Unix socket path (or HOST:PORT). */
export function dial(where: string): Socket {
  const m = /^(.*):(\d+)$/.exec(where);
  return m !== null && !where.startsWith('/') ? connect(Number(m[2]), m[1]) : connect(where);
}

/** Sends `bytes` on a new connection and resolves with all the server sent until it closed. */
export function exchange(where: string, bytes: Buffer | Buffer[], timeoutMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dial(where);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the uwsgi server did not close the connection within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) socket.write(b);
  });
}

/** One request: the vars (and body), the response split. */
export async function request(where: string, vars: [string, string][], body?: Buffer): Promise<RawResponse> {
  return parseRaw(await exchange(where, packet(vars, body)));
}
