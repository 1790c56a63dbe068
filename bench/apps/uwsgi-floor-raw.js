// The floor of a Node uwsgi backend that takes its connections on the libuv handle, as
// `tsgi serve --uwsgi-socket` does (src/common/raw-stream.ts), for bench/uwsgi-cost.ts: each
// connection's first read is answered with a fixed hello response and the handle closed,
// without a net.Socket and without reading the packet.
//   node bench/apps/uwsgi-floor-raw.js /path/to/app.sock
import { createServer } from 'node:net';

const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n\r\n<h1>Hello, web</h1>');

function closeHandle(status, handle) {
  handle.close();
}

function answer() {
  if (streamBaseState[kReadBytesOrError] <= 0) {
    this.close();
    return;
  }
  this.readStop();
  const req = new WriteWrap();
  req.handle = this;
  req.oncomplete = closeHandle;
  if (this.writeBuffer(req, RESPONSE) !== 0 || streamBaseState[kLastWriteWasAsync] === 0) this.close();
}

const server = createServer();
server.listen({ path: process.argv[2], backlog: 4096 }, () => {
  server._handle.onconnection = (err, handle) => {
    if (err !== 0) return;
    handle.onread = answer;
    handle.readStart();
  };
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
