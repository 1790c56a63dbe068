// tsgi gateway app for the download workload: the same 1 MiB on every request
// (an array result, so tsgi sends a Content-Length).
import { ONE_MIB } from './payload.js';

export default function application(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'application/octet-stream']]);
  return [ONE_MIB];
}
