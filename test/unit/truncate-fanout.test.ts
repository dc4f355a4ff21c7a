import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';
import { parseTruncateKey, partitionOfKey, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { judgeBarrier } from '../../sink-connector/truncate-barrier.ts';
import { truncateMarks } from '../../sink-connector/partition-batch.ts';

test('truncate keys: one per partition, each hashing to its own partition, in the wire format, naming the truncate', () => {
  for (const partitions of [1, 2, 3, 6, 12]) {
    const keys = truncateKeys(42, '0/16B3748/0', partitions);
    assert.equal(keys.length, partitions);
    keys.forEach((key, p) => {
      assert.equal(partitionOfKey(key, partitions), p);
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
