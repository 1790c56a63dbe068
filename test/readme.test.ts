// Keeps the README true: every option in the options table is documented, and the quick start
// says what the package scripts do.
import { existsSync, readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { OPTIONS } from '../src/common/options.js';

const test = suite('readme');
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));

test('the quick start opens the README with the two commands', () => {
  const quick = readme.indexOf('npm install && npm start');
  assert.ok(quick !== -1 && quick < 1500, 'npm install && npm start near the top');
  assert.ok(readme.indexOf('npm test') > quick);
  assert.ok(pkg.scripts.start.includes('demo'), 'npm start runs the demo');
  assert.ok(pkg.scripts.test, 'npm test exists');
});

test('every option in the table is documented with its flag', () => {
  for (const option of OPTIONS) {
    assert.ok(readme.includes('`' + option.flag + '`'), `README documents ${option.flag}`);
    if (option.env) assert.ok(readme.includes(option.env), `README names ${option.env} for ${option.flag}`);
  }
});

test('every example named in the README exists', () => {
  const named = [...readme.matchAll(/\(examples\/([\w.@/-]+)\)/g)].map((m) => m[1]!);
  assert.ok(named.length >= 5, 'the README links its examples');
  for (const path of named) assert.ok(existsSync(new URL(`../../examples/${path}`, import.meta.url)), `examples/${path}`);
});

test.run();
