// The load generator of `npm run bench:ws`, in its own process (the ws client):
//   node ws-load.js echo URL K SECONDS [BYTES]  K connections, each sending a message of BYTES
//       (32) and awaiting its echo, in a loop, for SECONDS; prints `messages N errors E seconds S`.
//   node ws-load.js idle URL N  opens N connections, prints `open N`, and holds them until SIGTERM.
import WebSocket from 'ws';

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function openMany(url: string, n: number): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) out.push(...await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => open(url))));
  return out;
}

async function echo(url: string, k: number, seconds: number, bytes: number): Promise<void> {
  const sockets = await openMany(url, k);
  const payload = Buffer.alloc(bytes, 'x');
  let messages = 0;
  let errors = 0;
  const t0 = process.hrtime.bigint();
  const end = Date.now() + seconds * 1000;
  await Promise.all(sockets.map((ws) => new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer) => {
      if (data.length === bytes) messages++;
      else errors++;
      if (Date.now() < end) ws.send(payload);
      else resolve();
    });
    ws.once('close', () => { errors++; resolve(); });
    ws.send(payload);
  })));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const ws of sockets) ws.terminate();
  process.stdout.write(`messages ${messages} errors ${errors} seconds ${elapsed.toFixed(3)}\n`);
}

async function idle(url: string, n: number): Promise<void> {
  const sockets = await openMany(url, n);
  let closed = 0;
  for (const ws of sockets) ws.once('close', () => { closed++; });
  process.stdout.write(`open ${sockets.length}\n`);
  process.once('SIGTERM', () => {
    for (const ws of sockets) ws.terminate();
    process.stdout.write(`closed early ${closed}\n`);
    process.exit(0);
  });
  setInterval(() => {}, 1 << 30);
}

const [mode, url, a, b, c] = process.argv.slice(2);
const run = mode === 'echo' ? echo(url!, Number(a), Number(b), Number(c ?? 32)) : mode === 'idle' ? idle(url!, Number(a)) : null;
if (run === null) {
  process.stderr.write('usage: node ws-load.js echo URL K SECONDS [BYTES] | idle URL N\n');
  process.exit(2);
}
run.catch((err: unknown) => {
  process.stderr.write(`ws-load: ${(err as Error).message}\n`);
  process.exit(1);
});
