/**
 * Pure parts of the source connector runtime: snapshot chunk planning and SQL, control-topic
 * records and the start-up verdict from the `__snapshot` topic, lost-slot detection, topic
 * names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TableInfo } from '../../shared/pg-types.ts';
import {
  controlTopicSpecs, describeResnapshot, judgeSnapshotState, reduceSnapshotTopic, sequenceRecord, settledEndOffsets, slotCreated, slotForgotten, snapshotCompleted, snapshotStarted, transactionBegin, transactionEnd,
} from '../../source-connector/control-topics.ts';
import { publicationDropped, SlotMonitor, slotLostError } from '../../source-connector/monitor.ts';
import { chunkSql, planChunks, snapshotVersions } from '../../source-connector/snapshot.ts';
import { classify } from '../../source-connector/stream.ts';
import { topicFor, type TableVersion } from '../../source-connector/table-versions.ts';
import { isRetriable, type SourceError } from '../../shared/errors.ts';
import { LOST_SLOT_REMEDY } from '../../shared/migration/remedies.ts';
import type { Admin } from '../../shared/kafka/client.ts';
import pino from 'pino';
import type pg from 'pg';

const INT4 = { oid: 23, schema: 'pg_catalog', name: 'int4', kind: 'base' as const };

test('planChunks: about chunkSize rows per chunk, contiguous, last one open-ended', () => {
  const chunks = planChunks(1000, 100_000, 10_000);
  assert.equal(chunks.length, 10);
  assert.deepEqual(chunks[0], { fromPage: 0, toPage: 100 });
  for (let i = 1; i < chunks.length; i++) assert.equal(chunks[i].fromPage, chunks[i - 1].toPage ?? chunks[i - 1].fromPage + 100);
  assert.deepEqual(chunks.at(-1), { fromPage: 900, toPage: null }, 'rows beyond the size estimate are still read');
});

test('planChunks: empty, unanalysed and tiny tables', () => {
  assert.deepEqual(planChunks(0, 0, 1000), [{ fromPage: 0, toPage: null }]);
  assert.deepEqual(planChunks(3, 5, 1000), [{ fromPage: 0, toPage: null }]);
  // Never analysed (no row estimate): a guessed density still splits a big table.
  assert.equal(planChunks(10_000, 0, 100_000).length, 10);
  // More rows per chunk than fit a page: at least one page per chunk.
  assert.equal(planChunks(5, 5000, 1).length, 5);
});

test('chunkSql: quoted columns and table, a ctid range or an open end', () => {
  const table: TableInfo = {
    relid: 1, schema: 'My Schema', name: 'T"x', keyColumns: ['id'], replicaIdentity: 'default',
    columns: [{ name: 'id', type: INT4, typmod: -1, isKey: true }, { name: 'Odd col', type: INT4, typmod: -1, isKey: false }],
  };
  assert.equal(chunkSql(table, { fromPage: 10, toPage: 20 }), `COPY (SELECT "id", "Odd col" FROM ONLY "My Schema"."T""x" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT`);
  assert.equal(chunkSql(table, { fromPage: 20, toPage: null }), `COPY (SELECT "id", "Odd col" FROM ONLY "My Schema"."T""x" WHERE ctid >= '(20,0)'::tid) TO STDOUT`);
  // A partitioned table has no rows of its own: read through it, partitions included.
  assert.equal(chunkSql({ ...table, partitioned: true }, { fromPage: 0, toPage: null }), `COPY (SELECT "id", "Odd col" FROM "My Schema"."T""x" WHERE ctid >= '(0,0)'::tid) TO STDOUT`);
});

test('snapshotVersions: the selected tables only; a partitioned one stays partitioned when its version came from a Relation message', () => {
  const table = (relid: number, partitioned?: boolean): TableInfo => ({
    relid, schema: 'public', name: `t${relid}`, keyColumns: ['id'], replicaIdentity: 'default', columns: [{ name: 'id', type: INT4, typmod: -1, isKey: true }], ...(partitioned ? { partitioned } : {}),
  });
  const version = (t: TableInfo) => ({ relid: t.relid, table: t }) as TableVersion;
  const fromRelation = version(table(1)); // a column added while streaming: no partitioned flag
  const plain = version(table(2));
  const [v1, v2, ...rest] = snapshotVersions([fromRelation, plain, version(table(3))], [table(1, true), table(2)]);
  assert.deepEqual(rest, [], 'a relation not selected is not snapshotted');
  assert.equal(v1.table.partitioned, true);
  assert.doesNotMatch(chunkSql(v1.table, { fromPage: 0, toPage: null }), /ONLY/);
  assert.equal(v2, plain);
});

test('the __snapshot topic: latest marker per key decides redo, lost slot, or continue', () => {
  const rec = (r: { key: Buffer; value: Buffer }) => r;
  const records = [
    rec(slotCreated('s', 0x100n)),
    rec(snapshotStarted({ table: 'public.a', topic: 'p.public.a', slot: 's', consistentPoint: 0x100n, estimatedRows: 10 })),
    rec(snapshotStarted({ table: 'public.b', topic: 'p.public.b', slot: 's', consistentPoint: 0x100n, estimatedRows: 10 })),
    rec(snapshotCompleted({ table: 'public.a', topic: 'p.public.a', slot: 's', consistentPoint: 0x100n, rows: 10, endOffsets: [{ partition: 0, offset: '10' }] })),
    { key: Buffer.from('junk'), value: Buffer.from('not json') },
  ];
  const state = reduceSnapshotTopic(records);
  assert.equal(state.tables.get('public.a')?.kind, 'completed');
  assert.equal(state.tables.get('public.b')?.kind, 'started');
  assert.equal(state.slots.get('s')?.consistentPoint, '0/100');

  const verdict = judgeSnapshotState(state, { slot: 's', tables: ['public.a', 'public.b', 'public.c'], slotExists: true });
  assert.equal(verdict.publishedFromSlot, true);
  assert.deepEqual(verdict.incomplete, [{ table: 'public.b', marker: 'started' }, { table: 'public.c', marker: 'none' }]);
  // A completion under another slot (e.g. initial_only's temporary one) does not count.
  assert.deepEqual(judgeSnapshotState(state, { slot: 'other', tables: ['public.a'], slotExists: true }), {
    publishedFromSlot: false,
    incomplete: [{ table: 'public.a', marker: 'completed-other-slot' }],
  });
  // A later completion of b wins over its start.
  const done = reduceSnapshotTopic([...records, snapshotCompleted({ table: 'public.b', topic: 'p.public.b', slot: 's', consistentPoint: 0x100n, rows: 3, endOffsets: [] })]);
  assert.deepEqual(judgeSnapshotState(done, { slot: 's', tables: ['public.a', 'public.b'], slotExists: true }).incomplete, []);
  // Completed from this slot, then out of the publication and back: its changes meanwhile were not streamed.
  assert.deepEqual(judgeSnapshotState(done, { slot: 's', tables: ['public.a', 'public.b'], slotExists: true, republished: ['public.b'] }).incomplete, [{ table: 'public.b', marker: 'republished' }]);
  // Listed all along, but the publication left some of its changes out (a row filter, a column list, the publish option).
  assert.deepEqual(judgeSnapshotState(done, { slot: 's', tables: ['public.a', 'public.b'], slotExists: true, narrowed: ['public.a'] }).incomplete, [{ table: 'public.a', marker: 'narrowed' }]);
  const narrowedWhy = describeResnapshot([{ table: 'public.a', marker: 'narrowed' }], { slotKept: false });
  assert.deepEqual(narrowedWhy.tables.publicationNarrowed, ['public.a']);
  assert.match(narrowedWhy.message, /^the publication left out some changes of public\.a since its snapshot \(a row filter, a column list, or a publish option without some operation\), so dropping the slot/);
  // A partitioned table: the partitions ATTACHed when its snapshot was taken are in the marker;
  // one attached since (or attached again: another xid) brought rows never streamed.
  const parted = reduceSnapshotTopic([snapshotCompleted({ table: 'public.m', topic: 'p.public.m', slot: 's', consistentPoint: 0x100n, rows: 3, endOffsets: [], attached: ['7@700'] })]);
  const judgeM = (now: string[]) => judgeSnapshotState(parted, { slot: 's', tables: ['public.m'], slotExists: true, attached: new Map([['public.m', now]]) }).incomplete;
  assert.deepEqual(judgeM(['7@700']), []);
  assert.deepEqual(judgeM([]), [], 'a partition detached since needs no snapshot');
  assert.deepEqual(judgeM(['7@700', '8@800']), [{ table: 'public.m', marker: 'attached' }]);
  assert.deepEqual(judgeM(['7@900']), [{ table: 'public.m', marker: 'attached' }]);
  // A marker from before partitions were recorded says nothing about them.
  assert.deepEqual(judgeSnapshotState(done, { slot: 's', tables: ['public.b'], slotExists: true, attached: new Map([['public.b', ['8@800']]]) }).incomplete, []);
  const why = describeResnapshot([{ table: 'public.m', marker: 'attached' }, { table: 'public.c', marker: 'none' }], { slotKept: false });
  assert.deepEqual(why.tables, { requested: [], startedNotCompleted: [], republished: [], publicationNarrowed: [], partitionAttached: ['public.m'], withoutSnapshot: ['public.c'] });
  assert.match(why.message, /^public\.m got a partition by ATTACH PARTITION since its snapshot: the rows the partition held were never streamed, so dropping the slot/);
  // `shardbridge resnapshot` marks a table started and requested: taken again, said so.
  const asked = reduceSnapshotTopic([...records, snapshotStarted({ table: 'public.a', topic: 'p.public.a', slot: 's', consistentPoint: 0x100n, estimatedRows: 10, requested: true })]);
  assert.equal(JSON.parse(snapshotStarted({ table: 'public.a', topic: 'p.public.a', slot: 's', consistentPoint: 0x100n, estimatedRows: 10 }).value.toString()).requested, undefined);
  assert.deepEqual(judgeSnapshotState(asked, { slot: 's', tables: ['public.a'], slotExists: true }).incomplete, [{ table: 'public.a', marker: 'requested' }]);
  const askedWhy = describeResnapshot([{ table: 'public.a', marker: 'requested' }, { table: 'public.b', marker: 'started' }], { slotKept: true });
  assert.deepEqual([askedWhy.tables.requested, askedWhy.tables.startedNotCompleted], [['public.a'], ['public.b']]);
  assert.match(askedWhy.message, /^a new snapshot of public\.a was asked for \(shardbridge resnapshot\): taking a snapshot of public\.a, public\.b alone, keeping the slot/);
  // Other tables' snapshots complete from the slot: these alone are taken, the slot kept.
  assert.equal(
    describeResnapshot([{ table: 'public.m', marker: 'attached' }, { table: 'public.c', marker: 'none' }], { slotKept: true }).message,
    "public.m got a partition by ATTACH PARTITION since its snapshot: the rows the partition held were never streamed, so taking a snapshot of public.m, public.c alone, keeping the slot (the other tables' snapshots are complete)",
  );
  // The connector dropped the slot itself (to snapshot again): its absence is not a loss; the
  // table markers stay, so the next snapshot knows an earlier one was sent.
  const forgot = slotForgotten('s');
  assert.equal(forgot.key.toString(), 'slot:s');
  assert.equal(forgot.value, null);
  const dropped = reduceSnapshotTopic([...records, forgot]);
  assert.equal(judgeSnapshotState(dropped, { slot: 's', tables: ['public.a'], slotExists: false }).publishedFromSlot, false);
  assert.equal(dropped.tables.size, 2);
  const recreated = reduceSnapshotTopic([...records, forgot, slotCreated('s', 0x200n)]);
  assert.equal(judgeSnapshotState(recreated, { slot: 's', tables: ['public.a'], slotExists: false }).publishedFromSlot, true);
});

test('control records: keys and JSON shapes', () => {
  const ids = { sequenceId: { schema: 'public', name: 't_id_seq' }, tableId: { schema: 'public', name: 't' } };
  const s = sequenceRecord({ sequence: 'public.t_id_seq', table: 'public.t', ...ids, column: 'id', value: '9223372036854775807', reason: 'interval', at: new Date(0) });
  assert.equal(s.key.toString(), 'public.t_id_seq');
  assert.deepEqual(JSON.parse(s.value.toString()), {
    sequence: 'public.t_id_seq', table: 'public.t', column: 'id', sequenceSchema: 'public', sequenceName: 't_id_seq', tableSchema: 'public', tableName: 't',
    value: '9223372036854775807', reason: 'interval', at: '1970-01-01T00:00:00.000Z',
  });
  // Names a dot or a quote makes ambiguous as `schema.name` text travel as themselves; the key is the server's format('%I.%I').
  const odd = sequenceRecord({
    sequence: '"Shop.EU"."odd.seq"', sequenceId: { schema: 'Shop.EU', name: 'odd.seq' }, table: 'Shop.EU.t', tableId: { schema: 'Shop.EU', name: 't' }, column: 'n', value: '5', reason: 'demand',
  });
  assert.equal(odd.key.toString(), '"Shop.EU"."odd.seq"');
  const oddValue = JSON.parse(odd.value.toString());
  assert.deepEqual([oddValue.sequenceSchema, oddValue.sequenceName, oddValue.tableSchema, oddValue.tableName], ['Shop.EU', 'odd.seq', 'Shop.EU', 't']);
  assert.deepEqual(JSON.parse(transactionBegin(7, 0x1_0000_0010n, 5).value.toString()), { status: 'BEGIN', id: '7', xid: 7, commitLsn: '1/10', ts_ms: 5 });
  const end = JSON.parse(transactionEnd(7, 0x10n, 0x40n, 5, [{ table: 'public.t', topic: 'p.public.t', count: 3 }, { table: 'public.u', topic: 'p.public.u', count: 1 }]).value.toString());
  assert.equal(end.event_count, 4);
  assert.equal(end.endLsn, '0/40');
  assert.deepEqual(end.data_collections[1], { data_collection: 'public.u', topic: 'p.public.u', event_count: 1 });
  const specs = controlTopicSpecs('p', { replicationFactor: 3, cleanupPolicy: 'delete', retentionMs: 1000 });
  assert.deepEqual(specs.map((x) => [x.topic, x.partitions, x.replicationFactor, x.configs?.['cleanup.policy']]), [
    ['p.__snapshot', 1, 3, 'compact'],
    ['p.__sequences', 1, 3, 'compact'],
    ['p.__transactions', 1, 3, 'delete'],
  ]);
  assert.equal(specs[2].configs?.['retention.ms'], '1000');
});

test('slotLostError: vanished or invalidated slots stop the connector; healthy ones do not', () => {
  const healthy = { slotName: 's', database: 'd', plugin: 'pgoutput', active: false, activePid: null, confirmedFlushLsn: 1n, restartLsn: 1n, walStatus: 'reserved', currentLsn: 2n };
  assert.equal(slotLostError(healthy, 's'), null);
  assert.match(slotLostError(null, 's')!.message, /vanished/);
  const lost = slotLostError({ ...healthy, walStatus: 'lost' }, 's')!;
  assert.match(lost.message, /invalidated \(wal_status = lost/);
  assert.match(lost.remedy!, /cleanup --force --drop-topics --drop-control-tables .*empty the destination tables/);
  assert.equal(isRetriable(lost), false);  const idle = slotLostError({ ...healthy, walStatus: 'lost', invalidationReason: 'idle_timeout' }, 's')!;
  assert.match(idle.message, /invalidated \(invalidation_reason idle_timeout: inactive longer than idle_replication_slot_timeout\)/);
  assert.match(idle.remedy!, /set idle_replication_slot_timeout = 0/);
});

test('publicationDropped: gone (PostgreSQL 18 skips its changes without failing the stream), or dropped and made again since first seen; the same one is fine', () => {
  assert.equal(publicationDropped(42, undefined, 'pub', 's'), null);
  assert.equal(publicationDropped(42, 42, 'pub', 's'), null);
  const gone = publicationDropped(undefined, 42, 'pub', 's')!;
  assert.match(gone.message, /^publication "pub" was dropped while the connector streamed from slot "s"/);
  assert.match(gone.remedy!, /finding the publication gone, it takes every table's snapshot again from a new slot/);
  assert.equal(isRetriable(gone), false);
  const again = publicationDropped(43, 42, 'My Pub', 's')!;
  assert.match(again.message, /^publication "My Pub" was dropped and created again while the connector streamed from slot "s": the changes written while it was gone are not streamed/);
  assert.match(again.remedy!, /^take every table's snapshot again: DROP PUBLICATION "My Pub"; then start the connector/);
});

test('SlotMonitor: the publication\'s oid is kept across sessions (made again by hand meanwhile: a stop), and replaced by the one a session\'s start checked', async () => {
  let oid = 42;
  const client = {
    query: async (sql: string) => {
      if (/pg_replication_slots/.test(sql)) return { rows: [{ database: 'db', plugin: 'pgoutput', active: true, active_pid: 1, confirmed: '0/10', restart: '0/10', wal_status: 'reserved', current: '0/10' }] };
      if (/every_op/.test(sql)) return { rows: [{ every_op: true, filtered: [] }] };
      return { rows: [{ oid, relids: [7] }] };
    },
  } as unknown as pg.ClientBase;
  const fatal: Error[] = [];
  const monitor = new SlotMonitor({
    connect: async () => client, slotName: 's', heartbeatIntervalMs: 1000, walRetentionWarnBytes: 1e12, log: pino({ level: 'silent' }),
    publication: { name: 'pub', tables: [{ relid: 7, name: 'public.t' }] }, onFatal: (err) => fatal.push(err),
  });
  await monitor.check();
  oid = 43; // dropped and made again by hand while the retry loop waited
  await monitor.check();
  assert.match(fatal[0]?.message ?? '', /^publication "pub" was dropped and created again/);
  // The next session's start found it gone, or made again, and took every table's snapshot again from a new slot.
  oid = 44;
  monitor.publicationChecked(44);
  await monitor.check();
  // A start that could not tell (a slot marker older than the record) keeps the oid seen.
  monitor.publicationChecked(undefined);
  await monitor.check();
  assert.equal(fatal.length, 1);
});

test('classify: connection failures are retriable, a missing or invalidated slot is not', () => {
  assert.equal(isRetriable(classify(new Error('Connection terminated unexpectedly'), 's')), true);
  assert.equal(isRetriable(classify(Object.assign(new Error('terminating connection'), { code: '57P01' }), 's')), true);
  assert.equal(isRetriable(classify(Object.assign(new Error('replication slot "s" is active for PID 1'), { code: '55006' }), 's')), true);
  const missing = classify(Object.assign(new Error('replication slot "s" does not exist'), { code: '42704' }), 's');
  assert.equal(isRetriable(missing), false);
  assert.match(missing.message, /does not exist any more/);
  const invalid = classify(Object.assign(new Error('can no longer get changes from replication slot "s"'), { code: '55000' }), 's');
  assert.equal(isRetriable(invalid), false);
  // The monitor's remedies for the same events (slotLostError): the steps, not a pointer to the docs.
  assert.equal((missing as SourceError).remedy, LOST_SLOT_REMEDY);
  assert.equal((invalid as SourceError).remedy, LOST_SLOT_REMEDY);
});

test('topicFor: characters Kafka refuses become "_"', () => {
  assert.equal(topicFor('shop', 'public', 'orders'), 'shop.public.orders');
  assert.equal(topicFor('shop', 'My Schema', 'Odd "T"/x'), 'shop.My_Schema.Odd__T__x');
});

test('settledEndOffsets waits out a broker that names a new topic\'s leader before it serves it (NOT_LEADER a dozen times), and gives up on other errors at once', async () => {
  const notLeader = Object.assign(new Error('This server is not the leader for that topic-partition'), { retriable: true, type: 'NOT_LEADER_FOR_PARTITION' });
  let calls = 0;
  const admin = { endOffsets: async () => (++calls <= 12 ? Promise.reject(notLeader) : [{ partition: 0, offset: '0' }]) } as unknown as Admin;
  const log = pino({ level: 'silent' });
  assert.deepEqual(await settledEndOffsets(admin, 't', log, { initialMs: 1, maxMs: 2 }), [{ partition: 0, offset: '0' }]);
  assert.equal(calls, 13);
  calls = 0;
  const refused = { endOffsets: async () => (++calls, Promise.reject(new Error('TOPIC_AUTHORIZATION_FAILED'))) } as unknown as Admin;
  await assert.rejects(settledEndOffsets(refused, 't', log, { initialMs: 1, maxMs: 2 }), /TOPIC_AUTHORIZATION_FAILED/);
  assert.equal(calls, 1);
});
