// An Express app, run by tsgi unchanged: `tsgi serve examples/express/app.js --socket /tmp/express.sock`.
// tsgi recognises an Express (or Connect) app by its handle(), use() and listen() methods and
// runs it through fromNodeHandler: req and res are node:http's own classes.
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import express from 'express';

const app = express();
const stats = { streams: 0, closedEarly: 0, working: 0 };

app.get('/', (req, res) => {
  res.type('text').send('Hello from Express on tsgi\n');
});

app.get('/api/users/:id', (req, res) => {
  res.json({ id: req.params.id, url: req.url, ip: req.ip, protocol: req.protocol, host: req.hostname });
});

app.get('/api/search', (req, res) => {
  res.json({ q: req.query.q ?? '', page: Number(req.query.page ?? 1) });
});

// express.json() parses the body (and answers 400 itself for malformed JSON).
app.post('/api/echo', express.json({ limit: '1mb' }), (req, res) => {
  res.status(201).json({ json: req.body });
});

// The body is piped through a hash as it arrives: an upload of any size, never buffered.
app.post('/api/digest', (req, res, next) => {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  req.on('end', () => res.json({ bytes, sha256: hash.digest('hex') }));
  req.on('error', next);
});

// The request piped straight back (req.pipe(res)): streams both ways, paced by res.write's
// backpressure and 'drain'.
app.post('/api/pipe', (req, res) => {
  res.type(req.get('content-type') ?? 'application/octet-stream');
  req.pipe(res);
});

// Cookies: two Set-Cookie headers in one response.
app.post('/api/login', (req, res) => {
  res.cookie('session', 'abc123', { httpOnly: true });
  res.cookie('theme', 'dark');
  res.send('logged in\n');
});

// A response written over time with res.write: ?n=5 lines, one every 100 ms; when the client
// goes away, res emits 'close' and the timer stops.
app.get('/ticks', (req, res) => {
  const n = Math.min(Number(req.query.n ?? 5), 100);
  res.type('text');
  let i = 0;
  const timer = setInterval(() => {
    res.write(`tick ${++i}\n`);
    if (i >= n) {
      clearInterval(timer);
      res.end();
    }
  }, 100);
  res.on('close', () => clearInterval(timer));
});

// A stream that writes a line, then one more each time POST /stream/next is called, until
// `end`; a client that leaves is counted in /stats (res 'close' before the end).
const streams = new Set();
app.get('/stream', (req, res) => {
  stats.streams++;
  res.type('text');
  res.write('started\n');
  const s = { res };
  streams.add(s);
  res.on('close', () => {
    streams.delete(s);
    if (!res.writableEnded) stats.closedEarly++;
  });
});
app.post('/stream/next', express.text(), (req, res) => {
  for (const { res: out } of streams) {
    if (req.body === 'end') out.end('ended\n');
    else out.write(`${req.body}\n`);
  }
  res.json({ delivered: streams.size });
});

// Slow work that stops when the client leaves (req 'close' / res 'close'): ?ms=2000.
app.get('/api/slow', (req, res) => {
  stats.working++;
  const ms = Math.min(Number(req.query.ms ?? 1000), 60_000);
  const timer = setTimeout(() => res.json({ waited: ms }), ms);
  res.on('close', () => {
    clearTimeout(timer);
    if (!res.writableEnded) stats.closedEarly++;
  });
});

// res.sendFile (the send package: a file stream piped into res, Range, ETag): this file.
app.get('/source', (req, res, next) => {
  res.type('text').sendFile(fileURLToPath(import.meta.url), (err) => { if (err) next(err); });
});

app.get('/stats', (req, res) => res.json({ open: streams.size, ...stats }));

app.get('/api/fail', () => {
  throw new Error('something broke');
});

// Express's 404 (its final handler) answers any other path. An error handler has four arguments.
app.use((err, req, res, _next) => {
  res.status(err.status ?? 500).json({ error: err.expose ? err.message : 'internal error', message: err.message });
});

export default app;
