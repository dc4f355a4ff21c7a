/**
 * Schema changes made while the source connector streams, against real PostgreSQL, Kafka and
 * the registry: a change the destination cannot follow by itself stops the connector with the
 * remedy, also when further DDL on the table comes before the connector sees it; renamed
 * columns, changed replica identity, added columns with a default; a subject's own
 * compatibility level (the remedy for a type change the registry refuses) is kept; and a row
 * too large for its topic stops it the same way, with the remedy.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import type pg from 'pg';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { capturingLogger, testLogger } from '../helpers/kafka.ts';
import { RegistryDecoder, caughtUp, readDecoded, startSourceTestEnv, stopped, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;

before(async () => {
  env = await startSourceTestEnv('test-source-schema-changes');
  kafka = env.kafka;
});

after(() => env?.close());

/** A fresh database with `ddl` run in it, and a source connector streaming from it (stopped after the test). */
async function streamingSource(t: TestContext, ddl: string, extra: Record<string, unknown> = {}) {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(ddl);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, ...extra } });
  const { logger, lines } = capturingLogger();
  const conn = await startSourceConnector(config, logger);
  t.after(() => conn.stop());
  await streaming(conn);
  return { client, config, conn, lines };
}

test("a row larger than its topic's max.message.bytes stops the connector naming table, key and size before it is sent; the slot keeps it, and with the limit raised as the remedy says a restart publishes it", async (t) => {
  // One partition: 40 rows of 10 kB fit the 200 kB limit one by one, not in one batch.
  const { client, config, conn } = await streamingSource(t, `CREATE TABLE big (id int PRIMARY KEY, v text); ALTER TABLE big ALTER COLUMN v SET STORAGE EXTERNAL`, {
    topics: { partitions: 1, maxMessageBytes: 200_000 },
  });
  const topic = `${config.topicPrefix}.public.big`;
  await client.query(`INSERT INTO big SELECT g, repeat(g::text, 10000 / length(g::text)) FROM generate_series(1, 40) g`);
  const before = await walLsn(client);
  await caughtUp(conn, before);
  // 300 kB: a small row of its transaction before it.
  await client.query(`BEGIN; INSERT INTO big VALUES (41, 'small'); INSERT INTO big SELECT 42, string_agg(md5(g::text), '') FROM generate_series(1, 9375) g; COMMIT`);
  const err = await stopped(conn);
  assert.equal(err.kind, 'config');
  assert.match(err.message, new RegExp(`^a row of public\\.big \\(key \\{"id":42\\}\\) makes a record of 30\\d{4} bytes, more than topic ${topic.replace(/\./g, '\\.')} takes \\(max\\.message\\.bytes 200000\\)$`));
  assert.equal(err.context.xid !== null && err.context.commitLsn !== null, true, 'the transaction is named');
  const raise = /--entity-name (\S+) --add-config max\.message\.bytes=(\d+) \(topics\.maxMessageBytes for topics the source creates\)/.exec(err.remedy ?? '');
  assert.ok(raise, err.remedy);
  // Everything before is confirmed. A keep-alive while the server decodes the large transaction
  // (pgoutput sends a transaction at its commit) may confirm a position inside it, as on a loaded
  // machine: safe, it commits after that and is read again. The restart below shows the slot kept it.
  assert.ok(parseLsn(await slotConfirmed(client, config.slotName)) >= before, 'the slot confirmed the transaction before');

  await kafkaAdmin(async (admin) => {
    await admin.alterConfigs({ validateOnly: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: raise[1], configEntries: [{ name: 'max.message.bytes', value: raise[2] }] }] });
  });
  const again = await startSourceConnector(config, testLogger());
  t.after(() => again.stop());
  await caughtUp(again, await walLsn(client));
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic);
  const ids = records.map((r) => Number(r.afterText?.id));
  assert.deepEqual([...new Set(ids)].sort((a, b) => a - b), Array.from({ length: 42 }, (_, i) => i + 1));
  assert.equal(records.find((r) => r.afterText?.id === '42')?.afterText?.v?.length, 300_000, 'the slot kept the transaction with the row');
});

