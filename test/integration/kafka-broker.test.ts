/**
 * shared/kafka/client.ts against the real broker (the run's shared one when there is one):
 * idempotent producer with Java-compatible partitioning, a consumer group that loses a
 * member mid-stream, and the admin calls the connectors use.
 */
import { after, before, test } from 'node:test';
import { createHook } from 'node:async_hooks';
import assert from 'node:assert/strict';
import { ConfigError, isRetriable } from '../../shared/errors.ts';
import { freePort, waitFor } from '../../shared/devstack/ports.ts';
import { pino } from 'pino';
import { createKafka, type Admin, type Assignment, type Consumer, type KafkaClient, type OutMessage } from '../../shared/kafka/client.ts';
import { pinoLogEntry } from '../../shared/kafka/kafka-log.ts';
import { BROKER_NEEDS, missingBrokerApis } from '../../shared/kafka/broker-features.ts';
import { getTestKafka, readTopic, testLogger, uniqueTopic } from '../helpers/kafka.ts';

/** Partition of `key-0` .. `key-11` among 4 partitions, computed with Kafka's own Java Utils.murmur2. */
const JAVA_PARTITION_OF_KEY = [1, 0, 2, 3, 1, 0, 0, 3, 3, 1, 2, 1];

let kafka: KafkaClient;
let admin: Admin;
let bootstrap: string;
let release: (() => Promise<void>) | undefined;

before(async () => {
  const k = await getTestKafka();
  release = k.release;
  bootstrap = k.bootstrap;
  kafka = createKafka({ brokers: [bootstrap], clientId: 'test-kafka-broker' }, testLogger());
  admin = kafka.admin();
});

after(async () => {
  await admin?.disconnect();
  await release?.();
});

test('idempotent producer: sendBatch acks contiguous offsets on the partitions Java would pick', async () => {
  const topic = uniqueTopic('produce');
  await admin.ensureTopics([{ topic, partitions: 4, replicationFactor: 1 }]);
  const producer = kafka.producer();
  await producer.connect();
  try {
    const perPartition = [0, 0, 0, 0];
    for (let round = 0; round < 3; round++) {
      const batch: OutMessage[] = JAVA_PARTITION_OF_KEY.map((_, i) => ({
        topic,
        key: Buffer.from(`key-${i}`),
        // round 2 carries a tombstone and headers, which must pass through untouched
        value: round === 2 && i === 5 ? null : Buffer.from(`${round}:${i}`),
        headers: round === 2 && i === 0 ? { op: 'u', bin: Buffer.from([0, 1, 2]) } : undefined,
      }));
      const sent = await producer.sendBatch(batch);
      const expected = new Map<number, string>();
      for (const p of JAVA_PARTITION_OF_KEY) if (!expected.has(p)) expected.set(p, String(perPartition[p]));
      assert.deepEqual(
        new Map(sent.map((r) => [r.partition, r.baseOffset])),
        expected,
        `round ${round}: each partition's batch starts where the previous one ended`,
      );
      assert.ok(sent.every((r) => r.topic === topic));
      for (const p of JAVA_PARTITION_OF_KEY) perPartition[p]++;
    }
    // Null keys all go to partition 0 (deterministic, so that a retried batch lands where the first attempt did).
    const keyless = await producer.sendBatch(['n0', 'n1', 'n2'].map((v) => ({ topic, key: null, value: Buffer.from(v) })));
    assert.deepEqual(keyless, [{ topic, partition: 0, baseOffset: String(perPartition[0]) }]);
    perPartition[0] += 3;
    assert.deepEqual(await admin.endOffsets(topic), perPartition.map((n, partition) => ({ partition, offset: String(n) })));

    const all = await readTopic(kafka, topic);
    assert.deepEqual(all.filter((r) => r.key === null).map((r) => [r.partition, r.value]), [[0, 'n0'], [0, 'n1'], [0, 'n2']]);
    const records = all.filter((r) => r.key !== null);
    assert.equal(records.length, 3 * JAVA_PARTITION_OF_KEY.length);
    for (const r of records) {
      const i = Number(r.key!.slice('key-'.length));
      assert.equal(r.partition, JAVA_PARTITION_OF_KEY[i], `${r.key} partition`);
    }
    for (let i = 0; i < JAVA_PARTITION_OF_KEY.length; i++) {
      const values = records.filter((r) => r.key === `key-${i}`).map((r) => r.value);
      assert.deepEqual(values, [`0:${i}`, `1:${i}`, i === 5 ? null : `2:${i}`], `key-${i} in order`);
    }
    const withHeaders = records.find((r) => r.key === 'key-0' && r.value === '2:0');
    assert.deepEqual(withHeaders?.headers, { op: 'u', bin: Buffer.from([0, 1, 2]).toString() });
  } finally {
    await producer.disconnect();
  }
});

