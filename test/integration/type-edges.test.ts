/**
 * Edge values of every supported type, end to end: source PostgreSQL → source connector →
 * Kafka → sink → destination, compared by the text form of every column and by
 * `IS NOT DISTINCT FROM` on the typed value. Once through the snapshot, then through the
 * stream: inserts, single updates (one event per key in its batch: the sink's fast COPY
 * paths) and repeated updates in one transaction (several events per key: the general
 * upsert), and updates that leave big TOASTed columns of each kind unchanged. Both databases
 * run with unusual session defaults (DateStyle, IntervalStyle, TimeZone, bytea_output,
 * extra_float_digits, xmloption, array_nulls) that the connectors must not depend on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { verifyTables, type VerifyTable } from '../../shared/verify/index.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { capturingLogger } from '../helpers/kafka.ts';
import { textRows } from '../helpers/produce-changes.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { startSourceTestEnv, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';
import {
  BIG_TABLES,
  KEY_CASES,
  KEY_TABLES,
  ODD_NAMES,
  ROWS,
  TABLES,
  TABLE_DDL,
  TOAST_COLUMNS,
  TYPES_DDL,
  insertRows,
  q,
  qi,
  updateRows,
} from '../helpers/type-edge-cases.ts';

/** Session defaults no connector may depend on. */
const ODD_SETTINGS: Record<string, string> = {
  DateStyle: 'SQL, DMY',
  IntervalStyle: 'sql_standard',
  TimeZone: 'Asia/Kathmandu',
  extra_float_digits: '-15',
  bytea_output: 'escape',
  xmloption: 'document',
  array_nulls: 'off',
  standard_conforming_strings: 'off',
  search_path: '',
};
/** The test's own statements are written for the usual defaults. */
const SAFE_SESSION = 'SET search_path = public; SET xmloption = content; SET array_nulls = on; SET standard_conforming_strings = on';
async function setOddDefaults(c: pg.Client, db: string): Promise<void> {
  for (const [k, v] of Object.entries(ODD_SETTINGS)) await c.query(`ALTER DATABASE ${db} SET ${k} = ${q(v)}`);
}

let env: SourceTestEnv;
before(async () => {
  env = await startSourceTestEnv('test-type-edges');
});
after(async () => {
  await env?.close();
});

/** Rows of `table` by id, every column as text (SOURCE_SESSION_SETTINGS). */
async function rowsText(c: pg.Client, table: string): Promise<Map<string, (string | null | undefined)[]>> {
  const rows = await textRows(c, `SELECT * FROM ${table} ORDER BY id`);
  return new Map(rows.map((r) => [String(r[0]), r]));
}

async function assertSame(src: pg.Client, dst: pg.Client, when: string): Promise<void> {
  const failures: string[] = [];
  const names: Record<string, string[]> = {};
  for (const big of BIG_TABLES) names[big] = ['id', 'flag', ...TOAST_COLUMNS.map(([t]) => t)];
  names.names = ['id', ...ODD_NAMES];
  for (const [name, { cases }] of Object.entries(TABLES)) names[name] = ['id', ...cases.map((c) => c.type)];
  for (const [i, table] of KEY_TABLES.entries()) {
    const sql = `SELECT k, v FROM ${table} ORDER BY k::text COLLATE "C"`;
    const [want, got] = [await textRows(src, sql), await textRows(dst, sql)];
    if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`key ${KEY_CASES[i][0]}: want ${JSON.stringify(want).slice(0, 300)} got ${JSON.stringify(got).slice(0, 300)}`);
  }
  for (const table of Object.keys(names)) {
    const want = await rowsText(src, table);
    const got = await rowsText(dst, table);
    assert.deepEqual([...got.keys()], [...want.keys()], `${when}: ${table} ids`);
    for (const [id, w] of want) {
      const g = got.get(id)!;
      for (let i = 1; i < w.length; i++) {
        if (g[i] !== w[i]) failures.push(`${table} id=${id} ${names[table][i]}: want ${JSON.stringify(w[i])?.slice(0, 120)} got ${JSON.stringify(g[i])?.slice(0, 120)}`);
      }
    }
    if (!(table in TABLES)) continue;
    // The typed values: the source's text read back as the column type at the destination.
    const ids = [...want.keys()];
    const { cases } = TABLES[table];
    for (let k = 0; k < cases.length; k++) {
      if (cases[k].noEq) continue;
      const vals = ids.map((id) => want.get(id)![k + 1] ?? null);
      const r = await textRows(
        dst,
        `SELECT t.id FROM ${table} AS t JOIN unnest($1::int[], $2::text[]) AS s(id, v) ON t.id = s.id WHERE t.c${k} IS DISTINCT FROM s.v::${cases[k].type}`,
        [ids, vals],
      );
      for (const [id] of r) failures.push(`${table} id=${id} ${cases[k].type}: IS DISTINCT FROM the source value`);
    }
  }
  assert.deepEqual(failures, [], `${when}: ${failures.length} differences`);
}

