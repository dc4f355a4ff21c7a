import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SkipFilter, ownSnapshotPoints } from '../../source-connector/skip-points.ts';
import { capturingLogger } from '../helpers/kafka.ts';

test("a table's changes committed before its own snapshot are left out; later ones, and other tables', are not", () => {
  const { logger, lines } = capturingLogger();
  const f = new SkipFilter({ tables: new Map([['public.added', 0x500n]]), unselectedBefore: null }, logger);
  assert.equal(f.active, true);
  f.pass(0x100n);
  assert.equal(f.leavesOut('public.added', true, 0x100n), true);
  assert.equal(f.leavesOut('public.added', false, 0x100n), true, 'under the relid of a table dropped and created again too');
  assert.equal(f.leavesOut('public.kept', true, 0x100n), false);
  assert.equal(f.leavesOut(undefined, false, 0x100n), false, 'a relation never named is for the caller to judge');
  f.pass(0x500n);
  assert.equal(f.active, false, 'every point passed: off the hot path');
  assert.equal(f.leavesOut('public.added', true, 0x500n), false);
  const said = lines().find((l) => l.table === 'public.added');
  assert.equal(said?.leftOut, 2);
  assert.match(said?.msg, /2 change\(s\) of public\.added committed before its own snapshot were left out of the stream: the snapshot holds them/);
});

test('changes of tables no longer selected are left out until the publication was aligned; partitions of selected tables never are', () => {
  const { logger, lines } = capturingLogger();
  const f = new SkipFilter({ tables: new Map(), unselectedBefore: 0x300n, partitions: new Map([['public.m_eu', 'public.m']]) }, logger);
  f.pass(0x200n);
  assert.equal(f.leavesOut('public.away', false, 0x200n), true);
  assert.equal(f.leavesOut('public.kept', true, 0x200n), false);
  assert.equal(f.leavesOut('public.m_eu', false, 0x200n), false, "a partition's change belongs to its root: the caller stops on it rather than lose it");
  f.pass(0x300n);
  assert.equal(f.active, false);
  assert.equal(f.leavesOut('public.away', false, 0x300n), false, 'after the alignment a change of a table not selected is an error again');
  assert.ok(lines().some((l) => l.level === 40 && l.table === 'public.away' && l.leftOut === 1 && /no longer selected/.test(l.msg)));
});

test('changes of tables no longer selected from transactions open when the publication was aligned are left out, whenever they commit', () => {
  const { logger, lines } = capturingLogger();
  // Transaction 700 wrote public.away before the start took it out of the publication: pgoutput decodes it with that catalog.
  const f = new SkipFilter({ tables: new Map(), unselectedBefore: 0x300n, runningAtAlignment: new Set([700]) }, logger);
  f.pass(0x400n);
  assert.equal(f.active, false, 'the filter is off the hot path all the same');
  assert.equal(f.leavesOut('public.away', false, 0x400n, 700), true);
  assert.equal(f.leavesOut('public.away', false, 0x400n, 701), false, 'a later transaction: the publication was altered by hand, an error');
  assert.equal(f.leavesOut('public.kept', true, 0x400n, 700), false);
  assert.ok(lines().some((l) => l.level === 40 && l.table === 'public.away' && l.xid === 700 && /open when the publication was aligned/.test(l.msg)), JSON.stringify(lines()));
});

test("a partition's changes under its own name before its root's own snapshot are in that snapshot: left out", () => {
  const { logger, lines } = capturingLogger();
  // A table with changes in the slot, then ATTACHed to a selected partitioned table: the root is snapshotted alone.
  const f = new SkipFilter({ tables: new Map([['public.m', 0x500n]]), unselectedBefore: 0x300n, partitions: new Map([['public.m_eu', 'public.m']]) }, logger);
  f.pass(0x200n);
  assert.equal(f.leavesOut('public.m_eu', false, 0x200n), true);
  f.pass(0x400n);
  assert.equal(f.leavesOut('public.m_eu', false, 0x400n), true, 'after the alignment too: the point is the snapshot\'s');
  f.pass(0x500n);
  assert.equal(f.leavesOut('public.m_eu', false, 0x500n), false, 'at its root\'s point: for the caller to judge');
  assert.ok(lines().some((l) => l.table === 'public.m' && l.leftOut === 2), JSON.stringify(lines()));
});

test("whether a table's own snapshot holds its changes at a commit position, without counting them", () => {
  const { logger, lines } = capturingLogger();
  const f = new SkipFilter({ tables: new Map([['public.m', 0x500n]]), unselectedBefore: null, partitions: new Map([['public.m_eu', 'public.m']]) }, logger);
  assert.equal(f.heldBySnapshot('public.m', 0x400n), true);
  assert.equal(f.heldBySnapshot('public.m_eu', 0x400n), true);
  assert.equal(f.heldBySnapshot('public.kept', 0x400n), false);
  assert.equal(f.heldBySnapshot('public.m', 0x500n), false);
  f.pass(0x600n);
  assert.equal(lines().length, 0, 'nothing counted, nothing said');
});

test('own-snapshot points ahead of where the stream resumes; the slot\'s first snapshot is never ahead', () => {
  const completed = [
    { table: 'public.first', consistentPoint: 0x100n },
    { table: 'public.added', consistentPoint: 0x900n },
  ];
  assert.deepEqual(ownSnapshotPoints(completed, 0x400n), new Map([['public.added', 0x900n]]));
  assert.deepEqual(ownSnapshotPoints(completed, 0x900n), new Map());
  assert.deepEqual(ownSnapshotPoints(completed, null), new Map([['public.first', 0x100n], ['public.added', 0x900n]]));
});

test("while a table's own snapshot is copied, its changes at or past its point wait (a partition's under its root), others' and earlier ones do not; none once it is done", async () => {
  const { logger } = capturingLogger();
  let done!: () => void;
  const copied = new Promise<void>((resolve) => (done = resolve));
  const f = new SkipFilter({ tables: new Map([['public.m', 0x500n]]), unselectedBefore: null, partitions: new Map([['public.m_eu', 'public.m']]), copying: { tables: new Set(['public.m']), done: copied } }, logger);
  assert.equal(f.copyPending, true);
  assert.equal(f.waitsForCopy('public.m', 0x400n), false, 'left out, not waited for');
  assert.equal(f.waitsForCopy('public.m', 0x500n), true);
  assert.equal(f.waitsForCopy('public.m_eu', 0x600n), true);
  assert.equal(f.waitsForCopy('public.other', 0x600n), false);
  f.pass(0x600n);
  assert.equal(f.waitsForCopy('public.m', 0x600n), true, 'its point passed, the copy still under way');
  done();
  await f.copied;
  assert.equal(f.copyPending, false);
  assert.equal(f.waitsForCopy('public.m', 0x700n), false);
});
