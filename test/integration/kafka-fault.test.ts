/**
 * Broker faults with a broker of this file's own: SIGKILL while the idempotent producer is
 * mid-stream, then a restart on the same ports and log dir. Every acknowledged message must
 * still be there (and, the producer being idempotent, only once); a consumer's crashes while
 * the broker is down are not logged one by one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startKafka, type KafkaBroker } from '../../shared/devstack/kafka.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import { capturingLogger, readTopic, testLogger, uniqueTopic } from '../helpers/kafka.ts';

let broker: KafkaBroker;
let dataDir: string;
let kafka: KafkaClient;
const topic = uniqueTopic('fault');

before(async () => {
  // Our own dataDir: stop() keeps it, so the broker can come back after a stop().
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'shardbridge-kafka-fault-'));
  broker = await startKafka({ dataDir, logger: testLogger() });
  kafka = createKafka({ brokers: [broker.bootstrap], clientId: 'test-kafka-fault' }, testLogger());
  const admin = kafka.admin();
  await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
  await admin.disconnect();
});

after(async () => {
  await broker?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('SIGKILL mid-stream, restart on the same ports and log dir: every acknowledged message is there, once; a consumer crashing and restarting meanwhile logs one warning', async (t) => {
  const producer = kafka.producer({ retry: { initialRetryTime: 100, maxRetryTime: 1000 } });
  await producer.connect();
  // A consumer in a group, as the sink's, with its client's log lines kept.
  const watched = capturingLogger();
  const consumerClient = createKafka({ brokers: [broker.bootstrap], clientId: 'test-kafka-fault-consumer' }, watched.logger);
  const consumer = consumerClient.consumer({ groupId: uniqueTopic('fault-group'), maxWaitTimeMs: 100 });
  let crashes = 0;
  let read = 0;
  consumer.onCrash(({ restart }) => {
    if (restart) crashes++;
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({ autoCommit: false, eachBatch: async ({ batch }) => void (read += batch.messages.length) });
  const acked: string[] = [];
  let seq = 0;
  let running = true;
  // Sends back to back until told to stop; a send in flight when the broker dies is retried
  // by kafkajs until the broker is back, so the loop itself never sees the outage.
  const loop = (async () => {
    while (running) {
      const values = Array.from({ length: 20 }, () => String(seq++));
      await producer.sendBatch(values.map((v) => ({ topic, key: Buffer.from(`k${Number(v) % 17}`), value: Buffer.from(v) })));
      acked.push(...values);
    }
  })();
  loop.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"
  try {
    await waitFor('300 acknowledged messages before the crash', () => acked.length >= 300);
    await waitFor('the consumer reading', () => read > 0, { timeoutMs: 30_000 });
    await broker.crash();
    const ackedAtCrash = acked.length;
    const sentAtCrash = seq;
    // kafkajs's consumer gives a connection failure up after its retries (waits capped at 1 s) and restarts:
    // 12 times a minute, each an ERROR 'Crash' and 'Restarting the consumer' line; the client's one warning says it all.
    const linesAtCrash = watched.lines().length;
    await waitFor('the consumer crashed and restarted while the broker is down', () => crashes >= 1, { timeoutMs: 30_000 });
    const loud = watched.lines().slice(linesAtCrash).filter((l) => l.level >= 40).map((l) => l.msg as string);
    // Stopped now: after the restart its group would wait for the old member's session to end (30 s).
    consumerClient.close();
    await consumer.disconnect();
    const restartStarted = Date.now();
    await broker.restart();
    assert.ok(loud.length <= 1 && loud.every((m) => m.startsWith('cannot reach Kafka at ')), `warnings and errors while the broker was down: ${JSON.stringify(loud)}`);
    t.diagnostic(`crashed after ${ackedAtCrash} acked (${sentAtCrash} sent); restart took ${Date.now() - restartStarted} ms`);
    assert.equal(broker.bootstrap, `127.0.0.1:${broker.port}`);
    await waitFor('300 more acknowledged messages after the restart', () => acked.length >= ackedAtCrash + 300, { timeoutMs: 30_000 });
  } finally {
    running = false;
    await loop;
    await producer.disconnect();
    consumerClient.close();
  }

  const values = (await readTopic(kafka, topic)).map((r) => r.value!);
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  const missing = acked.filter((v) => !counts.has(v));
  assert.deepEqual(missing, [], 'acknowledged but lost');
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([v]) => v);
  assert.deepEqual(duplicated, [], 'written twice despite the idempotent producer');
  assert.equal(values.length, acked.length, 'nothing but the acknowledged messages');
});

test('stop() then restart(): the data survives a clean shutdown and the broker takes writes again', async () => {
  const before = await readTopic(kafka, topic);
  const admin = kafka.admin();
  const endsBefore = await admin.endOffsets(topic);
  await admin.disconnect();

  await broker.stop();
  await broker.restart();
  // KRaft's server says 'Kafka Server started', ZooKeeper mode's '[KafkaServer id=1] started'.
  assert.match(broker.logTail(200), /Kafka Server started|\[KafkaServer id=\d+\] started/);

  const admin2 = kafka.admin();
  assert.deepEqual(await admin2.endOffsets(topic), endsBefore);
  await admin2.disconnect();
  const producer = kafka.producer();
  await producer.connect();
  await producer.sendBatch([{ topic, key: Buffer.from('after-restart'), value: Buffer.from('after-restart') }]);
  await producer.disconnect();
  const afterRestart = await readTopic(kafka, topic);
  assert.deepEqual(afterRestart.map((r) => r.value).sort(), [...before.map((r) => r.value), 'after-restart'].sort());
});

test('a batch given resend(), failing with its outcome unknown while the broker is down, goes again as resend() makes it, under a new producer id', async (t) => {
  const own = uniqueTopic('fault-resend');
  const admin = kafka.admin();
  await admin.ensureTopics([{ topic: own, partitions: 3, replicationFactor: 1 }]);
  await admin.disconnect();
  // Few connection retries, so that kafkajs gives the failure up to our wrapper quickly.
  const client = createKafka({ brokers: [broker.bootstrap], clientId: 'test-kafka-resend', retry: { initialRetryTime: 100, maxRetryTime: 300, retries: 2 } }, testLogger());
  const producer = client.producer({ retry: { initialRetryTime: 100, maxRetryTime: 300 } });
  await producer.connect();
  const batch = (tag: string) => Array.from({ length: 30 }, (_, i) => ({ topic: own, key: Buffer.from(`k${i}`), value: Buffer.from(`${tag}${i}`) }));
  try {
    await producer.sendBatch(batch('before-'));
    await broker.crash();
    let resends = 0;
    const sent = producer.sendBatch(batch('first-'), { resend: () => batch(`again${++resends}-`) });
    sent.catch(() => {}); // awaited below
    await waitFor('the send given up by kafkajs and made again by our wrapper', () => resends >= 1, { timeoutMs: 60_000 });
    await broker.restart();
    await sent;
    t.diagnostic(`made again ${resends} times`);

    const records = await readTopic(client, own);
    const byTag = (tag: string) => records.filter((r) => r.value!.startsWith(tag));
    assert.equal(byTag('before-').length, 30);
    assert.equal(byTag('first-').length, 0, 'the first attempt never reached a broker that was down');
    const last = byTag(`again${resends}-`);
    assert.deepEqual(last.map((r) => r.value).sort(), batch(`again${resends}-`).map((m) => m.value.toString()).sort());
    const ids = (rs: typeof records) => new Set(rs.map((r) => r.producerId));
    assert.equal(ids(byTag('before-')).size, 1);
    assert.equal(ids(last).size, 1);
    assert.notDeepEqual(ids(last), ids(byTag('before-')), 'sent again under a new producer id');
  } finally {
    await producer.disconnect();
  }
});
