// The slow-clients download, as a tsgi app and as a bare node:http server: ?mb=N (default 20)
// mebibytes, the same 1 MiB buffer (built once) again and again, with a Content-Length.
//   tsgi serve bench/apps/big-download.js ...          (the tsgi gateway app)
//   node bench/apps/big-download.js 127.0.0.1:PORT|unix:PATH   (bare node:http, from memory)
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { ONE_MIB } from './payload.js';

const size = (query) => Number(new URLSearchParams(query).get('mb') ?? 20);

export default function application(environ, startResponse) {
  const mb = size(environ.QUERY_STRING);
  startResponse('200 OK', [['Content-Type', 'application/octet-stream'], ['Content-Length', String(mb * ONE_MIB.length)]]);
  return Array.from({ length: mb }, () => ONE_MIB);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const listen = process.argv[2] ?? '127.0.0.1:0';
  const server = createServer((req, res) => {
    const mb = size(req.url.slice(req.url.indexOf('?') + 1));
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': mb * ONE_MIB.length });
    // Each write is the shared buffer: node:http keeps a reference, never a copy.
    let i = 0;
    const more = () => {
      while (i < mb) {
        i++;
        if (!res.write(ONE_MIB)) return res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  server.keepAliveTimeout = 65_000;
  if (listen.startsWith('unix:')) server.listen({ path: listen.slice(5), backlog: 4096 });
  else server.listen(Number(listen.slice(listen.lastIndexOf(':') + 1)), listen.slice(0, listen.lastIndexOf(':')));
  server.on('listening', () => process.stderr.write(`big-download listening on ${listen}\n`));
  process.on('SIGTERM', () => process.exit(0));
}
