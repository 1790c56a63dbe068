// Loads APP_MODULE: a JS module (ESM or CommonJS) whose default export, or export named
// `application`, is the gateway function, or whose default export has a fetch(request)
// method, or is an Express / Connect app, or which exports a (req, res) `nodeHandler`.
// `path/app.js:name` picks another export. Never decided by a function's arity.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TsgiError } from '../protocol/errors.js';
import { fromFetch } from './fetch-adapter.js';
import { fromNodeHandler, isNodeApp, type NodeHandler } from './node-adapter.js';
import type { Application } from './types.js';

function hasFetch(x: unknown): x is { fetch: (r: Request) => Response } {
  return x !== null && (typeof x === 'object' || typeof x === 'function')
    && typeof (x as { fetch?: unknown }).fetch === 'function';
}

function pick(value: unknown): Application | null {
  if (isNodeApp(value)) return fromNodeHandler(value);
  if (typeof value === 'function' && !hasFetch(value)) return value as Application;
  if (hasFetch(value)) {
    const handler = value;
    return fromFetch({ fetch: (req, env, ctx) => (handler.fetch as Function).call(handler, req, env, ctx) });
  }
  return null;
}

/** APP_MODULE as a file path and an export name (`path/app.js:name`; null: the default ones). */
export function splitAppSpec(spec: string): { file: string; exportName: string | null } {
  const m = /^(.*):([A-Za-z_$][\w$]*)$/.exec(spec);
  if (m !== null && !existsSync(resolve(spec))) return { file: m[1]!, exportName: m[2]! };
  return { file: spec, exportName: null };
}

export async function loadApplication(spec: string, reloadToken = ''): Promise<Application> {
  const { file, exportName } = splitAppSpec(spec);
  const path = resolve(file);
  if (!existsSync(path)) throw new TsgiError('TSGI_ERR_APP_LOAD', `application module ${path} does not exist`);
  const url = pathToFileURL(path).href + (reloadToken ? `?reload=${reloadToken}` : '');
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (err) {
    throw new TsgiError('TSGI_ERR_APP_LOAD', `cannot load ${path}: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  const def = mod.default as Record<string, unknown> | undefined;
  // A (req, res) function exported as `nodeHandler` (or picked as app.js:nodeHandler).
  const node = (exportName === null || exportName === 'nodeHandler') ? mod.nodeHandler ?? def?.nodeHandler : undefined;
  if (typeof node === 'function') return fromNodeHandler(node as NodeHandler);
  const candidates = exportName !== null
    ? [mod[exportName], def?.[exportName]]
    : [def, mod.application, def?.application, hasFetch(mod) ? mod : undefined];
  for (const c of candidates) {
    const app = pick(c);
    if (app !== null) return app;
  }
  throw new TsgiError('TSGI_ERR_APP_LOAD', exportName !== null
    ? `${path} has no export '${exportName}' that is an application function or has a fetch() method`
    : `${path} exports no application: export default (or export 'application') a function (environ, startResponse), ` +
      `or export default an object with a fetch(request) method or an Express/Connect app, ` +
      `or export 'nodeHandler', a function (req, res)`);
}
