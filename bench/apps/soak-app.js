// The soak's app (`npm run soak`). Every response is a deterministic function of its URL (or,
// for /post, of the body), so the client can check every byte. Each process counts the
// requests it began and closed (close() always runs) and writes the counts, with its RSS, to
// $SOAK_DIR/stats-PID.json every 200 ms; when $SOAK_DIR/gc changes it runs a full GC first
// (started with --expose-gc).
//   /get?n=BYTES&seed=S            a body of n bytes
//   /post                          sha256 and length of the request body
//   /stream?chunks=K&size=B&delay=MS&seed=S   K chunks of B bytes, MS apart
//   /slow?ms=MS                    answers after MS (early if the request is cancelled)
//   /big?mb=N                      N MiB, streamed
//   /error-before                  throws before startResponse (500)
//   /error-after                   sends the head and a chunk, then throws (stream reset)
import { createHash } from 'node:crypto';
import { statSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';

const stats = { pid: process.pid, begun: 0, closed: 0, rss: 0 };
const dir = process.env.SOAK_DIR;
let gcSeen = 0;

if (dir) {
  const file = join(dir, `stats-${process.pid}.json`);
  const timer = setInterval(() => {
    let mtime = 0;
    try {
      mtime = statSync(join(dir, 'gc')).mtimeMs;
    } catch {
      // no gc asked for yet
    }
    if (mtime !== gcSeen) {
      gcSeen = mtime;
      globalThis.gc?.();
    }
    stats.rss = process.memoryUsage.rss();
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify({ ...stats, gcSeen }));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the directory is going away
    }
  }, 200);
  timer.unref();
}

/** Byte i of the body for `seed`: the client computes the same. */
export function fill(n, seed) {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

const MIB_BLOCK = fill(1 << 20, 7);

/** An async iterable over `source` whose close() counts the request closed, once. */
function counted(source) {
  let closed = false;
  const it = source[Symbol.asyncIterator] ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  const close = () => {
    if (!closed) {
      closed = true;
      stats.closed++;
    }
  };
  return {
    [Symbol.asyncIterator]() { return this; },
    next: () => it.next(),
    async return() {
      close();
      await it.return?.();
      return { done: true, value: undefined };
    },
    close,
  };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const t = setTimeout(() => resolve(true), ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(false); }, { once: true });
  });
}

export default async function application(environ, startResponse) {
  stats.begun++;
  let handedOver = false;
  try {
    const result = await respond(environ, startResponse);
    handedOver = true;
    return counted(result);
  } finally {
    if (!handedOver) stats.closed++;
  }
}

async function respond(environ, startResponse) {
  const q = new URLSearchParams(environ.QUERY_STRING);
  const num = (k, d) => Number(q.get(k) ?? d);
  const signal = environ['tsgi.signal'];
  const octets = (n) => [['Content-Type', 'application/octet-stream'], ['Content-Length', String(n)]];
  switch (environ.PATH_INFO) {
    case '/get': {
      const n = num('n', 0);
      startResponse('200 OK', octets(n));
      return [fill(n, num('seed', 0))];
    }
    case '/post': {
      const hash = createHash('sha256');
      let length = 0;
      for await (const chunk of environ['tsgi.input']) {
        hash.update(chunk);
        length += chunk.length;
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return [`${length} ${hash.digest('hex')}`];
    }
    case '/stream': {
      const chunks = num('chunks', 1);
      const size = num('size', 1);
      const delay = num('delay', 0);
      const chunk = fill(size, num('seed', 0));
      startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
      return (async function* body() {
        for (let i = 0; i < chunks; i++) {
          if (i > 0 && delay > 0 && !(await sleep(delay, signal))) return;
          yield chunk;
        }
      })();
    }
    case '/slow': {
      await sleep(num('ms', 0), signal);
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return ['slow ok'];
    }
    case '/big': {
      const mb = num('mb', 1);
      startResponse('200 OK', octets(mb << 20));
      return (function* body() {
        for (let i = 0; i < mb; i++) yield MIB_BLOCK;
      })();
    }
    case '/error-before':
      throw new Error('soak: an application error before the head');
    case '/error-after':
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return (async function* body() {
        yield 'the head went out; ';
        await sleep(5, signal);
        throw new Error('soak: an application error after the head');
      })();
    default:
      startResponse('404 Not Found', [['Content-Type', 'text/plain']]);
      return ['not found'];
  }
}
