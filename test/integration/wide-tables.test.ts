/**
 * PostgreSQL's size limits, end to end: a table of 1,600 columns (the most a table may have) of
 * mixed types with TOASTed values, a primary key of 32 columns (the most an index may have) of
 * mixed types, and 63-byte names (the longest identifier) for the schema, two tables whose names
 * differ in their last byte only, their columns, an index and a constraint: everything
 * ShardBridge derives from them (staging tables, Avro names, topics, subjects) must stay apart.
 * `check` and `schema copy` first, then one source and one sink meeting every apply path
 * (direct COPY, staging, unnest, in place; text and binary COPY) over the snapshot and the
 * stream (inserts, updates leaving TOASTed values unchanged, key changes, deletes, a truncate),
 * and `replay` of the wide table over a damaged destination; the destination equals the source
 * by `verify`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { verifyTables, type VerifyTable } from '../../shared/verify/index.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { runCli as cli } from '../helpers/cli.ts';
import { capturingLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { startSourceTestEnv, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';

const qi = (s: string): string => `"${s.replace(/"/g, '""')}"`;
/** `base` padded with `x` to 63 bytes, then `end`. */
const name63 = (base: string, end = ''): string => base + 'x'.repeat(63 - base.length - end.length) + end;

const SCHEMA = name63('sb_wide_schema_');
const WIDE = 'wide';
const PK32 = 'pk32';
const LONG_A = name63('long_table_', 'a');
const LONG_B = name63('long_table_', 'b');
const COL_A = name63('long_column_', '1');
const COL_B = name63('long_column_', '2');
const COL_BODY = name63('long_body_');
const S = qi(SCHEMA);

// The wide table: id and 1,599 columns cycling through these types; a row fills a quarter of
// them (1,600 filled columns do not fit PostgreSQL's 8 kB heap tuple) and every TOAST column.
const WIDE_TYPES: [type: string, value: (g: string, i: number) => string][] = [
  ['integer', (g, i) => `${g} * ${i}`],
  ['text', (g, i) => `'t' || ${g} || '-${i}'`],
  ['numeric(12,3)', (g, i) => `${g} / 7.0 + ${i}`],
  ['timestamptz', (g, i) => `timestamptz '2024-01-01 00:00:00+00' + ${g} * interval '1 minute' + interval '${i} second'`],
  ['jsonb', (g, i) => `jsonb_build_object('g', ${g}, 'i', ${i})`],
  ['integer[]', (g, i) => `ARRAY[${g}, ${i}]`],
  ['boolean', (g, i) => `(${g} + ${i}) % 3 = 0`],
  ['text[]', (g, i) => `ARRAY['a' || ${g}, NULL, '${i}']`],
];
const WIDE_COLS = Array.from({ length: 1599 }, (_, k) => `c${String(k + 1).padStart(4, '0')}`);
const wideType = (k: number): number => k % WIDE_TYPES.length;
/** Text columns holding values big enough to be stored out of line. */
const TOAST_COLS = WIDE_COLS.filter((_, k) => wideType(k) === 1).slice(0, 4);
const big = (g: string, salt: string): string => `(SELECT string_agg(md5(x::text || ${g} || '${salt}'), '') FROM generate_series(1, 150) x)`;

function wideSelect(from: string, salt: string): string {
  const exprs = WIDE_COLS.map((c, k) => {
    if (TOAST_COLS.includes(c)) return big(from, salt);
    return `CASE WHEN (${from} + ${k}) % 4 = 0 THEN ${WIDE_TYPES[wideType(k)][1](from, k)} END`;
  });
  return `SELECT ${from}, ${exprs.join(', ')}`;
}

// The 32-column key: text, integer, uuid, timestamptz, numeric, in turn.
const KEY_TYPES: [type: string, value: (g: string, i: number) => string][] = [
  ['text', (g, i) => `'k' || ${g} || '/${i}'`],
  ['integer', (g, i) => `${g} * 100 + ${i}`],
  ['uuid', (g, i) => `md5(${g} || '/${i}')::uuid`],
  ['timestamptz', (g, i) => `timestamptz '2024-01-01 00:00:00+00' + ${g} * interval '1 hour' + interval '${i} second'`],
  ['numeric', (g, i) => `${g} / 8.0 + ${i}`],
];
const KEY_COLS = Array.from({ length: 32 }, (_, k) => `k${String(k + 1).padStart(2, '0')}`);
const keySelect = (from: string, body: string): string => `SELECT ${KEY_COLS.map((_, k) => KEY_TYPES[k % KEY_TYPES.length][1](from, k)).join(', ')}, ${from}, ${body}`;

