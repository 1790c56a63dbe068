// A streaming response: ten lines, one every 100 ms; stops early if the client goes away.
const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

export default async function* application(environ, startResponse) {
  const signal = environ['tsgi.signal'];
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  for (let i = 1; i <= 10 && !signal.aborted; i++) {
    yield `line ${i}\n`;
    await sleep(100, signal);
  }
}
