// tsgi gateway app for bench:swap: GET answers its version (BENCH_APP_VERSION) and pid, POST
// echoes the body, so the load can check every answer while backends come and go.
const VERSION = process.env.BENCH_APP_VERSION ?? 'v?';

async function* echo(input) {
  for await (const chunk of input) yield chunk;
}

export default function application(environ, startResponse) {
  if (environ.REQUEST_METHOD === 'POST') {
    const headers = [['Content-Type', 'application/octet-stream']];
    if (environ.CONTENT_LENGTH) headers.push(['Content-Length', environ.CONTENT_LENGTH]);
    startResponse('200 OK', headers);
    return echo(environ['tsgi.input']);
  }
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [`${VERSION} pid=${process.pid}\n`];
}
