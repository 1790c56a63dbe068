// Shared scaffolding of the end-to-end suites: a per-suite context of real processes, a
// before/after pair that always stops them, and small client helpers (undici).
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { startBackend, startFront, type BackendProc, type FrontProc, type Proc } from './procs.js';

export type RequestOptions = NonNullable<Parameters<typeof request>[1]>;

export interface Ctx {
  backend?: BackendProc;
  front?: FrontProc;
  /** Processes started by a test rather than by before(); after() stops them too. */
  extra: Proc[];
  agent?: Agent;
  /** What went wrong in before(), re-thrown by every test (uvu would swallow it otherwise). */
  setupError?: unknown;
}

export const newCtx = (): Ctx => ({ extra: [] });

/**
 * before: `setup`; after: stop every process. A failed setup fails each test of the suite
 * (uvu 0.5 returns from a failed before() without reporting an error).
 */
export function setUp<T extends Ctx>(s: Test<T>, setup: (ctx: T) => Promise<void>): void {
  s.before(async (ctx) => {
    try {
      await setup(ctx);
    } catch (err) {
      ctx.setupError = err;
    }
  });
  s.before.each((ctx) => {
    if (ctx.setupError !== undefined) throw ctx.setupError;
  });
  s.after(stopAll);
}

/** An Agent whose timeouts turn a hung bridge into a failed test instead of a hung run. */
export const newAgent = (): Agent => new Agent({ headersTimeout: 20_000, bodyTimeout: 20_000 });

export async function startPair(ctx: Ctx, app: string, backendArgs: string[] = [], frontArgs: string[] = []): Promise<void> {
  ctx.backend = await startBackend(app, backendArgs);
  ctx.front = await startFront([ctx.backend.socket], frontArgs);
  ctx.agent = newAgent();
}

export async function stopAll(ctx: Ctx): Promise<void> {
  await ctx.agent?.destroy().catch(() => {});
  await ctx.front?.stop();
  for (const p of ctx.extra) await p.stop();
  await ctx.backend?.stop();
}

/** One request through undici; the body read whole as text. */
export async function call(url: string, opts: RequestOptions = {}): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const res = await request(url, opts);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

/** Calls `attempt` until it returns a value other than undefined; gives up after `deadlineMs`. */
export async function poll<T>(attempt: () => Promise<T | undefined>, what: string, deadlineMs = 15_000): Promise<T> {
  const giveUp = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > giveUp) assert.unreachable(`still waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(50);
  }
}


export interface LoadResult {
  ok: number;
  /** Every request that did not get a 2xx: its status, or the client error. */
  failures: { status?: number; error?: string; body?: string }[];
  /** The body of each successful response, in completion order. */
  bodies: string[];
}

/**
 * A bounded, continuous load: `concurrency` loops each sending requests (mixed GET and POST
 * with a body) one after another until `stop()` says so or `maxRequests` went out.
 */
export async function runLoad(url: string, opts: {
  concurrency: number; stop: () => boolean; maxRequests?: number; agent?: Agent; onBody?: (body: string) => void;
}): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, failures: [], bodies: [] };
  const max = opts.maxRequests ?? 100_000;
  let sent = 0;
  const loop = async (id: number) => {
    for (let i = 0; !opts.stop() && sent < max; i++) {
      sent++;
      const post = i % 2 === 1;
      const payload = post ? `payload-${id}-${i}-`.repeat(1 + (i % 7) * 100) : undefined;
      try {
        const res = await request(`${url}/load?id=${id}&i=${i}`, {
          method: post ? 'POST' : 'GET', body: payload, dispatcher: opts.agent,
          headersTimeout: 20_000, bodyTimeout: 20_000,
        });
        const text = await res.body.text();
        if (res.statusCode >= 200 && res.statusCode < 300) {
          if (post && !text.includes(`received ${payload!.length}`)) {
            result.failures.push({ status: res.statusCode, body: `wrong echo: ${text.slice(0, 80)}` });
          } else {
            result.ok++;
            result.bodies.push(text);
            opts.onBody?.(text);
          }
        } else {
          result.failures.push({ status: res.statusCode, body: text.slice(0, 200) });
        }
      } catch (err) {
        result.failures.push({ error: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, id) => loop(id)));
  return result;
}

/** The source of a small app that names its version and counts the request body it read. */
export function versionApp(version: string): string {
  return `export default async function application(environ, startResponse) {
  const body = await environ['tsgi.input'].read();
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['${version} pid=' + process.pid + ' received ' + body.length];
}
`;
}
