// LinkedSet against a Set doing the same operations: entries added and deleted in any order
// keep the order they were added in, sizes and membership agree; deleting the entry an
// iteration just yielded is safe; an entry belongs to one set at a time.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LinkedSet } from '../../src/common/linked-set.js';
import { fuzzRuns } from '../helpers/fuzz.js';

class Entry {
  linkedIn: LinkedSet<Entry> | null = null;
  linkedPrev: Entry | null = null;
  linkedNext: Entry | null = null;
  readonly n: number;
  constructor(n: number) {
    this.n = n;
  }
}

const test = suite('common/linked-set');

test('adds and deletes in any order: the same members, in the order added, as a Set', () => {
  // Each step adds entry k (a second add of a member does nothing) or deletes it.
  const steps = fc.array(fc.tuple(fc.boolean(), fc.nat(40)), { minLength: 1, maxLength: 400 });
  fc.assert(fc.property(steps, (plan) => {
    assert.ok(plan.length > 0);
    const entries = Array.from({ length: 41 }, (_, n) => new Entry(n));
    const set = new LinkedSet<Entry>();
    const model = new Set<Entry>();
    for (const [add, k] of plan) {
      const e = entries[k]!;
      if (add) {
        set.add(e);
        model.add(e);
      } else {
        assert.is(set.delete(e), model.delete(e), `delete(${k})`);
      }
      assert.is(set.size, model.size);
      assert.equal([...set].map((x) => x.n), [...model].map((x) => x.n));
      assert.is(set.first()?.n, [...model][0]?.n);
      for (const x of entries) assert.is(set.has(x), model.has(x));
    }
  }), { numRuns: fuzzRuns(200) });
});

test('deleting the entry just yielded keeps the iteration going; an entry is in one set at a time', () => {
  const set = new LinkedSet<Entry>();
  const entries = [1, 2, 3, 4, 5].map((n) => new Entry(n));
  for (const e of entries) set.add(e);
  const seen: number[] = [];
  for (const e of set) {
    seen.push(e.n);
    if (e.n % 2 === 1) set.delete(e);
  }
  assert.equal(seen, [1, 2, 3, 4, 5]);
  assert.equal([...set].map((e) => e.n), [2, 4]);
  const other = new LinkedSet<Entry>();
  assert.throws(() => other.add(entries[1]!), /another LinkedSet/);
  set.delete(entries[1]!);
  other.add(entries[1]!);
  assert.ok(other.has(entries[1]!) && !set.has(entries[1]!));
  assert.equal([entries[1]!.linkedPrev, entries[1]!.linkedNext], [null, null]);
});

test.run();
