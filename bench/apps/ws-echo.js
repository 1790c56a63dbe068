// The WebSocket app of `npm run bench:ws`: an unchanged ws app on node:http (WebSocketServer({
// server }) echoing every message). Exported as the http.Server for `tsgi serve`; run as
// `node ws-echo.js unix:PATH|HOST:PORT` it listens itself (the direct and nginx cells).
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const server = createServer((req, res) => res.end('ws echo\n'));
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
export default server;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const listen = process.argv[2];
  if (listen === undefined) {
    process.stderr.write('usage: node ws-echo.js unix:PATH|HOST:PORT\n');
    process.exit(2);
  }
  if (listen.startsWith('unix:')) server.listen({ path: listen.slice(5), backlog: 4096 });
  else {
    const i = listen.lastIndexOf(':');
    server.listen(Number(listen.slice(i + 1)), listen.slice(0, i));
  }
  server.on('listening', () => process.stderr.write(`ws-echo listening on ${listen}\n`));
  process.on('SIGTERM', () => process.exit(0));
}