/** Cleanups run last registered first (t.after hooks run in registration order). */
type Defer = (cleanup: () => Promise<unknown>) => void;

/** A destination database of the test's own, with the odd defaults, dropped after. */
async function destinationDatabase(defer: Defer, admin: pg.Client, baseUrl: string): Promise<{ url: string; db: pg.Client }> {
  const name = `sb_edges_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  defer(() => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  await setOddDefaults(admin, name);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const db = new pg.Client({ connectionString: url.toString() });
  db.on('error', () => {});
  await db.connect();
  defer(() => db.end());
  return { url: url.toString(), db };
}

test('edge values of every type: snapshot, stream inserts, single and repeated updates, unchanged TOAST: destination = source by text and by value', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await setOddDefaults(client, url.slice(url.lastIndexOf('/') + 1));
  const cleanups: (() => Promise<unknown>)[] = [];
  const defer: Defer = (cleanup) => cleanups.push(cleanup);
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });
  const dest = await getTestDestination();
  defer(() => dest.release());
  const admin = new pg.Client({ connectionString: dest.url });
  await admin.connect();
  defer(() => admin.end());
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 2 } } });
  const prefix = config.topicPrefix;
  const topics = ['e', 'bin', 'names', ...BIG_TABLES, ...KEY_TABLES].map((name) => `${prefix}.public.${name}`);
  // Three sinks, each into a database of its own: text COPY only, every upsert staged; COPY
  // BINARY, every new row copied directly, every other upsert staged; the default thresholds
  // (at this size: unnest, fast rows decoded after all).
  const sinks = [
    { batch: { binaryCopy: false }, thresholds: { stagingMinRows: 1 } },
    { batch: {}, thresholds: { directCopyMinRows: 1, stagingMinRows: 1 } },
    { batch: {}, thresholds: {} },
  ];
  const dsts: { db: pg.Client; groupId: string; stalled: () => string | undefined; metrics: () => Promise<string[]> }[] = [];
  for (const [n, s] of sinks.entries()) {
    const { url: dstUrl, db } = await destinationDatabase(defer, admin, dest.url);
    await db.query(SAFE_SESSION);
    await db.query(TYPES_DDL);
    await db.query(TABLE_DDL);
    const groupId = `g-${prefix}-${n}`;
    const log = capturingLogger();
    const cfg = sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dstUrl, prefix, groupId }, { batch: s.batch });
    // Started before the source makes the topics: a short refresh finds them at once, not up to 10 s later.
    const sink = await startSinkConnector(cfg, log.logger, { ...s.thresholds, topicRefreshMs: 500 });
    defer(() => sink.stop());
    dsts.push({
      db,
      groupId,
      stalled: () => log.lines().find((l) => l.level >= 50)?.msg as string | undefined,
      metrics: async () => {
        const out: string[] = [];
        for (const name of ['upsert_rows_total', 'transcoded_rows_total']) {
          for (const v of (await sink.metrics.getSingleMetric(`shardbridge_sink_${name}`)!.get()).values) if (v.value > 0) out.push(`${v.labels.path ?? v.labels.format}`);
        }
        return out;
      },
    });
  }
  await client.query(SAFE_SESSION);
  await client.query(TYPES_DDL);
  await client.query(TABLE_DDL);
  const snapIds = Array.from({ length: ROWS }, (_, k) => k + 1);
  await client.query(insertRows(snapIds, 0));
  for (const [i, [, values]] of KEY_CASES.entries()) await client.query(`INSERT INTO k${i} VALUES ${values.map((v) => `(${v}, 0)`).join(', ')}`);
  await client.query(`INSERT INTO names SELECT g, ${ODD_NAMES.map((n) => `${q(n)} || g`).join(', ')} FROM generate_series(1, 3) g`);
  for (const big of BIG_TABLES) await client.query(`INSERT INTO ${big} SELECT g, 0, ${TOAST_COLUMNS.map(([, v]) => v).join(', ')} FROM generate_series(1, 4) g`);

  const sourceLog = capturingLogger();
  const source: SourceConnector = await startSourceConnector(config, sourceLog.logger);
  defer(() => source.stop());
  let sourceFailure = '';
  source.done.catch((err: Error & { context?: unknown }) => (sourceFailure = `${err.message} ${JSON.stringify(err.context)}`));
  await waitFor('streaming', () => source.state().phase === 'streaming' || sourceFailure !== '', { timeoutMs: 60_000, intervalMs: 50 });
  assert.equal(sourceFailure, '', 'the source started');
  const step = async (when: string) => {
    for (const d of dsts) {
      // A stall (an error logged) fails the step at once, with its message, not at the catch-up deadline.
      let done = false;
      const applied = pipelineCaughtUp(env.kafka, { client, source }, { db: d.db, groupId: d.groupId, topics }, 30_000).finally(() => (done = true));
      applied.catch(() => {}); // awaited below unless the sink stalled first
      await waitFor('caught up or stalled', () => done || d.stalled() !== undefined || source.state().phase === 'failed', { timeoutMs: 35_000, intervalMs: 100 }).catch((err) => {
        t.diagnostic(JSON.stringify(source.state()) + JSON.stringify(sourceLog.lines().slice(-4)));
        throw err;
      });
      assert.notEqual(source.state().phase, 'failed', `${when}: the source failed: ${sourceFailure}`);
      assert.equal(d.stalled(), undefined, `${when}: the sink ${d.groupId} logged no error`);
      await applied;
      await assertSame(client, d.db, `${when} (sink ${d.groupId})`);
    }
  };

  await step('after the snapshot');
  // Stream: new rows (one event per key), then one update per key.
  const streamIds = snapIds.map((id) => id + 1000);
  await client.query(insertRows(streamIds, 1));
  await step('after stream inserts');
  await client.query(updateRows(snapIds, 2));
  // Keys: one update per key; then, in one transaction, the first key deleted and the second
  // moved onto it (a delete and a create), the third deleted and inserted again, twice.
  for (const t of KEY_TABLES) await client.query(`UPDATE ${t} SET v = v + 1`);
  await client.query(`UPDATE names SET ${ODD_NAMES.map((n, i) => `${qi(n)} = ${i % 2 ? 'NULL' : `${qi(n)} || 'u'`}`).join(', ')} WHERE id = 1; INSERT INTO names (id, "a_b") VALUES (4, 'four')`);
  await step('after single updates');
  for (const [i, [type, values]] of KEY_CASES.entries()) {
    const [a, b, c] = values.map((v) => `(${v})::${type}`);
    // By the text forms: a domain over an enum has no `=` (PostgreSQL resolves anyenum for enums only).
    const is = (v: string) => `k::text = ${v}::text`;
    const again = c === undefined ? '' : `DELETE FROM k${i} WHERE ${is(c)}; INSERT INTO k${i} VALUES (${c}, 10); UPDATE k${i} SET v = 11 WHERE ${is(c)}; DELETE FROM k${i} WHERE ${is(c)}; INSERT INTO k${i} VALUES (${c}, 12);`;
    await client.query(`BEGIN; DELETE FROM k${i} WHERE ${is(a)}; UPDATE k${i} SET k = ${a}, v = 5 WHERE ${is(b)}; ${again} COMMIT`);
  }
  // Several events per key in one transaction (and in one sink batch): the general upsert.
  await client.query(`BEGIN; ${updateRows(streamIds, 3)} ${updateRows(streamIds, 4)} ${insertRows([5000], 5)} ${updateRows([5000], 6)} COMMIT`);
  // Big columns left unchanged: one update of another column per key, and several.
  const bigger = TOAST_COLUMNS.map(([, v], i) => `b${i} = ${v.replace(/\d{4,}/, (n) => String(Number(n) + 1))}`).join(', ');
  for (const big of BIG_TABLES) {
    await client.query(`UPDATE ${big} SET flag = 1 WHERE id IN (1, 2)`);
    await client.query(`BEGIN; UPDATE ${big} SET flag = 2 WHERE id IN (3, 4); UPDATE ${big} SET flag = 3 WHERE id = 4; COMMIT`);
    // In one batch: a new big value, then an update that leaves it (unchanged TOAST) for the
    // value before; an insert, then such an update; a row replaced by a small one, then updated.
    await client.query(`BEGIN; UPDATE ${big} SET ${bigger}, flag = 4 WHERE id = 1; UPDATE ${big} SET flag = 5 WHERE id = 1; COMMIT`);
    await client.query(`BEGIN; INSERT INTO ${big} SELECT 5, 0, ${TOAST_COLUMNS.map(([, v]) => v).join(', ')}; UPDATE ${big} SET flag = 6 WHERE id = 5; UPDATE ${big} SET b0 = 'small', flag = 7 WHERE id = 5; COMMIT`);
    await client.query(
      `BEGIN; DELETE FROM ${big} WHERE id = 2; INSERT INTO ${big} (id, flag, b0) VALUES (2, 8, 'small'); UPDATE ${big} SET flag = 9 WHERE id = 2; UPDATE ${big} SET ${bigger} WHERE id = 3; UPDATE ${big} SET flag = 10 WHERE id = 3; COMMIT`,
    );
    // A key change leaving the big values (a delete and a create: only FULL knows them), and one more update.
    if (big === 'bigf') await client.query(`BEGIN; UPDATE ${big} SET id = 6 WHERE id = 4; UPDATE ${big} SET flag = 11 WHERE id = 6; COMMIT`);
  }
  await step('after repeated updates and unchanged TOAST');
  // Every apply path met the edge values.
  const used = new Set((await Promise.all(dsts.map((d) => d.metrics()))).flat());
  assert.deepEqual([...used].sort(), ['binary', 'direct_copy', 'in_place', 'staging', 'text', 'unnest']);
  // `shardbridge verify` (checksums of the text forms per key range) agrees.
  const tables: VerifyTable[] = [];
  for (const name of ['e', 'bin', 'names', ...BIG_TABLES, ...KEY_TABLES]) {
    const cols = (await client.query(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [name])).rows.map((r) => r.attname as string);
    const key = name.startsWith('k') && name !== 'names' ? 'k' : 'id';
    tables.push({ source: { schema: 'public', name }, destination: { schema: 'public', name }, keyColumns: [key], columns: cols, integerKey: key === 'id' });
  }
  for (const d of dsts) {
    const report = await verifyTables({ source: { connectionString: url }, destination: { host: d.db.host, port: d.db.port, user: d.db.user, database: d.db.database }, tables, ranges: 4, parallel: 2 });
    assert.deepEqual(report.tables.filter((r) => !r.match).map((r) => [r.source, r.error, r.differingRanges]), [], 'verify finds no difference');
  }
});