interface Delivery {
  member: string;
  partition: number;
  offset: number;
  key: string;
  value: string;
}

test('consumer group: a member leaves mid-stream, the other takes over without gaps', async (t) => {
  const topic = uniqueTopic('group');
  const groupId = uniqueTopic('group');
  await admin.ensureTopics([{ topic, partitions: 4, replicationFactor: 1 }]);
  const deliveries: Delivery[] = [];
  const assignment: Record<string, Assignment> = {};

  const member = async (name: string): Promise<Consumer> => {
    const c = kafka.consumer({ groupId, heartbeatIntervalMs: 300, sessionTimeoutMs: 10_000, maxWaitTimeMs: 200 });
    c.onGroupJoin((a) => (assignment[name] = a));
    await c.connect();
    await c.subscribe({ topics: [topic], fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          deliveries.push({ member: name, partition: batch.partition, offset: Number(m.offset), key: m.key!.toString(), value: m.value!.toString() });
        }
        if (!batch.isEmpty()) {
          await c.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }]);
        }
      },
    });
    return c;
  };
  const partitionsOf = (name: string): number[] => assignment[name]?.[topic] ?? [];

  const a = await member('a');
  const b = await member('b');
  const producer = kafka.producer();
  try {
    await waitFor('both members to share the 4 partitions', () => {
      const pa = partitionsOf('a');
      const pb = partitionsOf('b');
      return pa.length > 0 && pb.length > 0 && [...pa, ...pb].sort().join() === '0,1,2,3';
    });
    const bPartitions = partitionsOf('b');
    await producer.connect();
    let seq = 0;
    const produce = async (batches: number): Promise<void> => {
      for (let i = 0; i < batches; i++) {
        // 16 keys spread over all partitions; per key, values increase with seq.
        await producer.sendBatch(Array.from({ length: 16 }, (_, k) => ({ topic, key: Buffer.from(`k${k}`), value: Buffer.from(String(seq++)) })));
      }
    };

    await produce(10);
    await waitFor('member b to consume from each of its partitions', () =>
      bPartitions.every((p) => deliveries.some((d) => d.member === 'b' && d.partition === p)),
    );
    // b leaves while the stream keeps flowing.
    await Promise.all([produce(20), b.disconnect()]);
    const total = seq;
    await waitFor('member a to own all partitions', () => partitionsOf('a').length === 4);
    await waitFor(`all ${total} messages delivered`, () => new Set(deliveries.map((d) => `${d.partition}:${d.offset}`)).size === total, { timeoutMs: 30_000 });

    // Every value arrived; the first delivery of each (partition, offset) came in offset order
    // (a re-delivery after the rebalance may repeat an offset but never skip one).
    assert.deepEqual(new Set(deliveries.map((d) => Number(d.value))), new Set(Array.from({ length: total }, (_, i) => i)));
    const maxSeen = new Map<number, number>();
    for (const d of deliveries) {
      const max = maxSeen.get(d.partition) ?? -1;
      assert.ok(d.offset <= max + 1, `partition ${d.partition}: offset ${d.offset} delivered after ${max} (gap)`);
      maxSeen.set(d.partition, Math.max(max, d.offset));
    }
    const firstSeen = new Set<string>();
    const lastValueOfKey = new Map<string, number>();
    for (const d of deliveries) {
      if (firstSeen.has(`${d.partition}:${d.offset}`)) continue;
      firstSeen.add(`${d.partition}:${d.offset}`);
      assert.ok(Number(d.value) > (lastValueOfKey.get(d.key) ?? -1), `${d.key}: ${d.value} out of order`);
      lastValueOfKey.set(d.key, Number(d.value));
    }
    const lastByB = Math.max(...deliveries.filter((d) => d.member === 'b').map((d) => deliveries.indexOf(d)));
    const takenOver = deliveries.slice(lastByB + 1).filter((d) => d.member === 'a' && bPartitions.includes(d.partition));
    assert.ok(takenOver.length > 0, "member a consumed b's partitions after b left");
    const redelivered = deliveries.length - firstSeen.size;
    t.diagnostic(`deliveries ${deliveries.length}, re-delivered ${redelivered}`);

    await assert.rejects(admin.setGroupOffsets(groupId, topic, [{ partition: 0, offset: '0' }]), /has running members/, 'a live group keeps its offsets');
    await a.disconnect();
    const committed = await admin.fetchGroupOffsets(groupId, [topic]);
    assert.deepEqual(committed[0].partitions, await admin.endOffsets(topic), 'the group committed up to the end of every partition');
  } finally {
    await Promise.allSettled([a.disconnect(), b.disconnect(), producer.disconnect()]);
  }
});

