// The seed's first application: the smallest gateway app there is.
//   tsgi serve examples/hello.js --socket /tmp/hello.sock
export function application(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/html']]);
  return ['<h1>Hello, web</h1>'];
}

export default application;
