// What the always-on request id costs the front per request: RequestIds.assign() on a typical
// browser request head without the header (a new id: the counter path) and with one (the scan),
// plus addTo() for a new one, against the head translation (requestHead) every request already
// pays. Prints ns per call; run with `node dist/bench/request-id.js`.
import type { Socket } from 'node:net';
import { requestHead } from '../src/frontend/http/request-head.js';
import type { HttpRequest } from '../src/frontend/http/server.js';
import { RequestIds } from '../src/frontend/observe/request-id.js';

const HEADERS = ['Host', 'example.com', 'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0', 'Accept', 'text/html,*/*;q=0.8',
  'Accept-Language', 'en-US,en;q=0.9', 'Accept-Encoding', 'gzip, deflate, br', 'Cookie', 'session=abc123; theme=dark',
  'Connection', 'keep-alive'];
const socket = { remoteAddress: '127.0.0.1', remotePort: 50000, localAddress: '127.0.0.1', localPort: 8080 } as Socket;

function fakeRequest(headers: string[]): HttpRequest {
  return { method: 'GET', url: '/page?x=1', httpVersion: '1.1', rawHeaders: headers, socket, requestId: '' } as unknown as HttpRequest;
}

function measure(name: string, n: number, fn: () => void): number {
  for (let i = 0; i < n / 10; i++) fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const ns = Number(process.hrtime.bigint() - t0) / n;
  process.stdout.write(`${name.padEnd(48)} ${ns.toFixed(1).padStart(8)} ns/call\n`);
  return ns;
}

const N = 2_000_000;
const ids = new RequestIds('x-request-id');
const without = fakeRequest(HEADERS);
const withId = fakeRequest([...HEADERS, 'X-Request-Id', 'f3b1c2d4-0000-4000-8000-123456789abc']);
const base = measure('requestHead (what every request pays already)', N / 4, () => { requestHead(without); });
measure('assign, no id sent (counter id)', N, () => { ids.assign(without); });
measure('assign, id sent (scan, kept)', N, () => { ids.assign(withId); });
const full = measure('requestHead + assign + addTo, no id sent', N / 4, () => {
  const h = requestHead(without).head;
  if (ids.assign(without)) ids.addTo(h, without.requestId);
});
process.stdout.write(`the request id adds ${(full - base).toFixed(1)} ns to a request's head translation (${((full - base) / base * 100).toFixed(1)} %)\n`);
process.stdout.write(`example id: ${without.requestId}\n`);
