// A connection's open streams by id: an open-addressing table (linear probing, deletion by
// backward shift) instead of a Map. A Map that streams keep entering and leaving is rebuilt
// every few dozen streams, and V8 keeps each replaced table pointing at its successor, entries
// included: once one table has grown old, that chain holds every request's objects through the
// young collections until a full one (seen over TLS at 50 connections: nearly every request
// promoted, the collections several times slower). This table is rebuilt only to grow.
// Stream ids are positive (0 names the connection), so 0 marks a free slot; one side of a
// connection opens its streams in increasing ids, so in id order is the order they opened.
// Sequential ids land in consecutive slots, each in its own: lookups and deletes stop after
// `#maxProbe` slots (the farthest any entry sits from its home), 0 while nothing collided.

const INITIAL_CAPACITY = 16;

export class StreamTable<T> {
  #keys = new Int32Array(INITIAL_CAPACITY);
  #values: (T | undefined)[] = new Array<T | undefined>(INITIAL_CAPACITY).fill(undefined);
  #mask = INITIAL_CAPACITY - 1;
  /** No entry sits farther than this from its home slot (an upper bound: it never shrinks until a rebuild). */
  #maxProbe = 0;
  size = 0;

  #slot(id: number): number {
    if (!(id > 0)) return -1; // 0 is a free slot's mark, never an id
    const keys = this.#keys;
    const mask = this.#mask;
    let i = (id >>> 1) & mask;
    for (let n = this.#maxProbe; ; n--, i = (i + 1) & mask) {
      const key = keys[i]!;
      if (key === id) return i;
      if (key === 0 || n === 0) return -1;
    }
  }

  get(id: number): T | undefined {
    const i = this.#slot(id);
    return i < 0 ? undefined : this.#values[i];
  }

  has(id: number): boolean {
    return this.#slot(id) >= 0;
  }

  set(id: number, value: T): void {
    if (!(id > 0 && id <= 0x7fffffff) || id % 1 !== 0) throw new RangeError(`stream id ${id}`);
    const i = this.#slot(id);
    if (i >= 0) {
      this.#values[i] = value;
      return;
    }
    if ((this.size + 1) * 2 > this.#keys.length) this.#grow();
    this.#insert(id, value);
    this.size++;
  }

  #insert(id: number, value: T): void {
    const keys = this.#keys;
    const mask = this.#mask;
    const home = (id >>> 1) & mask;
    let i = home;
    while (keys[i] !== 0) i = (i + 1) & mask;
    keys[i] = id;
    this.#values[i] = value;
    const probe = (i - home) & mask;
    if (probe > this.#maxProbe) this.#maxProbe = probe;
  }

  #grow(): void {
    const keys = this.#keys;
    const values = this.#values;
    const capacity = keys.length * 2;
    this.#keys = new Int32Array(capacity);
    this.#values = new Array<T | undefined>(capacity).fill(undefined);
    this.#mask = capacity - 1;
    this.#maxProbe = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) this.#insert(keys[i]!, values[i]!);
  }

  delete(id: number): boolean {
    let i = this.#slot(id);
    if (i < 0) return false;
    const keys = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    const maxProbe = this.#maxProbe;
    // Entries after the freed slot move back into it when their home slot is not between the
    // two (a probe from their home would stop at the hole otherwise). None farther than
    // maxProbe from the hole can: it would sit farther than that from its home.
    for (let j = (i + 1) & mask, d = 1; d <= maxProbe && keys[j] !== 0; j = (j + 1) & mask, d++) {
      if (((j - ((keys[j]! >>> 1) & mask)) & mask) >= ((j - i) & mask)) {
        keys[i] = keys[j]!;
        values[i] = values[j];
        i = j;
        d = 0;
      }
    }
    keys[i] = 0;
    values[i] = undefined;
    this.size--;
    return true;
  }

  /** The ids, in order (a copy). */
  keys(): number[] {
    const ids: number[] = [];
    for (const id of this.#keys) if (id !== 0) ids.push(id);
    return ids.sort((a, b) => a - b);
  }

  /** The streams, in id order (a copy: the table may change while the caller walks it). */
  values(): T[] {
    return this.keys().map((id) => this.get(id)!);
  }

  clear(): void {
    this.#keys.fill(0);
    this.#values.fill(undefined);
    this.#maxProbe = 0;
    this.size = 0;
  }
}
