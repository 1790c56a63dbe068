// tsgi gateway app for the upload workload: reads the whole request body, then sends it back.
// (Read first, as every echo in the benchmark does: nginx does not stream both ways at once,
// so an echo that answers while the upload is still arriving stalls behind it.)
export default async function application(environ, startResponse) {
  const chunks = [];
  for await (const chunk of environ['tsgi.input']) chunks.push(chunk);
  startResponse('200 OK', [['Content-Type', environ.CONTENT_TYPE ?? 'application/octet-stream']]);
  return [Buffer.concat(chunks)];
}