const SOURCE_DDL = [
  `CREATE SCHEMA ${S}`,
  `CREATE TABLE ${S}.${WIDE} (id bigint PRIMARY KEY, ${WIDE_COLS.map((c, k) => `${c} ${WIDE_TYPES[wideType(k)][0]}`).join(', ')})`,
  `CREATE TABLE ${S}.${PK32} (${KEY_COLS.map((c, k) => `${c} ${KEY_TYPES[k % KEY_TYPES.length][0]} NOT NULL`).join(', ')}, v integer, body text, PRIMARY KEY (${KEY_COLS.join(', ')}))`,
  ...[LONG_A, LONG_B].map(
    (t) =>
      `CREATE TABLE ${S}.${qi(t)} (id integer CONSTRAINT ${qi(name63(`pk_${t.slice(-1)}_`))} PRIMARY KEY, ${qi(COL_A)} text, ${qi(COL_B)} integer CONSTRAINT ${qi(name63(`ck_${t.slice(-1)}_`))} CHECK (${qi(COL_B)} >= 0), ${qi(COL_BODY)} text)`,
  ),
  `CREATE INDEX ${qi(name63('idx_long_'))} ON ${S}.${qi(LONG_A)} (${qi(COL_A)}, ${qi(COL_B)})`,
];
const TABLES = [WIDE, PK32, LONG_A, LONG_B];

async function insertAll(c: pg.Client, from: number, to: number, salt: string): Promise<void> {
  const g = `g`;
  await c.query(`INSERT INTO ${S}.${WIDE} ${wideSelect(g, salt)} FROM generate_series(${from}, ${to}) g`);
  await c.query(`INSERT INTO ${S}.${PK32} ${keySelect(g, `CASE WHEN g % 10 = 0 THEN ${big(g, salt)} ELSE 'b' || g END`)} FROM generate_series(${from}, ${to}) g`);
  for (const t of [LONG_A, LONG_B]) {
    await c.query(`INSERT INTO ${S}.${qi(t)} SELECT g, '${t.slice(-1)}' || g, g, CASE WHEN g % 10 = 0 THEN ${big(g, salt)} ELSE 'b' || g END FROM generate_series(${from}, ${to}) g`);
  }
}

