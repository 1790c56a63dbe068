// An insertion-ordered set of objects that enter and leave it once each (the requests a server
// is running, the streams of a link), linked through fields of the entries themselves: add and
// delete touch two neighbours, and nothing is ever rebuilt.
//
// A Map or Set that entries keep entering and leaving is rebuilt every few dozen of them, and
// V8 keeps each replaced table pointing at its successor, entries included (for iterators that
// were running over it). Once one such table has grown old, the chain holds every entry through
// the young collections until a full one: under load, nearly every request is promoted, and
// the collections take several times as long. (StreamTable in src/protocol does the same job
// for entries found by id.)

/** The fields an entry carries; declare them in the class, initialised to null. */
export interface Linked<T> {
  /** The set holding this entry, or null. */
  linkedIn: object | null;
  linkedPrev: T | null;
  linkedNext: T | null;
}

export class LinkedSet<T extends Linked<T>> {
  #head: T | null = null;
  #tail: T | null = null;
  size = 0;

  /** Adds `entry` at the end; nothing if it is in this set already. An entry is in one set at a time. */
  add(entry: T): this {
    if (entry.linkedIn === this) return this;
    if (entry.linkedIn !== null) throw new Error('entry is in another LinkedSet');
    entry.linkedIn = this;
    entry.linkedPrev = this.#tail;
    entry.linkedNext = null;
    if (this.#tail === null) this.#head = entry;
    else this.#tail.linkedNext = entry;
    this.#tail = entry;
    this.size++;
    return this;
  }

  /** Removes `entry`; false if it was not in this set. */
  delete(entry: T): boolean {
    if (entry.linkedIn !== this) return false;
    const { linkedPrev: prev, linkedNext: next } = entry;
    if (prev === null) this.#head = next;
    else prev.linkedNext = next;
    if (next === null) this.#tail = prev;
    else next.linkedPrev = prev;
    entry.linkedIn = null;
    entry.linkedPrev = null;
    entry.linkedNext = null;
    this.size--;
    return true;
  }

  has(entry: T): boolean {
    return entry.linkedIn === this;
  }

  /** The entry added first of those still here. */
  first(): T | null {
    return this.#head;
  }

  /** In the order added. Deleting the entry just yielded is safe; to delete others, iterate a copy. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let entry = this.#head; entry !== null;) {
      const next: T | null = entry.linkedNext;
      yield entry;
      entry = next;
    }
  }
}
