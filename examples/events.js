// Server-sent events: the head goes out at once, with write('') (before the first event exists:
// the browser's EventSource opens), then the time as one event every ?every=MS milliseconds
// (1000), ?count=N of them (no end), until the client goes away.
//   tsgi serve examples/events.js --socket /tmp/events.sock
//   curl -N 'http://127.0.0.1:8080/?count=3'
const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

export default async function* application(environ, startResponse) {
  const query = new URLSearchParams(environ.QUERY_STRING);
  const every = Number(query.get('every') ?? 1000);
  const count = Number(query.get('count') ?? Infinity);
  const signal = environ['tsgi.signal'];
  const write = startResponse('200 OK', [['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-cache']]);
  write('');
  for (let id = 1; id <= count; id++) {
    await sleep(every, signal);
    if (signal.aborted) return;
    yield `id: ${id}\ndata: ${new Date().toISOString()}\n\n`;
  }
}
