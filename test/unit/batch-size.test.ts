import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkBatchSizing, fitLatency, nextBatchRows, type BatchSizeInput, type BatchSizing } from '../../sink-connector/batch-size.ts';
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
