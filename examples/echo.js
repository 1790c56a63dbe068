// Echoes the request body back as it arrives (streaming both ways, with backpressure).
//   curl --data-binary @big.file http://127.0.0.1:8080/ > copy
export default async function* application(environ, startResponse) {
  const headers = [['Content-Type', environ.CONTENT_TYPE ?? 'application/octet-stream']];
  if (environ.CONTENT_LENGTH) headers.push(['Content-Length', environ.CONTENT_LENGTH]);
  startResponse('200 OK', headers);
  for await (const chunk of environ['tsgi.input']) yield chunk;
}
