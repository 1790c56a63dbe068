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
// A deep accept queue on the Unix socket: a proxy in front opening hundreds of connections at
// once must not see EAGAIN (TCP listeners keep Node's default, as tsgi's front does).
if (listen.startsWith('unix:')) server.listen({ path: listen.slice(5), backlog: 4096 });
else {
  const i = listen.lastIndexOf(':');
  server.listen(Number(listen.slice(i + 1)), listen.slice(0, i));
}
server.on('listening', () => process.stderr.write(`node-server ${name} listening on ${listen}\n`));
process.on('SIGTERM', () => process.exit(0));
