// The second seed's application: shows the environ the server hands the app, then the time.
export default function application(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  const lines = Object.keys(environ).sort().map((key) => `${key}: ${show(environ[key])}`);
  return [`${lines.join('\n')}\n==Hello world from a simple tsgi application!--->${new Date().toString()}\n`];
}

function show(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return `<${value.constructor?.name ?? 'object'}>`;
}
