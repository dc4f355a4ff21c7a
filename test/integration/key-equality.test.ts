/**
 * Primary keys whose equality is not their bytes: `1.0` = `1.00` (numeric), `0` = `-0`
 * (float8), `'1 day'` = `'24 hours'` (interval). PostgreSQL logs `UPDATE … SET id = 1.00`
 * on a row stored as `1.0` as a key change (the datums differ): a delete of the old key
 * and a create of the new one. Both must reach the same partition, in order, or the sink
 * may apply the create first (an upsert onto the equal old row) and then the delete, which
 * removes the row. Source → Kafka (3 partitions) → sink, then destination = source. Keys
 * equal by collation (citext, a nondeterministic collation, jsonb) have no canonical text:
 * the source makes their topics with one partition.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { gatherKeyEquality } from '../../source-connector/key-equality.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { capturingLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig, tableText } from '../helpers/sink.ts';
import { startSourceTestEnv, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;

before(async () => {
  env = await startSourceTestEnv('test-key-equality');
});

after(async () => {
  await env?.close();
});

const ROWS = 40;
// Keys without a canonical text, on a topic of one partition (the source makes it so): enough
// rows that the sink stages the creates as fast rows, which must not run before the deletes.
const MANY = 300;
const TABLES: { name: string; ddl: string; fill: string; change: string[]; onePartition?: true }[] = [
  {
    // Every key changes only its spelling: 1.5 → 1.50, then 1.50 → 1.500 in a later transaction.
    name: 'nums',
    ddl: 'CREATE TABLE %.nums (id numeric PRIMARY KEY, v text)',
    fill: `INSERT INTO nums SELECT g + 0.5, 'v' || g FROM generate_series(1, ${ROWS}) g`,
    change: [`UPDATE nums SET id = (id::text || '0')::numeric, v = v || '+'`, `UPDATE nums SET id = (id::text || '0')::numeric`],
  },
  {
    // A numeric column of a composite key; a delete of one spelling and an insert of another.
    name: 'pairs',
    ddl: 'CREATE TABLE %.pairs (k int, n numeric, v text, PRIMARY KEY (k, n))',
    fill: `INSERT INTO pairs SELECT g, 2.0, 'v' || g FROM generate_series(1, ${ROWS}) g`,
    change: [`DELETE FROM pairs WHERE k % 2 = 0`, `INSERT INTO pairs SELECT g, 2.000, 'again' FROM generate_series(2, ${ROWS}, 2) g`, `UPDATE pairs SET n = 2 WHERE k % 2 = 1`],
  },
  {
    name: 'floats',
    ddl: 'CREATE TABLE %.floats (k int, f float8, r real, v text, PRIMARY KEY (k, f, r))',
    fill: `INSERT INTO floats SELECT g, 0, 0, 'v' || g FROM generate_series(1, ${ROWS}) g`,
    change: [`UPDATE floats SET f = '-0', r = '-0'`],
  },
  {
    name: 'spans',
    ddl: 'CREATE TABLE %.spans (k int, i interval, v text, PRIMARY KEY (k, i))',
    fill: `INSERT INTO spans SELECT g, '1 day', 'v' || g FROM generate_series(1, ${ROWS}) g`,
    change: [`UPDATE spans SET i = '24 hours'`, `UPDATE spans SET i = '1 day' WHERE k % 2 = 0`],
  },
  {
    name: 'ci',
    ddl: 'CREATE TABLE %.ci (k int, t text COLLATE %.ci, v text, PRIMARY KEY (k, t))',
    fill: `INSERT INTO ci SELECT g, 'Key' || g, 'v' || g FROM generate_series(1, ${MANY}) g`,
    change: [`UPDATE ci SET t = lower(t)`],
    onePartition: true,
  },
  {
    name: 'cit',
    ddl: 'CREATE TABLE %.cit (k int, t %.citext, v text, PRIMARY KEY (k, t))',
    fill: `INSERT INTO cit SELECT g, 'Key' || g, 'v' || g FROM generate_series(1, ${MANY}) g`,
    change: [`UPDATE cit SET t = lower(t)`],
    onePartition: true,
  },
  {
    name: 'docs',
    ddl: 'CREATE TABLE %.docs (k int, j jsonb, v text, PRIMARY KEY (k, j))',
    fill: `INSERT INTO docs SELECT g, '{"a": 1.0}', 'v' || g FROM generate_series(1, ${MANY}) g`,
    change: [`UPDATE docs SET j = '{"a": 1.00}'`],
    onePartition: true,
  },
  {
    // A composite type holding a numeric: its text form is not canonical either.
    name: 'boxed',
    ddl: 'CREATE TABLE %.boxed (k %.money2 PRIMARY KEY, v text)',
    fill: `INSERT INTO boxed SELECT ROW(g + 0.5, 'EUR')::money2, 'v' || g FROM generate_series(1, ${MANY}) g`,
    change: [`UPDATE boxed SET k = ROW(((k).amount::text || '0')::numeric, (k).cur)::money2`],
    onePartition: true,
  },
];

test('keys equal in PostgreSQL but spelled differently: every row arrives, with the source spelling', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await getTestDestination();
  t.after(() => dest.release());
  const dst = new pg.Client({ connectionString: dest.url });
  dst.on('error', () => {});
  await dst.connect();
  const D = `sb_keys_${process.pid}_${Date.now().toString(36)}`;
  t.after(async () => {
    await dst.query(`DROP SCHEMA IF EXISTS ${D} CASCADE`).catch(() => {});
    await dst.end();
  });
  await dst.query(`CREATE SCHEMA ${D}`);
  // In the test's own schema at the destination, dropped with it.
  for (const [c, s] of [[client, 'public'], [dst, D]] as const) {
    await c.query(`CREATE EXTENSION citext SCHEMA ${s}`);
    await c.query(`CREATE COLLATION ${s}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`);
    await c.query(`CREATE TYPE ${s}.money2 AS (amount numeric, cur text)`);
  }
  for (const tb of TABLES) {
    await client.query(tb.ddl.replaceAll('%', 'public'));
    await client.query(tb.fill);
    await dst.query(tb.ddl.replaceAll('%', D));
  }

  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 3 } } });
  const prefix = config.topicPrefix;
  const topics = TABLES.map((tb) => `${prefix}.public.${tb.name}`);
  const groupId = `g-${prefix}`;
  const sinkCfg = sinkConfig(
    { kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix, groupId },
    { tables: Object.fromEntries(TABLES.map((tb) => [`public.${tb.name}`, { schema: D }])) },
  );
  const source = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => source.stop());
  const sinkLog = capturingLogger();
  // Started before the source makes its topics: a short refresh finds them at once, not up to 10 s later.
  const sink = await startSinkConnector(sinkCfg, sinkLog.logger, { topicRefreshMs: 500 });
  t.after(() => sink.stop());
  await waitFor('streaming', () => source.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  // The source makes the topics of keys without a canonical text with one partition itself.
  const counted = env.kafka.admin();
  const partitions = await counted.partitionCounts(topics).finally(() => counted.disconnect());
  assert.deepEqual(TABLES.map((tb) => [tb.name, partitions.get(`${prefix}.public.${tb.name}`)]), TABLES.map((tb) => [tb.name, tb.onePartition ? 1 : 3]));

  const caughtUp = (src: SourceConnector) => pipelineCaughtUp(env.kafka, { client, source: src }, { db: dst, groupId, topics });
  await caughtUp(source);
  for (const tb of TABLES) for (const sql of tb.change) await client.query(sql);
  await caughtUp(source);

  // Per table: the source rows the destination lacks and the destination rows the source lacks,
  // compared by their text (so a row kept under its old spelling counts on both sides).
  const diffs: Record<string, { missing: string[]; extra: string[] }> = {};
  for (const tb of TABLES) {
    const columns = (await client.query(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [`public.${tb.name}`])).rows.map((r) => r.attname as string);
    const order = columns.map((_, i) => String(i + 1)).join(', ');
    const want = (await tableText(client, `public.${tb.name}`, columns, order)).map((r) => r.join('|'));
    const got = (await tableText(dst, `${D}.${tb.name}`, columns, order)).map((r) => r.join('|'));
    const missing = want.filter((r) => !got.includes(r));
    const extra = got.filter((r) => !want.includes(r));
    if (missing.length + extra.length > 0) diffs[tb.name] = { missing, extra };
  }
  assert.deepEqual(diffs, {}, 'destination = source, spelling included');
  assert.deepEqual(sinkLog.lines().filter((l) => /stalled/.test(l.msg)).map((l) => l.msg), [], 'never stalled');
});

test('check: key columns compared by collation, citext, jsonb, unpadded bpchar, arrays and ranges of numeric, composite types holding these warn; canonical and plain keys do not', async (t) => {
  const { client } = await env.freshDatabase(t);
  await client.query(`CREATE EXTENSION citext; CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE DOMAIN email AS citext;
    CREATE TABLE users (id int, email email, tag text COLLATE ci, PRIMARY KEY (id, email, tag));
    CREATE TABLE docs (j jsonb PRIMARY KEY, note text COLLATE ci);
    CREATE TABLE odd (c bpchar, n numeric[], r numrange, PRIMARY KEY (c, n, r));
    CREATE TABLE fine (n numeric, f float8, i interval, c char(4), t text COLLATE "C", u uuid, PRIMARY KEY (n, f, i, c, t, u));
    CREATE TYPE money2 AS (amount numeric, cur text); CREATE TYPE wrapped AS (m money2, n int); CREATE TYPE pair AS (a int, b text COLLATE ci, c char(3));
    CREATE TYPE plain AS (a int, b text);
    CREATE TABLE boxes (m money2, w wrapped[], p pair, ok plain, PRIMARY KEY (m, w, p, ok))`);
  const relids = (await client.query(`SELECT oid::int AS o FROM pg_class WHERE relname IN ('users', 'docs', 'odd', 'fine', 'boxes') AND relkind = 'r'`)).rows.map((r) => r.o as number);
  const facts = await gatherKeyEquality(client, relids, 150000);
  assert.deepEqual(
    facts.map((f) => `${f.table}.${f.column} ${f.type}`),
    [
      'public.boxes.m money2', 'public.boxes.w wrapped[]', 'public.boxes.p pair',
      'public.docs.j jsonb', 'public.odd.c bpchar', 'public.odd.n numeric[]', 'public.odd.r numrange', 'public.users.email email', 'public.users.tag text COLLATE ci',
    ],
  );
  assert.match(facts.find((f) => f.column === 'w')!.why, /^a composite type with numeric inside/, 'through an array and a nested composite');
  assert.match(facts.find((f) => f.column === 'p')!.why, /^a composite type with collation ci inside/, 'a collation inside; char(3) pads alike');
  assert.match(facts.find((f) => f.column === 'email')!.why, /citext/, 'a domain over citext is citext');
});
