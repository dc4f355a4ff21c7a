/**
 * Other PostgreSQL majors than the machine's (15): a PostgreSQL 18 source into a PostgreSQL 16
 * destination (or SHARDBRIDGE_TEST_DESTINATION), both fetched on first use (pg-servers.ts). What
 * 18 adds that we meet: virtual generated columns (never stored nor replicated), NOT NULL
 * constraints in pg_constraint, idle_replication_slot_timeout, and (17) the reason a slot was
 * invalidated. SHARDBRIDGE_PG_VERSION runs the whole suite on one of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runCli } from '../helpers/cli.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import { sinkConfigSchema, type SinkConfig } from '../../sink-connector/config.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { ITEM_ROWS, ITEMS_DDL } from '../helpers/every-type-sql.ts';
import { capturingLogger, getTestKafka, testLogger } from '../helpers/kafka.ts';
import { getTestDestination, hasCitus, startTestSource } from '../helpers/postgres.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import { pipelineCaughtUp, tableText, waitApplied } from '../helpers/sink.ts';
import { dropSlot, stopped, streaming } from '../helpers/source.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SCHEMA = `sb_ver_${ID}`;
const PREFIX = `sbver${Date.now().toString(36)}`;
const GROUP = `g-ver-${ID}`;
const SOURCE_MAJOR = 18;
const DESTINATION_MAJOR = 16;
const ITEM_COLUMNS = ['id', 'i2', 'i4', 'i8', 'num', 'numu', 'f4', 'f8', 'b', 't', 'vc', 'ch', 'by', 'u', 'j', 'jb', 'd', 'tm', 'ttz', 'ts', 'tstz', 'iv', 'mo', 'bits', 'vb', 'ip', 'net', 'mac', 'ints', 'texts', 'grid', 'r', 'tr', 'mood', 'pos', 'pt', 'big', 'doubled', 'tlen'];
const dir = mkdtempSync(join(tmpdir(), 'sb-versions-'));
const log = testLogger();
const releases: (() => Promise<void>)[] = [];
let src: pg.Client;
let dst: pg.Client;
let kafka: KafkaClient;
let sourceConfig: SourceConfig;
let sinkConfig: SinkConfig;
let files: string[];
let source: SourceConnector | null = null;
let sink: SinkConnector | null = null;
const version = async (c: pg.Client) => Number((await c.query('SHOW server_version_num')).rows[0].server_version_num);

before(async () => {
  const [k, r, d, s] = await Promise.all([getTestKafka(), getTestRegistry(), getTestDestination({ major: DESTINATION_MAJOR }), startTestSource(undefined, { major: SOURCE_MAJOR })]);
  releases.push(k.release, r.release, d.release, () => s.destroy());
  src = new pg.Client({ connectionString: s.url() });
  dst = new pg.Client({ connectionString: d.url });
  await Promise.all([src.connect(), dst.connect()]);
  assert.equal(Math.floor((await version(src)) / 10000), SOURCE_MAJOR);
  // 18's default kind of generated column is VIRTUAL; `tlen` is STORED.
  await src.query(`CREATE SCHEMA ${SCHEMA}; ${ITEMS_DDL(SCHEMA)}; ${ITEM_ROWS(SCHEMA)};
    ALTER TABLE ${SCHEMA}.items ADD COLUMN doubled numeric GENERATED ALWAYS AS (num * 2), ADD COLUMN tlen integer GENERATED ALWAYS AS (length(t)) STORED`);
  kafka = createKafka({ brokers: [k.bootstrap] }, log);
  const common = { name: 'ver', topicPrefix: PREFIX, kafka: { brokers: [k.bootstrap] }, schemaRegistry: { url: r.url }, metricsPort: 0, logLevel: 'warn' as const };
  sourceConfig = sourceConfigSchema.parse({
    ...common,
    source: { url: s.url() },
    tables: { schemas: [SCHEMA] },
    slotName: `sb_ver_${process.pid}`,
    publicationName: `sb_ver_${process.pid}`,
  });
  sinkConfig = sinkConfigSchema.parse({ ...common, groupId: GROUP, destination: { url: d.url }, stallRetryMs: 300 });
  const sourceFile = join(dir, 'source.json');
  const sinkFile = join(dir, 'sink.json');
  writeFileSync(sourceFile, JSON.stringify(sourceConfig));
  writeFileSync(sinkFile, JSON.stringify(sinkConfig));
  files = ['--source-config', sourceFile, '--sink-config', sinkFile];
});

after(async () => {
  await sink?.stop().catch(() => {});
  await source?.stop().catch(() => {});
  await dropSlot(src, sourceConfig.slotName).catch(() => {});
  // Two statements: a parameter makes it an extended-protocol query, which takes one statement only.
  await dst?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
  await dst?.query(`DELETE FROM shardbridge.sink_offsets WHERE group_id = $1`, [GROUP]).catch(() => {});
  const admin = kafka?.admin();
  const topics = (await admin?.listTopics().catch(() => [] as string[]))?.filter((t) => t.startsWith(`${PREFIX}.`)) ?? [];
  await admin?.deleteTopics(topics).catch(() => {});
  await admin?.disconnect().catch(() => {});
  await Promise.all([src?.end().catch(() => {}), dst?.end().catch(() => {})]);
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('PostgreSQL 18 into 16: schema copy (a virtual generated column made STORED, 18 NOT NULL constraints), the snapshot and streaming of every type; destination = source', async () => {
  const copy = await runCli(['schema', 'copy', ...files]);
  assert.equal(copy.code, 0, copy.stderr + copy.stdout);
  const virtualOnDestination = (await version(dst)) >= 180000 && !(await hasCitus(dst));
  const kinds = (await dst.query(
    `SELECT attname, attgenerated, attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname IN ('id', 'doubled', 'tlen') ORDER BY attname`,
    [`${SCHEMA}.items`],
  )).rows.map((r) => [r.attname, r.attgenerated, r.attnotnull]);
  assert.deepEqual(kinds, [['doubled', virtualOnDestination ? 'v' : 's', false], ['id', '', true], ['tlen', 's', false]]);
  if (!virtualOnDestination) assert.match(copy.stdout, new RegExp(`${SCHEMA}\\.items\\.doubled is a virtual generated column on the source: created STORED on the destination`), copy.stdout);

  source = await startSourceConnector(sourceConfig, log);
  await streaming(source);
  sink = await startSinkConnector(sinkConfig, log, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
  // While streaming: an update leaving the TOASTed `big` unchanged, one changing the generated columns' inputs, a delete, an insert.
  await src.query(`UPDATE ${SCHEMA}.items SET i4 = i4 - 1 WHERE id = 1;
    UPDATE ${SCHEMA}.items SET num = 21.5, t = 'twenty-one' WHERE id = 4;
    DELETE FROM ${SCHEMA}.items WHERE id = 2;
    INSERT INTO ${SCHEMA}.items (id, num, t, big) VALUES (6, 3.25, 'six', repeat('z', 50000));
    INSERT INTO ${SCHEMA}.items (id, num, t) SELECT g, g, 'row ' || g FROM generate_series(100, 339) g`);
  await pipelineCaughtUp(kafka, { client: src, source }, { db: dst, groupId: GROUP, topics: [`${PREFIX}.${SCHEMA}.items`] });
  const want = await tableText(src, `${SCHEMA}.items`, ITEM_COLUMNS, 'id');
  assert.deepEqual(want.map((r) => r[0]).slice(0, 6), ['1', '3', '4', '5', '6', '100']);
  assert.equal(want.length, 245);
  assert.deepEqual(await tableText(dst, `${SCHEMA}.items`, ITEM_COLUMNS, 'id'), want);
});

test('a destination role with transaction_timeout (17+): a batch whose transaction it ends (FATAL, the session gone) is tried again, then goes through in halves; nothing stalls', async () => {
  assert.ok(source, 'the first test ran the connectors');
  // A database of the PostgreSQL 18 source cluster as a second destination, its role's
  // transaction_timeout 500 ms; a statement writing N rows sleeps 25 ms per row: a batch of 20 rows
  // or more (the first ones hold 35–50) outlasts it, one of 12 takes about 0.3 s.
  const role = `sb_ver_tt_${process.pid}`;
  const db = `sb_ver_tt_${process.pid}`;
  await src.query(`CREATE ROLE ${role} LOGIN SUPERUSER; ALTER ROLE ${role} SET transaction_timeout = '500ms'`);
  await src.query(`CREATE DATABASE ${db} OWNER ${role}`);
  const url = new URL(sourceConfig.source.url!);
  url.pathname = `/${db}`;
  url.username = role;
  const second = new pg.Client({ connectionString: url.toString() });
  second.on('error', () => {});
  await second.connect();
  let other: SinkConnector | null = null;
  try {
    await second.query(`SET transaction_timeout = 0; CREATE SCHEMA ${SCHEMA}; ${ITEMS_DDL(SCHEMA)};
      ALTER TABLE ${SCHEMA}.items ADD COLUMN doubled numeric GENERATED ALWAYS AS (num * 2) STORED, ADD COLUMN tlen integer GENERATED ALWAYS AS (length(t)) STORED;
      CREATE TABLE ${SCHEMA}.batches (rows int);
      CREATE FUNCTION ${SCHEMA}.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO ${SCHEMA}.batches SELECT count(*) FROM written;
          PERFORM pg_sleep(0.025 * (SELECT count(*) FROM written));
          RETURN NULL;
        END $$;
      CREATE TRIGGER slow AFTER INSERT ON ${SCHEMA}.items REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.slow()`);
    const { logger, lines } = capturingLogger();
    other = await startSinkConnector({ ...sinkConfig, groupId: `${GROUP}-tt`, destination: { ...sinkConfig.destination, url: url.toString() } }, logger, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
    const admin = kafka.admin();
    try {
      await waitApplied(second, admin, `${GROUP}-tt`, [`${PREFIX}.${SCHEMA}.items`], 90_000);
    } finally {
      await admin.disconnect();
    }
    assert.deepEqual(await tableText(second, `${SCHEMA}.items`, ITEM_COLUMNS, 'id'), await tableText(src, `${SCHEMA}.items`, ITEM_COLUMNS, 'id'));
    assert.equal((await second.query(`SELECT 1 FROM shardbridge.stalls`)).rowCount, 0, 'nothing stalled');
    // The committed batches were all small enough; the first try, larger, was ended.
    assert.ok(lines().some((l) => /SQLSTATE 25P04/.test(l.msg) && /transaction_timeout of the sink's role/.test(l.msg)), 'the retry line names the transaction_timeout');
    assert.ok((await second.query(`SELECT max(rows) AS m FROM ${SCHEMA}.batches`)).rows[0].m < 20);
  } finally {
    await other?.stop().catch(() => {});
    await second.end().catch(() => {});
    await src.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
    await src.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
  }
});

test('idle_replication_slot_timeout (18): the stopped connector’s slot invalidated as idle; check and the connector’s start name that reason and how to keep the next slot from it', async () => {
  assert.ok(source, 'the first test ran the source connector');
  await sink?.stop();
  sink = null;
  await source.stop();
  source = null;
  await src.query(`ALTER SYSTEM SET idle_replication_slot_timeout = '1s'`);
  await src.query('SELECT pg_reload_conf()');
  // Idle slots are invalidated at a checkpoint once inactive longer than the timeout.
  await waitFor('the slot invalidated as idle', async () => {
    await src.query('CHECKPOINT');
    const { rows } = await src.query(`SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = $1`, [sourceConfig.slotName]);
    return rows[0]?.invalidation_reason === 'idle_timeout';
  }, { timeoutMs: 30_000, intervalMs: 250 });

  const check = await runCli(['check', '--sample-seconds', '0', ...files]);
  const out = check.stdout + check.stderr;
  assert.notEqual(check.code, 0, out);
  assert.match(out, /FAIL\s+slot\s+\S+\s+replication slot "[^"]+" was invalidated \(invalidation_reason idle_timeout: inactive longer than idle_replication_slot_timeout\): changes were lost/, out);
  assert.match(out, /WARN\s+idle_replication_slot_timeout\s+server\s+idle_replication_slot_timeout = 1s: a slot no connector streams from/, out);

  const restarted = await startSourceConnector(sourceConfig, log).catch((err: unknown) => err);
  const err = restarted instanceof Error ? restarted : await stopped(restarted as SourceConnector);
  if (!(restarted instanceof Error)) await (restarted as SourceConnector).stop().catch(() => {});
  assert.match(err.message, /FAIL\s+slot\s+\S+\s+replication slot "[^"]+" was invalidated \(invalidation_reason idle_timeout: inactive longer than idle_replication_slot_timeout\): changes were lost/);
  // The start-up checks stop it, each finding with its remedy.
  assert.match(err.message, /remedy: take a new snapshot: .*; first set idle_replication_slot_timeout = 0 for the migration/);
});
