/**
 * What Kafka operators do to ShardBridge's topics while a migration runs, on the real broker:
 * a control topic deleted while the connectors are stopped, a topic's limits altered while the
 * source runs, the sink group's offsets reset or deleted, a compacted table topic replayed,
 * partitions added to a table topic (docs/source-connector.md, "Kafka operations", "Partitions
 * added to a topic").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import { reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { runCli } from '../helpers/cli.ts';
import { capturingLogger, testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { produceChanges, registerTable, tableInfo } from '../helpers/produce-changes.ts';
import { pipelineCaughtUp, sinkConfig, waitApplied } from '../helpers/sink.ts';
import { openSinkTestEnv } from '../helpers/sink-env.ts';
import {
  RegistryDecoder, caughtUp, dropSlot, finalStateInTopicOrder, readDecoded, readRaw, startSourceTestEnv, stopped, streaming, testSourceConfig, uniquePrefix, walLsn, type SourceTestEnv,
} from '../helpers/source.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;
const releases: (() => Promise<void>)[] = [];

before(async () => {
  env = await startSourceTestEnv('test-kafka-operations');
  kafka = env.kafka;
});

after(async () => {
  for (const release of releases) await release().catch(() => {});
  await env?.close();
});

/** What an operator's `kafka-topics --delete` of the control topic does. */
async function deleteSnapshotTopic(prefix: string): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.deleteTopics([`${prefix}.__snapshot`]);
  } finally {
    await admin.disconnect();
  }
}

test('a __snapshot topic deleted while the source is stopped: the snapshot is taken again after a truncate, so rows deleted meanwhile go', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query('CREATE TABLE items (id int PRIMARY KEY, v text)');
  await client.query(`INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 20) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 2 } } });
  const topic = `${config.topicPrefix}.public.items`;
  const first = await startSourceConnector(config, capturingLogger().logger);
  try {
    await streaming(first);
  } finally {
    await first.stop();
  }
  // While the source is stopped: rows deleted at the source (in the slot's WAL), and the operator deletes __snapshot.
  await client.query('DELETE FROM items WHERE id <= 5');
  await deleteSnapshotTopic(config.topicPrefix);
  const log = capturingLogger();
  const second = await startSourceConnector(config, log.logger);
  t.after(() => second.stop());
  await streaming(second);
  assert.ok(log.lines().some((l) => /__snapshot/.test(l.msg) && l.level >= 40), 'the lost control topic is named in a warning');
  // Kafka's description of the table, applied partition by partition as the sink would: the source's rows exactly.
  const state = finalStateInTopicOrder(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic));
  const ids = [...state.keys()].map((k) => JSON.parse(k).id as number).sort((a, b) => a - b);
  assert.deepEqual(ids, Array.from({ length: 15 }, (_, i) => i + 6), 'rows deleted while the source was stopped are gone from what the topic describes');
});

test('snapshot.mode never, __snapshot deleted while the source is stopped: the next start writes the slot marker again, so the slot dropped later stops it as lost changes', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query('CREATE TABLE n (id int PRIMARY KEY, v text)');
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, snapshot: { mode: 'never' } } });
  const run = async () => {
    const conn = await startSourceConnector(config, capturingLogger().logger);
    try {
      await streaming(conn);
    } finally {
      await conn.stop();
    }
  };
  await run();
  await deleteSnapshotTopic(config.topicPrefix);
  await run();
  await dropSlot(client, slot);
  const third = await startSourceConnector(config, testLogger());
  t.after(() => third.stop());
  // Without the marker it would stream on from a new slot (no stop within the deadline), the changes in between lost unsaid.
  const err = await stopped(third, 30_000);
  assert.match(err.message, /vanished after this connector had published from it: changes since its last confirmed position are lost/);
});

test("a table's markers removed from __snapshot (retention) while the source is stopped: its own snapshot comes after a truncate", async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query('CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text)');
  await client.query(`INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 10) g; INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 10) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } });
  const first = await startSourceConnector(config, capturingLogger().logger);
  try {
    await streaming(first);
  } finally {
    await first.stop();
  }
  await client.query('DELETE FROM a WHERE id <= 3');
  // What compaction leaves once a delete-policy retention removed a's markers: a null under its key.
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.sendBatch([{ topic: `${config.topicPrefix}.__snapshot`, key: Buffer.from('public.a'), value: null }]);
  } finally {
    await producer.disconnect();
  }
  const second = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => second.stop());
  await streaming(second);
  const topic = `${config.topicPrefix}.public.a`;
  await waitFor('the own snapshot of a in its topic', async () => (await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).filter((r) => r.value?.op === 'r').length >= 17);
  const state = finalStateInTopicOrder(await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic));
  const ids = [...state.keys()].map((k) => JSON.parse(k).id as number).sort((x, y) => x - y);
  assert.deepEqual(ids, [4, 5, 6, 7, 8, 9, 10]);
});