/** kafkajs's own admin, for what the connectors never do (raise a topic's limit, as an operator would). */
async function kafkaAdmin(use: (admin: kafkajs.Admin) => Promise<void>): Promise<void> {
  const admin = new kafkajs.Kafka({ brokers: [env.bootstrap], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await use(admin);
  } finally {
    await admin.disconnect();
  }
}

async function slotConfirmed(client: pg.Client, slot: string): Promise<string> {
  return (await client.query(`SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0].c;
}

test('a type change, a row and an added column in one transaction on a table idle since the start: the connector stops, the row unpublished', async (t) => {
  const { client, config, conn } = await streamingSource(t, `CREATE TABLE t (id int PRIMARY KEY, v numeric(12,2)); INSERT INTO t VALUES (1, 1.25)`);
  await client.query(`BEGIN; ALTER TABLE t ALTER COLUMN v TYPE numeric(14,4); INSERT INTO t VALUES (2, 1.2345); ALTER TABLE t ADD COLUMN w int; COMMIT`);
  const err = await stopped(conn);
  assert.equal(err.kind, 'schema');
  assert.match(err.message, /column v of table public\.t changed type from numeric\(12,2\) to numeric\(14,4\): the connector stops/);
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.t`);
  assert.deepEqual(records.map((r) => r.afterText?.id), ['1'], 'only the snapshot row');
});

test('a table renamed and altered in one transaction: the connector stops instead of publishing, forever and silently, to a topic nobody made', async (t) => {
  const { client, conn } = await streamingSource(t, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')`);
  await client.query(`BEGIN; ALTER TABLE t RENAME TO t2; INSERT INTO t2 VALUES (2, 'b'); ALTER TABLE t2 ADD COLUMN w int; COMMIT`);
  const err = await stopped(conn);
  assert.match(err.message, /table public\.t was renamed to public\.t2 while streaming: the connector stops/);
  assert.match(err.remedy ?? '', /rename it back/);
});

test('a column renamed while streaming stops the connector with the remedy; started again, it goes on under the new name', async (t) => {
  const { client, config, conn } = await streamingSource(t, `CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3) g`);
  await client.query(`INSERT INTO t VALUES (4, 'v4')`);
  await caughtUp(conn, await walLsn(client));
  const beforeRename = await walLsn(client);
  await client.query(`ALTER TABLE t RENAME COLUMN a TO b`);
  await client.query(`UPDATE t SET b = b || '!' WHERE id = 2`);
  const err = await stopped(conn);
  assert.equal(err.kind, 'schema');
  assert.match(err.message, /column a of table public\.t was renamed to b while streaming: the connector stops/);
  assert.deepEqual([err.context.column, err.context.renamedTo], ['a', 'b']);
  assert.match(err.remedy ?? '', /rename the column on the destination too \(ALTER TABLE "public"\."t" RENAME COLUMN "a" TO "b";\), then start both connectors/);
  assert.ok(parseLsn(await slotConfirmed(client, config.slotName)) >= beforeRename, 'everything before the transaction that met the rename was confirmed');

  // The remedy's restart: the start-up catalog has the new name, and the stream goes on from the update that met it.
  const again = await startSourceConnector(config, testLogger());
  t.after(() => again.stop());
  await streaming(again);
  await client.query(`INSERT INTO t VALUES (5, 'v5')`);
  await caughtUp(again, await walLsn(client));
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.t`);
  // In commit order: the two keys are on different partitions, read one after the other.
  const after = records
    .filter((r) => r.value && r.value.source.lsn !== null && (r.value.source.lsn as bigint) > beforeRename)
    .sort((x, y) => ((x.value!.source.lsn as bigint) < (y.value!.source.lsn as bigint) ? -1 : 1));
  assert.deepEqual(after.map((r) => [r.value!.op, r.afterText]), [['u', { id: '2', b: 'v2!' }], ['c', { id: '5', b: 'v5' }]]);
});

test('a column added with a default while streaming: a warning naming table, column and default; a default that differs per side says so', async (t) => {
  const { client, conn, lines } = await streamingSource(t, `CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x')`);
  await client.query(`ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 7, ADD COLUMN l text DEFAULT lower('X'), ADD COLUMN at timestamptz DEFAULT now(), ADD COLUMN n bigserial`);
  await client.query(`INSERT INTO t (id, a) VALUES (2, 'y')`);
  await caughtUp(conn, await walLsn(client));
  const warning = lines().find((l) => l.level === 40 && l.column === 'c');
  assert.ok(warning, JSON.stringify(lines()));
  assert.equal(warning.table, 'public.t');
  assert.equal(warning.default, '7');
  assert.match(warning.msg, /column c was added to table public\.t with DEFAULT 7/);
  assert.match(warning.remedy, /ADD COLUMN "c" integer NOT NULL DEFAULT 7/);
  const remedyOf = (column: string) => String(lines().find((l) => l.level === 40 && l.column === column)?.remedy);
  assert.match(remedyOf('l'), /add the column on the destination the same way: .*DEFAULT lower\('X'::text\)/, 'an immutable function gives both sides one value');
  for (const column of ['at', 'n']) {
    assert.match(remedyOf(column), /gives each side its own values .*add the column on the destination without it .*UPDATE public\.t SET "(at|n)" = "(at|n)" WHERE/, column);
  }
  assert.equal(conn.state().phase, 'streaming', 'a warning, not a stop');
});

test('REPLICA IDENTITY USING INDEX on a non-key index set while streaming: the connector stops before re-keying the table', async (t) => {
  const { client, config, conn } = await streamingSource(
    t,
    `CREATE TABLE t (tenant int, id int NOT NULL, v text, PRIMARY KEY (tenant, id)); CREATE UNIQUE INDEX t_id ON t (id);
     INSERT INTO t SELECT g % 3, g, 'x' FROM generate_series(1, 20) g`,
    { topics: { partitions: 4 } },
  );
  await client.query(`UPDATE t SET v = 'before' WHERE id = 5`);
  await caughtUp(conn, await walLsn(client));
  await client.query(`ALTER TABLE t REPLICA IDENTITY USING INDEX t_id`);
  await client.query(`UPDATE t SET v = 'after' WHERE id = 5`);
  const err = await stopped(conn);
  assert.match(err.message, /table public\.t has REPLICA IDENTITY USING INDEX on \(id\), not its primary key \(tenant, id\).*set while streaming: the connector stops/);
  assert.match(err.remedy ?? '', /REPLICA IDENTITY DEFAULT/);
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.t`);
  assert.deepEqual(records.filter((r) => r.afterText?.id === '5').map((r) => [r.afterText!.v, Object.keys(r.key ?? {})]), [['x', ['tenant', 'id']], ['before', ['tenant', 'id']]]);
});

test('a type change the registry refuses: after the documented NONE on the subject, the connector starts and streams the new type', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)`);
  const config: SourceConfig = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } });
  const first = await startSourceConnector(config, testLogger());
  await streaming(first);
  await first.stop();
  await client.query(`ALTER TABLE t ALTER COLUMN v TYPE text; INSERT INTO t VALUES (2, 'two')`);

  const subject = `${config.topicPrefix}.public.t-value`;
  const refused = await startSourceConnector(config, testLogger());
  const err = await stopped(refused);
  assert.equal(err.context.status, 409);
  assert.match(err.remedy ?? '', new RegExp(`PUT http://\\S+/config/${subject.replace(/\./g, '\\.')} with \\{"compatibility":"NONE"\\}`));

  const put = await fetch(`${env.registryUrl}/config/${subject}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify({ compatibility: 'NONE' }) });
  assert.equal(put.status, 200);
  const again = await startSourceConnector(config, testLogger());
  t.after(() => again.stop());
  await streaming(again);
  await caughtUp(again, await walLsn(client));
  const records = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), `${config.topicPrefix}.public.t`);
  // Keys 1 and 2 are on different partitions: find the row, not the last record read.
  assert.deepEqual(records.find((r) => r.afterText?.id === '2')?.afterText, { id: '2', v: 'two' });
  assert.equal((await (await fetch(`${env.registryUrl}/config/${subject}`)).json()).compatibilityLevel, 'NONE', "the subject's level is left as the operator set it");
});
