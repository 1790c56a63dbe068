// node:http handlers for the three workloads, the same responses as the tsgi and WSGI apps:
// hello, a 1 MiB download, and an echo of the request body (read whole, then sent back).
import { HELLO, ONE_MIB } from './payload.js';

export function hello(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': HELLO.length });
  res.end(HELLO);
}

export function download(req, res) {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': ONE_MIB.length });
  res.end(ONE_MIB);
}

export function echo(req, res) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { 'Content-Type': req.headers['content-type'] ?? 'application/octet-stream', 'Content-Length': body.length });
    res.end(body);
  });
}
