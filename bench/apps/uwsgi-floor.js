// The floor of a Node uwsgi backend, for bench/uwsgi-cost.ts: a net.Server on a Unix socket that
// answers its connection's first read with a fixed hello response and closes it, without
// reading the packet. Nothing a Node server does per connection can cost less than this.
//   node bench/apps/uwsgi-floor.js /path/to/app.sock
import { createServer } from 'node:net';

const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<h1>Hello, web</h1>');

function answer() {
  this.write(RESPONSE);
  this.destroy();
}

const server = createServer((socket) => {
  socket.on('data', answer);
  socket.on('error', () => {});
});
server.listen({ path: process.argv[2], backlog: 4096 });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
