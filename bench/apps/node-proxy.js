// What a Node user would write instead of tsgi: a node:http front that forwards each request
// with undici (a keep-alive Pool over the backend's Unix socket), streaming both bodies.
//   node node-proxy.js 127.0.0.1:PORT /path/to/backend.sock
import { createServer } from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te',
  'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

const [listen, socketPath] = process.argv.slice(2);
if (listen === undefined || socketPath === undefined) {
  process.stderr.write('usage: node node-proxy.js HOST:PORT BACKEND_SOCKET\n');
  process.exit(2);
}
const pool = new Pool('http://localhost', { socketPath, pipelining: 1, keepAliveTimeout: 60_000 });

function forward(req, res) {
  const raw = req.rawHeaders;
  const headers = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
  }
  const length = req.headers['content-length'];
  const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
  pool.request({ path: req.url, method: req.method, headers, body: hasBody ? req : null }).then(
    ({ statusCode, headers: upstream, body }) => {
      const out = {};
      for (const [name, value] of Object.entries(upstream)) if (!HOP_BY_HOP.has(name)) out[name] = value;
      res.writeHead(statusCode, out);
      pipeline(body, res, () => {});
    },
    (err) => {
      if (res.headersSent) return res.destroy(err);
      res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end('bad gateway\n');
    },
  );
}

const server = createServer(forward);
server.keepAliveTimeout = 65_000;
const i = listen.lastIndexOf(':');
server.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => {
  process.stderr.write(`node-proxy listening on ${listen} → unix:${socketPath}\n`);
});
process.on('SIGTERM', () => process.exit(0));
