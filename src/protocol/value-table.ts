// Per-connection indexing of header values, as HPACK's dynamic table does: the first time a
// header (name and value) crosses a connection it travels as text and both ends remember it;
// later it travels as a small number. Each direction of a connection has its own table: the
// sender's ValueEncoder and the receiver's ValueDecoder see the same heads in the same order,
// so they insert the same entries and evict the same ones (oldest first, bounded in count and
// bytes) without ever talking about it.
//
// On the wire (HeaderBlock.refs, one per name, or absent when nothing is a reference): 0 means
// "the value is the next entry of `values`; remember it", k > 0 means "the value inserted k-th
// on this connection". The decoder turns a block back into one value per name.
import { ProtocolError } from './errors.js';
import type { tsgi } from './generated/tsgi.js';
import { STATIC_NAMES, staticIndex } from './header-table.js';

type Block = tsgi.HeaderBlock.$Properties;

/** Bounds of each table: entries, and bytes of values; longer values are never indexed. */
export const TABLE_ENTRIES = 512;
export const TABLE_BYTES = 64 * 1024;
const MAX_VALUE = 4096;

/** Consecutive misses after which a name's new values are sent as transient. */
const CHURN_MISSES = 8;
/** Of a churning name's misses, every this-many-th is remembered after all (a probe). */
const PROBE_EVERY = 64;
/** Names whose values are per-request ids by design: transient from their first value. */
const PER_REQUEST_NAMES = new Set(['traceparent', 'tracestate', 'x-request-id', 'request-id', 'x-correlation-id',
  'x-amzn-trace-id', 'x-cloud-trace-context', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'b3',
  'uber-trace-id', 'sentry-trace', 'x-datadog-trace-id', 'x-datadog-parent-id']);
/** The same names' static-table indexes (the ones that have one). */
const PER_REQUEST_INDEXES = new Set([...PER_REQUEST_NAMES].map(staticIndex).filter((i) => i !== 0));
/** Bound on the names whose misses are counted (a client inventing names cannot grow it). */
const MAX_COUNTED_NAMES = 256;

/** Insertion ids and sizes, with the one eviction rule both sides follow. */
class Fifo<T> {
  readonly items: T[] = [];
  readonly sizes: number[] = [];
  /** Id of items[0]; the next insertion gets `first + items.length`. */
  first = 1;
  bytes = 0;

  get next(): number {
    return this.first + this.items.length;
  }

  /** Inserts and evicts; returns the evicted items (oldest first). */
  insert(item: T, size: number): readonly T[] {
    this.items.push(item);
    this.sizes.push(size);
    this.bytes += size;
    let evicted: T[] | undefined;
    while (this.items.length > TABLE_ENTRIES || this.bytes > TABLE_BYTES) {
      (evicted ??= []).push(this.items.shift()!);
      this.bytes -= this.sizes.shift()!;
      this.first++;
    }
    return evicted ?? NONE;
  }
}

const NONE: readonly never[] = Object.freeze([]);

/** A value the encoder remembers: its name (static index, or lowercase literal name) and the value. */
interface Entry {
  readonly name: number | string;
  readonly value: string;
}

/** What a block's commit records: one entry per value sent and remembered (null: sent, too long to index). */
type Added = (Entry | null)[];

const NOTHING_ADDED = (): void => {};

function indexable(value: string): boolean {
  return value.length <= MAX_VALUE;
}

/** The sending side: replaces values it has sent before on this connection by references. */
export class ValueEncoder {
  /** The peer speaks TRANSIENT_VERSION: churning values may be sent as transient. */
  transient = false;
  /**
   * The id of each value remembered, by name, then value: two lookups of strings already made
   * (a small number, then the value) instead of a key string built and hashed per header.
   */
  #ids = new Map<number | string, Map<string, number>>();
  #table = new Fifo<Entry | null>();
  /** Consecutive misses per name (static index, or the lowercase literal name). */
  #misses = new Map<number | string, number>();

