// The response deadlines under one timer: entries expire in the order they started waiting, a
// deleted one never does, one added later waits its own full time, and one expired leaves the list.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ResponseDeadlines, type Waiting } from '../../src/frontend/upstream/response-deadlines.js';

const test = suite('frontend/response-deadlines');

// The list's timer is unref'd (the sockets of the exchanges keep a front up): this keeps the test up.
let keepAlive: NodeJS.Timeout | null = null;
test.before(() => { keepAlive = setInterval(() => {}, 1000); });
test.after(() => { if (keepAlive !== null) clearInterval(keepAlive); });

class Entry implements Waiting<Entry> {
  readonly name: string;
  deadlineAt = 0;
  deadlineIn: object | null = null;
  deadlinePrev: Entry | null = null;
  deadlineNext: Entry | null = null;
  constructor(name: string) {
    this.name = name;
  }
}

/** Resolves once `list` has expired `n` entries, with their names in order. */
function expiries(ms: number): { list: ResponseDeadlines<Entry>; names: string[]; after: (n: number) => Promise<string[]> } {
  const names: string[] = [];
  const waiters: { n: number; resolve: (names: string[]) => void }[] = [];
  const list = new ResponseDeadlines<Entry>(ms, (e) => {
    assert.is(e.deadlineIn, null, 'an expired entry is out of the list');
    names.push(e.name);
    for (const w of waiters) if (names.length >= w.n) w.resolve([...names]);
  });
  return { list, names, after: (n) => new Promise((resolve) => { if (names.length >= n) resolve([...names]); else waiters.push({ n, resolve }); }) };
}

test('entries expire in the order they started waiting; deleted ones never', async () => {
  const { list, after } = expiries(20);
  const entries = ['a', 'b', 'c', 'd', 'e'].map((n) => new Entry(n));
  for (const e of entries) list.add(e);
  list.add(entries[0]!); // already waiting: its deadline stays
  list.delete(entries[1]!);
  list.delete(entries[4]!);
  list.delete(entries[4]!); // not waiting any more: nothing
  assert.is(list.size, 3);
  assert.equal(await after(3), ['a', 'c', 'd']);
  assert.is(list.size, 0);
});

test('an entry added while others wait, or again after it left, waits its own full time', async () => {
  const { list, names, after } = expiries(30);
  const first = new Entry('first');
  const again = new Entry('again');
  list.add(first);
  list.add(again);
  list.delete(again);
  await after(1);
  assert.equal(names, ['first']);
  const late = new Entry('late');
  list.add(late);
  list.add(again);
  list.add(first); // expired before: it can wait again
  assert.equal(await after(4), ['first', 'late', 'again', 'first']);
});

test('an entry whose deadline lies further ahead than its time (the wall clock stepped back since) waits its time from the next firing', async () => {
  const { list, after } = expiries(20);
  const stepped = new Entry('stepped');
  list.add(stepped);
  stepped.deadlineAt += 3_600_000; // as if added while the clock read an hour later
  const bound = new Promise<string[]>((resolve) => { setTimeout(() => resolve(['not within 5 s']), 5000).unref(); });
  assert.equal(await Promise.race([after(1), bound]), ['stepped']);
});

test.run();
