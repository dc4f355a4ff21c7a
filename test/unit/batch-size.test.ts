import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkBatchSizing, FITS_TO_GROW, fitLatency, nextBatchRows, TooBigSizes, underCeiling, type BatchSizeInput, type BatchSizing } from '../../sink-connector/batch-size.ts';
import { ConfigError } from '../../shared/errors.ts';

const sizing: BatchSizing = { floor: 500, maxRows: 20_000, targetMs: 1_000 };
const fast = [{ rows: 1_000, ms: 10 }]; // 0.01 ms/row: latency allows 100k rows

const cases: { name: string; input: BatchSizeInput; want: number }[] = [
  { name: 'live (lag below the floor): the floor', input: { current: 8_000, lag: 120, recent: fast }, want: 500 },
  { name: 'no lag at all', input: { current: 500, lag: 0, recent: [] }, want: 500 },
  { name: 'small backlog: take it in one batch', input: { current: 2_000, lag: 1_500, recent: fast }, want: 1_500 },
  { name: 'big backlog grows by doubling', input: { current: 1_000, lag: 1_000_000, recent: fast }, want: 2_000 },
  { name: 'big backlog without measurements also doubles', input: { current: 500, lag: 1_000_000, recent: [] }, want: 1_000 },
  { name: 'capped at maxRows', input: { current: 16_000, lag: 1_000_000, recent: fast }, want: 20_000 },
  { name: 'held under the latency target (0.5 ms/row → 2,000 rows)', input: { current: 8_000, lag: 1_000_000, recent: [{ rows: 8_000, ms: 4_000 }] }, want: 2_000 },
  { name: 'never below the floor, however slow', input: { current: 1_000, lag: 1_000_000, recent: [{ rows: 1_000, ms: 60_000 }] }, want: 500 },
  {
    name: 'per-batch cost alone above the target: the floor',
    input: { current: 4_000, lag: 1_000_000, recent: [{ rows: 1_000, ms: 1_500 }, { rows: 2_000, ms: 1_600 }] },
    want: 500,
  },
  { name: 'shrinks at once when the lag drops', input: { current: 20_000, lag: 3_000, recent: fast }, want: 3_000 },
  { name: 'a current size below the floor is treated as the floor', input: { current: 10, lag: 1_000_000, recent: fast }, want: 1_000 },
];

for (const tc of cases) {
  test(`nextBatchRows: ${tc.name}`, () => {
    assert.equal(nextBatchRows(tc.input, sizing), tc.want);
  });
}

test('fitLatency separates the per-batch cost from the per-row cost', () => {
  assert.equal(fitLatency([]), null);
  assert.equal(fitLatency([{ rows: 0, ms: 50 }]), null);
  assert.deepEqual(fitLatency([{ rows: 1_000, ms: 500 }]), { fixedMs: 0, perRowMs: 0.5 });
  assert.deepEqual(
    fitLatency([
      { rows: 1_000, ms: 300 },
      { rows: 3_000, ms: 500 },
      { rows: 0, ms: 999 },
    ]),
    { fixedMs: 200, perRowMs: 0.1 },
  );
  // Noise that makes the cost fall with size: back to the plain ratio.
  assert.deepEqual(
    fitLatency([
      { rows: 1_000, ms: 400 },
      { rows: 3_000, ms: 200 },
    ]),
    { fixedMs: 0, perRowMs: 0.15 },
  );
});

test('catching up converges on the latency target, then falls back to the floor when live', () => {
  let current = sizing.floor;
  const seen: number[] = [];
  const recent: { rows: number; ms: number }[] = [];
  for (let i = 0; i < 12; i++) {
    current = nextBatchRows({ current, lag: 5_000_000, recent: recent.slice(-4) }, sizing);
    seen.push(current);
    recent.push({ rows: current, ms: 200 + current * 0.1 }); // fixed cost plus 0.1 ms/row
  }
  // 200 ms + 0.1 ms/row meets the 1 s target at 8,000 rows: doubling stops there.
  assert.deepEqual(seen.slice(0, 5), [1_000, 2_000, 4_000, 8_000, 8_000]);
  assert.equal(seen[seen.length - 1], 8_000);
  const last = seen[seen.length - 1];
  assert.equal(nextBatchRows({ current: last, lag: 10, recent }, sizing), sizing.floor);
});

