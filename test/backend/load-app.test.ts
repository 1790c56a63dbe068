// loadApplication: APP_MODULE as an ESM or CommonJS file, its default export, its export named
// `application`, an object with fetch(), `file.js:name`, and the errors for the rest.
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadApplication } from '../../src/backend/load-app.js';
import type { Application } from '../../src/backend/types.js';
import { TsgiError } from '../../src/protocol/errors.js';
import { rejects } from '../helpers/assert.js';
import { assertComplete, run } from './helpers/exchange.js';

const test = suite('backend/load-app');

/**
 * The fixtures are read from the source tree, not from dist: tsc (allowJs) also emits copies
 * under dist/test/fixtures, but rewritten ("use strict" added to CommonJS), so the repository
 * root is found by walking up from this file to the package.json.
 */
function fixturesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'fixtures', 'backend'))) {
      return join(dir, 'test', 'fixtures', 'backend');
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find test/fixtures/backend above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}
const FIXTURES = fixturesDir();
const fixture = (name: string) => join(FIXTURES, name);

/** Runs a loaded app for GET `path` and returns the response body (checking it completed). */
async function body(app: Application, path = '/probe'): Promise<string> {
  const x = run(app, { head: { target: path } });
  await x.done;
  assertComplete(x.out);
  assert.is(x.out.head0.status, 200, `status (body: ${x.out.body})`);
  return x.out.body;
}

test('the fixtures are read from the source tree', () => {
  assert.ok(existsSync(fixture('esm-default.js')), FIXTURES);
  assert.not.ok(FIXTURES.split(/[\\/]/).includes('dist'), `fixtures from the source tree, got ${FIXTURES}`);
});

test('ESM: the default export function', async () => {
  const app = await loadApplication(fixture('esm-default.js'));
  assert.is(app, (await import(fixture('esm-default.js'))).default, 'the function itself, not a wrapper');
  assert.is(await body(app), 'esm-default /probe');
});

test('ESM: the export named application', async () => {
  const app = await loadApplication(fixture('esm-named.js'));
  assert.is(await body(app), 'esm-named /probe');
});

test('CommonJS: module.exports = fn (.cjs)', async () => {
  const app = await loadApplication(fixture('cjs-module-exports.cjs'));
  assert.is(await body(app), 'cjs-module-exports /probe');
});

test('CommonJS: exports.application', async () => {
  const app = await loadApplication(fixture('cjs-exports-application.cjs'));
  assert.is(await body(app), 'cjs-exports-application /probe');
});

test('a default object with fetch(): run through the fetch adapter, with its this', async () => {
  const app = await loadApplication(fixture('fetch-object.js'));
  assert.is(await body(app, '/hello'), 'fetch-object GET /hello');
});

test('file.js:name picks an export: a function, an object with fetch(), a CommonJS export', async () => {
  assert.is(await body(await loadApplication(`${fixture('several.js')}:api`)), 'several api');
  assert.is(await body(await loadApplication(`${fixture('several.js')}:worker`)), 'several worker');
  assert.is(await body(await loadApplication(fixture('several.js'))), 'several main', 'without a name: the default');
  assert.is(await body(await loadApplication(`${fixture('cjs-exports-application.cjs')}:admin`)), 'cjs admin');
});

test('a path relative to the working directory', async () => {
  const app = await loadApplication(relative(process.cwd(), fixture('esm-named.js')));
  assert.is(await body(app), 'esm-named /probe');
});

test('a reload token loads a fresh instance of the module', async () => {
  const first = await body(await loadApplication(fixture('counter.js'), 'r1'));
  const again = await body(await loadApplication(fixture('counter.js'), 'r1'));
  const second = await body(await loadApplication(fixture('counter.js'), 'r2'));
  assert.is(again, first, 'the same token: the same instance');
  assert.is.not(second, first, 'a new token: evaluated again');
});

test('a module with no application: TSGI_ERR_APP_LOAD saying what to export', async () => {
  const err = await rejects(loadApplication(fixture('no-app.js')), TsgiError, 'TSGI_ERR_APP_LOAD', 'no-app.js');
  assert.ok(err.message.includes(fixture('no-app.js')), `names the file: ${err.message}`);
  assert.match(err.message, /export default/);
  assert.match(err.message, /application/);
  assert.match(err.message, /fetch/);
});

test('file.js:name with no such application export: TSGI_ERR_APP_LOAD naming it', async () => {
  for (const name of ['missing', 'notAnApp']) {
    const err = await rejects(loadApplication(`${fixture('several.js')}:${name}`), TsgiError, 'TSGI_ERR_APP_LOAD', name);
    assert.ok(err.message.includes(`'${name}'`), `names the export: ${err.message}`);
  }
});

test('a missing file: TSGI_ERR_APP_LOAD naming the path', async () => {
  const missing = fixture('does-not-exist.js');
  let err = await rejects(loadApplication(missing), TsgiError, 'TSGI_ERR_APP_LOAD', 'missing file');
  assert.ok(err.message.includes(missing), err.message);
  err = await rejects(loadApplication(`${missing}:app`), TsgiError, 'TSGI_ERR_APP_LOAD', 'missing file with :name');
  assert.ok(err.message.includes(missing), err.message);
});

test('a module that throws while loading: TSGI_ERR_APP_LOAD with the cause', async () => {
  const err = await rejects(loadApplication(fixture('throws-on-import.js')), TsgiError, 'TSGI_ERR_APP_LOAD', 'throwing module');
  assert.match(err.message, /fixture failed while loading/);
  assert.instance(err.cause, Error);
});

test.run();
