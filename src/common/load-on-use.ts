// Modules a process may never need, loaded the first time they are asked for rather than at
// start. A module loaded is heap that every major collection marks, and some of them were
// measured to cost CPU per request merely by being loaded (prom-client, mime-types' database).
// The load is a require, so it is synchronous: CommonJS packages and Node's builtins.
import { createRequire } from 'node:module';

const requireModule = createRequire(import.meta.url);

/** A function that loads `id` on its first call and returns the same module from then on. */
export function onFirstUse<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= requireModule(id) as T);
}