test('checkBatchSizing names the bad key', () => {
  assert.deepEqual(checkBatchSizing(sizing), sizing);
  for (const [bad, key] of [
    [{ ...sizing, floor: 0 }, 'floor'],
    [{ ...sizing, maxRows: 100 }, 'maxRows'],
    [{ ...sizing, targetMs: 0 }, 'targetMs'],
  ] as const) {
    assert.throws(() => checkBatchSizing(bad), (err: unknown) => err instanceof ConfigError && err.context.key === key);
  }
});

test('a ceiling holds the size under what fit, below the floor too, live or catching up', () => {
  assert.equal(nextBatchRows({ current: 1_000, lag: 1_000_000, recent: fast, ceiling: 1_500 }, sizing), 1_500);
  assert.equal(nextBatchRows({ current: 1_000, lag: 1_000_000, recent: fast, ceiling: 5_000 }, sizing), 2_000, 'a ceiling above the size changes nothing');
  assert.equal(nextBatchRows({ current: 500, lag: 10, recent: fast, ceiling: 120 }, sizing), 120, 'live: under the floor');
  assert.equal(underCeiling(10_000, undefined), 10_000);
  assert.equal(underCeiling(10_000, 0.4), 1, 'at least one record');
});

test('TooBigSizes: the largest piece that applied is the ceiling; pieces that all failed set none; it doubles after fits near it, and is forgotten at maxRows', () => {
  const sizes = new TooBigSizes(20_000, 4);
  assert.equal(sizes.ceiling('t'), undefined);
  sizes.tooBig('t', 8_000, 0);
  assert.equal(sizes.ceiling('t'), undefined, 'down to one record and stalled (a lock, a slow row): nothing about size');
  sizes.tooBig('t', 8_000, 2_000);
  assert.equal(sizes.ceiling('t'), 2_000);
  assert.equal(sizes.ceiling('other'), undefined, 'per topic');
  sizes.tooBig('t', 2_000, 1_000);
  assert.equal(sizes.ceiling('t'), 1_000, 'a batch cut at the ceiling that fails again: lower');
  for (let i = 0; i < 10; i++) sizes.applied('t', 100);
  assert.equal(sizes.ceiling('t'), 1_000, 'batches far below it (live traffic) say nothing about it');
  for (let i = 0; i < 3; i++) sizes.applied('t', 1_000);
  assert.equal(sizes.ceiling('t'), 1_000);
  sizes.applied('t', 500);
  assert.equal(sizes.ceiling('t'), 2_000, 'doubled after 4 fits of at least half of it');
  for (let i = 0; i < 12; i++) sizes.applied('t', 2_000 * 2 ** Math.floor(i / 4));
  assert.equal(sizes.ceiling('t'), 16_000);
  for (let i = 0; i < 4; i++) sizes.applied('t', 16_000);
  assert.equal(sizes.ceiling('t'), undefined, 'grown to maxRows: forgotten');
});

test('a catch-up under a statement_timeout shorter than the latency target: timed out once, then sized under it, trying above it once per FITS_TO_GROW batches', () => {
  // The destination applies fast (the model wants maxRows) but times out any batch over 3,000 rows.
  const limit = 3_000;
  const run = (withCeiling: boolean) => {
    const sizes = new TooBigSizes(sizing.maxRows);
    let current = sizing.floor;
    let timeouts = 0;
    let applied = 0;
    for (let batch = 0; batch < 200; batch++) {
      current = nextBatchRows({ current, lag: 10_000_000, recent: fast }, sizing);
      const cut = underCeiling(current, withCeiling ? sizes.ceiling('t') : undefined);
      if (cut <= limit) {
        sizes.applied('t', cut);
        applied += cut;
        continue;
      }
      timeouts++;
      // In halves, down to pieces that fit (partition-batch.ts, bisect).
      let piece = cut;
      while (piece > limit) piece = Math.floor(piece / 2);
      for (let done = 0; done < cut; done += piece) sizes.applied('t', Math.min(piece, cut - done));
      sizes.tooBig('t', cut, piece);
      applied += cut;
    }
    return { timeouts, applied };
  };
  const before = run(false);
  assert.ok(before.timeouts > 150, `without a ceiling nearly every batch timed out (${before.timeouts})`);
  const after = run(true);
  assert.ok(after.timeouts >= 1, 'the timeout happened');
  assert.ok(after.timeouts <= Math.ceil(200 / FITS_TO_GROW) + 1, `${after.timeouts} timeouts in 200 batches`);
});