test('an idle consumer: after an empty fetch the broker holds the next one for idleMaxWaitTimeMs, and answers it at the first record despite minBytes', async () => {
  const topic = uniqueTopic('idle');
  await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
  const IDLE_MS = 3000;
  const c = kafka.consumer({ groupId: uniqueTopic('idle'), maxWaitTimeMs: 20, minBytes: 64 * 1024, idleMaxWaitTimeMs: IDLE_MS });
  const fetches: { at: number; durationMs: number; partitionsWithRecords: number }[] = [];
  c.onFetch((f) => fetches.push({ ...f, at: Date.now() }));
  let received: number | undefined;
  let joined = false;
  c.onGroupJoin(() => (joined = true));
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  await c.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      if (!batch.isEmpty()) received ??= Date.now();
    },
  });
  const producer = kafka.producer();
  try {
    await waitFor('the group joined', () => joined);
    // The first fetch after the join is an ordinary one (and empty); the one after it is held.
    const held = await waitFor('an idle fetch', () => fetches.find((f) => f.durationMs >= IDLE_MS * 0.8), { timeoutMs: 20_000 });
    assert.equal(held.partitionsWithRecords, 0);
    assert.ok(fetches.filter((f) => f.at <= held.at).length <= 4, `${fetches.length} fetches before a held one: an idle consumer does not poll every maxWaitTimeMs`);
    await producer.connect();
    const sent = Date.now();
    await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.from('v') }]);
    await waitFor('the record', () => received !== undefined, { timeoutMs: 20_000 });
    // Under minBytes (64 KiB) a one-record fetch would be held the whole IDLE_MS.
    assert.ok(received! - sent < IDLE_MS / 2, `the record arrived ${received! - sent} ms after it was sent`);
    assert.ok(fetches.some((f) => f.partitionsWithRecords === 1), 'the fetch that brought it counts its partition');
  } finally {
    await Promise.allSettled([c.disconnect(), producer.disconnect()]);
  }
});

test('idle clients schedule no busy timers: a connected producer, admin and group consumer create few timers a second', async () => {
  const topic = uniqueTopic('quiet');
  await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
  const IDLE_MS = 3000;
  const c = kafka.consumer({ groupId: uniqueTopic('quiet'), maxWaitTimeMs: 20, idleMaxWaitTimeMs: IDLE_MS });
  const fetches: number[] = [];
  c.onFetch((f) => fetches.push(f.durationMs));
  let joined = false;
  c.onGroupJoin(() => (joined = true));
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  await c.run({ autoCommit: false, eachBatch: async () => {} });
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.from('v') }]);
    await admin.endOffsets(topic);
    await waitFor('the group joined', () => joined);
    await waitFor('an idle fetch', () => fetches.some((d) => d >= IDLE_MS * 0.8), { timeoutMs: 20_000 });
    // kafkajs 2.2.4's RequestQueue re-armed a 1 ms timer forever on every connection with
    // nothing pending (tulios/kafkajs#1556): ~1,000 timers a second per connection, 2 % of a core
    // per idle connector. patches/kafkajs+2.2.4.patch stops it; count the timers created.
    let timers = 0;
    const hook = createHook({ init: (_id, type) => void (type === 'Timeout' && timers++) });
    hook.enable();
    const WINDOW_MS = 1000;
    try {
      await new Promise((resolve) => setTimeout(resolve, WINDOW_MS)); // the measuring window, not a synchronisation
    } finally {
      hook.disable();
    }
    assert.ok(timers < 50, `${timers} timers created in ${WINDOW_MS} ms by idle Kafka clients (a busy loop makes thousands)`);
  } finally {
    await Promise.allSettled([c.disconnect(), producer.disconnect()]);
  }
});

