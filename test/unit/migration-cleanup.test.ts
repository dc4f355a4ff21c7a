/** The pure cleanup core: what blocks, what --force overrides, what is dropped in which order. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupReport, planCleanup, renderCleanup, type CleanupFacts } from '../../shared/migration/cleanup.ts';
import { buildProgram } from '../../shared/cli/main.ts';

const facts = (over: Partial<CleanupFacts> = {}): CleanupFacts => ({
  slotName: 'shardbridge_slot',
  publicationName: 'shardbridge_pub',
  slot: { active: false, activePid: null, walStatus: 'reserved', confirmedLsn: '0/3000000', currentLsn: '0/3000100' },
  publicationExists: true,
  pending: { changes: 0 },
  partitions: [{ topic: 'sb.public.t', partition: 0, kind: 'table', end: 10, applied: 10 }, { topic: 'sb.public.t', partition: 1, kind: 'table', end: 0, applied: null }],
  sinkOffsetsExist: true,
  sinkSessions: 0,
  pendingForeignKeys: [],
  controlObjects: [{ kind: 'table', name: 'shardbridge.sink_offsets' }, { kind: 'schema', name: 'shardbridge_staging' }, { kind: 'schema', name: 'shardbridge' }],
  topics: ['sb.public.t', 'sb.__snapshot'],
  ...over,
});
const none = { force: false, dropControlTables: false, dropTopics: false };

test('caught up and stopped: drop the slot and the publication, nothing else unless asked', () => {
  const p = planCleanup(facts(), none);
  assert.equal(p.proceed, true);
  assert.deepEqual(p.blockers, []);
  assert.deepEqual(p.actions.map((a) => `${a.kind} ${a.object}`), ['drop replication slot shardbridge_slot', 'drop publication shardbridge_pub']);
  const all = planCleanup(facts(), { force: false, dropControlTables: true, dropTopics: true });
  assert.deepEqual(all.actions.map((a) => `${a.kind} ${a.object}`), [
    'drop replication slot shardbridge_slot', 'drop publication shardbridge_pub', 'drop table shardbridge.sink_offsets', 'drop schema shardbridge_staging', 'drop schema shardbridge', 'delete topics 2 topic(s)',
  ]);
});

test('refused: a streaming source connector, unpublished changes in the slot, a sink behind', () => {
  const streaming = planCleanup(facts({ slot: { active: true, activePid: 77, walStatus: 'reserved', confirmedLsn: '0/1', currentLsn: '0/2' }, pending: null }), none);
  assert.equal(streaming.proceed, false);
  assert.match(streaming.blockers[0].message, /still streams from the slot \(walsender pid 77\)/);
  assert.deepEqual(streaming.overridden, []);

  const pending = planCleanup(facts({ pending: { changes: 3 } }), none);
  assert.match(pending.blockers[0].message, /holds 3 row change\(s\) after its confirmed position 0\/3000000/);
  const unknown = planCleanup(facts({ pending: { changes: null, error: 'publication "x" does not exist' } }), none);
  assert.match(unknown.blockers[0].message, /cannot tell .*publication "x" does not exist/);

  const behind = planCleanup(facts({ partitions: [{ topic: 'sb.public.t', partition: 0, kind: 'table', end: 10, applied: 4 }, { topic: 'sb.public.u', partition: 2, kind: 'table', end: 3, applied: null }] }), none);
  assert.equal(behind.blockers[0].message, 'the sink has not applied 9 record(s) on sb.public.t[0], sb.public.u[2]');
  const neverRan = planCleanup(facts({ sinkOffsetsExist: false }), none);
  assert.match(neverRan.blockers[0].message, /the sink has applied nothing/);
  const noKafka = planCleanup(facts({ partitions: null, kafkaError: 'ECONNREFUSED' }), none);
  assert.match(noKafka.blockers[0].message, /cannot read the topic end offsets: ECONNREFUSED/);
});

test('--drop-control-tables is refused while a sink is connected; foreign keys not created yet keep their table', () => {
  const objects = [{ kind: 'table' as const, name: 'shardbridge.sink_offsets' }, { kind: 'table' as const, name: 'shardbridge.deferred_foreign_keys' }, { kind: 'schema' as const, name: 'shardbridge' }];
  const p = planCleanup(facts({ sinkSessions: 2, controlObjects: objects }), { ...none, dropControlTables: true });
  assert.equal(p.proceed, false);
  assert.deepEqual(p.blockers.map((b) => b.object), ['destination']);
  assert.match(p.blockers[0].remedy, /stop the sink connector first/);
  assert.equal(planCleanup(facts({ sinkSessions: 2 }), none).proceed, true, 'without the option the sink may keep running');
  // --help says so: it listed 'a sink is connected' among what --force overrides, as if it blocked the slot's drop too.
  const force = buildProgram(async () => {}, () => {}, () => {}).commands.find((c) => c.name() === 'cleanup')?.options.find((o) => o.long === '--force');
  assert.match(force?.description ?? '', /the control tables or topics even while a sink is connected \(a running sink alone does not stop the slot's drop\)/);

  const kept = planCleanup(facts({ controlObjects: objects, pendingForeignKeys: ['"public"."orders".orders_customer_fk'] }), { ...none, dropControlTables: true, force: true });
  assert.deepEqual(kept.actions.map((a) => `${a.kind} ${a.object}`).slice(2), ['drop table shardbridge.sink_offsets', 'drop schema shardbridge']);
  assert.match(kept.notes[0], /kept shardbridge\.deferred_foreign_keys: 1 foreign key\(s\) .*orders_customer_fk.*shardbridge cutover creates them/);
  const created = planCleanup(facts({ controlObjects: objects }), { ...none, dropControlTables: true });
  assert.ok(created.actions.some((a) => a.object === 'shardbridge.deferred_foreign_keys'));
});

test('--drop-topics: refused while a sink reads them; the stored positions of the deleted topics go too, unless their tables are dropped', () => {
  const objects = [
    { kind: 'table' as const, name: 'shardbridge.sink_offsets' }, { kind: 'table' as const, name: 'shardbridge.snapshot_status' },
    { kind: 'table' as const, name: 'shardbridge.sequence_sync' }, { kind: 'table' as const, name: 'shardbridge.sink_truncates' },
    { kind: 'schema' as const, name: 'shardbridge' },
  ];
  const reading = planCleanup(facts({ sinkSessions: 1, controlObjects: objects }), { ...none, dropTopics: true });
  assert.equal(reading.proceed, false);
  assert.match(reading.blockers[0].message, /a sink connector is connected to the destination \(1 session\(s\)\): it reads the topics/);

  const p = planCleanup(facts({ controlObjects: objects }), { ...none, dropTopics: true });
  assert.equal(p.proceed, true);
  assert.deepEqual(p.actions.slice(2), [
    { kind: 'delete topics', object: '2 topic(s)', topics: ['sb.public.t', 'sb.__snapshot'] },
    {
      kind: 'forget stored positions',
      object: 'shardbridge.sink_offsets, shardbridge.snapshot_status, shardbridge.sink_truncates',
      tables: ['shardbridge.sink_offsets', 'shardbridge.snapshot_status', 'shardbridge.sink_truncates'],
      topics: ['sb.public.t', 'sb.__snapshot'],
    },
  ]);
  const both = planCleanup(facts({ controlObjects: objects }), { ...none, dropTopics: true, dropControlTables: true });
  assert.ok(!both.actions.some((a) => a.kind === 'forget stored positions'), 'the tables themselves are dropped');
  const noSink = planCleanup(facts({ controlObjects: [] }), { ...none, dropTopics: true });
  assert.deepEqual(noSink.actions.map((a) => a.kind).slice(2), ['delete topics']);
});

test('--force overrides every blocker and terminates the walsender first; a lost slot needs no check', () => {
  const p = planCleanup(facts({ slot: { active: true, activePid: 77, walStatus: 'reserved', confirmedLsn: '0/1', currentLsn: '0/2' }, pending: null, sinkOffsetsExist: false }), { ...none, force: true });
  assert.equal(p.proceed, true);
  assert.equal(p.overridden.length, 2);
  assert.deepEqual(p.actions.map((a) => a.kind), ['terminate walsender', 'drop replication slot', 'drop publication']);
  const lost = planCleanup(facts({ slot: { active: false, activePid: null, walStatus: 'lost', confirmedLsn: '0/1', currentLsn: '0/2' }, pending: null }), none);
  assert.equal(lost.proceed, true);
  assert.match(lost.notes[0], /already invalidated/);
});

test('the report says what was dropped, what was absent, what failed; a refusal drops nothing', () => {
  const p = planCleanup(facts(), { ...none, dropControlTables: true });
  const r = cleanupReport(p, [
    { action: 'drop replication slot', object: 'shardbridge_slot', status: 'done' },
    { action: 'drop publication', object: 'shardbridge_pub', status: 'absent' },
    { action: 'drop schema', object: 'shardbridge', status: 'kept', detail: 'it holds 1 other object(s)' },
    { action: 'drop table', object: 'shardbridge.sink_offsets', status: 'failed', detail: 'permission denied' },
  ]);
  assert.equal(r.ok, false);
  const text = renderCleanup(r);
  assert.match(text, /dropped replication slot shardbridge_slot\s+done/);
  assert.match(text, /drop publication shardbridge_pub\s+already absent/);
  assert.match(text, /drop schema shardbridge\s+kept: it holds 1 other object\(s\)/);
  assert.match(text, /drop table shardbridge\.sink_offsets\s+FAILED: permission denied/);
  assert.match(text, /cleanup incomplete/);

  const refused = cleanupReport(planCleanup(facts({ pending: { changes: 1 } }), none), []);
  assert.deepEqual([refused.ok, refused.refused], [false, true]);
  assert.match(renderCleanup(refused), /^cleanup refused: nothing was dropped\n {2}BLOCKED {2}slot shardbridge_slot: the slot holds 1 row change/);
});