/** kafkajs's own admin, for what operators do with kafka-configs / kafka-consumer-groups. */
async function kafkaAdmin<T>(use: (admin: kafkajs.Admin) => Promise<T>): Promise<T> {
  const admin = new kafkajs.Kafka({ brokers: [env.bootstrap], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

test("a table topic's max.message.bytes lowered while the source runs: a send of rows that each fit stops it saying so, and a restart (the remedy) publishes them", async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query('CREATE TABLE docs (id int PRIMARY KEY, body text)');
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 1 } } });
  const topic = `${config.topicPrefix}.public.docs`;
  const conn = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => conn.stop());
  await streaming(conn);
  await kafkaAdmin((a) => a.alterConfigs({ validateOnly: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'max.message.bytes', value: '4096' }] }] }));
  // 100 rows of ~400 bytes in one transaction: each fits 4096, their batch does not.
  await client.query(`INSERT INTO docs SELECT g, repeat('x', 300) FROM generate_series(1, 100) g`);
  const err = await stopped(conn, 30_000);
  assert.equal(err.kind, 'config');
  assert.match(err.message, new RegExp(`^Kafka refused a send of \\d+ records .* to ${topic.replace(/\./g, '\\.')} \\(MESSAGE_TOO_LARGE\\)`));
  assert.match(err.remedy ?? '', /^start the connector again/);
  const again = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => again.stop());
  await caughtUp(again, await walLsn(client));
  const rows = (await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic)).filter((r) => r.value?.op === 'c');
  assert.equal(new Set(rows.map((r) => r.afterText?.id)).size, 100);
});

test('topics pre-created by an operator with another cleanup.policy: named at start with the command that sets it', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query('CREATE TABLE pre (id int PRIMARY KEY)');
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { cleanupPolicy: 'compact' } } });
  const admin = kafka.admin();
  try {
    await admin.ensureTopics([
      { topic: `${config.topicPrefix}.__snapshot`, partitions: 1, replicationFactor: 1, configs: { 'cleanup.policy': 'delete' } },
      { topic: `${config.topicPrefix}.public.pre`, partitions: 1, replicationFactor: 1, configs: { 'cleanup.policy': 'delete' } },
    ]);
  } finally {
    await admin.disconnect();
  }
  const log = capturingLogger();
  const conn = await startSourceConnector(config, log.logger);
  t.after(() => conn.stop());
  await streaming(conn);
  const warned = log.lines().filter((l) => l.level === 40 && l.cleanupPolicy === 'delete').map((l) => l.topic).sort();
  assert.deepEqual(warned, [`${config.topicPrefix}.__snapshot`, `${config.topicPrefix}.public.pre`]);
  assert.ok(log.lines().some((l) => /__snapshot has cleanup\.policy=delete, not compact: its markers go with its retention/.test(l.msg)));
});