let env: SourceTestEnv;
const dir = mkdtempSync(join(tmpdir(), 'sb-wide-'));
before(async () => {
  env = await startSourceTestEnv('test-wide-tables');
});
after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('1,600 columns, a 32-column key and 63-byte names: check, schema copy, snapshot, stream, replay, verify', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });
  const dest = await getTestDestination();
  cleanups.push(() => dest.release());
  const admin = new pg.Client({ connectionString: dest.url });
  await admin.connect();
  cleanups.push(() => admin.end());
  const dbName = `sb_wide_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${dbName}`);
  cleanups.push(() => admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
  const dstUrl = new URL(dest.url);
  dstUrl.pathname = `/${dbName}`;
  const db = new pg.Client({ connectionString: dstUrl.toString() });
  db.on('error', () => {});
  await db.connect();
  cleanups.push(() => db.end());
  for (const sql of SOURCE_DDL) await client.query(sql);
  await insertAll(client, 1, 100, 's');

  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, tables: { schemas: [SCHEMA] }, topics: { partitions: 2 } } });
  const prefix = config.topicPrefix;
  const services = [`kafka: { brokers: ["${env.bootstrap}"] }`, `schemaRegistry: { url: "${env.registryUrl}" }`, `topicPrefix: ${prefix}`];
  const srcFile = join(dir, 'source.yaml');
  const sinkFile = join(dir, 'sink.yaml');
  writeFileSync(srcFile, [`source: { url: "${url}" }`, `tables: { schemas: [${SCHEMA}] }`, `slotName: ${slot}`, ...services].join('\n'));
  const groupId = `g-${prefix}`;
  writeFileSync(sinkFile, [`destination: { url: "${dstUrl}" }`, `groupId: ${groupId}`, ...services].join('\n'));
  const copy = await cli(['schema', 'copy', '--source-config', srcFile, '--sink-config', sinkFile]);
  assert.equal(copy.code, 0, copy.stderr + copy.stdout);
  assert.doesNotMatch(copy.stdout + copy.stderr, /truncat/i);
  const check = await cli(['check', '--json', '--sample-seconds', '0', '--source-config', srcFile, '--sink-config', sinkFile]);
  type Findings = { findings: { level: string; check: string; object?: string; message: string }[] };
  const out = JSON.parse(check.stdout) as { source: Findings; destination: Findings };
  assert.deepEqual([...out.source.findings, ...out.destination.findings].filter((f) => f.level === 'FAIL'), [], 'check fails nothing');
  // Same columns, types, key and names at the destination.
  const shapeSql = `SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     WHERE c.relnamespace = $1::regnamespace AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2`;
  const consSql = `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = $1::regnamespace ORDER BY 1`;
  for (const sql of [shapeSql, consSql]) assert.deepEqual((await db.query(sql, [S])).rows, (await client.query(sql, [S])).rows);
  const topics = TABLES.map((name) => `${prefix}.${SCHEMA}.${name}`);
  const sourceLog = capturingLogger();
  const source: SourceConnector = await startSourceConnector(config, sourceLog.logger);
  cleanups.push(() => source.stop());
  let sourceFailure = '';
  source.done.catch((err: Error & { context?: unknown }) => (sourceFailure = `${err.message} ${JSON.stringify(err.context)}`));
  await waitFor('streaming', () => source.state().phase === 'streaming' || sourceFailure !== '', { timeoutMs: 60_000, intervalMs: 50 });
  // New rows copied directly, groups of 10 or more staged, smaller ones through unnest.
  const log = capturingLogger();
  const startSink = async () => {
    const started = await startSinkConnector(sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dstUrl.toString(), prefix, groupId }), log.logger, { directCopyMinRows: 1, stagingMinRows: 10 });
    cleanups.push(() => started.stop());
    return started;
  };
  const sink = await startSink();
  const errors = () => log.lines().filter((l) => l.level >= 50).map((l) => `${l.msg} ${JSON.stringify(l.err ?? l.context ?? '')}`);
  const caughtUp = async (when: string): Promise<void> => {
    let done = false;
    const applied = pipelineCaughtUp(env.kafka, { client, source }, { db, groupId, topics }, 30_000).finally(() => (done = true));
    applied.catch(() => {});
    await waitFor('caught up or stalled', () => done || errors().length > 0 || source.state().phase === 'failed', { timeoutMs: 35_000, intervalMs: 100 });
    assert.equal(sourceFailure, '', `${when}: the source failed`);
    assert.deepEqual(errors(), [], `${when}: the sink logged no error`);
    await applied;
  };
  await caughtUp('snapshot');

  // Stream: inserts; updates leaving the TOASTed values unchanged (updated in place at the
  // destination: 1,599 columns set) and one changing them; key changes; deletes; a truncate
  // and rows after it.
  await insertAll(client, 101, 200, 'i');
  // The snapshot's rows among these (applied in earlier batches) are updated in place.
  await client.query(`UPDATE ${S}.${WIDE} SET c0034 = coalesce(c0034, '') || 'u', c0001 = 1, c1599 = NOT coalesce(c1599, false) WHERE id % 3 = 0`);
  await client.query(`UPDATE ${S}.${WIDE} SET ${TOAST_COLS[0]} = ${big('id', 'u')} WHERE id % 50 = 0`);
  // Under REPLICA IDENTITY FULL the before-images (1,600 columns) supply the unchanged values:
  // key changes keep them, and an update of every row takes them from there.
  await client.query(`ALTER TABLE ${S}.${WIDE} REPLICA IDENTITY FULL`);
  await client.query(`UPDATE ${S}.${WIDE} SET id = id + 10000 WHERE id % 7 = 0`);
  await client.query(`UPDATE ${S}.${WIDE} SET c0001 = 2`);
  await client.query(`UPDATE ${S}.${PK32} SET v = -v WHERE v % 3 = 0`);
  await client.query(`UPDATE ${S}.${PK32} SET k02 = k02 + 100000, k03 = md5(k03::text)::uuid, k05 = k05 + 0.5 WHERE v % 7 = 1 AND v % 10 <> 0`);
  for (const t of [LONG_A, LONG_B]) await client.query(`UPDATE ${S}.${qi(t)} SET ${qi(COL_B)} = ${qi(COL_B)} + 1000 WHERE id % 2 = 0`);
  await client.query(`DELETE FROM ${S}.${WIDE} WHERE id % 11 = 0`);
  await client.query(`DELETE FROM ${S}.${PK32} WHERE v % 11 = 0`);
  await client.query(`DELETE FROM ${S}.${qi(LONG_A)} WHERE id % 11 = 0`);
  await client.query(`TRUNCATE ${S}.${qi(LONG_B)}`);
  await client.query(`INSERT INTO ${S}.${qi(LONG_B)} SELECT g, 'again', g, 'b' FROM generate_series(1, 5) g`);
  await caughtUp('stream');
  // One row alone in its batch (the sink is idle): a group under stagingMinRows, through unnest.
  await client.query(`UPDATE ${S}.${WIDE} SET c0003 = 1.5 WHERE id = 1`);
  await caughtUp('one update');

  // Its value schema has every column.
  const res = await fetch(`${env.registryUrl}/subjects/${encodeURIComponent(`${prefix}.${SCHEMA}.${WIDE}-value`)}/versions/latest`);
  const envelope = JSON.parse(((await res.json()) as { schema: string }).schema) as { fields: { name: string; type: unknown }[] };
  const value = envelope.fields.find((f) => f.name === 'before')!.type as [string, { name: string; fields: unknown[] }];
  assert.deepEqual([value[1].name, value[1].fields.length], ['Value', 1600]);

  // `replay` of the wide table's topic over a damaged destination: its rows come back and
  // every later change is applied again (new rows copied directly conflict and go the upsert way).
  await sink.stop();
  await db.query(`DELETE FROM ${S}.${WIDE} WHERE id % 4 = 0; UPDATE ${S}.${WIDE} SET ${TOAST_COLS[1]} = 'damaged', c1598 = NULL WHERE id % 4 = 1`);
  const replayed = await cli(['replay', '--topic', `${prefix}.${SCHEMA}.${WIDE}`, '--to-offset', '0', '--sink-config', sinkFile]);
  assert.equal(replayed.code, 0, replayed.stderr + replayed.stdout);
  const again = await startSink();
  await caughtUp('replay');
  const conflicts = (await again.metrics.getSingleMetric('shardbridge_sink_direct_copy_conflicts_total')!.get()).values.filter((m) => m.labels.table === `${SCHEMA}.${WIDE}`);
  assert.ok(conflicts.some((m) => m.value > 0), 'the replayed rows met their rows at the destination and were upserted');

  // Every apply path met the wide table (staging surely in the replay: a backlog makes big
  // batches, and its new rows, there already, go the upsert way); COPY BINARY (no writer for the
  // wide table's arrays) the 32-column key.
  const used = async (table: string): Promise<string[]> => {
    const out = new Set<string>();
    for (const s of [sink, again]) {
      for (const name of ['upsert_rows_total', 'transcoded_rows_total']) {
        for (const m of (await s.metrics.getSingleMetric(`shardbridge_sink_${name}`)!.get()).values) if (m.value > 0 && m.labels.table === `${SCHEMA}.${table}`) out.add(String(m.labels.path ?? m.labels.format));
      }
    }
    return [...out].sort();
  };
  assert.deepEqual(await used(WIDE), ['direct_copy', 'in_place', 'staging', 'text', 'unnest']);
  assert.ok((await used(PK32)).includes('binary'));

  const tables: VerifyTable[] = [];
  for (const name of TABLES) {
    const cols = (await client.query(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [`${S}.${qi(name)}`])).rows.map((r) => r.attname as string);
    const keyColumns = name === PK32 ? KEY_COLS : ['id'];
    tables.push({ source: { schema: SCHEMA, name }, destination: { schema: SCHEMA, name }, keyColumns, columns: cols, integerKey: name !== PK32 });
  }
  const report = await verifyTables({ source: { connectionString: url }, destination: { connectionString: dstUrl.toString() }, tables, ranges: 2, parallel: 2 });
  assert.deepEqual(report.tables.filter((r) => !r.match).map((r) => [r.source, r.error, r.differingRanges]), [], 'verify finds no difference');
  for (const name of TABLES) {
    const count = `SELECT count(*)::int AS n FROM ${S}.${qi(name)}`;
    assert.equal((await db.query(count)).rows[0].n, (await client.query(count)).rows[0].n, `${name}: as many rows`);
  }
});
