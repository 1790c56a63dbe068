// The interop suite: real nginx (uwsgi_pass to tsgi serve; proxy_pass to tsgi front), a real
// uWSGI running a Python WSGI app behind tsgi front, and the deployment examples as written. It runs when the programs are installed;
// under CI=true (.ci/run installs them) it requires them. Otherwise it says what is missing in
// one line, and the rest of the test run goes on.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { findPrograms } from '../helpers/interop.js';
import { nginxExamples, systemdDeploy, systemdSecurity } from './examples.js';
import { frontToUwsgi } from './front-uwsgi.js';
import { nginxToFront } from './nginx-front.js';
import { nginxTunnels } from './nginx-tunnels.js';
import { nginxWebSocket } from './nginx-websocket.js';
import { nginxToBackend } from './nginx-uwsgi.js';

const programs = findPrograms();
const required = process.env.CI === 'true';

if (programs.missing.length > 0 && required) {
  const test = suite('interop/programs');
  test('CI=true: nginx, uWSGI with python3 and curl are installed', () => {
    assert.unreachable(`missing: ${programs.missing.join('; ')} (.ci/run installs them with apt-get)`);
  });
  test.run();
} else {
  if (programs.missing.length > 0) {
    const none = !programs.curl || (!programs.nginx && !programs.uwsgi);
    const what = none ? 'all interop tests' : `the ${programs.nginx ? 'uWSGI' : 'nginx'} interop tests`;
    process.stdout.write(`interop: skipping ${what} — missing ${programs.missing.join('; ')}\n`);
  }
  systemdSecurity();
  if (programs.curl && programs.nginx) {
    nginxExamples();
    nginxToBackend();
    nginxToFront();
    systemdDeploy();
    nginxTunnels();
    nginxWebSocket();
  }
  if (programs.curl && programs.uwsgi) frontToUwsgi();
}
