import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planPartitionPins } from '../../source-connector/partition-pins.ts';
import { reduceSnapshotTopic, slotCreated, topicPartitions } from '../../source-connector/control-topics.ts';
import { pinnedPartitioner } from '../../shared/kafka/client.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';

test('a topic seen for the first time is pinned to the partitions it has, and recorded', () => {
  const plan = planPartitionPins(new Map([['p.public.a', 3]]), new Map(), new Set());
  assert.deepEqual([...plan.pins], [['p.public.a', 3]]);
  assert.deepEqual([...plan.record], [['p.public.a', 3]]);
  assert.deepEqual(plan.grown, []);
});

test('partitions added since the count was recorded: keys keep going by the recorded count, and it says so', () => {
  const plan = planPartitionPins(new Map([['p.public.a', 6], ['p.public.b', 2]]), new Map([['p.public.a', 3], ['p.public.b', 2]]), new Set());
  assert.deepEqual([...plan.pins], [['p.public.a', 3], ['p.public.b', 2]]);
  assert.deepEqual(plan.record.size, 0);
  assert.deepEqual(plan.grown, [{ topic: 'p.public.a', pinned: 3, partitions: 6 }]);
});

test('a topic this start created, or one with fewer partitions than recorded (made again by hand), goes by what it has now', () => {
  const plan = planPartitionPins(new Map([['p.public.a', 6], ['p.public.b', 2]]), new Map([['p.public.a', 3], ['p.public.b', 4]]), new Set(['p.public.a']));
  assert.deepEqual([...plan.pins], [['p.public.a', 6], ['p.public.b', 2]]);
  assert.deepEqual([...plan.record], [['p.public.a', 6], ['p.public.b', 2]]);
  assert.deepEqual(plan.grown, []);
  assert.deepEqual(plan.shrunk, [{ topic: 'p.public.b', recorded: 4, partitions: 2 }]);
});

test('__snapshot: the latest partitions marker per topic, a tombstone forgets it, and table and slot state ignore it', () => {
  const state = reduceSnapshotTopic([
    topicPartitions('p.public.a', 3),
    slotCreated('s', 0x10n),
    topicPartitions('p.public.b', 2),
    topicPartitions('p.public.a', 4),
    { key: Buffer.from('partitions:p.public.b'), value: null },
  ]);
  assert.deepEqual([...state.partitions], [['p.public.a', 4]]);
  assert.equal(state.tables.size, 0);
  assert.deepEqual([...state.slots.keys()], ['s']);
});

test('the producer partitioner spreads keys over the pinned count, not the partitions the topic has grown to', () => {
  const pins = new Map([['t', 3]]);
  const partition = pinnedPartitioner(pins)();
  const meta = (n: number) => Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0 })) as never;
  const keys = Array.from({ length: 200 }, (_, i) => Buffer.from(`key-${i}`));
  const moved = keys.filter((key) => partitionForKey(key, 3) !== partitionForKey(key, 6));
  assert.ok(moved.length > 50, 'murmur2 over 6 partitions moves many keys');
  for (const key of keys) {
    assert.equal(partition({ topic: 't', partitionMetadata: meta(6), message: { key, value: null } }), partitionForKey(key, 3));
    // Not pinned: every partition the topic has; pinned above what it has (made again smaller): what it has.
    assert.equal(partition({ topic: 'u', partitionMetadata: meta(6), message: { key, value: null } }), partitionForKey(key, 6));
    assert.equal(partition({ topic: 't', partitionMetadata: meta(2), message: { key, value: null } }), partitionForKey(key, 2));
  }
  assert.equal(partition({ topic: 't', partitionMetadata: meta(6), message: { key: null, value: null } }), 0);
});
