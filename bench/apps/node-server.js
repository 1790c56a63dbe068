// A plain node:http server running one of node-handlers.js: the "bare" configuration (on
// TCP) and the backend of the Node and nginx reverse proxies (on a Unix socket).
//   node node-server.js hello|download|echo 127.0.0.1:PORT|unix:PATH
import { createServer } from 'node:http';
import * as handlers from './node-handlers.js';

const [name, listen] = process.argv.slice(2);
const handler = handlers[name];
if (typeof handler !== 'function' || listen === undefined) {
  process.stderr.write('usage: node node-server.js hello|download|echo HOST:PORT|unix:PATH\n');
  process.exit(2);
}
const server = createServer(handler);
server.keepAliveTimeout = 65_000;
// A deep accept queue, as tsgi's front listens with (4096): a proxy in front opening hundreds of
// connections at once must not see EAGAIN on the Unix socket, and 1,000 clients connecting at
// once must not overflow Node's default of 511 on TCP (SYN retransmits: seconds-long p99s).
if (listen.startsWith('unix:')) server.listen({ path: listen.slice(5), backlog: 4096 });
else {
  const i = listen.lastIndexOf(':');
  server.listen({ port: Number(listen.slice(i + 1)), host: listen.slice(0, i), backlog: 4096 });
}
server.on('listening', () => process.stderr.write(`node-server ${name} listening on ${listen}\n`));
process.on('SIGTERM', () => process.exit(0));
