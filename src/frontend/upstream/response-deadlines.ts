// The --response-timeout of the exchanges waiting for a backend's response head, under one timer
// instead of a Node timer (an object, a list insertion and a removal) per request. Every wait
// lasts the same, so the order in which they start is the order in which they end: a list linked
// through the entries (added at the end, removed from anywhere), and a timer for its first entry.

/** The fields an entry carries; declare them in its class (deadlineIn null: in no list). */
export interface Waiting<T> {
  /** Date.now() when the wait ends (the clock of the connections' own timeouts, and of a test's mock timers). */
  deadlineAt: number;
  deadlineIn: object | null;
  deadlinePrev: T | null;
  deadlineNext: T | null;
}

export class ResponseDeadlines<T extends Waiting<T>> {
  readonly ms: number;
  readonly #expired: (entry: T) => void;
  #head: T | null = null;
  #tail: T | null = null;
  #timer: NodeJS.Timeout | null = null;

  /** `expired` is called for each entry whose wait of `ms` ran out (it is out of the list by then). */
  constructor(ms: number, expired: (entry: T) => void) {
    this.ms = ms;
    this.#expired = expired;
  }

  /** Starts `entry`'s wait now; nothing if it is waiting already. */
  add(entry: T): void {
    if (entry.deadlineIn !== null) return;
    entry.deadlineAt = Date.now() + this.ms;
    entry.deadlineIn = this;
    entry.deadlinePrev = this.#tail;
    entry.deadlineNext = null;
    if (this.#tail === null) {
      // The first entry: a timer still running for an earlier one (left when the list emptied,
      // or lost to a test's mock clock) makes way for its full time.
      this.#head = entry;
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#arm(this.ms);
    } else {
      this.#tail.deadlineNext = entry;
    }
    this.#tail = entry;
  }

  /** Ends `entry`'s wait (it will not expire); nothing if it is not waiting. */
  delete(entry: T): void {
    if (entry.deadlineIn !== this) return;
    const prev = entry.deadlinePrev;
    const next = entry.deadlineNext;
    if (prev === null) this.#head = next;
    else prev.deadlineNext = next;
    if (next === null) this.#tail = prev;
    else next.deadlinePrev = prev;
    entry.deadlineIn = null;
    entry.deadlinePrev = null;
    entry.deadlineNext = null;
  }

  /** Entries waiting now (for tests). */
  get size(): number {
    let n = 0;
    for (let e = this.#head; e !== null; e = e.deadlineNext) n++;
    return n;
  }

  // Left running when the list empties (it then fires once for nothing, unless the next first
  // entry sets it again). Unref'd: the sockets of the exchanges waiting keep the process up, and
  // an empty list must not.
  #arm(ms: number): void {
    this.#timer = setTimeout(ResponseDeadlines.#fire, Math.max(1, Math.ceil(ms)), this);
    this.#timer.unref();
  }

  static #fire<T extends Waiting<T>>(list: ResponseDeadlines<T>): void {
    list.#timer = null;
    const now = Date.now();
    for (let e = list.#head; e !== null && e.deadlineAt <= now; e = list.#head) {
      list.delete(e);
      list.#expired(e);
    }
    // No wait is longer than ms from now: after the wall clock stepped back, deadlines left
    // ahead of it are brought in (an hour's step would otherwise be an hour's wait).
    const latest = now + list.ms;
    for (let e = list.#head; e !== null && e.deadlineAt > latest; e = e.deadlineNext) e.deadlineAt = latest;
    if (list.#head !== null && list.#timer === null) list.#arm(list.#head.deadlineAt - now);
  }
}
