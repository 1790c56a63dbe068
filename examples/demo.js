// What `npm start` serves: the seed's hello page at /, the environ dump at /environ.
import hello from './hello.js';
import environ from './environ.js';

export default function application(env, startResponse) {
  if (env.PATH_INFO === '/environ') return environ(env, startResponse);
  if (env.PATH_INFO === '/' || env.PATH_INFO === '/index.html') return hello(env, startResponse);
  startResponse('404 Not Found', [['Content-Type', 'text/plain']]);
  return ['not found: try / or /environ\n'];
}
