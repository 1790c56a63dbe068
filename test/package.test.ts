// The npm package as a user gets it: `npm pack`, the tarball installed in an empty project
// elsewhere, then `npx tsgi --help`, a TypeScript file that imports the public types and
// functions type-checked against the shipped declarations, and serve() + front() started from
// the installed package answering a real request.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const exec = promisify(execFile);
/** execFile that fails with what the command printed, not just "Command failed". */
const run = (cmd: string, args: string[], opts: Parameters<typeof exec>[2] = {}) => exec(cmd, args, { ...opts, encoding: 'utf8' })
  .catch((err: Error & { stdout?: string; stderr?: string }) => {
    throw Object.assign(err, { message: `${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}` });
  }) as Promise<{ stdout: string; stderr: string }>;
const root = fileURLToPath(new URL('../../', import.meta.url));
const test = suite<{ dir: string; setupError?: unknown }>('package', { dir: '' });

test.before(async (ctx) => {
  try {
    ctx.dir = mkdtempSync(join(tmpdir(), 'tsgi-package-'));
    // dist/ is already built by `npm test`'s pretest: pack it as it is.
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', ctx.dir], { cwd: root });
    const tarball = readdirSync(ctx.dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');
    writeFileSync(join(ctx.dir, 'package.json'), JSON.stringify({ name: 'uses-tsgi', private: true, type: 'module' }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `./${tarball}`], { cwd: ctx.dir, timeout: 120_000 });
  } catch (err) {
    ctx.setupError = err;
  }
});
test.before.each((ctx) => {
  if (ctx.setupError !== undefined) throw ctx.setupError;
});
test.after((ctx) => {
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

test('the tarball holds the program, its declarations and the schema, not the tests', async (ctx) => {
  const { stdout } = await run('tar', ['-tzf', join(ctx.dir, readdirSync(ctx.dir).find((f) => f.endsWith('.tgz'))!)]);
  const files = stdout.split('\n');
  for (const f of ['package/dist/src/cli.js', 'package/dist/src/index.d.ts', 'package/proto/tsgi.proto',
    'package/README.md', 'package/CHANGELOG.md', 'package/examples/hello.js']) {
    assert.ok(files.includes(f), `${f} is in the package`);
  }
  assert.not.ok(files.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/dist/bench/')), 'no tests or benches');
});

test('npx tsgi --help and --version run from the installed package', async (ctx) => {
  const help = await run('npx', ['--no-install', 'tsgi', '--help'], { cwd: ctx.dir });
  assert.match(help.stdout, /Usage: tsgi <command>/);
  const front = await run('npx', ['--no-install', 'tsgi', 'front', '--help'], { cwd: ctx.dir });
  assert.match(front.stdout, /--backend/);
  for (const command of ['front', 'serve', 'ctl', 'demo']) {
    const { stdout } = await run('npx', ['--no-install', 'tsgi', command, '--help'], { cwd: ctx.dir });
    assert.match(stdout, new RegExp(`^Usage: tsgi ${command}`), `${command} --help starts with its usage`);
    assert.match(stdout, /\nExamples:\n {2}tsgi /, `${command} --help gives examples`);
  }
  const version = await run('npx', ['--no-install', 'tsgi', '--version'], { cwd: ctx.dir });
  const pkg = (await import(join(root, 'package.json'), { with: { type: 'json' } })).default as { version: string };
  assert.is(version.stdout.trim(), pkg.version);
});

test('TypeScript type-checks an app and an embedding against the shipped declarations', async (ctx) => {
  writeFileSync(join(ctx.dir, 'app.ts'), `
import { serve, front, fromFetch, type Application, type Environ, type StartResponse, type FrontConfig } from 'tsgi';
export const application: Application = (environ: Environ, startResponse: StartResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return [String(environ.PATH_INFO)];
};
export const config: FrontConfig = { listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [] };
export const both = [serve, front, fromFetch({ fetch: (req: Request) => new Response(req.url) })];
`);
  // A deliberate mistake must be caught, or the check proves nothing.
  writeFileSync(join(ctx.dir, 'wrong.ts'), `
import type { StartResponse } from 'tsgi';
export const f = (s: StartResponse) => s('200 OK', 42);
`);
  const tsconfig = (files: string[]) => JSON.stringify({
    compilerOptions: {
      module: 'nodenext', moduleResolution: 'nodenext', target: 'es2023', lib: ['es2023', 'dom'], strict: true,
      noEmit: true, types: ['node'], typeRoots: [join(root, 'node_modules/@types')],
    },
    files,
  });
  const tsc = join(root, 'node_modules/.bin/tsc');
  writeFileSync(join(ctx.dir, 'tsconfig.json'), tsconfig(['app.ts']));
  await run(tsc, ['-p', '.'], { cwd: ctx.dir });
  writeFileSync(join(ctx.dir, 'tsconfig.json'), tsconfig(['wrong.ts']));
  const wrong = await run(tsc, ['-p', '.'], { cwd: ctx.dir }).then(() => null, (err: Error) => err.message);
  assert.ok(wrong !== null && /wrong\.ts/.test(wrong), 'headers that are a number are a type error');
});

test('serve() and front() from the installed package answer a request', async (ctx) => {
  writeFileSync(join(ctx.dir, 'embed.js'), `
import { serve, front } from 'tsgi';
import { join } from 'node:path';
const socket = join(process.argv[2], 'app.sock');
const backend = await serve({ app: (environ, startResponse) => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['embedded ' + environ.PATH_INFO];
}, socket, logLevel: 'warn' });
const f = await front({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, backends: [{ kind: 'unix', path: socket }] });
const res = await fetch('http://127.0.0.1:' + f.address.port + '/hi');
console.log(res.status + ' ' + await res.text());
await f.stop();
await backend.stop();
`);
  const { stdout } = await run(process.execPath, ['embed.js', ctx.dir], { cwd: ctx.dir, timeout: 30_000, env: { ...process.env, TSGI_LOG_LEVEL: 'warn' } });
  assert.is(stdout.trim(), '200 embedded /hi', JSON.stringify(stdout));
});

test.run();
