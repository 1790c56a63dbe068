// Runs the test suites with uvu and ends with one plain summary line ("N passed, N failed"),
// so any CI can read the result; exits non-zero on a failure or when no test ran.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const uvu = fileURLToPath(new URL('../node_modules/uvu/bin.js', import.meta.url));
const args = [uvu, 'dist/test', '\\.test\\.js$', '-i', 'helpers', '-i', 'fixtures', ...process.argv.slice(2)];
const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NO_COLOR: '1' } });
let out = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  out += chunk.toString();
  if (out.length > 1e6) out = out.slice(-1e5);
});
child.on('close', (code) => {
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const num = (label) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? 0);
  const total = num('Total');
  const passed = num('Passed');
  const skipped = num('Skipped');
  const failed = total - passed - skipped;
  process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  process.exit(code !== 0 ? code ?? 1 : total === 0 || failed > 0 ? 1 : 0);
});
