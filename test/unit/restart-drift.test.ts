import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unknownSlotError } from '../../source-connector/restart-drift.ts';
import type { SnapshotState } from '../../source-connector/control-topics.ts';

const args = { slot: 's1', topicPrefix: 'p2', snapshotTopic: 'p2.__snapshot', mode: 'initial', topicsExisted: false };
const empty = (): SnapshotState => ({ tables: new Map(), slots: new Map(), partitions: new Map() });

test('a slot the prefix\'s __snapshot topic knows nothing of is refused under snapshot mode initial only', () => {
  const e = unknownSlotError(empty(), args);
  assert.equal(e?.context?.key, 'topicPrefix');
  assert.match(e!.message, /replication slot "s1" exists, but p2\.__snapshot has no record of it/);
  assert.match(e!.remedy ?? '', /SELECT pg_drop_replication_slot\('s1'\)/);
  assert.equal(unknownSlotError(empty(), { ...args, mode: 'never' }), null, 'never: the slot streams on');
  assert.equal(unknownSlotError(empty(), { ...args, topicsExisted: true }), null, "the prefix's table topics existed: __snapshot was lost, the snapshot is taken again after a truncate");
  const known = empty();
  known.slots.set('other', { kind: 'slot-created', slot: 'other', consistentPoint: '0/1', at: '' });
  assert.equal(unknownSlotError(known, args), null, 'a topic with markers: the snapshot state decides');
});
