import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reduceSnapshotTopic, slotCreated, snapshotStarted } from '../../source-connector/control-topics.ts';
import { snapshotTopicLost } from '../../source-connector/earlier-snapshots.ts';

test('__snapshot counts as lost only when it holds no marker while the slot exists', () => {
  const empty = reduceSnapshotTopic([]);
  assert.equal(snapshotTopicLost(empty, true), true);
  assert.equal(snapshotTopicLost(empty, false), false, 'a first start: no slot yet');
  const slotOnly = reduceSnapshotTopic([slotCreated('s', 16n)]);
  assert.equal(snapshotTopicLost(slotOnly, true), false);
  const tableOnly = reduceSnapshotTopic([snapshotStarted({ table: 'public.a', topic: 'p.public.a', slot: 's', consistentPoint: 16n, estimatedRows: 1 })]);
  assert.equal(snapshotTopicLost(tableOnly, true), false);
});
