// Assertions uvu lacks: "throws this error class with this TSGI_ERR_* code", the same for a
// rejected promise, and "eventually true" for tests that wait on a peer.
import * as assert from 'uvu/assert';

/** An uvu assertion failure with `message`, to throw where the compiler needs to see a throw. */
function failure(message: string): assert.Assertion {
  return new assert.Assertion({ message, operator: 'unreachable', expects: true, actual: false });
}

type ErrorClass<T extends Error> = abstract new (...args: never[]) => T;

function check<T extends Error>(err: unknown, cls: ErrorClass<T>, code: string | undefined, what: string): T {
  if (!(err instanceof cls)) {
    throw failure(`${what}: expected a ${cls.name}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
  const error = err as T;
  if (code !== undefined) assert.is((error as T & { code?: unknown }).code, code, `${what}: error code (${error.message})`);
  return error;
}

/** Calls `fn`, which must throw a `cls` with `code`; returns the error for further checks. */
export function throwsCode<T extends Error>(fn: () => unknown, cls: ErrorClass<T>, code?: string, what = 'call'): T {
  try {
    fn();
  } catch (err) {
    return check(err, cls, code, what);
  }
  throw failure(`${what}: expected a ${cls.name}${code ? ` (${code})` : ''}, nothing was thrown`);
}

/** Awaits `promise`, which must reject with a `cls` with `code`; returns the error. */
export async function rejects<T extends Error>(
  promise: Promise<unknown>, cls: ErrorClass<T>, code?: string, what = 'promise',
): Promise<T> {
  try {
    await promise;
  } catch (err) {
    return check(err, cls, code, what);
  }
  throw failure(`${what}: expected a rejection with ${cls.name}${code ? ` (${code})` : ''}, it resolved`);
}

/**
 * Resolves once `condition()` holds, checking after each turn of the event loop. The deadline
 * only keeps a broken implementation from hanging the run; no test asserts how long things take.
 */
export async function eventually(condition: () => boolean, what: string, deadlineMs = 5000): Promise<void> {
  const giveUp = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > giveUp) throw failure(`still waiting for ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * A reading once it has stopped moving: sampled every `gapMs` until two samples in a row are
 * equal (at most `maxSamples`). For bounds on what a side buffers: a fixed sleep followed by a
 * check passes vacuously when a broken implementation was merely slow; this waits until the
 * thing measured has settled (a broken one settles only once it has read everything).
 */
export async function quiescent(read: () => number | Promise<number>, what: string, gapMs = 100, maxSamples = 100): Promise<number> {
  let last = await read();
  for (let i = 0; i < maxSamples; i++) {
    await new Promise<void>((resolve) => setTimeout(resolve, gapMs));
    const now = await read();
    if (now === last) return now;
    last = now;
  }
  throw failure(`${what} never settled (last reading ${last})`);
}
