import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTopicIds, recreatedStall, vanishedMessage } from '../../sink-connector/topic-identity.ts';
import { topicIdentities, topicIdVersion } from '../../shared/kafka/topic-ids.ts';

const A = 'a'.repeat(32);
const B = 'b'.repeat(32);

test('checkTopicIds: a stored offset under another id stalls; rows without an id, or with nothing applied, take the current one; partitions gone are named', () => {
  const tps = [0, 1, 2].map((partition) => ({ topic: 't', partition }));
  const rows = [
    { topic: 't', partition: 0, offset: 10n, topicId: A },
    { topic: 't', partition: 1, offset: 0n, topicId: A },
    { topic: 't', partition: 3, offset: 7n, topicId: A },
    { topic: 't', partition: 4, offset: 0n, topicId: A },
  ];
  const check = checkTopicIds(tps, rows, new Map([['t', { id: B, partitions: 3 }]]));
  assert.deepEqual(check.recreated, [{ topic: 't', partition: 0, stored: 10n, was: A, now: B }]);
  assert.deepEqual(check.record, [{ topic: 't', partition: 1, id: B }, { topic: 't', partition: 2, id: B }]);
  assert.deepEqual(check.vanished, [{ topic: 't', partitions: 3, stored: [{ partition: 3, offset: 7n }] }]);
  assert.match(vanishedMessage(check.vanished[0]).msg, /t has 3 partitions now, but the sink stored offsets in partitions it no longer has: \[3\] at 7\./);
});

test('checkTopicIds: the same id, a null id (before ids, or after a replay) and a broker without ids', () => {
  const tps = [{ topic: 't', partition: 0 }, { topic: 'u', partition: 0 }];
  const rows = [{ topic: 't', partition: 0, offset: 10n, topicId: A }, { topic: 'u', partition: 0, offset: 5n, topicId: null }];
  const check = checkTopicIds(tps, rows, new Map([['t', { id: A, partitions: 1 }], ['u', { id: B, partitions: 1 }]]));
  assert.deepEqual(check, { recreated: [], vanished: [], record: [{ topic: 'u', partition: 0, id: B }] });
  assert.deepEqual(checkTopicIds(tps, rows, null), { recreated: [], vanished: [], record: [] });
});

test('recreatedStall names topic, partition, stored offset, both ids, the new range and the replay', () => {
  const s = recreatedStall({ topic: 't', partition: 2, stored: 10n, was: A, now: B, start: 0n, end: 40n }, { source: 's.x', dest: 'd.x' });
  assert.equal(s.offset, '10');
  assert.equal(s.table, 'd.x');
  assert.match(s.message, new RegExp(`t\\[2\\] was deleted and created again under the sink's stored offset 10 \\(topic id ${A} when stored, ${B} now\\); the new partition holds offsets 0\\.\\.39`));
  assert.match(s.remedy, /shardbridge replay --sink-config sink\.yaml --topic t --partition 2 --to-offset 0/);
  assert.match(recreatedStall({ topic: 't', partition: 0, stored: 3n, was: A, now: B, start: 0n, end: 0n }, {}).message, /is empty \(end offset 0\)/);
});

test('topic ids: Metadata v10..v12 only, unknown topics and null ids left out', () => {
  assert.equal(topicIdVersion({ minVersion: 0, maxVersion: 9 }), null);
  assert.equal(topicIdVersion({ minVersion: 0, maxVersion: 10 }), 10);
  assert.equal(topicIdVersion({ minVersion: 0, maxVersion: 13 }), 12);
  assert.equal(topicIdVersion(undefined), null);
  const ids = topicIdentities([
    { errorCode: 0, name: 't', id: A, partitions: 2 },
    { errorCode: 3, name: 'gone', id: '0'.repeat(32), partitions: 0 },
  ]);
  assert.deepEqual([...ids], [['t', { id: A, partitions: 2 }]]);
});
