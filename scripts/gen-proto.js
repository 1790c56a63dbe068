// Generates static protobuf code (and its type declarations) for proto/tsgi.proto.
// Run by `npm run build`; the output in src/protocol/generated/ is not committed.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const proto = join(root, 'proto', 'tsgi.proto');
const outDir = join(root, 'src', 'protocol', 'generated');
const js = join(outDir, 'tsgi.js');
const dts = join(outDir, 'tsgi.d.ts');

// After tsc: the declarations tsc derives from the generated JS (allowJs) are wrong; ship pbts's.
if (process.argv[2] === '--dist') {
  const out = join(root, 'dist', 'src', 'protocol', 'generated', 'tsgi.d.ts');
  copyFileSync(dts, out);
  process.exit(0);
}

const mtime = (p) => { try { return statSync(p).mtimeMs; } catch { return 0; } };
const self = fileURLToPath(import.meta.url);
if (mtime(js) > Math.max(mtime(proto), mtime(self)) && mtime(dts) >= mtime(js)) process.exit(0);

mkdirSync(outDir, { recursive: true });
const bin = (name) => join(root, 'node_modules', 'protobufjs-cli', 'bin', name);
// Encoders and decoders only: no verify/convert/JSON helpers, which tsgi never calls.
execFileSync(process.execPath, [bin('pbjs'), '-t', 'static-module', '-w', 'es6',
  '--no-create', '--no-verify', '--no-delimited', '--no-convert', '--no-typeurl', '--force-number',
  '-o', js, proto], { stdio: 'inherit' });
execFileSync(process.execPath, [bin('pbts'), '--no-comments', '-o', dts, js], { stdio: 'inherit' });
