/**
 * Partitions added to a table topic (`kafka-topics --alter --partitions`) while the source is
 * stopped (source-connector/partition-pins.ts): every key goes on to the partition its earlier
 * changes are in, a truncate to the partitions keys go to, and the sink converges. Before, the
 * producer spread keys over the new count, so a key's later change could be applied before an
 * earlier one still waiting on its old partition.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import { reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { runCli } from '../helpers/cli.ts';
import { capturingLogger, testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { RegistryDecoder, caughtUp, readDecoded, readRaw, startSourceTestEnv, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
let dest: { url: string; release(): Promise<void> };

before(async () => {
  env = await startSourceTestEnv('test-topic-partitions');
  dest = await getTestDestination();
});

after(async () => {
  await dest?.release();
  await env?.close();
});

async function addPartitions(topic: string, count: number): Promise<void> {
  const admin = new Kafka({ brokers: [env.bootstrap], clientId: 'test-topic-partitions', logLevel: logLevel.NOTHING }).admin();
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
