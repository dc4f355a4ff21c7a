/**
 * The sink end to end from Kafka: records produced with the source's own record-schema and
 * envelope modules → the running sink → the destination, compared with the source table
 * by key and the text form of every column. Plus the three apply paths for snapshot rows
 * (unnest, COPY staging, direct COPY with its fallback) measured on 100k-row batches.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { type Admin, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { applyChunk, type Chunk } from '../../sink-connector/apply.ts';
import { DirectCopyPolicy } from '../../sink-connector/direct-copy.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { RecordDecoder, type DecodedRecord, type RawRecord } from '../../sink-connector/decode.ts';
import { destIdOf, type TableVersion } from '../../sink-connector/schema-compile.ts';
import { FastRowPlanner, type FastRow } from '../../sink-connector/fast-rows.ts';
import { detectCitus } from '../../shared/schema/citus-catalog.ts';
import { ensureSinkTables } from '../../sink-connector/offsets.ts';
import { TableStates } from '../../sink-connector/table-state.ts';
import { testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { encodeChanges, keyTuple, produceChanges, registerTable, tableInfo, textRows } from '../helpers/produce-changes.ts';
import { sinkConfig, tableText, waitApplied } from '../helpers/sink.ts';
import { ITEMS_DDL, ITEM_ROWS } from '../helpers/every-type-sql.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_src_${ID}`;
const DST = `sb_dst_${ID}`;
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
  for (const s of ['st', 'un', 'dc'].flatMap((x) => [x, `${x}_tc`]).flatMap((x) => [`${SRC}_${x}`, `${DST}_${x}`])) await db?.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
  await env?.close();
});

async function startSink(prefix: string, groupId: string, extra: Record<string, unknown> = {}, opts: { stagingMinRows?: number; directCopyMinRows?: number } = {}): Promise<SinkConnector> {
  return startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, extra), log, { topicRefreshMs: 500, controlPollMs: 200, ...opts });
}

// Each path with the general decode, and with whole-row records transcoded from their bytes
// (batch.transcode; with neither COPY path allowed, those are decoded after all and upserted).
const APPLY_PATHS = [
  { path: 'unnest', suffix: 'un', stagingMinRows: Infinity, directCopyMinRows: Infinity },
  { path: 'COPY staging', suffix: 'st', stagingMinRows: 1, directCopyMinRows: Infinity },
  { path: 'direct COPY of new rows', suffix: 'dc', stagingMinRows: 1, directCopyMinRows: 1 },
].flatMap((p) => [
  { ...p, transcode: false },
  { ...p, suffix: `${p.suffix}_tc`, transcode: true },
]);

for (const { path, suffix, stagingMinRows, directCopyMinRows, transcode } of APPLY_PATHS) {
  const how = transcode ? 'transcoded rows, ' : 'general decode, ';
  test(`every type arrives value-exactly via ${how}${path}: snapshot, inserts, updates (unchanged TOAST kept), deletes, a key change`, async () => {
    const S = `${SRC}_${suffix}`;
    const D = `${DST}_${suffix}`;
    await db.query(`CREATE SCHEMA ${S}; CREATE SCHEMA ${D}`);
    await db.query(ITEMS_DDL(S));
    await db.query(ITEMS_DDL(D));
    await db.query(ITEM_ROWS(S));
    const prefix = uniqueTopic('sbapply');
    const topic = `${prefix}.${S}.items`;
    await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
    const info = await tableInfo(db, S, 'items');
    const t = await registerTable(registry, info, topic);
    const rowsOf = (where = 'true') => textRows(db, `SELECT * FROM ${S}.items WHERE ${where} ORDER BY id`);

    // Snapshot of rows 1..5, then the sink starts while streaming changes follow.
    await produceChanges(producer, t, (await rowsOf()).map((row) => ({ kind: 'read' as const, new: row })), { snapshot: true });
    const sink = await startSink(prefix, `g-${ID}-apply-${S}`, { tables: { [`${S}.items`]: { schema: D } }, batch: { transcode } }, { stagingMinRows, directCopyMinRows });
    try {
      // The snapshot is applied before the changes are produced: in one batch with them, the
      // updated keys would be new to the destination and take the paths of new rows.
      await waitApplied(db, admin, `g-${ID}-apply-${S}`, [topic]);
      await db.query(`INSERT INTO ${S}.items (id, t, big, mood, ints) VALUES (10, 'ten', repeat('z', 50000), 'sad', '{10}'), (11, 'eleven', NULL, NULL, NULL)`);
      const inserted = await rowsOf('id >= 10');
      // Row 1: an update that leaves the TOASTed `big` out (pgoutput's 'u' marker): the destination keeps its value.
      await db.query(`UPDATE ${S}.items SET t = 'one, updated', num = 42.5, jb = '{"v": 2}' WHERE id = 1`);
      const [one] = await rowsOf('id = 1');
      const bigIdx = info.columns.findIndex((c) => c.name === 'big');
      const oneToast = one.slice();
      oneToast[bigIdx] = undefined;
      // Row 2 twice in a row (collapse merges), row 3 deleted, row 4's key changes to 40 (delete + create).
      await db.query(`UPDATE ${S}.items SET i4 = 22 WHERE id = 2`);
      const [twoA] = await rowsOf('id = 2');
      await db.query(`UPDATE ${S}.items SET i4 = 222, t = 'two' WHERE id = 2`);
      const [twoB] = await rowsOf('id = 2');
      const twoAToast = twoA.slice();
      twoAToast[bigIdx] = undefined;
      const twoBToast = twoB.slice();
      twoBToast[bigIdx] = undefined;
      const [three] = await rowsOf('id = 3');
      await db.query(`DELETE FROM ${S}.items WHERE id = 3`);
      // Row 5: a whole-row update (no TOASTed column in it), which takes the upsert paths.
      await db.query(`UPDATE ${S}.items SET t = 'five, updated', big = 'five' WHERE id = 5`);
      const [five] = await rowsOf('id = 5');
      const [four] = await rowsOf('id = 4');
      await db.query(`UPDATE ${S}.items SET id = 40 WHERE id = 4`);
      const [forty] = await rowsOf('id = 40');
      await produceChanges(producer, t, [
        ...inserted.map((row) => ({ kind: 'insert' as const, new: row })),
        { kind: 'update', new: oneToast },
        { kind: 'update', new: twoAToast },
        { kind: 'update', new: twoBToast },
        { kind: 'update', new: five },
        { kind: 'delete', key: keyTuple(info, three) },
        { kind: 'update', key: keyTuple(info, four), new: forty },
      ]);
      await waitApplied(db, admin, `g-${ID}-apply-${S}`, [topic]);
      const columns = info.columns.map((c) => c.name);
      const want = await tableText(db, `${S}.items`, columns, 'id');
      const got = await tableText(db, `${D}.items`, columns, 'id');
      assert.deepEqual(got.map((r) => r[0]), ['1', '2', '5', '10', '11', '40']);
      for (let i = 0; i < want.length; i++) {
        for (let c = 0; c < columns.length; c++) assert.equal(got[i][c], want[i][c], `row id=${want[i][0]} column ${columns[c]}`);
      }
      const metrics = await sink.metrics.getSingleMetric('shardbridge_sink_events_applied_total')!.get();
      const byOp = (op: string) => metrics.values.filter((v) => v.labels.op === op).reduce((n, v) => n + v.value, 0);
      assert.equal(byOp('r'), 5);
      assert.equal(byOp('c'), 3); // two inserts, and the key change's create
      assert.equal(byOp('d'), 2);
      assert.equal(byOp('u'), 4);
      const paths = await sink.metrics.getSingleMetric('shardbridge_sink_upsert_rows_total')!.get();
      const used = new Set(paths.values.filter((v) => v.value > 0).map((v) => v.labels.path));
      assert.equal(used.has('direct_copy'), directCopyMinRows === 1, `paths used: ${[...used].join(', ')}`);
      assert.equal(used.has('staging'), stagingMinRows === 1, `paths used: ${[...used].join(', ')}`);
      // Rows 1 and 2 lack their unchanged TOASTed value: updated in place, never upserted.
      assert.ok(used.has('in_place'), `paths used: ${[...used].join(', ')}`);
      // Transcoded: the snapshot rows, the two inserts and the key change's create; row 1's update
      // has an unchanged TOAST column, row 2's two updates share a key: those take the general path.
      const fast = await sink.metrics.getSingleMetric('shardbridge_sink_transcoded_rows_total')!.get();
      const transcoded = fast.values.reduce((n, v) => n + v.value, 0);
      if (!transcode || stagingMinRows === Infinity) assert.equal(transcoded, 0);
      else assert.ok(transcoded >= 5, `transcoded rows: ${transcoded}`);
      // Everything applied: the apply lanes come to hold no batch (their gauge is set as each batch ends).
      const laneBatches = async () => (await sink.metrics.getSingleMetric('shardbridge_sink_lane_batches')!.get()).values.map((v) => `${v.labels.state} ${v.value}`).sort().join(', ');
      await waitFor('apply lanes idle', async () => (await laneBatches()) === 'applying 0, waiting 0', { timeoutMs: 10_000 });
    } finally {
      await sink.stop();
    }
  });
}

test('a few very large new rows go through COPY staging, not decoded for unnest (which took ~10x their size in memory)', async () => {
  await db.query(`CREATE TABLE ${SRC}.blobs (id int PRIMARY KEY, b bytea, t text); CREATE TABLE ${DST}.blobs (id int PRIMARY KEY, b bytea, t text)`);
  await db.query(`INSERT INTO ${SRC}.blobs SELECT i, decode(repeat(md5(i::text), 12500), 'hex'), repeat('x', 200000) FROM generate_series(1, 2) i`);
  const prefix = uniqueTopic('sbblobs');
  const topic = `${prefix}.${SRC}.blobs`;
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  const info = await tableInfo(db, SRC, 'blobs');
  const t = await registerTable(registry, info, topic);
  await produceChanges(producer, t, (await textRows(db, `SELECT * FROM ${SRC}.blobs ORDER BY id`)).map((row) => ({ kind: 'insert' as const, new: row })));
  const groupId = `g-${ID}-blobs`;
  const sink = await startSink(prefix, groupId, { tables: { [`${SRC}.blobs`]: { schema: DST } } });
  try {
    await waitApplied(db, admin, groupId, [topic]);
    const rows = (schema: string) => textRows(db, `SELECT id, md5(b), md5(t), length(b) + length(t) FROM ${schema}.blobs ORDER BY id`);
    assert.deepEqual(await rows(DST), await rows(SRC));
    const paths = (await sink.metrics.getSingleMetric('shardbridge_sink_upsert_rows_total')!.get()).values.filter((v) => v.value > 0);
    assert.deepEqual(paths.map((v) => `${v.labels.path} ${v.value}`), ['staging 2']);
  } finally {
    await sink.stop();
  }
});

test('truncate applies in order with the rows around it; mapped table and column names; truncate: ignore keeps rows', async () => {
  await db.query(`CREATE TABLE ${SRC}.notes (id int PRIMARY KEY, body text, n int)`);
  await db.query(`CREATE TABLE ${DST}.memo (id int PRIMARY KEY, text_body text, n int)`);
  await db.query(`CREATE TABLE ${DST}.memo_kept (id int PRIMARY KEY, text_body text, n int)`);
  const prefix = uniqueTopic('sbtrunc');
  const topic = `${prefix}.${SRC}.notes`;
  // One partition: a truncate has no key, so only a single partition orders it against the rows.
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  const t = await registerTable(registry, await tableInfo(db, SRC, 'notes'), topic);
  const rows = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), `body ${from + i}`, String(i)] }));
  await produceChanges(producer, t, [...rows(1, 50), { kind: 'truncate' }, ...rows(100, 104)]);

  const mapping = { body: 'text_body' };
  const apply = await startSink(prefix, `g-${ID}-trunc`, { tables: { [`${SRC}.notes`]: { schema: DST, table: 'memo', columns: mapping } } });
  const ignore = await startSink(prefix, `g-${ID}-trunc-ignore`, {
    truncate: 'ignore',
    tables: { [`${SRC}.notes`]: { schema: DST, table: 'memo_kept', columns: mapping } },
  });
  try {
    await waitApplied(db, admin, `g-${ID}-trunc`, [topic]);
    await waitApplied(db, admin, `g-${ID}-trunc-ignore`, [topic]);
    const applied = await db.query(`SELECT id, text_body FROM ${DST}.memo ORDER BY id`);
    assert.deepEqual(applied.rows.map((r) => r.id), [100, 101, 102, 103, 104]);
    assert.equal(applied.rows[0].text_body, 'body 100');
    const kept = await db.query(`SELECT count(*)::int AS n FROM ${DST}.memo_kept`);
    assert.equal(kept.rows[0].n, 55);
  } finally {
    await Promise.all([apply.stop(), ignore.stop()]);
  }
});

test('a table topic created after the sink started is picked up', async () => {
  const prefix = uniqueTopic('sblate');
  await db.query(`CREATE TABLE ${SRC}.late (id int PRIMARY KEY, v text)`);
  await db.query(`CREATE TABLE ${DST}.late (id int PRIMARY KEY, v text)`);
  const groupId = `g-${ID}-late`;
  const sink = await startSink(prefix, groupId, { tables: { [`${SRC}.late`]: { schema: DST } } });
  try {
    const topic = `${prefix}.${SRC}.late`;
    await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
    const t = await registerTable(registry, await tableInfo(db, SRC, 'late'), topic);
    await produceChanges(producer, t, [{ kind: 'insert', new: ['1', 'one'] }]);
    await waitApplied(db, admin, groupId, [topic]);
    assert.deepEqual((await db.query(`SELECT id, v FROM ${DST}.late`)).rows, [{ id: 1, v: 'one' }]);
  } finally {
    await sink.stop();
  }
});

test("binary COPY: once a table's catalog is known its whole-row inserts and updates go in COPY BINARY; a replay over damaged rows converges; a column type changed at the destination meanwhile is caught and the batch applied again", async () => {
  const citus = (await detectCitus(db)).present;
  const cols = 'id bigint PRIMARY KEY, qty bigint, amount numeric(12,2), at timestamptz, doc jsonb, note text';
  await db.query(`CREATE TABLE ${SRC}.bin (${cols}); CREATE TABLE ${DST}.bin (${cols})`);
  const prefix = uniqueTopic('sbbin');
  const topic = `${prefix}.${SRC}.bin`;
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  const t = await registerTable(registry, await tableInfo(db, SRC, 'bin'), topic);
  const groupId = `g-${ID}-bin`;
  const row = (id: number, v: number) => [String(id), String(id * 1000 + v), `${id}.${v}5`, `2024-01-0${1 + (v % 9)} 03:04:05.12345${v}+00`, `{"v": ${v}, "s": "x\\ty ✓"}`, `n${v}\tt\\`];
  const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  // The source table gets the same rows, to compare with.
  const write = async (changes: { kind: 'insert' | 'update'; new: string[] }[]) => {
    for (const c of changes) {
      await db.query(`INSERT INTO ${SRC}.bin VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty, amount = EXCLUDED.amount, at = EXCLUDED.at, doc = EXCLUDED.doc, note = EXCLUDED.note`, c.new);
    }
    await produceChanges(producer, t, changes);
    await waitApplied(db, admin, groupId, [topic]);
  };
  // Counted once the sink has the commit's answer, which can come a moment after the commit is visible.
  const formats = async (want: Record<string, number>) => {
    let got: Record<string, number> = {};
    await waitFor(`rows by COPY format ${JSON.stringify(want)}`, async () => {
      got = {};
      for (const v of (await sink.metrics.getSingleMetric('shardbridge_sink_transcoded_rows_total')!.get()).values) {
        got[String(v.labels.format)] = (got[String(v.labels.format)] ?? 0) + v.value;
      }
      return Object.keys(got).length === Object.keys(want).length && Object.entries(want).every(([k, n]) => got[k] === n);
    }, { timeoutMs: 10_000, intervalMs: 20 }).catch(() => assert.deepEqual(got, want));
  };
  const same = async () => {
    const columns = ['id', 'qty', 'amount', 'at', 'doc', 'note'];
    assert.deepEqual(await tableText(db, `${DST}.bin`, columns, 'id'), await tableText(db, `${SRC}.bin`, columns, 'id'));
  };
  // Chunks of 100 records at most: a replay below has a first chunk (text) and more (binary).
  const config = { tables: { [`${SRC}.bin`]: { schema: DST } }, batch: { maxRows: 100 } };
  let sink = await startSink(prefix, groupId, config, { stagingMinRows: 1, directCopyMinRows: 1 });
  try {
    // The first batch reads the catalog: text.
    await write(ids(1, 50).map((i) => ({ kind: 'insert', new: row(i, 0) })));
    await formats({ text: 50 });
    // Then new rows (direct COPY) and replaced ones (staging) in binary (PostgreSQL; Citus keeps text).
    await write([...ids(51, 100).map((i) => ({ kind: 'insert' as const, new: row(i, 1) })), ...ids(1, 50).map((i) => ({ kind: 'update' as const, new: row(i, 2) }))]);
    await formats(citus ? { text: 150 } : { text: 50, binary: 100 });
    await same();
    await sink.stop();
    // A replay from the start over damaged rows: direct COPYs of binary rows meet rows already
    // there and the batch goes the staging way, in binary too; the table converges.
    await db.query(`UPDATE ${DST}.bin SET note = 'damaged' WHERE id % 3 = 0; DELETE FROM ${DST}.bin WHERE id % 7 = 0`);
    await db.query(`UPDATE shardbridge.sink_offsets SET next_offset = 0 WHERE group_id = $1`, [groupId]);
    await admin.setGroupOffsets(groupId, topic, [{ partition: 0, offset: '0' }]);
    sink = await startSink(prefix, groupId, config, { stagingMinRows: 1, directCopyMinRows: 1 });
    await waitApplied(db, admin, groupId, [topic]);
    await same();
    // Chunks of 100: the first in text (the new process reads the catalog), the last 50 in binary.
    await formats(citus ? { text: 150 } : { text: 100, binary: 50 });
    // bigint to double precision behind the sink's back: 8 bytes either way, so the COPY alone would
    // store garbage; the check after it sees the change, and the batch is applied again.
    await db.query(`ALTER TABLE ${DST}.bin ALTER COLUMN qty TYPE double precision`);
    await write(ids(1, 100).map((i) => ({ kind: 'update', new: row(i, 3) })));
    await same();
    // numeric to real: the binary COPY is refused (22P03) and the batch applied again too.
    await db.query(`ALTER TABLE ${DST}.bin ALTER COLUMN amount TYPE real`);
    await write(ids(101, 150).map((i) => ({ kind: 'insert', new: row(i, 4) })));
    await write(ids(101, 150).map((i) => ({ kind: 'update', new: row(i, 5) })));
    await same();
    assert.equal(await sink.metrics.getSingleMetric('shardbridge_sink_stalled_partitions')!.get().then((m) => m.values.reduce((n, v) => n + v.value, 0)), 0);
  } finally {
    await sink.stop();
  }
});

test('fast updates below the general staging threshold but above their own are staged into a table never staged before', async () => {
  await ensureSinkTables(db);
  await db.query(`CREATE TABLE ${SRC}.upd_src (id bigint PRIMARY KEY, v text); CREATE TABLE ${DST}.upd (id bigint PRIMARY KEY, v text)`);
  const t = await registerTable(registry, await tableInfo(db, SRC, 'upd_src'), `${ID}.upd_src`);
  const decoder = new RecordDecoder(registry, () => ({ schema: DST, table: 'upd', columns: {}, sources: [] }), ID);
  const messages = encodeChanges(t, Array.from({ length: 250 }, (_, i) => ({ kind: 'update' as const, new: [String(i + 1), `v${i}`] })));
  const raws: RawRecord[] = messages.map((m, i) => ({ topic: 'upd', partition: 0, offset: String(i), key: m.key as Buffer, value: m.value as Buffer }));
  await decoder.prepare(raws);
  const fast = new FastRowPlanner().plan(raws, (r) => decoder.describe(r)) as FastRow[];
  const outcome = await applyChunk(
    db,
    { topic: 'upd', partition: 0, firstOffset: 0n, nextOffset: 250n, records: [], fast },
    {
      groupId: `g-${ID}-upd`,
      states: new TableStates({ citus: await detectCitus(db), requireDistributed: false, logger: log }),
      truncate: 'apply',
      autoEvolve: false,
      stagingMinRows: 5_000,
      fastStagingMinRows: 200,
      fastStagingMinBytes: 256 * 1024,
      directCopy: null,
      redecode: (row) => decoder.decode(row.raw)!,
      logger: log,
    },
    0n,
  );
  assert.equal(outcome.kind, 'applied');
  if (outcome.kind === 'applied') assert.deepEqual([...outcome.paths.values()].map((m) => Object.fromEntries(m)), [{ staging: 250 }]);
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.upd`)).rows[0].n, 250);
});

test('snapshot rows: unnest, COPY staging, direct COPY and transcoded rows give the same table; a direct COPY meeting existing rows falls back; rates on 100k-row batches', async (t) => {
  await ensureSinkTables(db);
  const ddl = (name: string) =>
    `CREATE TABLE ${DST}.${name} (id bigint PRIMARY KEY, customer_id int, amount numeric(12,2), status text, created_at timestamptz, payload jsonb)`;
  const paths = [
    { name: 'bulk_unnest', stagingMinRows: Infinity, direct: false, transcode: false },
    { name: 'bulk_staging', stagingMinRows: 1, direct: false, transcode: false },
    { name: 'bulk_direct', stagingMinRows: 1, direct: true, transcode: false },
    { name: 'bulk_transcoded', stagingMinRows: 1, direct: true, transcode: true },
  ];
  await db.query(`CREATE TABLE ${SRC}.bulk_src (id bigint PRIMARY KEY, customer_id int, amount numeric(12,2), status text, created_at timestamptz, payload jsonb)`);
  const bulkTable = await registerTable(registry, await tableInfo(db, SRC, 'bulk_src'), `${ID}.bulk_src`);
  const decoder = new RecordDecoder(registry, () => ({ schema: DST, table: 'bulk_transcoded', columns: {}, sources: [] }), ID);
  for (const p of paths) await db.query(ddl(p.name));
  const columns = ['id', 'customer_id', 'amount', 'status', 'created_at', 'payload'].map((name) => ({ name, pgType: null }));
  const N = 100_000;
  const version = (name: string): TableVersion => ({
    schemaId: 1,
    source: { schema: 'public', table: 'orders' },
    dest: { schema: DST, name },
    destId: destIdOf(DST, name),
    columns,
    sources: ['public.orders'],
    unmatchedRenames: [],
  });
  // Rounds of N snapshot reads: into the empty table; half the keys there already (a snapshot
  // redone); all new keys twice (after a conflict the direct path skips one batch, then tries again).
  const firstIds = [1, 1 + N / 2, 1 + 1.5 * N, 1 + 2.5 * N];
  const rowOf = (round: number, i: number) => {
    const id = String(firstIds[round] + i);
    return { id, customer_id: String(i % 997), amount: `${i}.${i % 100}`, status: i % 3 ? 'paid' : 'new', created_at: '2024-05-01 12:00:00.123456+00', payload: `{"n": ${i}, "tag": "t${i % 13}"}` };
  };
  const records = (name: string, round: number): DecodedRecord[] => {
    const v = version(name);
    return Array.from({ length: N }, (_, i) => {
      const after = rowOf(round, i);
      return {
        change: { op: 'r' as const, topic: name, partition: 0, offset: String(round * N + i), key: { id: after.id }, after, before: null, unchangedToast: [] },
        table: v,
        keyColumns: ['id'],
      };
    });
  };
  // The same rows as the source connector writes them, planned into fast rows from their bytes.
  const fastRows = async (round: number): Promise<FastRow[]> => {
    const messages = encodeChanges(
      bulkTable,
      Array.from({ length: N }, (_, i) => ({ kind: 'read' as const, new: Object.values(rowOf(round, i)) })),
      { snapshot: true },
    );
    const raws: RawRecord[] = messages.map((m, i) => ({ topic: 'bulk_transcoded', partition: 0, offset: String(round * N + i), key: m.key as Buffer, value: m.value as Buffer }));
    await decoder.prepare(raws);
    const planned = new FastRowPlanner().plan(raws, (r) => decoder.describe(r));
    assert.ok(planned.every((f) => f !== null), 'every snapshot read is a fast row');
    return planned as FastRow[];
  };
  const states = new TableStates({ citus: await detectCitus(db), requireDistributed: false, logger: log });
  const rates: Record<string, number[]> = {};
  const written: Record<string, string[]> = {};
  let conflicts = 0;
  for (const p of paths) {
    const directCopy = p.direct ? new DirectCopyPolicy() : null;
    for (let round = 0; round < firstIds.length; round++) {
      const chunk: Chunk = { topic: p.name, partition: 0, firstOffset: BigInt(round * N), nextOffset: BigInt(round * N + N), records: [] };
      if (p.transcode) chunk.fast = await fastRows(round);
      else chunk.records = records(p.name, round);
      const started = performance.now();
      const outcome = await applyChunk(
        db,
        chunk,
        {
          groupId: `g-${ID}-bulk`,
          states,
          truncate: 'apply',
          autoEvolve: false,
          stagingMinRows: p.stagingMinRows,
          fastStagingMinRows: p.stagingMinRows,
          fastStagingMinBytes: p.stagingMinRows === Infinity ? Infinity : 256 * 1024,
          directCopy: directCopy && { policy: directCopy, minRows: 1 },
          onDirectCopyConflict: () => conflicts++,
          redecode: (row) => decoder.decode(row.raw)!,
          logger: log,
        },
        round === 0 ? 0n : undefined,
      );
      const ms = performance.now() - started;
      assert.equal(outcome.kind, 'applied');
      if (outcome.kind === 'applied') {
        for (const [, paths] of outcome.paths) for (const [path, rows] of paths) (written[p.name] ??= []).push(`${round}:${path}:${rows}`);
        assert.equal([...outcome.transcoded.values()].flatMap((m) => [...m.values()]).reduce((a, b) => a + b, 0), p.transcode ? N : 0);
      }
      (rates[p.name] ??= []).push(Math.round(N / (ms / 1000)));
    }
  }
  t.diagnostic(`100k-row snapshot batches, rows/s (empty table; half the keys there; new keys; new keys): ${paths.map((p) => `${p.name} ${rates[p.name].join(' / ')}`).join('; ')}`);
  assert.deepEqual(written.bulk_direct, [`0:direct_copy:${N}`, `1:staging:${N}`, `2:staging:${N}`, `3:direct_copy:${N}`]);
  assert.deepEqual(written.bulk_transcoded, written.bulk_direct);
  assert.deepEqual(written.bulk_staging, [0, 1, 2, 3].map((r) => `${r}:staging:${N}`));
  assert.equal(conflicts, 2);
  const cols = ['id', 'customer_id', 'amount', 'status', 'created_at', 'payload'];
  const a = await tableText(db, `${DST}.bulk_unnest`, cols, 'id');
  assert.equal(a.length, N * 3.5);
  assert.deepEqual(await tableText(db, `${DST}.bulk_staging`, cols, 'id'), a);
  assert.deepEqual(await tableText(db, `${DST}.bulk_direct`, cols, 'id'), a);
  assert.deepEqual(await tableText(db, `${DST}.bulk_transcoded`, cols, 'id'), a);
  const stored = await db.query(`SELECT topic, next_offset::text AS o FROM shardbridge.sink_offsets WHERE group_id = $1 ORDER BY topic`, [`g-${ID}-bulk`]);
  assert.deepEqual(stored.rows, paths.map((p) => ({ topic: p.name, o: String(firstIds.length * N) })).sort((x, y) => x.topic.localeCompare(y.topic)));
});

test('a partitioned destination table (declarative, by range): every path applies into its partitions; a key change moves a row to another partition', async () => {
  const ddl = (schema: string, name: string) => `CREATE TABLE ${schema}.${name} (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE ${schema}.${name}_2025 PARTITION OF ${schema}.${name} FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE ${schema}.${name}_2026 PARTITION OF ${schema}.${name} FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`;
  await db.query(ddl(SRC, 'parted'));
  const info = await tableInfo(db, SRC, 'parted');
  const row = (id: number, year: number, v: string) => [String(id), `${year}-0${1 + (id % 9)}-15`, v];
  for (const { path, stagingMinRows, directCopyMinRows } of APPLY_PATHS.filter((p) => !p.transcode)) {
    const name = `parted_${path.split(' ')[0].toLowerCase()}`;
    await db.query(ddl(DST, name));
    const prefix = uniqueTopic('sbparted');
    const topic = `${prefix}.${SRC}.parted`;
    await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
    const t = await registerTable(registry, info, topic);
    const groupId = `g-${ID}-${name}`;
    const snapshot = Array.from({ length: 300 }, (_, i) => row(i + 1, 2025 + (i % 2), 'r'));
    await produceChanges(producer, t, snapshot.map((r) => ({ kind: 'read' as const, new: r })), { snapshot: true });
    const sink = await startSink(prefix, groupId, { tables: { [`${SRC}.parted`]: { schema: DST, table: name } } }, { stagingMinRows, directCopyMinRows });
    try {
      await waitApplied(db, admin, groupId, [topic]);
      await produceChanges(producer, t, [
        ...Array.from({ length: 250 }, (_, i) => ({ kind: 'update' as const, new: snapshot[i].slice(0, 2).concat('u') })),
        // Row 300 moves from 2026 to 2025: its key changes (delete + create).
        { kind: 'update' as const, key: keyTuple(info, snapshot[299]), new: row(300, 2025, 'moved') },
        { kind: 'delete' as const, key: keyTuple(info, snapshot[298]) },
        ...Array.from({ length: 50 }, (_, i) => ({ kind: 'insert' as const, new: row(1000 + i, 2026, 'new') })),
      ]);
      await waitApplied(db, admin, groupId, [topic]);
      const got = await db.query(`SELECT tableoid::regclass::text AS part, count(*)::int AS n, count(*) FILTER (WHERE v = 'u')::int AS u FROM ${DST}.${name} GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(got.rows, [
        { part: `${DST}.${name}_2025`, n: 150, u: 125 },
        { part: `${DST}.${name}_2026`, n: 199, u: 125 },
      ], path);
      assert.equal((await db.query(`SELECT to_char(at, 'YYYY') AS y, v FROM ${DST}.${name} WHERE id = 300`)).rows[0].y, '2025');
    } finally {
      await sink.stop();
    }
  }
});