test('a table topic pre-created with min.insync.replicas above its replicas (every acks=all send refused): the start stops naming it and the command, no endless retry', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE strict (id int PRIMARY KEY); INSERT INTO strict VALUES (1)`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } });
  const topic = `${config.topicPrefix}.public.strict`;
  const admin = kafka.admin();
  try {
    await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1, configs: { 'min.insync.replicas': '2' } }]);
  } finally {
    await admin.disconnect();
  }
  const conn = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => conn.stop());
  const err = await stopped(conn, 30_000);
  assert.equal(err.kind, 'config');
  assert.match(err.message, new RegExp(`Kafka refuses every send to ${topic.replace(/\./g, '\\.')} \\(1 replica, min\\.insync\\.replicas 2\\)`));
  assert.match(err.remedy!, new RegExp(`--entity-name ${topic.replace(/\./g, '\\.')} --add-config min\\.insync\\.replicas=1`));
  const { rows } = await client.query('SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  assert.deepEqual(rows, [], 'stopped before the slot was made');
});

test("the sink group's offsets reset by an operator while the sink is stopped: the sink resumes from the destination's offsets and says so", async (t) => {
  const tag = `kops_${process.pid}_${Date.now().toString(36)}`;
  const sink = await openSinkTestEnv([`${tag}_src`, `${tag}_dst`], testLogger());
  t.after(() => sink.close());
  const { db, admin, producer, servers } = sink;
  await db.query(`CREATE TABLE ${tag}_src.acc (id int PRIMARY KEY, n int); CREATE TABLE ${tag}_dst.acc (id int PRIMARY KEY, n int)`);
  const prefix = uniquePrefix();
  const topic = `${prefix}.${tag}_src.acc`;
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  const table = await registerTable(sink.registry, await tableInfo(db, `${tag}_src`, 'acc'), topic);
  const groupId = `g-${tag}`;
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${tag}_src.acc`]: { schema: `${tag}_dst` } } });
  await produceChanges(producer, table, Array.from({ length: 10 }, (_, i) => ({ kind: 'insert' as const, new: [String(i + 1), '1'] })));
  const first = await startSinkConnector(config, testLogger());
  try {
    await waitApplied(db, admin, groupId, [topic]);
  } finally {
    await first.stop();
  }
  // The operator rewinds the group (kafka-consumer-groups --reset-offsets --to-earliest), the sink stopped.
  await kafkaAdmin((a) => a.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '0' }] }));
  await produceChanges(producer, table, [{ kind: 'update', new: ['1', '2'] }]);
  const log = capturingLogger();
  const second = await startSinkConnector(config, log.logger);
  t.after(() => second.stop());
  await waitApplied(db, admin, groupId, [topic]);
  const line = log.lines().find((l) => /committed offsets differ from the offsets stored in the destination/.test(l.msg));
  assert.ok(line, 'the start says the group offsets are not used');
  assert.deepEqual(line.first, [{ topic, partition: 0, groupOffset: '0', storedOffset: '10' }]);
  assert.equal((await db.query(`SELECT n FROM ${tag}_dst.acc WHERE id = 1`)).rows[0].n, 2);
});

/**
 * Partitions added to a table topic (`kafka-topics --alter --partitions`) while the source is
 * stopped (source-connector/partition-pins.ts): every key goes on to the partition its earlier
 * changes are in, a truncate to the partitions keys go to, and the sink converges.
 */
