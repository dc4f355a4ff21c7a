/**
 * patches/kafkajs+2.2.4.patch against the real broker, where a reviewer of its fetch and produce
 * paths looks for loss: a partition whose fetch brings only aborted or control records (no
 * batch is made of an empty partition any more: does the consumer still move past them?), an
 * idle consumer kept in its group longer than its session timeout (heartbeats now come from the
 * empty fetch, not from an empty batch per partition), a fetch offset below the log start, and
 * client ids around the room a produce request leaves for its header.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { waitFor } from '../../shared/devstack/ports.ts';
import { getTestKafka, uniqueTopic } from '../helpers/kafka.ts';

const require = createRequire(import.meta.url);
// kafkajs itself (as patched): transactions and group events the connectors' wrapper does not expose.
const { Kafka, logLevel } = require('kafkajs') as typeof import('kafkajs');

let bootstrap: string;
let release: (() => Promise<void>) | undefined;
const kafka = (clientId = 'test-kpatch') => new Kafka({ brokers: [bootstrap], clientId, logLevel: logLevel.NOTHING });
const admin = () => kafka().admin();

before(async () => {
  const k = await getTestKafka();
  bootstrap = k.bootstrap;
  release = k.release;
});
after(async () => release?.());

async function committed(groupId: string, topic: string): Promise<string[]> {
  const a = admin();
  await a.connect();
  try {
    const [t] = await a.fetchOffsets({ groupId, topics: [topic] });
    return t.partitions.sort((x, y) => x.partition - y.partition).map((p) => p.offset);
  } finally {
    await a.disconnect();
  }
}

test('a partition that brings only an aborted transaction and its marker: the consumer moves past them once, then reads a committed one', async () => {
  const topic = uniqueTopic('kp-txn');
  const a = admin();
  await a.connect();
  await a.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  await a.disconnect();
  const producer = kafka().producer({ transactionalId: `tx-${topic}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const groupId = `g-${topic}`;
  const consumer = kafka().consumer({ groupId, maxWaitTimeInMs: 200 });
  const got: string[] = [];
  // Batches the runner processed, records or not (a batch of only filtered records resolves its last offset).
  const batches: string[] = [];
  let fetches = 0;
  consumer.on(consumer.events.START_BATCH_PROCESS, (e) => void batches.push(`${e.payload.firstOffset}-${e.payload.lastOffset}`));
  consumer.on(consumer.events.FETCH, () => void fetches++);
  const fetchesMore = async (n: number) => {
    const until = fetches + n;
    await waitFor(`${n} more fetches`, async () => fetches >= until, { timeoutMs: 10_000 });
  };
  try {
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [0, 1, 2].map((i) => ({ value: Buffer.from(`aborted-${i}`) })) });
    await aborted.abort(); // offsets 0-2 aborted, 3 the abort marker
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void got.push(message.value!.toString()) });
    await waitFor('the aborted records and their marker', async () => batches.length > 0, { timeoutMs: 20_000 });
    await fetchesMore(3);
    assert.deepEqual(batches, ['0-3'], 'passed once, not fetched again');
    assert.deepEqual(got, []);
    const committedTx = await producer.transaction();
    await committedTx.send({ topic, messages: [{ value: Buffer.from('kept-0') }, { value: Buffer.from('kept-1') }] });
    await committedTx.commit(); // 4-5, 6 the commit marker
    await waitFor('the committed records', async () => got.length === 2, { timeoutMs: 20_000 });
    await fetchesMore(3);
    assert.deepEqual(got, ['kept-0', 'kept-1']);
    // The marker comes with the records or in a fetch of its own; eachMessage resolves only the
    // records' offsets (upstream too), so a marker behind them is fetched once more, alone, and passed.
    assert.ok(['0-3,4-6,6-6', '0-3,4-5,6-6'].includes(batches.join()), batches.join());
    // kafkajs commits after a batch with records; a batch of only a marker resolves but does not
    // commit (upstream too): the group's offset is past the records, its consumer past the marker.
    assert.ok(['6', '7'].includes((await committed(groupId, topic))[0]));
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
  }
});

test('an idle consumer stays in its group well past its session timeout, and then reads what comes', async () => {
  const topic = uniqueTopic('kp-idle');
  const a = admin();
  await a.connect();
  await a.createTopics({ topics: [{ topic, numPartitions: 4, replicationFactor: 1 }], waitForLeaders: true });
  await a.disconnect();
  const groupId = `g-${topic}`;
  const sessionTimeout = 6000; // the broker's group.min.session.timeout.ms
  const consumer = kafka().consumer({ groupId, sessionTimeout, heartbeatInterval: 1000, maxWaitTimeInMs: 500, idleMaxWaitTimeInMs: 500 } as never);
  let joins = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => joins++);
  const got: string[] = [];
  try {
    await consumer.connect();
    await consumer.subscribe({ topic });
    await consumer.run({ eachMessage: async ({ message }) => void got.push(message.value!.toString()) });
    await waitFor('joined', async () => joins === 1, { timeoutMs: 20_000 });
    const idleUntil = Date.now() + sessionTimeout * 1.5;
    await waitFor('idle spell', async () => Date.now() >= idleUntil, { timeoutMs: sessionTimeout * 3 });
    assert.equal(joins, 1, 'no rejoin: the broker did not drop the idle member');
    const producer = kafka().producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ value: Buffer.from('after-idle') }] });
    await producer.disconnect();
    await waitFor('the record after the idle spell', async () => got.length === 1, { timeoutMs: 10_000 });
    assert.equal(joins, 1);
  } finally {
    await consumer.disconnect();
  }
});

test('a fetch offset below the log start (records deleted): that partition restarts at the log start, the other loses and repeats nothing', async () => {
  const topic = uniqueTopic('kp-oor');
  const a = admin();
  await a.connect();
  const groupId = `g-${topic}`;
  const got: string[] = [];
  const consumer = kafka().consumer({ groupId, maxWaitTimeInMs: 200 });
  try {
    await a.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
    const producer = kafka().producer();
    await producer.connect();
    await producer.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ partition: 0, value: Buffer.from(`p0-${i}`) })) });
    await producer.send({ topic, messages: Array.from({ length: 5 }, (_, i) => ({ partition: 1, value: Buffer.from(`p1-${i}`) })) });
    await producer.disconnect();
    await a.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '2' }, { partition: 1, offset: '0' }] });
    await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '6' }] });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void got.push(message.value!.toString()) });
    await waitFor('records of both partitions', async () => got.length >= 9, { timeoutMs: 20_000 });
    await waitFor('committed', async () => (await committed(groupId, topic)).join() === '10,5', { timeoutMs: 10_000 });
    assert.deepEqual(got.filter((v) => v.startsWith('p0')), ['p0-6', 'p0-7', 'p0-8', 'p0-9']);
    assert.deepEqual(got.filter((v) => v.startsWith('p1')), ['p1-0', 'p1-1', 'p1-2', 'p1-3', 'p1-4']);
  } finally {
    await consumer.disconnect();
    await a.disconnect();
  }
});

test('client ids around the room before a produce body (242 bytes fit, 243 and multi-byte do not): the broker takes every request, records read back', async () => {
  const topic = uniqueTopic('kp-cid');
  const a = admin();
  await a.connect();
  await a.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  await a.disconnect();
  const ids = ['a'.repeat(242), 'a'.repeat(243), 'a'.repeat(256), 'é'.repeat(121), 'é'.repeat(130), '😀'.repeat(61)];
  for (const [i, clientId] of ids.entries()) {
    const producer = kafka(clientId).producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const [r] = await producer.send({ topic, acks: -1, messages: [{ key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) }, { key: null, value: Buffer.alloc(900_000, i) }] });
    assert.equal(r.baseOffset, String(i * 2), `client id of ${Buffer.byteLength(clientId)} bytes`);
    await producer.disconnect();
  }
  const consumer = kafka().consumer({ groupId: `g-${topic}`, maxWaitTimeInMs: 200 });
  const got: { key: string | null; size: number }[] = [];
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void got.push({ key: message.key?.toString() ?? null, size: message.value!.length }) });
    await waitFor('every record', async () => got.length === ids.length * 2, { timeoutMs: 20_000 });
    assert.deepEqual(got, ids.flatMap((_, i) => [{ key: `k${i}`, size: 2 }, { key: null, size: 900_000 }]));
  } finally {
    await consumer.disconnect();
  }
});

test('pause, resume and seek while fetches are held: nothing read while paused, everything after resume, a seek reads again from its offset', async () => {
  const topic = uniqueTopic('kp-pause');
  const a = admin();
  await a.connect();
  await a.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
  await a.disconnect();
  const consumer = kafka().consumer({ groupId: `g-${topic}`, maxWaitTimeInMs: 300, idleMaxWaitTimeInMs: 300 } as never);
  const got: string[] = [];
  let fetches = 0;
  consumer.on(consumer.events.FETCH, () => void fetches++);
  const producer = kafka().producer();
  try {
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ partition, message }) => void got.push(`${partition}:${message.value!.toString()}`) });
    await waitFor('fetching', async () => fetches >= 2, { timeoutMs: 20_000 });
    consumer.pause([{ topic, partitions: [0] }]);
    await producer.send({ topic, messages: [{ partition: 0, value: Buffer.from('a') }, { partition: 1, value: Buffer.from('b') }] });
    await waitFor('the unpaused partition', async () => got.includes('1:b'), { timeoutMs: 10_000 });
    const until = fetches + 3;
    await waitFor('fetches while paused', async () => fetches >= until, { timeoutMs: 10_000 });
    assert.deepEqual(got, ['1:b']);
    consumer.resume([{ topic, partitions: [0] }]);
    await waitFor('the resumed partition', async () => got.includes('0:a'), { timeoutMs: 10_000 });
    await producer.send({ topic, messages: [{ partition: 0, value: Buffer.from('c') }] });
    await waitFor('the next record', async () => got.includes('0:c'), { timeoutMs: 10_000 });
    consumer.seek({ topic, partition: 0, offset: '0' }); // while a fetch is held
    await waitFor('read again from the seek', async () => got.length === 5, { timeoutMs: 10_000 });
    const again = fetches + 3;
    await waitFor('fetches after the seek', async () => fetches >= again, { timeoutMs: 10_000 });
    assert.deepEqual(got, ['1:b', '0:a', '0:c', '0:a', '0:c']);
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
  }
});
