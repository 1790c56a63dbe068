// The signal an application may act on before tsgi closes its WebSockets: a graceful stop or a
// reload of the backend serving this process has begun. Process-wide, as the stop is.

/** What a drain listener is told. */
export interface DrainNotice {
  /** The close code tsgi will use: 1001 Going Away (a stop), 1012 Service Restart (a reload). */
  code: number;
  /** When (Date.now() ms) tsgi starts closing the WebSockets still open. */
  closeAt: number;
}

const listeners = new Set<(notice: DrainNotice) => void>();

/**
 * Calls `listener` when a server in this process begins a graceful stop (SIGTERM, a reload, a
 * worker replaced), before tsgi closes the WebSockets still open. Returns a function that
 * removes the listener.
 */
export function onDrain(listener: (notice: DrainNotice) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** A graceful stop began: every listener hears of it (one that throws does not stop the others). */
export function notifyDrain(code: number, closeAt: number): void {
  for (const listener of [...listeners]) {
    try {
      listener({ code, closeAt });
    } catch (err) {
      process.emitWarning(`tsgi: an onDrain listener threw: ${(err as Error)?.message ?? err}`);
    }
  }
}