async function addPartitions(topic: string, count: number): Promise<void> {
  const admin = new kafkajs.Kafka({ brokers: [env.bootstrap], clientId: 'test-kafka-operations', logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createPartitions({ topicPartitions: [{ topic, count }] });
  } finally {
    await admin.disconnect();
  }
}

test('partitions added to a table topic while the source is stopped: the start names the topic, keys stay on their partitions, a truncate goes to those partitions only, and the sink ends equal to the source', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const name = `grown_${slot.slice(-8)}`;
  await client.query(`CREATE TABLE ${name} (id int PRIMARY KEY, v text); INSERT INTO ${name} SELECT g, 'snapshot' FROM generate_series(1, 60) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 2 } } });
  const topic = `${config.topicPrefix}.public.${name}`;
  const first = await startSourceConnector(config, testLogger());
  await streaming(first);
  await client.query(`UPDATE ${name} SET v = 'before the partitions were added' WHERE id % 2 = 0`);
  await caughtUp(first, await walLsn(client));
  await first.stop();
  const recorded = reduceSnapshotTopic(await readRaw(env.kafka, `${config.topicPrefix}.__snapshot`)).partitions;
  assert.equal(recorded.get(topic), 2);

  await addPartitions(topic, 5);
  const { logger, lines } = capturingLogger();
  const source = await startSourceConnector(config, logger);
  t.after(() => source.stop());
  await streaming(source);
  const warned = lines().filter((l) => l.level === 40 && l.topic === topic);
  assert.equal(warned.length, 1, JSON.stringify(lines().filter((l) => l.level >= 40)));
  assert.match(warned[0].msg, /has 5 partitions; its keys go to the first 2 as before.*Partitions 2\.\.4 stay empty/);

  await client.query(`UPDATE ${name} SET v = 'after' WHERE id <= 40`);
  await client.query(`DELETE FROM ${name} WHERE id > 50`);
  await client.query(`TRUNCATE ${name}`);
  await client.query(`INSERT INTO ${name} SELECT g, 'refilled' FROM generate_series(1, 30) g`);
  await client.query(`UPDATE ${name} SET v = 'last' WHERE id % 3 = 0`);
  await caughtUp(source, await walLsn(client));

  const records = await readDecoded(env.kafka, new RegistryDecoder(env.registryUrl), topic);
  const raw = await readRaw(env.kafka, topic);
  assert.deepEqual(records.filter((r) => r.partition >= 2), [], 'nothing on the added partitions');
  const truncates = raw.filter((_, i) => records[i].value?.op === 't');
  assert.equal(truncates.length, 2, 'one truncate copy per keyed partition');
  for (const r of raw.filter((_, i) => records[i].value?.op !== 't')) assert.equal(r.partition, partitionForKey(r.key!, 2), `key ${records[raw.indexOf(r)].key?.id}`);

  // Released with the file, after every test's own hooks (the sinks' stops, the table's drop).
  const dest = await getTestDestination();
  releases.push(() => dest.release());
  const dst = new pg.Client({ connectionString: dest.url });
  await dst.connect();
  await dst.query(`CREATE TABLE public.${name} (id int PRIMARY KEY, v text)`);
  t.after(() => dst.query(`DROP TABLE IF EXISTS public.${name}`).finally(() => dst.end()));
  const groupId = `g-${config.topicPrefix}`;
  const sinkCfg = sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId });
  const want = (await client.query(`SELECT id, v FROM ${name} ORDER BY id`)).rows;
  assert.equal(want.length, 30);
  const sink = await startSinkConnector(sinkCfg, testLogger());
  await pipelineCaughtUp(env.kafka, { client, source }, { db: dst, groupId, topics: [topic] });
  await sink.stop();
  assert.deepEqual((await dst.query(`SELECT id, v FROM public.${name} ORDER BY id`)).rows, want);

  // A replay from zero re-applies the truncate, whose copies reached the 2 keyed partitions of 5.
  const dir = mkdtempSync(join(tmpdir(), 'sb-topic-partitions-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'sink.json'), JSON.stringify(sinkCfg));
  const r = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', join(dir, 'sink.json')]);
  assert.equal(r.code, 0, r.stderr);
  await dst.query(`UPDATE public.${name} SET v = 'damaged'`);
  const again = await startSinkConnector(sinkCfg, testLogger());
  t.after(() => again.stop());
  await pipelineCaughtUp(env.kafka, { client, source }, { db: dst, groupId, topics: [topic] });
  assert.deepEqual((await dst.query(`SELECT id, v FROM public.${name} ORDER BY id`)).rows, want);
});
