/**
 * The source's control topics as the sink uses them, with records built by the source's
 * own control-topics module: a snapshot is complete in the destination only once its topic
 * is applied up to the completion marker's end offsets; sequences move up to the source
 * value and never down (a descending one down, never up).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../shared/devstack/ports.ts';
import { type Admin, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { controlTopicNames, sequenceRecord, snapshotCompleted, snapshotStarted } from '../../source-connector/control-topics.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { produceChanges, registerTable, tableInfo } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';
import { runCli } from '../helpers/cli.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_xsrc_${ID}`;
const DST = `sb_xdst_${ID}`;
const log = testLogger();
let env: SinkTestEnv | undefined;
let servers: { kafka: string; registry: string; destination: string };
let db: pg.Client;
let admin: Admin;
let producer: Producer;
let registry: RegistryClient;

before(async () => {
  env = await openSinkTestEnv([SRC, DST], log);
  ({ servers, db, admin, producer, registry } = env);
});

after(async () => {
  await env?.close();
});

async function gauge(sink: SinkConnector, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = sink.metrics.getSingleMetric(name);
  const values = m ? (await m.get()).values : [];
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

test('snapshot status turns complete only once the table topic is applied up to the marker; sequences move up, never down, and their recorded source values never back, a replay included', async (tc) => {
  const prefix = uniqueTopic('sbcontrol');
  const names = controlTopicNames(prefix);
  await db.query(`CREATE TABLE ${SRC}.orders (id bigserial PRIMARY KEY, note text, extra text)`);
  // The destination lacks `extra` at first: the table's partition stalls, the marker must wait for it.
  await db.query(`CREATE TABLE ${DST}.orders (id bigserial PRIMARY KEY, note text)`);
  const topic = `${prefix}.${SRC}.orders`;
  await admin.ensureTopics([
    { topic, partitions: 2, replicationFactor: 1 },
    { topic: names.snapshot, partitions: 1, replicationFactor: 1 },
    { topic: names.sequences, partitions: 1, replicationFactor: 1 },
    { topic: names.transactions, partitions: 1, replicationFactor: 1 },
  ]);
  const t = await registerTable(registry, await tableInfo(db, SRC, 'orders'), topic);
  const table = `${SRC}.orders`;
  const control = (topicName: string, r: { key: Buffer; value: Buffer }) => ({ topic: topicName, key: r.key, value: r.value });
  const sequence = (name: string, of: string, column: string, value: string, reason: 'snapshot' | 'interval') =>
    control(names.sequences, sequenceRecord({ sequence: `${SRC}.${name}`, sequenceId: { schema: SRC, name }, table: `${SRC}.${of}`, tableId: { schema: SRC, name: of }, column, value, reason }));

  await producer.sendBatch([control(names.snapshot, snapshotStarted({ table, topic, slot: 's', consistentPoint: 1n, estimatedRows: 40 }))]);
  await produceChanges(
    producer,
    t,
    Array.from({ length: 40 }, (_, i) => ({ kind: 'read' as const, new: [String(i + 1), `n${i + 1}`, 'x'] })),
    { snapshot: true },
  );
  const endOffsets = await admin.endOffsets(topic);
  await producer.sendBatch([
    control(names.snapshot, snapshotCompleted({ table, topic, slot: 's', consistentPoint: 1n, rows: 40, endOffsets })),
    sequence('orders_id_seq', 'orders', 'id', '1000', 'snapshot'),
    sequence('gone_seq', 'gone', 'id', '5', 'snapshot'),
    { topic: names.transactions, key: Buffer.from('1'), value: Buffer.from('{"status":"BEGIN"}') },
  ]);

  const groupId = `g-${ID}-control`;
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [table]: { schema: DST } } });
  const start = () => startSinkConnector(config, log, { topicRefreshMs: 500, controlPollMs: 100 });
  let sink = await start();
  try {
    await waitApplied(db, admin, groupId, [names.snapshot, names.sequences, names.transactions]);
    const status = async () => (await db.query('SELECT * FROM shardbridge.snapshot_status WHERE topic = $1', [topic])).rows[0];
    await waitFor('stall on the data topic', async () => (await db.query('SELECT 1 FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rowCount! > 0);
    // Several completion checks run while the data topic is stalled: still not complete.
    await waitFor('a few control polls', async () => (await db.query('SELECT attempts FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0]?.attempts >= 3);
    const pending = await status();
    assert.equal(pending.state, 'applying');
    assert.equal(pending.table_name, `${DST}.orders`);
    assert.equal(pending.rows_expected, '40');
    assert.deepEqual(pending.end_offsets, endOffsets);
    assert.equal(pending.completed_at, null);
    assert.equal(await gauge(sink, 'shardbridge_sink_snapshot_complete', { topic }), 0);

    await db.query(`ALTER TABLE ${DST}.orders ADD COLUMN extra text`);
    await waitApplied(db, admin, groupId, [topic]);
    await waitFor('snapshot complete', async () => (await status()).state === 'complete');
    assert.ok((await status()).completed_at instanceof Date);
    await waitFor('metric shows it', async () => (await gauge(sink, 'shardbridge_sink_snapshot_complete', { topic })) === 1);

    // Sequences: the mapped table's own sequence moved to the source value; a lower value later does not lower it.
    const seq = await db.query(`SELECT last_value::text, is_called FROM ${DST}.orders_id_seq`);
    assert.deepEqual(seq.rows[0], { last_value: '1000', is_called: true });
    const synced = await db.query('SELECT sequence_name, source_value::text, applied_value::text FROM shardbridge.sequence_sync ORDER BY sequence_name');
    assert.deepEqual(synced.rows.filter((r) => r.sequence_name.includes(ID)), [
      { sequence_name: `${DST}.orders_id_seq`, source_value: '1000', applied_value: '1000' },
      { sequence_name: `${SRC}.gone_seq`, source_value: '5', applied_value: null },
    ]);
    await producer.sendBatch([sequence('orders_id_seq', 'orders', 'id', '500', 'interval')]);
    await waitApplied(db, admin, groupId, [names.sequences]);
    assert.equal((await db.query(`SELECT nextval('${DST}.orders_id_seq')::text AS n`)).rows[0].n, '1001', 'never lowered');
    const syncOf = async (name: string) => (await db.query('SELECT source_value::text, applied_value::text FROM shardbridge.sequence_sync WHERE sequence_name = $1', [name])).rows[0];
    assert.deepEqual(await syncOf(`${DST}.orders_id_seq`), { source_value: '1000', applied_value: '1000' }, 'the older source value is not recorded as the source\'s');
    assert.equal(await gauge(sink, 'shardbridge_sink_sequences_fixed_total', { sequence: `${SRC}.orders_id_seq` }), 1);
    // Restarted higher at the destination (not called since: pg_sequence_last_value is NULL), a lower source value leaves it.
    await db.query(`ALTER SEQUENCE ${DST}.orders_id_seq RESTART WITH 5000`);
    await producer.sendBatch([sequence('orders_id_seq', 'orders', 'id', '2000', 'interval')]);
    await waitApplied(db, admin, groupId, [names.sequences]);
    const recorded = await db.query('SELECT source_value::text, applied_value::text FROM shardbridge.sequence_sync WHERE sequence_name = $1', [`${DST}.orders_id_seq`]);
    assert.deepEqual(recorded.rows[0], { source_value: '2000', applied_value: '4999' });
    assert.equal((await db.query(`SELECT nextval('${DST}.orders_id_seq')::text AS n`)).rows[0].n, '5000', 'a restarted sequence is not lowered either');

    // A descending sequence (found by the source's name) moves down to the source value, never back up.
    await db.query(`CREATE SEQUENCE ${SRC}.refund_no INCREMENT BY -1 MAXVALUE -1 START -1`);
    await producer.sendBatch([sequence('refund_no', 'gone', 'refund', '-300', 'interval')]);
    await waitApplied(db, admin, groupId, [names.sequences]);
    assert.equal((await db.query(`SELECT nextval('${SRC}.refund_no')::text AS n`)).rows[0].n, '-301');
    await producer.sendBatch([sequence('refund_no', 'gone', 'refund', '-100', 'interval')]);
    await waitApplied(db, admin, groupId, [names.sequences]);
    assert.equal((await db.query(`SELECT nextval('${SRC}.refund_no')::text AS n`)).rows[0].n, '-302', 'never moved back');
    assert.deepEqual(await syncOf(`${SRC}.refund_no`), { source_value: '-300', applied_value: '-300' }, 'nor recorded back');

    // A source value beyond the destination sequence's MAXVALUE: not moved, recorded, and the
    // sequences behind it on the one partition still move (setval would have failed: a stall).
    await db.query(`CREATE SEQUENCE ${SRC}.small_no AS integer`);
    await producer.sendBatch([sequence('small_no', 'gone', 'n', '3000000000', 'interval'), sequence('refund_no', 'gone', 'refund', '-900', 'interval')]);
    await waitApplied(db, admin, groupId, [names.sequences]);
    assert.equal((await db.query(`SELECT nextval('${SRC}.refund_no')::text AS n`)).rows[0].n, '-901');
    const small = await db.query('SELECT source_value::text, applied_value::text FROM shardbridge.sequence_sync WHERE sequence_name = $1', [`${SRC}.small_no`]);
    assert.deepEqual(small.rows[0], { source_value: '3000000000', applied_value: '0' });
    assert.equal((await db.query('SELECT count(*)::int AS n FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0].n, 0);

    // `shardbridge replay` of __sequences from 0, as after a lost destination position: every
    // older value comes again; the rows status reads keep the newest source values.
    const sourceValues = async () => (await db.query('SELECT sequence_name, source_value::text FROM shardbridge.sequence_sync WHERE sequence_name LIKE $1 ORDER BY 1', [`%${ID}%`])).rows;
    const recorded0 = await sourceValues();
    await sink.stop();
    const dir = mkdtempSync(join(tmpdir(), 'sb-control-'));
    tc.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'sink.json'), JSON.stringify(config));
    const replayed = await runCli(['replay', '--topic', names.sequences, '--to-offset', '0', '--sink-config', join(dir, 'sink.json')]);
    assert.equal(replayed.code, 0, replayed.stderr);
    sink = await start();
    await waitApplied(db, admin, groupId, [names.sequences]);
    assert.deepEqual(await sourceValues(), recorded0);
    // The newest value again: the row is refreshed with where the destination sequence is now (the nextval calls above).
    assert.deepEqual(await syncOf(`${DST}.orders_id_seq`), { source_value: '2000', applied_value: '5000' });
    assert.deepEqual(await syncOf(`${SRC}.refund_no`), { source_value: '-900', applied_value: '-901' });

    // A sequence on the search_path (public) is recorded with its schema, as cutover names it
    // (a regclass's text would say `doc_no_…` alone).
    const doc = `doc_no_${ID}`;
    await db.query(`CREATE SEQUENCE public.${doc}`);
    try {
      await producer.sendBatch([
        control(names.sequences, sequenceRecord({ sequence: `public.${doc}`, sequenceId: { schema: 'public', name: doc }, table: 'public.gone', tableId: { schema: 'public', name: 'gone' }, column: 'n', value: '70', reason: 'interval' })),
      ]);
      await waitApplied(db, admin, groupId, [names.sequences]);
      const docSync = await db.query('SELECT sequence_name, applied_value::text FROM shardbridge.sequence_sync WHERE sequence_name LIKE $1', [`%${doc}`]);
      assert.deepEqual(docSync.rows, [{ sequence_name: `public.${doc}`, applied_value: '70' }]);
    } finally {
      await db.query(`DROP SEQUENCE public.${doc}`);
    }
  } finally {
    await sink.stop();
  }
});

test('many tables (a schema per tenant) starting and completing their snapshots together: a line for them all at info, not one each', async () => {
  const TABLES = 30;
  const prefix = uniqueTopic('sbmany');
  const names = controlTopicNames(prefix);
  const tables = Array.from({ length: TABLES }, (_, i) => `t${String(i).padStart(2, '0')}`);
  await db.query(tables.map((t) => `CREATE TABLE ${SRC}.${t} (id int PRIMARY KEY, v text); CREATE TABLE ${DST}.${t} (id int PRIMARY KEY, v text);`).join('\n'));
  await admin.ensureTopics([
    ...tables.map((t) => ({ topic: `${prefix}.${SRC}.${t}`, partitions: 1, replicationFactor: 1 })),
    ...[names.snapshot, names.sequences, names.transactions].map((topic) => ({ topic, partitions: 1, replicationFactor: 1 })),
  ]);
  for (const name of tables) {
    const topic = `${prefix}.${SRC}.${name}`;
    const table = `${SRC}.${name}`;
    const t = await registerTable(registry, await tableInfo(db, SRC, name), topic);
    await producer.sendBatch([{ topic: names.snapshot, ...snapshotStarted({ table, topic, slot: 's', consistentPoint: 1n, estimatedRows: 1 }) }]);
    await produceChanges(producer, t, [{ kind: 'read', new: ['1', 'x'] }], { snapshot: true });
    const endOffsets = await admin.endOffsets(topic);
    await producer.sendBatch([{ topic: names.snapshot, ...snapshotCompleted({ table, topic, slot: 's', consistentPoint: 1n, rows: 1, endOffsets }) }]);
  }
  const { logger, lines } = capturingLogger();
  const groupId = `g-${ID}-many`;
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: Object.fromEntries(tables.map((t) => [`${SRC}.${t}`, { schema: DST }])) }), logger, {
    metricsPort: null,
    controlPollMs: 100,
  });
  try {
    const complete = async () => (await db.query(`SELECT count(*)::int AS n FROM shardbridge.snapshot_status WHERE topic LIKE $1 AND state = 'complete'`, [`${prefix}.%`])).rows[0].n;
    await waitFor('every snapshot complete', async () => (await complete()) === TABLES);
    await waitFor('the completion logged', async () => lines().some((l) => /^snapshots of \d+ tables complete/.test(l.msg)));
    const msgs = lines().map((l) => l.msg as string);
    assert.equal(msgs.filter((m) => m === 'destination table is local').length, 0, 'no line per table read at start');
    assert.ok(msgs.includes(`destination tables: ${TABLES} local (each at debug)`), msgs.join(' | '));
    // A line per completion check (every 100 ms here) that found some, not one per table.
    assert.ok(msgs.filter((m) => /^snapshots? (of \d+ tables )?complete in the destination/.test(m)).length <= 5, msgs.join(' | '));
    assert.ok(msgs.length < 15, `${msgs.length} lines at info for ${TABLES} tables: ${[...new Set(msgs)].join(' | ')}`);
  } finally {
    await sink.stop();
  }
});