test('an idle consumer over many partitions: an empty fetch costs no promise per partition (no empty batch, no async decode of an empty partition)', async () => {
  const topic = uniqueTopic('wide');
  const PARTITIONS = 200;
  const IDLE_MS = 200;
  await admin.ensureTopics([{ topic, partitions: PARTITIONS, replicationFactor: 1 }]);
  const c = kafka.consumer({ groupId: uniqueTopic('wide'), maxWaitTimeMs: 20, idleMaxWaitTimeMs: IDLE_MS });
  let promises = 0;
  const fetches: { promises: number; durationMs: number; partitionsWithRecords: number }[] = [];
  c.onFetch((f) => fetches.push({ ...f, promises }));
  let joined = false;
  c.onGroupJoin(() => (joined = true));
  const got: string[] = [];
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  await c.run({ autoCommit: false, eachBatch: async ({ batch }) => void got.push(...batch.messages.map((m) => String(m.value))) });
  const producer = kafka.producer();
  const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && promises++) });
  const held = (f: { durationMs: number }) => f.durationMs >= IDLE_MS * 0.8;
  try {
    await waitFor('the group joined', () => joined);
    // Until the broker leads every new partition, fetches fail and are retried (not held). On a
    // loaded machine two held fetches in a row came before that settled: the next answered early.
    await waitFor('four idle fetches in a row', () => fetches.length >= 4 && fetches.slice(-4).every(held), { timeoutMs: 30_000 });
    hook.enable();
    const from = fetches.length;
    await waitFor('six more fetches', () => fetches.length >= from + 6, { timeoutMs: 20_000 });
    hook.disable();
    const window = fetches.slice(from, from + 6);
    assert.ok(window.every((f) => f.partitionsWithRecords === 0 && held(f)), `idle fetches: ${JSON.stringify(window)}`);
    // Each fetch names all 200 partitions. Unpatched, each empty one became a batch that went
    // through the worker queue, an async handler and a heartbeat call, and was decoded through
    // two async functions: about 20 promises per partition per fetch (4,000 here). Patched,
    // about 80 per fetch, whatever the partitions.
    const perFetch = (window[5].promises - window[0].promises) / 5;
    assert.ok(perFetch < PARTITIONS, `${perFetch} promises per empty fetch over ${PARTITIONS} partitions`);
    // Records are still delivered.
    await producer.connect();
    await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.from('v') }]);
    await waitFor('the record', () => got.length > 0, { timeoutMs: 20_000 });
    assert.deepEqual(got, ['v']);
  } finally {
    hook.disable();
    await Promise.allSettled([c.disconnect(), producer.disconnect()]);
  }
});

test("a record above the topic's max.message.bytes fails its send with an error naming the topic, the size and the setting", async () => {
  const topic = uniqueTopic('big');
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1, configs: { 'max.message.bytes': '20000' } }]);
  const producer = kafka.producer();
  await producer.connect();
  try {
    const err = await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.alloc(50_000, 1) }]).then(
      () => assert.fail('sent'),
      (e: unknown) => e as ConfigError,
    );
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, new RegExp(`Kafka refused a record of 50001 bytes for ${topic} \\(MESSAGE_TOO_LARGE\\)`));
    assert.equal(err.context.topic, topic);
    assert.match(err.remedy ?? '', /--entity-name \S+ --add-config max\.message\.bytes=65536/);
    assert.deepEqual(await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.alloc(1000, 1) }]).then((r) => r.length), 1, 'smaller records still go');
  } finally {
    await producer.disconnect();
  }
});

