// The logger, in a real child process whose stderr is read: control characters in a message are
// escaped (a message cannot forge a second line), a line is capped, repeats are collapsed into
// one count, and a write that fails is counted instead of ending the process.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { escapeControls, MAX_LINE } from '../../src/common/log.js';

const LOG = new URL('../../src/common/log.js', import.meta.url).href;

interface Run { stderr: string; stdout: string; code: number | null }

/** Runs `body` in a child with `log` (component 'front') and `L` (the module) in scope. */
function run(body: string, env: Record<string, string> = {}, stderrTo?: number): Promise<Run> {
  const script = `import * as L from '${LOG}'; const log = L.createLogger('front'); ${body}`;
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSGI_')) clean[k] = v;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', stderrTo ?? 'pipe'], env: { ...clean, ...env },
  });
  let stderr = '';
  let stdout = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  return new Promise((resolve) => child.once('close', (code) => resolve({ stderr, stdout, code })));
}

const lines = (s: string) => s.split('\n').filter((l) => l !== '');

const test = suite('common/log');

test('escapeControls writes every C0 control, DEL and C1 as an escape', () => {
  assert.is(escapeControls('plain text'), 'plain text');
  assert.is(escapeControls('a\nb\rc\td'), 'a\\nb\\rc\\td');
  assert.is(escapeControls('\x1b[31mred\x7f\x00\x9b'), '\\x1b[31mred\\x7f\\x00\\x9b');
  assert.is(escapeControls('é ü 日本'), 'é ü 日本', 'printable text is kept');
});

test('a message with LF, CR or ESC stays one line: no forged log line', async () => {
  const forged = '2026-01-01T00:00:00.000Z tsgi front[1] warn: forged';
  const r = await run(`log.warn(${JSON.stringify(`bad target /x\n${forged}\r\x1b[2Kend`)});`
    + `log.error('failed', new Error(${JSON.stringify(`peer said\n${forged}`)}));`);
  assert.is(r.code, 0, r.stderr);
  const out = lines(r.stderr);
  assert.ok(out.length >= 3, r.stderr);
  assert.ok(out[0]!.endsWith('warn: bad target /x\\n2026-01-01T00:00:00.000Z tsgi front[1] warn: forged\\r\\x1b[2Kend'), out[0]);
  assert.ok(/ error: failed$/.test(out[1]!), out[1]);
  assert.is(out[2], '  Error: peer said\\n2026-01-01T00:00:00.000Z tsgi front[1] warn: forged');
  for (const l of out.slice(3)) assert.ok(l.startsWith('      at '), `only stack frames follow: ${l}`);
  assert.not.ok(out.some((l) => l.startsWith(forged)), 'no line of its own');
});

test('a line is capped at MAX_LINE characters and says how many were left out', async () => {
  const r = await run(`log.warn('x'.repeat(10000));`);
  const out = lines(r.stderr);
  assert.is(out.length, 1);
  const text = out[0]!.replace(/^.* warn: /, '');
  assert.is(text, `${'x'.repeat(MAX_LINE)}… (${10000 - MAX_LINE} more characters)`);
});

test('a line repeated within the window is printed once, then counted', async () => {
  const r = await run(`for (let i = 0; i < 5; i++) log.warn('backend down');
    log.warn('something else'); log.info('backend down');
    setTimeout(() => { log.warn('backend down'); }, 400);`, { TSGI_LOG_REPEAT_WINDOW: '0.2' });
  const out = lines(r.stderr).map((l) => l.replace(/^\S+ tsgi front\[\d+\] /, ''));
  assert.equal(out, [
    'warn: backend down',
    'warn: something else',
    'info: backend down',
    'warn: … 4 more in the last 0.2 s: backend down',
    'warn: backend down',
  ]);
});

test('counts still held are printed when the process exits', async () => {
  const r = await run(`for (let i = 0; i < 3; i++) log.error('app failed', new Error('boom'));`);
  const out = lines(r.stderr).filter((l) => !l.startsWith('  '));
  assert.is(out.length, 2, r.stderr);
  assert.ok(out[1]!.endsWith('error: … 2 more in the last 10 s: app failed'), out[1]);
});

test('TSGI_LOG_REPEAT_WINDOW=0 prints every line', async () => {
  const r = await run(`for (let i = 0; i < 3; i++) log.warn('again');`, { TSGI_LOG_REPEAT_WINDOW: '0' });
  assert.is(lines(r.stderr).length, 3, r.stderr);
});

test('writes to /dev/full are counted and the process goes on', async () => {
  const fd = openSync('/dev/full', 'w');
  try {
    const r = await run(`for (let i = 0; i < 4; i++) log.warn('line ' + i);
      process.stdout.write(String(L.logWriteErrors()));`, {}, fd);
    assert.is(r.code, 0);
    assert.is(r.stdout, '4');
  } finally {
    closeSync(fd);
  }
});

test('writes to a pipe nobody reads are counted and the process goes on', async () => {
  const script = `import * as L from '${LOG}'; const log = L.createLogger('front');
    for (let i = 0; i < 4; i++) log.warn('line ' + i);
    process.stderr.write('also through process.stderr\\n', () => process.stdout.write(String(L.logWriteErrors())));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.destroy();
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  const code = await new Promise((resolve) => child.once('close', resolve));
  assert.is(code, 0, 'no EPIPE crash');
  assert.ok(Number(stdout) >= 4, stdout);
});

test.run();
