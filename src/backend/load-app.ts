// Loads APP_MODULE: a JS module (ESM or CommonJS) whose default export, or export named
// `application`, is the gateway function, or whose default export has a fetch(request)
// method, or is an Express / Connect app or an http.Server never listened on, or which exports
// a (req, res) `nodeHandler` (with an `upgrade` export: its upgrade requests).
// `path/app.js:name` picks another export. Never decided by a function's arity.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TsgiError } from '../protocol/errors.js';
import { fromFetch } from './fetch-adapter.js';
import { fromHttpServer, fromNodeHandler, isHttpServer, isNodeApp, type NodeHandler, type UpgradeHandler } from './node-adapter.js';
import type { Application } from './types.js';

function hasFetch(x: unknown): x is { fetch: (r: Request) => Response } {
  return x !== null && (typeof x === 'object' || typeof x === 'function')
    && typeof (x as { fetch?: unknown }).fetch === 'function';
}

function pick(value: unknown, upgrade: UpgradeHandler | undefined): Application | null {
  if (isHttpServer(value)) return fromHttpServer(value);
  if (isNodeApp(value)) return fromNodeHandler(value, { upgrade });
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
  // An 'upgrade' listener (req, socket, head) exported beside a (req, res) handler or an Express app.
  const up = mod.upgrade ?? def?.upgrade;
  const upgrade = typeof up === 'function' ? up as UpgradeHandler : undefined;
  if (typeof node === 'function') return fromNodeHandler(node as NodeHandler, { upgrade });
  const candidates = exportName !== null
    ? [mod[exportName], def?.[exportName]]
    : [def, mod.application, def?.application, hasFetch(mod) ? mod : undefined];
  for (const c of candidates) {
    const app = pick(c, upgrade);
    if (app !== null) return app;
  }
  throw new TsgiError('TSGI_ERR_APP_LOAD', exportName !== null
    ? `${path} has no export '${exportName}' that is an application function or has a fetch() method`
    : `${path} exports no application: export default (or export 'application') a function (environ, startResponse), ` +
      `or export default an object with a fetch(request) method, an Express/Connect app or an http.Server, ` +
      `or export 'nodeHandler', a function (req, res)`);
}
