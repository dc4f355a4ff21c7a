import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachedByRoot, attachedError, attachedToken, identityError, identityMismatches, newlyAttached, unloggedError, type PartitionInfo } from '../../source-connector/partitions.ts';

const part = (name: string, over: Partial<PartitionInfo> = {}): PartitionInfo => ({
  root: 1, rootName: 'public.p', rootFull: true, relid: 100 + name.length, name: `public.${name}`, sql: `"public"."${name}"`, storesRows: true, full: false, attachedBy: null, unlogged: false, ...over,
});

test('identityMismatches: per FULL root, the row-storing partitions without FULL, with the ALTER for each', () => {
  const parts = [
    part('p1'),
    part('p2', { full: true }),
    part('p3_sub', { storesRows: false }), // a sub-partitioned table stores no rows: its identity does not matter
    part('p33'),
    part('q1', { root: 2, rootName: 'public.q', rootFull: false }),
  ];
  const [p, ...rest] = identityMismatches(parts);
  assert.deepEqual(rest, [], 'a root that is not FULL has nothing to mismatch');
  assert.equal(p.table, 'public.p');
  assert.match(p.message, /^partitioned table public\.p has REPLICA IDENTITY FULL, but its partition\(s\) public\.p1, public\.p33 do not/);
  assert.match(p.remedy, /^ALTER TABLE "public"\."p1" REPLICA IDENTITY FULL; ALTER TABLE "public"\."p33" REPLICA IDENTITY FULL;/);
  const err = identityError([p]);
  assert.equal(err.context.table, 'public.p');
  assert.match(err.remedy!, /then start the source connector again$/);
  assert.deepEqual(identityMismatches([part('p1', { full: true })]), []);
});

test('attached partitions: tokens by relid and attaching xid; only ATTACHed ones not known yet are new', () => {
  const made = part('made');
  const old = part('old', { relid: 7, attachedBy: '700' });
  const fresh = part('fresh', { relid: 8, attachedBy: '800', root: 2, rootName: 'public.q' });
  assert.equal(attachedToken(old), '7@700');
  assert.deepEqual([...attachedByRoot([made, old, fresh])], [['public.p', ['7@700']], ['public.q', ['8@800']]]);
  assert.deepEqual(newlyAttached([made, old, fresh], new Set(['7@700'])), [fresh]);
  // Detached and attached again: another xid, so new again.
  assert.deepEqual(newlyAttached([{ ...old, attachedBy: '900' }], new Set(['7@700'])).map((p) => p.name), ['public.old']);
  const err = attachedError([fresh]);
  assert.match(err.message, /^partition\(s\) public\.fresh of public\.q were attached while the connector ran/);
  assert.deepEqual(err.context, { table: 'public.q', partitions: 'public.fresh' });
  assert.match(err.remedy!, /start the source connector again: it takes the snapshot again/);
});

test('unlogged partitions: the stop names each with its root, SET LOGGED for each, and how to take the snapshot again', () => {
  const err = unloggedError([part('p9', { unlogged: true }), part('q9', { root: 2, rootName: 'public.q', unlogged: true })]);
  assert.equal(err.message, 'partition(s) public.p9 of public.p, public.q9 of public.q are UNLOGGED: their rows are not written to the WAL, so none of them was streamed');
  assert.deepEqual(err.context, { table: 'public.p, public.q', partitions: 'public.p9, public.q9' });
  assert.match(err.remedy!, /^ALTER TABLE "public"\."p9" SET LOGGED; ALTER TABLE "public"\."q9" SET LOGGED; {2}Then, if rows were written to them, take the snapshot again/);
});
