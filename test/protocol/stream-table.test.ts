// The connection's stream table against a Map doing the same operations: sequential ids
// opening and closing out of order, long-lived streams among them (the probes wrap and
// collide), growth, clear; the table answers every lookup as the Map does, in id order.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { StreamTable } from '../../src/protocol/stream-table.js';
import { fuzzRuns } from '../helpers/fuzz.js';

const test = suite('stream table');

function same(table: StreamTable<string>, model: Map<number, string>, probes: number[]): void {
  assert.is(table.size, model.size);
  const ids = [...model.keys()].sort((a, b) => a - b);
  assert.equal(table.keys(), ids);
  assert.equal(table.values(), ids.map((id) => model.get(id)));
  for (const id of probes) {
    assert.is(table.get(id), model.get(id), `get(${id})`);
    assert.is(table.has(id), model.has(id), `has(${id})`);
  }
}

test('streams opening in sequence and closing in any order, some staying long', () => {
  // Each step opens the next odd id or closes one of the open streams (chosen by index).
  const steps = fc.array(fc.oneof(fc.constant(-1), fc.nat(1000)), { minLength: 1, maxLength: 600 });
  fc.assert(fc.property(steps, (plan) => {
    assert.ok(plan.length > 0);
    const table = new StreamTable<string>();
    const model = new Map<number, string>();
    let next = 1;
    for (const step of plan) {
      if (step === -1 || model.size === 0) {
        table.set(next, `s${next}`);
        model.set(next, `s${next}`);
        next += 2;
      } else {
        const open = [...model.keys()];
        const id = open[step % open.length]!;
        assert.ok(table.delete(id));
        model.delete(id);
        assert.not.ok(table.delete(id), 'a second delete finds nothing');
      }
    }
    same(table, model, [...Array(next + 2).keys()]);
    table.clear();
    model.clear();
    same(table, model, [1, 3, next - 2]);
  }), { numRuns: fuzzRuns(200) });
});

test('ids far apart share home slots and are all found again', () => {
  const table = new StreamTable<string>();
  const model = new Map<number, string>();
  // Every id here has home slot 0 of the first 16.
  const ids = [1, 33, 65, 97, 129, 161, 0x7fffffe1];
  for (const id of ids) {
    table.set(id, `s${id}`);
    model.set(id, `s${id}`);
  }
  same(table, model, [...ids, 3, 31]);
  for (const id of [33, 1, 0x7fffffe1]) {
    table.delete(id);
    model.delete(id);
    same(table, model, ids);
  }
  table.set(65, 'again');
  model.set(65, 'again');
  same(table, model, ids);
  assert.throws(() => table.set(0, 'connection'), /stream id 0/);
});

test.run();
