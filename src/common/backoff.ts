// Restart backoff for a process that keeps dying: the first restart is quick, each one that
// follows a short life waits twice as long (up to a ceiling), and a long enough life resets it.
export interface BackoffOptions {
  /** The first delay, in ms. */
  initialMs?: number;
  /** The longest delay, in ms. */
  maxMs?: number;
  /** A process that lived this long (ms) died of something new: the delay starts over. */
  resetAfterMs?: number;
}

export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #resetAfter: number;
  #next: number;

  constructor({ initialMs = 100, maxMs = 10_000, resetAfterMs = 30_000 }: BackoffOptions = {}) {
    this.#initial = initialMs;
    this.#max = maxMs;
    this.#resetAfter = resetAfterMs;
    this.#next = initialMs;
  }

  /** How long to wait before restarting a process that ran for `livedMs`. */
  delay(livedMs: number): number {
    if (livedMs >= this.#resetAfter) this.#next = this.#initial;
    const delay = this.#next;
    this.#next = Math.min(this.#max, this.#next * 2);
    return delay;
  }
}
