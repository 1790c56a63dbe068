// The status page's last minutes: per-second slots exported as 5-second points, summed across
// processes on the same alignment, and summed up as req/s, the 5xx share and percentiles.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RollingStats, SPAN_S, STEP_S, summarize, sumPoints } from '../../src/common/rolling.js';

const test = suite('common/rolling');
/** An epoch time in ms at the start of a point (a multiple of STEP_S seconds). */
const T0 = 1_800_000_000_000;

test('a minute of responses: classes, the 5xx share, and percentiles within their buckets', () => {
  const w = new RollingStats();
  for (let i = 0; i < 60; i++) w.record(200, 0.003, T0 + i * 100); // 3 ms: the (2.5, 5] ms bucket
  for (let i = 0; i < 30; i++) w.record(500, 0.2, T0 + 6000 + i * 100); // 200 ms: (100, 250]
  for (let i = 0; i < 10; i++) w.record(404, 0.0004, T0 + 9000 + i * 10);
  const now = T0 + 10_500;
  const s = summarize(w.export(now), now);
  assert.equal(s.minute.classes, { '1xx': 0, '2xx': 60, '3xx': 0, '4xx': 10, '5xx': 30 });
  assert.is(s.minute.requests, 100);
  assert.is(s.minute.share5xx, 0.3);
  assert.ok(s.minute.p50! > 2.5 && s.minute.p50! <= 5, String(s.minute.p50));
  assert.ok(s.minute.p99! > 100 && s.minute.p99! <= 250, String(s.minute.p99));
  // req/s: the two complete points before the one holding `now` (T0..T0+10 s): 100 in 10 s.
  assert.is(s.rps, 10);
  assert.is(s.spark.rps.length, SPAN_S / STEP_S - 1);
  assert.is(s.spark.errors.at(-1), 30 / STEP_S);
});

test('a response older than the span is gone; one older than a minute leaves the minute', () => {
  const w = new RollingStats();
  w.record(500, 0.01, T0);
  w.record(200, 0.01, T0 + 61_000);
  const now = T0 + 62_000;
  assert.is(summarize(w.export(now), now).minute.requests, 1);
  const later = T0 + (SPAN_S + 10) * 1000;
  const s = summarize(w.export(later), later);
  assert.is(s.minute.requests, 0);
  assert.is(s.minute.p99, null);
  assert.ok(s.spark.rps.every((x) => x === 0 || x === 0.2));
});

test('processes\' points add up on the latest alignment (one exported a point earlier)', () => {
  const a = new RollingStats();
  const b = new RollingStats();
  a.record(200, 0.001, T0 + 1000);
  b.record(500, 0.001, T0 + 2000);
  b.record(200, 0.001, T0 + STEP_S * 1000 + 100);
  const sum = sumPoints([a.export(T0 + 3000), b.export(T0 + STEP_S * 1000 + 200)]);
  const now = T0 + STEP_S * 1000 + 200;
  const s = summarize(sum, now);
  assert.equal(s.minute.classes['2xx'], 2);
  assert.equal(s.minute.classes['5xx'], 1);
  assert.is(s.spark.errors.at(-1), 1 / STEP_S);
});

test.run();
