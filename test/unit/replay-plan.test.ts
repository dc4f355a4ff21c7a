import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planReplay, widenOverTruncates } from '../../shared/cli/commands/replay.ts';
import type { RecordedArrival } from '../../sink-connector/truncate-barrier.ts';

const A = (partition: number, offset: bigint, truncateId = 't', delivery = 1): RecordedArrival => ({ truncateId, partition, offset, delivery });
const m = (...e: [number, bigint][]) => new Map(e);

test('widenOverTruncates: a whole-topic replay between the copies of a truncate takes the partitions past their copy back to it (pure)', () => {
  // Copies at 10, 6, 8; the sink applied everything (50, 40, 45); --to-offset 8.
  const arrivals = [A(0, 10n), A(1, 6n), A(2, 8n)];
  const plan = planReplay([0, 1, 2], m([0, 8n], [1, 8n], [2, 8n]), m([0, 50n], [1, 40n], [2, 45n]), m([0, 50n], [1, 40n], [2, 45n]));
  const { barrier, widened } = widenOverTruncates(plan, arrivals, 3, new Map());
  assert.equal(barrier.refused, null);
  assert.deepEqual(plan.map((r) => r.next), [8n, 6n, 8n]);
  assert.deepEqual(widened, []);
  assert.match(plan[1].note!, /^back to its copy of truncate t/);
  assert.equal(plan[0].note, undefined);
  assert.deepEqual(barrier.forget.map((a) => a.partition).sort(), [0, 1, 2]);
});

test('widenOverTruncates: a partition left alone (stored at or before the target) that passed its copy is taken back too; never forward (pure)', () => {
  // Partition 1 stalled at 7, past its copy at 6; --to-offset 8 leaves it alone.
  const plan = planReplay([0, 1], m([0, 8n], [1, 8n]), m([0, 50n], [1, 40n]), m([0, 50n], [1, 7n]));
  assert.equal(plan[1].next, null);
  const { barrier, widened } = widenOverTruncates(plan, [A(0, 10n), A(1, 6n)], 2, new Map());
  assert.equal(barrier.refused, null);
  assert.deepEqual(plan.map((r) => r.next), [8n, 6n]);
  assert.deepEqual(widened.map((r) => r.partition), [1]);
  // An arrival above the stored offset (lowered by hand): forgotten where the partition stands.
  const odd = planReplay([0, 1], m([0, 8n], [1, 8n]), m([0, 50n], [1, 40n]), m([0, 50n], [1, 3n]));
  widenOverTruncates(odd, [A(0, 10n), A(1, 6n)], 2, new Map());
  assert.equal(odd[1].next, 3n);
});

test('widenOverTruncates: a copy Kafka no longer has keeps the refusal (pure)', () => {
  const plan = planReplay([0, 1], m([0, 8n], [1, 8n]), m([0, 50n], [1, 40n]), m([0, 50n], [1, 40n]), m([1, 7n]));
  const { barrier } = widenOverTruncates(plan, [A(0, 10n), A(1, 6n)], 2, m([1, 7n]));
  assert.deepEqual(barrier.refused, A(1, 6n));
});
