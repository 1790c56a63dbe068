// The floor of a Node uwsgi backend that takes its connections on the libuv handle, as
// `tsgi serve --uwsgi-socket` does (src/common/raw-stream.ts), for bench/uwsgi-cost.ts: each
// connection's first read (tried at once on the descriptor, as tsgi does; else when the handle
// is readable) is answered with a fixed hello response and the handle closed, without a
// net.Socket and without reading the packet.
//   node bench/apps/uwsgi-floor-raw.js /path/to/app.sock
import { readSync } from 'node:fs';
import { createServer } from 'node:net';

const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<h1>Hello, web</h1>');
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

function closeHandle(status, handle) {
  handle.close();
}

function respond(handle) {
  const req = new WriteWrap();
  req.handle = handle;
  req.oncomplete = closeHandle;
  if (handle.writeBuffer(req, RESPONSE) !== 0 || streamBaseState[kLastWriteWasAsync] === 0) handle.close();
}

function answer() {
  if (streamBaseState[kReadBytesOrError] <= 0) {
    this.close();
    return;
  }
  this.readStop();
  respond(this);
}

const server = createServer();
server.listen({ path: process.argv[2], backlog: 4096 }, () => {
  server._handle.onconnection = (err, handle) => {
    if (err !== 0) return;
    let n = -1;
    try {
      n = readSync(handle.fd, READ_BUFFER, 0, READ_BUFFER.length, null);
    } catch {
      // EAGAIN: not sent yet
    }
    if (n > 0) {
      respond(handle);
      return;
    }
    handle.onread = answer;
    handle.readStart();
  };
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
