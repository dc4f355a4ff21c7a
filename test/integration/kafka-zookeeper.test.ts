/**
 * A Kafka 3.x broker in ZooKeeper mode, as many users still run (the rest of the suite runs
 * 4.4.0 in KRaft mode): its own broker and ZooKeeper (shared/devstack/kafka-zookeeper.ts), the
 * 3.9.2 jars fetched on first use as 4.4.0's are. Only what differs from KRaft is tested here;
 * the other files run against 3.x with SHARDBRIDGE_KAFKA_VERSION (docs/configuration.md, "Kafka versions").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startKafka, type KafkaBroker } from '../../shared/devstack/kafka.ts';
import { createKafka, type Admin, type KafkaClient } from '../../shared/kafka/client.ts';
import { BROKER_NEEDS, missingBrokerApis } from '../../shared/kafka/broker-features.ts';
import { testLogger, uniqueTopic } from '../helpers/kafka.ts';

/** The newest 3.x release, the last with ZooKeeper mode. */
const VERSION = '3.9.2';

let broker: KafkaBroker;
let kafka: KafkaClient;
let admin: Admin;
const lines: Record<string, any>[] = [];

before(async () => {
  broker = await startKafka({ version: VERSION, zookeeper: true, heapMb: 256, logger: testLogger() });
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  kafka = createKafka({ brokers: [broker.bootstrap], clientId: 'test-zookeeper' }, pino({ level: 'debug' }, stream));
  admin = kafka.admin();
});

after(async () => {
  await admin?.disconnect();
  await broker?.stop();
});

test('a topic deleted a moment ago is created again: ZooKeeper still deleting it answered TOPIC_ALREADY_EXISTS, and the create waited 30 s for a topic that never came', async () => {
  const topic = uniqueTopic('zk-again');
  // Partitions with records: ZooKeeper's deletion (each replica stopped, its log removed) outlasts the metadata that says it is gone.
  await admin.ensureTopics([{ topic, partitions: 8, replicationFactor: 1 }]);
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.sendBatch(Array.from({ length: 64 }, (_, i) => ({ topic, key: Buffer.from(`k${i}`), value: Buffer.from('v') })));
    await admin.deleteTopics([topic]);
    const started = Date.now();
    assert.deepEqual(await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1 }]), [topic]);
    // The broker's refusal did come (the case this is about), and the create was asked again.
    assert.ok(
      lines.some((l) => l.msg === 'topics not listed after their creation was answered: asking again' && l.topics?.includes(topic)),
      'the first create met the deletion still under way',
    );
    assert.ok(Date.now() - started < 20_000, `created again in ${Date.now() - started} ms`);
    assert.equal(await admin.partitionCount(topic), 2, 'the new topic, not the old one');
    const [sent] = await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.from('again') }]);
    assert.equal(sent.baseOffset, '0');
  } finally {
    await producer.disconnect();
  }
});

test("the connectors' start-time check passes on a 3.x broker: it announces topic ids (Metadata v10+)", async () => {
  const versions = await admin.apiVersions();
  assert.ok((versions.get(3)?.maxVersion ?? 0) >= 10, JSON.stringify(versions.get(3)));
  assert.deepEqual(missingBrokerApis(versions, BROKER_NEEDS.sink), []);
  assert.deepEqual(missingBrokerApis(versions, BROKER_NEEDS.source), []);
});
