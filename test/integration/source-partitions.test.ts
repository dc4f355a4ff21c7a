/**
 * The source connector and partitioned tables, against a PostgreSQL cluster of this file's own,
 * the real broker and registry: REPLICA IDENTITY FULL set on the parent only (the start refuses
 * it, the running connector stops on a new partition without it, and a key change never turns
 * an unchanged TOASTed value into NULL), and partitions ATTACHed with rows (never streamed: the
 * running connector stops, the next start snapshots the table again; while it was stopped, the
 * start does it by itself), while partitions made by PARTITION OF stream on.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { SourceError } from '../../shared/errors.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { startSourceConnector, type SourceConnector, type StartOptions } from '../../source-connector/run.ts';
import { capturingLogger, testLogger } from '../helpers/kafka.ts';
import {
  RegistryDecoder,
  assertRowsEqualTable,
  caughtUp,
  finalState,
  readDecoded,
  readJson,
  stableKey,
  startSourceTestEnv,
  stopped,
  streaming,
  testSourceConfig,
  walLsn,
  type SourceTestEnv,
} from '../helpers/source.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;

before(async () => {
  env = await startSourceTestEnv('test-source-partitions');
  kafka = env.kafka;
});

after(() => env?.close());

async function setup(t: TestContext, ddl: string): Promise<{ client: pg.Client; config: SourceConfig }> {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(ddl);
  return { client, config: testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } }) };
}

async function start(t: TestContext, config: SourceConfig, logger = testLogger(), opts: StartOptions = {}): Promise<SourceConnector> {
  const conn = await startSourceConnector(config, logger, opts);
  t.after(() => conn.stop());
  await streaming(conn);
  return conn;
}

const BIG = `repeat('x', 10000)`;
const FAST_MONITOR: StartOptions = { slotCheckIntervalMs: 500 };

test('REPLICA IDENTITY FULL on a partitioned parent only: the start refuses naming the partitions, a new partition without it stops the connector, and no unchanged TOASTed value becomes NULL', async (t) => {
  const { client, config } = await setup(t, `
    CREATE TABLE p (id int, region int, note text, big text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
    ALTER TABLE p ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
    CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2);
    ALTER TABLE p REPLICA IDENTITY FULL;
    ALTER TABLE p2 REPLICA IDENTITY FULL;
    INSERT INTO p VALUES (1, 1, 'a', ${BIG}), (2, 2, 'b', ${BIG});`);

  const refused = await startSourceConnector(config, testLogger()).then(() => null, (err: SourceError) => err);
  assert.ok(refused, 'the start was refused');
  assert.equal(refused.context.phase, 'startup');
  assert.match(refused.message, /FAIL\s+replica identity\s+public\.p\s+partitioned table public\.p has REPLICA IDENTITY FULL, but its partition\(s\) public\.p1 do not/);
  assert.match(refused.message, /remedy: ALTER TABLE "public"\."p1" REPLICA IDENTITY FULL;/);
  assert.doesNotMatch(refused.message, /public\.p2/);
  assert.equal((await client.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [config.slotName])).rowCount, 0, 'nothing created');

  await client.query(`ALTER TABLE p1 REPLICA IDENTITY FULL`);
  const conn = await start(t, config);
  // Every partition FULL: the key change carries the unchanged TOASTed value from the old row.
  await client.query(`UPDATE p SET id = 10 WHERE id = 1`);
  // A new partition starts at DEFAULT: its old rows hold only the key.
  await client.query(`CREATE TABLE p3 PARTITION OF p FOR VALUES IN (3); INSERT INTO p VALUES (3, 3, 'c', ${BIG})`);
  await client.query(`UPDATE p SET id = 30 WHERE id = 3`);
  const err = await stopped(conn, 30_000);
  assert.match(err.message, /partitioned table public\.p has REPLICA IDENTITY FULL, but its partition\(s\) public\.p3 do not/);
  assert.match(err.remedy ?? '', /ALTER TABLE "public"\."p3" REPLICA IDENTITY FULL;.*then start the source connector again/);

  await client.query(`ALTER TABLE p3 REPLICA IDENTITY FULL`);
  const again = await start(t, config);
  await caughtUp(again, await walLsn(client));
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.p`);
  const created = (id: number) => records.find((r) => r.value?.op === 'c' && stableKey(r.key) === stableKey({ id, region: id / 10 }))!.value!;
  assert.equal(String(created(10).after!.big).length, 10000);
  assert.deepEqual(created(10).unchanged_toast, []);
  // p3's old row had NULL for big: it is listed as not sent, never published as NULL.
  assert.equal(created(30).after!.big, null);
  assert.deepEqual(created(30).unchanged_toast, ['big']);
});

test('a partition ATTACHed with rows while streaming stops the connector, the next start snapshots the table again; one made by PARTITION OF streams on', async (t) => {
  const { client, config } = await setup(t, `
    CREATE TABLE m (id int, month int, v text, PRIMARY KEY (id, month)) PARTITION BY LIST (month);
    CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
    INSERT INTO m VALUES (1, 1, 'jan');`);
  // The slot monitor finds the attached partition: it looks every 0.5 s here, not 10 s.
  const conn = await start(t, config, testLogger(), FAST_MONITOR);
  await client.query(`CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2); INSERT INTO m VALUES (2, 2, 'feb')`);
  // PostgreSQL's bulk-load advice: fill a table of its own, then attach it.
  await client.query(`CREATE TABLE m3 (LIKE m INCLUDING ALL); INSERT INTO m3 SELECT g, 3, 'mar' FROM generate_series(10, 14) g`);
  await client.query(`ALTER TABLE m ATTACH PARTITION m3 FOR VALUES IN (3)`);
  await client.query(`INSERT INTO m VALUES (99, 3, 'after attach')`);
  const err = await stopped(conn, 30_000);
  assert.match(err.message, /partition\(s\) public\.m3 of public\.m were attached while the connector ran \(ALTER TABLE … ATTACH PARTITION\): the rows they held were never streamed/);
  assert.doesNotMatch(err.message, /m2/, 'a partition made by PARTITION OF is streamed');
  assert.match(err.remedy ?? '', /start the source connector again: it takes the snapshot again/);

  const { logger, lines } = capturingLogger();
  const again = await start(t, config, logger);
  assert.ok(lines().some((l) => l.level === 40 && /public\.m got a partition by ATTACH PARTITION since its snapshot/.test(l.msg) && l.partitionAttached?.[0] === 'public.m'));
  await caughtUp(again, await walLsn(client));
  const topic = `${config.topicPrefix}.public.m`;
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).values());

  // The new snapshot knows the partition: the start after it streams on from its slot.
  await again.stop();
  const slots = async () => (await readJson(kafka, `${config.topicPrefix}.__snapshot`)).filter((r) => r.value?.kind === 'slot-created').length;
  const before = await slots();
  const third = capturingLogger();
  const conn3 = await start(t, config, third.logger);
  assert.ok(!third.lines().some((l) => /snapshot again/.test(l.msg)), 'no new snapshot');
  await client.query(`INSERT INTO m VALUES (100, 3, 'later')`);
  await caughtUp(conn3, await walLsn(client));
  assert.equal(await slots(), before);
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).values());
});

test('an UNLOGGED partition made while streaming stops the connector, naming it', async (t) => {
  const { client, config } = await setup(t, `
    CREATE TABLE u (id int, month int, v text, PRIMARY KEY (id, month)) PARTITION BY LIST (month);
    CREATE TABLE u1 PARTITION OF u FOR VALUES IN (1);`);
  const conn = await start(t, config, testLogger(), FAST_MONITOR);
  await client.query(`CREATE UNLOGGED TABLE u2 PARTITION OF u FOR VALUES IN (2); INSERT INTO u VALUES (1, 2, 'never in the WAL')`);
  const err = await stopped(conn, 30_000);
  assert.match(err.message, /partition\(s\) public\.u2 of public\.u are UNLOGGED: their rows are not written to the WAL/);
  assert.match(err.remedy ?? '', /^ALTER TABLE "public"\."u2" SET LOGGED;/);
});

test('a partition ATTACHed with rows while the connector was stopped (or detached and attached again): the next start snapshots the table again', async (t) => {
  // (Each statement a transaction of its own: one that creates, fills and attaches a table cannot be told from PARTITION OF.)
  const { client, config } = await setup(t, `
    CREATE TABLE m (id int, month int, v text, PRIMARY KEY (id, month)) PARTITION BY LIST (month);
    CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
    CREATE TABLE m2 (LIKE m INCLUDING ALL);
    INSERT INTO m2 VALUES (5, 2, 'loaded before the first snapshot');
    INSERT INTO m VALUES (1, 1, 'jan');`);
  await client.query(`ALTER TABLE m ATTACH PARTITION m2 FOR VALUES IN (2)`);
  const topic = `${config.topicPrefix}.public.m`;
  const first = await start(t, config);
  await first.stop();
  await client.query(`CREATE TABLE m3 (LIKE m INCLUDING ALL); INSERT INTO m3 SELECT g, 3, 'mar' FROM generate_series(10, 14) g`);
  await client.query(`ALTER TABLE m ATTACH PARTITION m3 FOR VALUES IN (3)`);
  const { logger, lines } = capturingLogger();
  const second = await start(t, config, logger);
  assert.ok(lines().some((l) => /public\.m got a partition by ATTACH PARTITION since its snapshot/.test(l.msg)));
  await caughtUp(second, await walLsn(client));
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).values());
  await second.stop();

  // Detached (its rows stay at the destination: documented), changed, attached again.
  await client.query(`ALTER TABLE m DETACH PARTITION m2; UPDATE m2 SET v = 'changed while detached'; ALTER TABLE m ATTACH PARTITION m2 FOR VALUES IN (2)`);
  const third = capturingLogger();
  const conn3 = await start(t, config, third.logger);
  assert.ok(third.lines().some((l) => /public\.m got a partition by ATTACH PARTITION since its snapshot/.test(l.msg)));
  await caughtUp(conn3, await walLsn(client));
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).values());
});

test('a selected table with changes in the slot, ATTACHed to a selected partitioned table while the connector was stopped: the changes under its own name are in the table\'s own snapshot, not a stop', async (t) => {
  const { client, config } = await setup(t, `
    CREATE TABLE m (id int, month int, v text, PRIMARY KEY (id, month)) PARTITION BY LIST (month);
    CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
    CREATE TABLE m2 (LIKE m INCLUDING ALL);
    INSERT INTO m VALUES (1, 1, 'jan'); INSERT INTO m2 VALUES (5, 2, 'feb'), (6, 2, 'feb');
    CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)`);
  const first = await start(t, config);
  await first.stop();
  // Published as a table of its own, unconfirmed; then a partition (a transaction of its own: told from PARTITION OF).
  await client.query(`UPDATE m2 SET v = 'before the attach' WHERE id = 5; DELETE FROM m2 WHERE id = 6`);
  await client.query(`ALTER TABLE m ATTACH PARTITION m2 FOR VALUES IN (2)`);
  // kept keeps its snapshot: m is snapshotted alone, from the kept slot.
  const conn = await start(t, config);
  await client.query(`INSERT INTO m VALUES (7, 2, 'streamed')`);
  await caughtUp(conn, await walLsn(client));
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.m`)).values());
});

test('a partition ATTACHed while a session is being retried: the retried session snapshots the table again, whole, also after a column was added while streaming', async (t) => {
  const { client, config } = await setup(t, `
    CREATE TABLE m (id int, month int, v text, PRIMARY KEY (id, month)) PARTITION BY LIST (month);
    CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1);
    INSERT INTO m VALUES (1, 1, 'jan');`);
  // The slot monitor finds the attached partition: it looks every 0.5 s here, not 10 s.
  const conn = await start(t, config, testLogger(), FAST_MONITOR);
  // The table's version now comes from a Relation message, not from the start-up catalog.
  await client.query(`ALTER TABLE m ADD COLUMN w int; INSERT INTO m VALUES (2, 1, 'jan', 2)`);
  await caughtUp(conn, await walLsn(client));
  // Cut the connector off (its sessions are retried) and attach a loaded table meanwhile.
  const db = (await client.query(`SELECT current_database() AS d`)).rows[0].d as string;
  const admin = new pg.Client({ connectionString: env.source.url() });
  await admin.connect();
  t.after(() => admin.end());
  await admin.query(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS false`);
  await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
  await waitFor('the session retried', () => conn.state().phase === 'retrying', { timeoutMs: 30_000, intervalMs: 20 });
  await client.query(`CREATE TABLE m3 (LIKE m INCLUDING ALL); INSERT INTO m3 SELECT g, 3, 'mar', g FROM generate_series(10, 14) g`);
  await client.query(`ALTER TABLE m ATTACH PARTITION m3 FOR VALUES IN (3)`);
  await admin.query(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true`);
  await streaming(conn);
  await caughtUp(conn, await walLsn(client));
  await assertRowsEqualTable(client, 'm', finalState(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.m`)).values());
});
