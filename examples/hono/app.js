// A Hono app, run by tsgi unchanged: `tsgi serve examples/hono/app.js --socket /tmp/hono.sock`.
// It shows JSON, path params, queries, request bodies (parsed, and streamed through a hash),
// cookies, a streamed response, and a server-sent-events feed that notices when a client leaves.
import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { stream, streamSSE } from 'hono/streaming';

const app = new Hono();

app.get('/', (c) => c.text('Hello from Hono on tsgi\n'));

app.get('/api/users/:id', (c) => c.json({ id: c.req.param('id'), path: c.req.path }));

// ?q=tsgi&tag=a&tag=b&page=2
app.get('/api/search', (c) => c.json({
  q: c.req.query('q') ?? '',
  tags: c.req.queries('tag') ?? [],
  page: Number(c.req.query('page') ?? 1),
}));

// A JSON body comes back parsed; any other body is read as text.
app.post('/api/echo', async (c) => {
  if ((c.req.header('content-type') ?? '').startsWith('application/json')) {
    return c.json({ json: await c.req.json() }, 201);
  }
  const text = await c.req.text();
  return c.json({ text, length: text.length });
});

// The body is streamed through a hash as it arrives: an upload of any size, never buffered.
app.post('/api/digest', async (c) => {
  const hash = createHash('sha256');
  let bytes = 0;
  if (c.req.raw.body !== null) {
    for await (const chunk of c.req.raw.body) {
      hash.update(chunk);
      bytes += chunk.length;
    }
  }
  return c.json({ bytes, sha256: hash.digest('hex') });
});

// The request body streamed straight back as the response body, both ways at once.
app.post('/api/pipe', (c) => new Response(c.req.raw.body, {
  headers: { 'content-type': c.req.header('content-type') ?? 'application/octet-stream' },
}));

// Two Set-Cookie headers in one response; /api/whoami reads them back.
app.post('/api/login', (c) => {
  setCookie(c, 'session', 'abc123', { httpOnly: true, path: '/' });
  setCookie(c, 'theme', 'dark', { path: '/' });
  return c.text('logged in\n');
});
app.get('/api/whoami', (c) => c.json({ cookies: getCookie(c) }));

// A response written over time: ?n=5 lines, one every 100 ms; stops if the client leaves.
app.get('/ticks', (c) => stream(c, async (s) => {
  const n = Math.min(Number(c.req.query('n') ?? 5), 100);
  for (let i = 1; i <= n && !s.aborted; i++) {
    await s.write(`tick ${i}\n`);
    await s.sleep(100);
  }
}));

// A tiny pub/sub over server-sent events: GET /events subscribes (an event 'ready' first), POST
// /events publishes its body to every subscriber; a client that leaves is counted in /stats.
const subscribers = new Set();
const stats = { subscribed: 0, left: 0, working: 0, cancelled: 0 };

app.get('/events', (c) => streamSSE(c, async (s) => {
  const sub = { queue: [], wake: null };
  subscribers.add(sub);
  stats.subscribed++;
  s.onAbort(() => {
    stats.left++;
    subscribers.delete(sub);
    sub.wake?.();
  });
  await s.writeSSE({ event: 'ready', data: String(stats.subscribed) });
  while (!s.aborted) {
    if (sub.queue.length === 0) await new Promise((resolve) => { sub.wake = resolve; });
    sub.wake = null;
    for (const data of sub.queue.splice(0)) {
      await s.writeSSE({ event: 'message', data });
      if (data === 'bye') {
        subscribers.delete(sub);
        return;
      }
    }
  }
}));

app.post('/events', async (c) => {
  const data = await c.req.text();
  for (const sub of subscribers) {
    sub.queue.push(data);
    sub.wake?.();
  }
  return c.json({ delivered: subscribers.size });
});

// Slow work that stops as soon as the client goes away (the Request's signal): ?ms=2000.
app.get('/api/slow', async (c) => {
  const signal = c.req.raw.signal;
  const ms = Math.min(Number(c.req.query('ms') ?? 1000), 60_000);
  stats.working++;
  const finished = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(false); }, { once: true });
  });
  if (!finished) {
    stats.cancelled++;
    return c.body(null, 499);
  }
  return c.json({ waited: ms });
});

app.get('/stats', (c) => c.json({ subscribers: subscribers.size, ...stats }));

app.get('/api/fail', () => {
  throw new Error('something broke');
});

app.onError((err, c) => c.json({ error: err.message }, 500));
app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));

export default app;