test('admin: topics, configs, offsets, group offsets; errors keep their retriable flag', async () => {
  const topic = uniqueTopic('admin');
  const configs = { 'cleanup.policy': 'compact', 'retention.ms': '3600000' };
  assert.deepEqual(await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1, configs }]), [topic]);
  assert.deepEqual(await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1, configs }]), [], 'idempotent');
  assert.ok((await admin.listTopics()).includes(topic));
  assert.equal(await admin.partitionCount(topic), 2);
  const described = await admin.describeTopicConfigs(topic);
  assert.equal(described['cleanup.policy'], 'compact');
  assert.equal(described['retention.ms'], '3600000');

  const badRf = await admin.ensureTopics([{ topic: uniqueTopic('rf3'), partitions: 1, replicationFactor: 3 }]).then(
    () => assert.fail('replication factor 3 on one broker must be refused'),
    (err: unknown) => err,
  );
  assert.match(String((badRf as Error).message), /INVALID_REPLICATION_FACTOR/);
  assert.equal(isRetriable(badRf), false);

  assert.deepEqual(await admin.endOffsets(topic), [{ partition: 0, offset: '0' }, { partition: 1, offset: '0' }]);
  const startedAt = Date.now();
  const producer = kafka.producer();
  await producer.connect();
  await producer.sendBatch(Array.from({ length: 6 }, (_, i) => ({ topic, key: Buffer.from(`k${i}`), value: Buffer.from('v') })));
  await producer.disconnect();
  const ends = await admin.endOffsets(topic);
  assert.equal(ends.reduce((n, e) => n + Number(e.offset), 0), 6);
  assert.deepEqual(await admin.offsetsAtTime(topic, startedAt - 60_000), [{ partition: 0, offset: '0' }, { partition: 1, offset: '0' }]);
  assert.deepEqual(await admin.offsetsAtTime(topic, Date.now() + 60_000), ends, 'no record that late: the end offsets');

  const groupId = uniqueTopic('offsets');
  assert.deepEqual(await admin.fetchGroupOffsets(groupId, [topic]), [{ topic, partitions: [{ partition: 0, offset: '-1' }, { partition: 1, offset: '-1' }] }]);
  await admin.setGroupOffsets(groupId, topic, [{ partition: 0, offset: '1' }, { partition: 1, offset: '2' }]);
  assert.deepEqual(await admin.fetchGroupOffsets(groupId, [topic]), [{ topic, partitions: [{ partition: 0, offset: '1' }, { partition: 1, offset: '2' }] }]);

  const cluster = await admin.describeCluster();
  assert.deepEqual(cluster.brokers.map((b) => `${b.host}:${b.port}`), [bootstrap]);

  // The start-time check of both connectors (broker-features.ts) reads what the broker announced.
  const versions = await admin.apiVersions();
  assert.ok((versions.get(3)?.maxVersion ?? 0) >= 10, `the broker announces Metadata v10+ (topic ids): ${JSON.stringify(versions.get(3))}`);
  assert.deepEqual(missingBrokerApis(versions, BROKER_NEEDS.sink), []);

  await admin.deleteTopics([topic, uniqueTopic('never-created')]);
  assert.ok(!(await admin.listTopics()).includes(topic));

  // kafkajs gives up with KafkaJSNumberOfRetriesExceeded (not retriable itself); the
  // retriable UNKNOWN_TOPIC_OR_PARTITION underneath must stay visible.
  const quick = createKafka({ brokers: [bootstrap], logLevel: 'nothing', retry: { retries: 1, initialRetryTime: 50 } }, testLogger()).admin();
  const gone = await quick.endOffsets(topic).then(() => assert.fail('deleted topic has no offsets'), (err: unknown) => err);
  await quick.disconnect();
  assert.equal((gone as Error).name, 'KafkaJSNumberOfRetriesExceeded');
  assert.equal(isRetriable(gone), true);

  const nobody = createKafka({ brokers: [`127.0.0.1:${await freePort()}`], connectionTimeoutMs: 500, logLevel: 'nothing', retry: { retries: 0 } }, testLogger()).admin();
  const refused = await nobody.describeCluster().then(() => assert.fail('no broker there'), (err: unknown) => err);
  assert.equal(isRetriable(refused), true, `connection refused is retriable: ${String(refused)}`);
});

