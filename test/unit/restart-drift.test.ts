import { test } from 'node:test';
import assert from 'node:assert/strict';
import { publicationRemade, unknownSlotError } from '../../source-connector/restart-drift.ts';
import { reduceSnapshotTopic, slotCreated, type SnapshotState } from '../../source-connector/control-topics.ts';
import { SourceError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';

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

test('publicationRemade: another oid than the slot marker recorded means the publication was dropped and made again; initial takes every snapshot again, never is refused; an old marker (no oid) or the same one is fine', () => {
  const warned: string[] = [];
  const log = { warn: (_o: unknown, msg: string) => void warned.push(msg) } as unknown as Logger;
  const args = { slot: 's', publication: 'pub', mode: 'initial' };
  assert.equal(publicationRemade(undefined, 43, args, log), false);
  assert.equal(publicationRemade(42, 42, args, log), false);
  assert.equal(publicationRemade(42, undefined, args, log), false);
  assert.equal(warned.length, 0);
  assert.equal(publicationRemade(42, 43, args, log), true);
  assert.match(warned[0], /^publication pub was dropped and made again since slot s was created \(oid 42, now 43\): the slot did not stream the changes written while it was gone, so every table's snapshot is taken again from a new slot, after a truncate of its topic$/);
  assert.throws(() => publicationRemade(42, 43, { ...args, mode: 'never' }, log), (e: SourceError) => e instanceof SourceError && /snapshot\.mode never takes no snapshot to cover them/.test(e.message));
  // The slot's marker carries the oid (absent from markers written before it was recorded).
  const state = reduceSnapshotTopic([slotCreated('s', 16n, new Date(0), 42), slotCreated('t', 16n)]);
  assert.equal(state.slots.get('s')?.publicationOid, 42);
  assert.equal(state.slots.get('t')?.publicationOid, undefined);
});
