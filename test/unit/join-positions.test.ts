/** Where a new assignment's partitions start, and which need a seek (join-positions.ts, pure). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planStart } from '../../sink-connector/join-positions.ts';
import { tpKey } from '../../sink-connector/offsets.ts';

const tps = [0, 1, 2, 3].map((partition) => ({ topic: 't', partition }));

test('every partition starts at its stored offset (0 without one); only those whose committed offset differs are sought', () => {
  const stored = new Map([
    [tpKey('t', 0), 10n],
    [tpKey('t', 1), 20n],
    [tpKey('t', 2), 30n],
  ]);
  // p0 committed where stored; p1 behind; p2 ahead; p3 neither stored nor committed.
  const committed = new Map([
    [tpKey('t', 0), 10n],
    [tpKey('t', 1), 5n],
    [tpKey('t', 2), 40n],
  ]);
  const plan = planStart(tps, stored, committed);
  assert.deepEqual(plan.positions, [
    [tpKey('t', 0), 10n],
    [tpKey('t', 1), 20n],
    [tpKey('t', 2), 30n],
    [tpKey('t', 3), 0n],
  ]);
  assert.deepEqual(plan.seeks, [
    { topic: 't', partition: 1, offset: 20n },
    { topic: 't', partition: 2, offset: 30n },
    { topic: 't', partition: 3, offset: 0n },
  ]);
  // Said at start: p1 and p2 have a group offset the sink does not go by; p3 has none.
  assert.deepEqual(plan.overridden, [
    { topic: 't', partition: 1, group: tpKeyGroup(committed, 1), stored: 20n },
    { topic: 't', partition: 2, group: tpKeyGroup(committed, 2), stored: 30n },
  ]);
});

const tpKeyGroup = (committed: Map<string, bigint>, p: number): bigint => committed.get(tpKey('t', p))!;

test('committed offsets that could not be read: every partition is sought', () => {
  const plan = planStart(tps.slice(0, 2), new Map([[tpKey('t', 0), 7n]]), null);
  assert.deepEqual(
    plan.seeks.map((s) => [s.partition, s.offset]),
    [
      [0, 7n],
      [1, 0n],
    ],
  );
});
