import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import { parseTruncateKey, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { judgeBarrier, planBarrierRewind, type RecordedArrival } from '../../sink-connector/truncate-barrier.ts';
import { truncateMarks } from '../../sink-connector/chunk-items.ts';

test('truncate keys: one per partition, each hashing to its own partition, in the wire format, naming the truncate', () => {
  for (const partitions of [1, 2, 3, 6, 12]) {
    const keys = truncateKeys(42, '0/16B3748/0', partitions);
    assert.equal(keys.length, partitions);
    keys.forEach((key, p) => {
      assert.equal(partitionForKey(key, partitions), p);
      assert.equal(decodeWireHeader(key).schemaId, 42);
      assert.deepEqual(parseTruncateKey(key), { id: '0/16B3748/0', partitions, partition: p });
    });
  }
});

test('truncate keys are deterministic: a replayed truncate gets the same keys', () => {
  assert.deepEqual(truncateKeys(7, '1/0/2', 6), truncateKeys(7, '1/0/2', 6));
});

test('parseTruncateKey: null for a null key (an older source) and for bytes that are not a truncate key', () => {
  assert.equal(parseTruncateKey(null), null);
  assert.equal(parseTruncateKey(Buffer.from('{"id":1}')), null);
  assert.equal(parseTruncateKey(Buffer.from([0, 0, 0, 0, 1])), null);
});

const arrivals = (m: Record<number, number[]>) => new Map(Object.entries(m).map(([p, offs]) => [Number(p), offs.map(BigInt)]));

test('barrier: the first partitions to arrive wait, the last one truncates, the waiting ones then pass', () => {
  assert.deepEqual(judgeBarrier(arrivals({ 0: [10] }), 3, 0, 10n, 0), { verdict: 'wait', round: 1 });
  assert.deepEqual(judgeBarrier(arrivals({ 0: [10], 2: [7] }), 3, 2, 7n, 0), { verdict: 'wait', round: 1 });
  assert.deepEqual(judgeBarrier(arrivals({ 0: [10], 1: [3], 2: [7] }), 3, 1, 3n, 0), { verdict: 'truncate', round: 1 });
  // Partition 0 looks again after the truncate: it passes its copy without truncating again.
  assert.deepEqual(judgeBarrier(arrivals({ 0: [10], 1: [3], 2: [7] }), 3, 0, 10n, 1), { verdict: 'pass', round: 1 });
});

test('barrier: one partition truncates at once', () => {
  assert.deepEqual(judgeBarrier(arrivals({ 0: [5] }), 1, 0, 5n, 0), { verdict: 'truncate', round: 1 });
});

test('barrier: a replayed truncate is a second round, truncated again once every partition got its second copy', () => {
  const a = arrivals({ 0: [10, 50], 1: [3], 2: [7, 40] });
  assert.deepEqual(judgeBarrier(a, 3, 0, 50n, 1), { verdict: 'wait', round: 2 });
  const b = arrivals({ 0: [10, 50], 1: [3, 30], 2: [7, 40] });
  assert.deepEqual(judgeBarrier(b, 3, 1, 30n, 1), { verdict: 'truncate', round: 2 });
  // Re-reading the first copy (offsets below the stored one are never re-applied, but the judge is pure): round 1, done.
  assert.deepEqual(judgeBarrier(b, 3, 1, 3n, 2), { verdict: 'pass', round: 1 });
});

test('truncateMarks: only t records whose key names several partitions', () => {
  const key3 = truncateKeys(9, '0/1/0', 3)[1];
  const key1 = truncateKeys(9, '0/2/0', 1)[0];
  const item = (offset: string, op: 'c' | 't', key: Buffer | null) => ({
    raw: { topic: 'x', partition: 1, offset, key, value: Buffer.alloc(0) },
    decoded: { change: { op } } as never,
  });
  const marks = truncateMarks([item('1', 'c', key3), item('2', 't', key3), item('3', 't', key1), item('4', 't', null)]);
  assert.deepEqual([...marks], [['2', { id: '0/1/0', partitions: 3 }]]);
});

const A = (truncateId: string, partition: number, offset: number): RecordedArrival => ({ truncateId, partition, offset: BigInt(offset) });

test('replay over a truncate: every partition rewound before its copy forgets the arrivals and the round', () => {
  const arrivals = [A('0/1A/1', 0, 10), A('0/1A/1', 1, 7), A('0/1A/1', 2, 12), A('0/2B/1', 0, 30), A('0/2B/1', 1, 25), A('0/2B/1', 2, 31)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 0n], [1, 0n], [2, 0n]]), 3);
  assert.equal(plan.refused, null);
  assert.equal(plan.forget.length, 6);
  assert.deepEqual([...plan.rounds], [['0/1A/1', 0], ['0/2B/1', 0]]);
});

test('replay between two truncates: only the later one is applied again', () => {
  const arrivals = [A('first', 0, 10), A('first', 1, 7), A('second', 0, 30), A('second', 1, 25)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 11n], [1, 8n]]), 2);
  assert.equal(plan.refused, null);
  assert.deepEqual(plan.forget, [A('second', 0, 30), A('second', 1, 25)]);
  assert.deepEqual([...plan.rounds], [['second', 0]]);
});

test('replay to the copy itself re-applies it; to just after it does not', () => {
  const arrivals = [A('t', 0, 10), A('t', 1, 7)];
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[0, 10n], [1, 7n]]), 2).forget.length, 2);
  const after = planBarrierRewind(arrivals, new Map([[0, 11n], [1, 8n]]), 2);
  assert.deepEqual([after.forget, after.refused, after.rounds.size], [[], null, 0]);
});

test('replay of one partition across a truncate that another partition passed: refused, naming that copy', () => {
  const arrivals = [A('t', 0, 10), A('t', 1, 7), A('t', 2, 12)];
  const plan = planBarrierRewind(arrivals, new Map([[1, 0n]]), 3);
  assert.deepEqual(plan.refused, A('t', 0, 10));
  // The same with every partition moved, but one only to after its copy.
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[0, 11n], [1, 0n], [2, 0n]]), 3).refused, A('t', 0, 10));
});

test('replay over a second round keeps the first one done', () => {
  // Delivered twice (a source replay): offsets 10 and 40 on partition 0, 7 and 35 on partition 1.
  const arrivals = [A('t', 0, 10), A('t', 1, 7), A('t', 0, 40), A('t', 1, 35)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 20n], [1, 20n]]), 2);
  assert.equal(plan.refused, null);
  assert.deepEqual([...plan.rounds], [['t', 1]]);
});
