// One Express app for bench/express.ts, run both ways: by `tsgi serve` (default export) and on
// plain node:http (`node express-hello.js 127.0.0.1:PORT`).
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import express from 'express';

const app = express();
app.get('/hello', (req, res) => {
  res.type('text').send('Hello, World!\n');
});
export default app;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const listen = process.argv[2] ?? '127.0.0.1:8080';
  const i = listen.lastIndexOf(':');
  const server = createServer(app);
  server.keepAliveTimeout = 65_000;
  server.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => {
    process.stderr.write(`express on node:http listening on ${listen}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
