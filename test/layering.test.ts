// The module boundaries of ARCHITECTURE.md, enforced: src/protocol does no I/O, the front and
// the backend never import each other, common/ imports neither, and no module imports itself
// through a circle of imports (types included: a circle of types is two modules that are one).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const test = suite('layering');
const root = fileURLToPath(new URL('../../src/', import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'generated') out.push(...sources(path));
    } else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)]
    .map((m) => m[1] ?? m[2]!);
}

test('the protocol core imports no I/O module', () => {
  const io = /^(node:)?(net|http|https|http2|fs|fs\/promises|child_process|dgram|tls|cluster|worker_threads)$/;
  const files = sources(join(root, 'protocol'));
  assert.ok(files.length > 3, 'found the protocol sources');
  for (const file of files) {
    for (const spec of importsOf(file)) {
      assert.not.ok(io.test(spec), `${relative(root, file)} imports ${spec}`);
    }
  }
});

test('front and backend never import each other', () => {
  for (const [side, other] of [['frontend', 'backend'], ['backend', 'frontend']] as const) {
    for (const file of sources(join(root, side))) {
      for (const spec of importsOf(file)) {
        assert.not.ok(spec.includes(`/${other}/`) || spec.startsWith(`../${other}`),
          `${relative(root, file)} imports ${spec}`);
      }
    }
  }
});

test('the protocol core imports nothing from the front, the backend or common', () => {
  for (const file of sources(join(root, 'protocol'))) {
    for (const spec of importsOf(file)) {
      assert.not.ok(/\.\.\/(frontend|backend|common)\//.test(spec), `${relative(root, file)} imports ${spec}`);
    }
  }
});

test('common imports neither the front nor the backend', () => {
  const files = sources(join(root, 'common'));
  assert.ok(files.length > 3, 'found the common sources');
  for (const file of files) {
    for (const spec of importsOf(file)) {
      assert.not.ok(/\.\.\/(frontend|backend)\//.test(spec), `${relative(root, file)} imports ${spec}`);
    }
  }
});

/** The relative modules `file` imports, for values or types alike. */
function relativeImportsOf(file: string): string[] {
  return importsOf(file).filter((spec) => spec.startsWith('.')).map((spec) => join(dirname(file), spec.replace(/\.js$/, '.ts')));
}

test('no circle of imports, types included', () => {
  const files = sources(root);
  const graph = new Map(files.map((f) => [f, relativeImportsOf(f)]));
  assert.ok(graph.size > 50, 'found the sources');
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): void => {
    const at = path.indexOf(file);
    if (at !== -1) assert.unreachable(`import circle: ${[...path.slice(at), file].map((f) => relative(root, f)).join(' -> ')}`);
    if (done.has(file)) return;
    path.push(file);
    for (const next of graph.get(file) ?? []) visit(next);
    path.pop();
    done.add(file);
  };
  for (const file of files) visit(file);
});

test.run();
