// The backend app of bench:abuse (a tsgi gateway app):
//   GET /kib?n=N     N KiB (default 1), one shared 64 KiB buffer sliced, with a Content-Length
//   POST /read       reads the whole body, answers its length
//   anything else    answers "ok" at once, without reading a request body
const BLOCK = Buffer.alloc(64 * 1024, 0x61);

function* kib(n) {
  let left = n * 1024;
  while (left > 0) {
    const take = Math.min(left, BLOCK.length);
    yield take === BLOCK.length ? BLOCK : BLOCK.subarray(0, take);
    left -= take;
  }
}

export default async function application(environ, startResponse) {
  const path = environ.PATH_INFO;
  if (path === '/kib') {
    const n = Math.max(0, Number(new URLSearchParams(environ.QUERY_STRING).get('n') ?? 1) | 0);
    startResponse('200 OK', [['Content-Type', 'application/octet-stream'], ['Content-Length', String(n * 1024)]]);
    return kib(n);
  }
  if (path === '/read') {
    let length = 0;
    for await (const chunk of environ['tsgi.input']) length += chunk.length;
    startResponse('200 OK', [['Content-Type', 'text/plain']]);
    return [Buffer.from(`read ${length}\n`)];
  }
  startResponse('200 OK', [['Content-Type', 'text/plain'], ['Content-Length', '3']]);
  return [Buffer.from('ok\n')];
}