test('150 topics: partition counts, group offsets and the first send to each cost a bounded number of requests, not one or a metadata refresh per topic', async () => {
  const requests: string[] = [];
  let metadataBytes = 0;
  const counting = createKafka(
    {
      brokers: [bootstrap],
      clientId: 'test-many-topics',
      onRequest: (r) => {
        requests.push(`${r.client} ${r.api}`);
        if (r.client === 'admin' && r.api === 'Metadata') metadataBytes += r.bytes;
      },
    },
    testLogger(),
  );
  const sent = (what: string) => requests.filter((r) => r === what).length;
  const base = uniqueTopic('many');
  const topics = Array.from({ length: 150 }, (_, i) => `${base}-${i}`);
  await admin.ensureTopics(topics.map((topic) => ({ topic, partitions: 2, replicationFactor: 1 })));
  // Leaders known is not leaders serving yet: sends would be retried (and metadata refreshed) meanwhile.
  for (const topic of topics) await waitFor(`${topic} served`, () => admin.endOffsets(topic));
  const a = counting.admin();
  await a.connect();
  const producer = counting.producer();
  await producer.connect();
  try {
    requests.length = 0;
    metadataBytes = 0;
    const counts = await a.partitionCounts(topics);
    const allTopicsMetadata = metadataBytes;
    assert.deepEqual([...counts.values()], topics.map(() => 2));
    assert.deepEqual([...counts.keys()].sort(), [...topics].sort());
    assert.ok(sent('admin Metadata') <= 2, `${sent('admin Metadata')} metadata requests for the partition counts of 150 topics`);

    // Each topic's end offsets on its own (as snapshot markers and status read them): kafkajs
    // refreshes the metadata of every topic an admin was asked about at each new one, which
    // would come to 75 times the metadata of all 150 topics; spread over admins, about 25.
    metadataBytes = 0;
    const ends = await Promise.all(topics.map((topic) => a.endOffsets(topic)));
    assert.ok(ends.every((e) => e.length === 2 && e.every((p) => p.offset === '0')));
    assert.ok(metadataBytes < 40 * allTopicsMetadata, `end offsets of 150 topics read ${metadataBytes} bytes of metadata, ${Math.round(metadataBytes / allTopicsMetadata)} times that of all of them`);

    requests.length = 0;
    const groupOffsets = await a.fetchGroupOffsets(uniqueTopic('many-group'), topics);
    assert.equal(groupOffsets.length, 150);
    assert.ok(groupOffsets.every((t) => t.partitions.length === 2 && t.partitions.every((p) => p.offset === '-1')));
    assert.ok(requests.length <= 6, `group offsets of 150 topics: ${requests.join(', ')}`);

    // As the snapshot sends: each table's rows in batches of their own.
    requests.length = 0;
    await producer.prepare(topics);
    for (const topic of topics) await producer.sendBatch([{ topic, key: Buffer.from('k'), value: Buffer.from('v') }]);
    assert.equal(sent('producer Produce'), 150);
    assert.ok(sent('producer Metadata') <= 2, `${sent('producer Metadata')} producer metadata requests for 150 topics`);
  } finally {
    await producer.disconnect();
    await a.disconnect();
    await admin.deleteTopics(topics);
  }
});

test('kafkajs log entries reach pino at their level, without the SASL password', () => {
  const lines: string[] = [];
  const emit = pinoLogEntry(pino({ level: 'debug' }, { write: (line: string) => lines.push(line) }), 's3cret-pw');
  emit({ namespace: 'SASLPlainAuthenticator', level: 1, log: { message: 'SASL PLAIN authentication failed: user/s3cret-pw', sasl: { username: 'u', password: 's3cret-pw' } } });
  emit({ namespace: 'Consumer', level: 2, log: { message: 'rebalancing', groupId: 'g' } });
  emit({ namespace: 'Connection', level: 1, log: { message: 'Response Metadata(key: 3, version: 6)', error: 'LEADER_NOT_AVAILABLE' } });
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(parsed.map((p) => [p.level, p.namespace]), [[50, 'SASLPlainAuthenticator'], [40, 'Consumer'], [20, 'Connection']]);
  assert.ok(!lines.join('\n').includes('s3cret-pw'), lines.join('\n'));
  assert.equal(parsed[0].msg, 'SASL PLAIN authentication failed: user/[redacted]');
});