  /**
   * The block to put on the wire for `block`, and a commit function that records the values it
   * introduces: call it once the frame carrying the block is certain to be sent.
   */
  encode(block: Block | null | undefined): { block: Block | undefined; commit: () => void } {
    if (!block) return { block: undefined, commit: () => {} };
    const names = block.names ?? [];
    const values = block.values ?? [];
    const literal = block.literalNames ?? [];
    const refs: number[] = new Array(names.length);
    const sent: string[] = [];
    let added: Added | undefined;
    let transient: number[] | undefined;
    let lit = 0;
    let anyRef = false;
    for (let i = 0; i < names.length; i++) {
      const index = names[i]!;
      const value = values[i]!;
      const name = index === 0 ? literal[lit++]!.toLowerCase() : index;
      const id = this.#ids.get(name)?.get(value);
      if (id !== undefined) {
        refs[i] = id;
        anyRef = true;
        if (this.#misses.size !== 0) this.#misses.delete(name); // a hit: the name's values repeat
        continue;
      }
      refs[i] = 0;
      sent.push(value);
      if (this.transient && this.#churning(name)) (transient ??= []).push(i);
      else (added ??= []).push(indexable(value) ? { name, value } : null);
    }
    const out: Block = { names };
    // One LF-joined string costs less than a field per value (values never contain LF).
    if (sent.length > 1 && !sent.some((v) => v.includes('\n'))) out.joinedValues = sent.join('\n');
    else out.values = sent;
    if (block.literalNames) out.literalNames = block.literalNames;
    if (anyRef) out.refs = refs;
    if (transient !== undefined) out.transient = transient;
    return { block: out, commit: added === undefined ? NOTHING_ADDED : () => this.#commit(added) };
  }

  /** Counts a miss for `name`; true if its value should go as transient. */
  #churning(name: number | string): boolean {
    if (typeof name === 'number' ? PER_REQUEST_INDEXES.has(name) : PER_REQUEST_NAMES.has(name)) return true;
    const misses = (this.#misses.get(name) ?? 0) + 1;
    if (misses === 1 && this.#misses.size >= MAX_COUNTED_NAMES) return false;
    this.#misses.set(name, misses);
    return misses > CHURN_MISSES && misses % PROBE_EVERY !== 0;
  }

  #commit(entries: Added): void {
    const ids = this.#ids;
    for (const entry of entries) {
      const id = this.#table.next;
      if (entry !== null) {
        let byValue = ids.get(entry.name);
        if (byValue === undefined) ids.set(entry.name, byValue = new Map());
        byValue.set(entry.value, id);
      }
      // Sizes count the value only, exactly as the decoder counts them.
      for (const gone of this.#table.insert(entry, entry === null ? 0 : entry.value.length)) {
        if (gone === null) continue;
        // Forgotten unless the same value was sent again since (its id is then a later one).
        const byValue = ids.get(gone.name);
        if (byValue !== undefined && (byValue.get(gone.value) ?? Infinity) < this.#table.first) {
          byValue.delete(gone.value);
          if (byValue.size === 0) ids.delete(gone.name);
        }
      }
    }
  }
}

/** Bytes a field adds to a head, as HTTP/1.1 writes it: name, ": ", value, CRLF. */
const FIELD_OVERHEAD = 4;

/** The receiving side: resolves references back into values, one per name. */
export class ValueDecoder {
  #table = new Fifo<string | null>();

  /**
   * Rewrites a received block in place: `values` gets one entry per name, `refs` none. Returns
   * false, leaving `values` empty, once the decoded fields (each name and value plus 4 bytes)
   * pass `limit`: counted as references expand, so a block of many references to one long value
   * stops at the limit. The table is updated either way, as the sender's was.
   */
  decode(block: tsgi.HeaderBlock | null | undefined, limit = Infinity): boolean {
    if (!block) return true;
    const { names, refs } = block;
    if (block.joinedValues !== '') {
      if (block.values.length > 0) throw new ProtocolError('header block has both values and joined values');
      block.values = block.joinedValues.split('\n');
      block.joinedValues = '';
    }
    const literal = block.values;
    const literalNames = block.literalNames;
    // Which literals are transient, as indexes into `literal` (null: none).
    const skip = block.transient.length === 0 ? null : transientLiterals(block.transient, refs, names.length);
    let size = 0;
    let nextName = 0;
    if (refs.length === 0) {
      if (literal.length !== names.length) throw new ProtocolError('header block has names and values of different counts');
      this.#remember(literal, skip);
      for (let i = 0; i < names.length; i++) {
        const index = names[i]!;
        size += (index === 0 ? literalNames[nextName++]?.length ?? 0 : STATIC_NAMES[index]?.length ?? 0)
          + literal[i]!.length + FIELD_OVERHEAD;
        if (size > limit) {
          block.values = [];
          return false;
        }
      }
      return true;
    }
    if (refs.length !== names.length) throw new ProtocolError('header block has names and refs of different counts');
    const table = this.#table;
    const values: string[] = new Array(names.length);
    let next = 0;
    for (let i = 0; i < names.length; i++) {
      const ref = refs[i]!;
      let v: string | null | undefined;
      if (ref === 0) {
        v = literal[next++];
        if (v === undefined) throw new ProtocolError('header block is missing a value');
      } else {
        v = ref >= table.first && ref < table.next ? table.items[ref - table.first] : undefined;
        if (v === undefined || v === null) throw new ProtocolError(`header value reference ${ref} is not in the table`);
      }
      values[i] = v;
      const index = names[i]!;
      size += (index === 0 ? literalNames[nextName++]?.length ?? 0 : STATIC_NAMES[index]?.length ?? 0) + v.length + FIELD_OVERHEAD;
      if (size > limit) {
        // The rest is not expanded; the literals still go into the table, as the sender put them.
        this.#remember(literal, skip);
        block.values = [];
        block.refs = [];
        return false;
      }
    }
    if (next !== literal.length) throw new ProtocolError('header block has values left over');
    // Inserted after resolving, as the encoder does: refs in a block point to earlier entries.
    this.#remember(literal, skip);
    block.values = values;
    block.refs = [];
    return true;
  }

  /** Inserts the block's literals in order, but for the transient ones (`skip`, ascending). */
  #remember(literal: string[], skip: number[] | null): void {
    let s = 0;
    for (let i = 0; i < literal.length; i++) {
      if (skip !== null && skip[s] === i) {
        s++;
        continue;
      }
      const v = literal[i]!;
      this.#table.insert(indexable(v) ? v : null, indexable(v) ? v.length : 0);
    }
  }
}

/**
 * The indexes into a block's literal values of its transient positions (indexes into its
 * names, ascending, each a literal: a reference cannot be transient).
 */
function transientLiterals(transient: number[], refs: number[], count: number): number[] {
  const out: number[] = new Array(transient.length);
  let literalAt = 0;
  let position = 0;
  for (let t = 0; t < transient.length; t++) {
    const at = transient[t]!;
    if (at >= count || (t > 0 && at <= transient[t - 1]!)) throw new ProtocolError(`transient position ${at} is out of order or range`);
    if (refs.length === 0) {
      out[t] = at;
      continue;
    }
    if (refs[at] !== 0) throw new ProtocolError(`transient position ${at} is a reference`);
    for (; position < at; position++) if (refs[position] === 0) literalAt++;
    out[t] = literalAt;
  }
  return out;
}
