/**
 * Dead-letter mode under pressure: a flood of undecodable records goes to the dead-letter topic
 * whole (in sends under the topic's size limit) with a summarised log; a dead-letter topic that
 * cannot take a record (gone, or the record over its max.message.bytes) stalls the partition at
 * that record with a clear error, never skips it; and what is not a bad record (an apply failure,
 * an unreachable registry) still stalls or waits in this mode.
 */
import net from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import { waitFor } from '../../shared/devstack/ports.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import type { OutMessage } from '../../shared/kafka/client.ts';
import { DEAD_LETTER_HEADER_ROOM } from '../../sink-connector/dead-letter-topic.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, readTopic, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { encodeChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets, waitApplied } from '../helpers/sink.ts';

const f = sinkTestFile('dlq');

const inserts = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), `v${from + i}`] }));

/** Records naming a schema id the registry does not have, `bytes` long each. */
const unknownId = (t: ProducedTable, n: number, bytes: number): OutMessage[] =>
  Array.from({ length: n }, (_, i) => ({ topic: t.topic, key: null, value: encodeWire(2_000_000_000 + i, Buffer.alloc(bytes, 0x61)) }));

async function metricValue(sink: SinkConnector, name: string): Promise<number> {
  const m = sink.metrics.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

async function count(table: string): Promise<number> {
  return (await f.env().db.query(`SELECT count(*)::int AS n FROM ${f.DST}.${table}`)).rows[0].n;
}

const stallOf = async (groupId: string) => (await f.env().db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0];

test('a flood of undecodable records goes to the dead-letter topic whole, over its size limit per send, logged in summary', async () => {
  const { servers, producer, kafka, db, admin } = f.env();
  const prefix = uniqueTopic('sbdlqflood');
  const t = await f.table(prefix, 'flood');
  // A table topic over the broker's 1 MiB (the source's topics.maxMessageBytes): the dead-letter topic takes as much.
  await kafkaAdmin(servers.kafka, (a) =>
    a.alterConfigs({ validateOnly: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: t.topic, configEntries: [{ name: 'max.message.bytes', value: String(4 << 20) }] }] }),
  );
  // 6,000 small records: one fetch (1 MiB) of them, with the error headers each dead letter
  // carries, is well over the dead-letter topic's 1 MiB max.message.bytes in one send.
  const bad = unknownId(t, 6_000, 150);
  for (let i = 0; i < bad.length; i += 1000) await producer.sendBatch(bad.slice(i, i + 1000));
  await producer.sendBatch(encodeChanges(t, inserts(1, 5)));
  const { logger, lines } = capturingLogger();
  const groupId = `g-${f.ID}-flood`;
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { deadLetter: { enabled: true }, tables: { [`${f.SRC}.flood`]: { schema: f.DST } } }), logger, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, groupId, [t.topic]);
    assert.equal(await count('flood'), 5);
    const letters = await readTopic(kafka, `${prefix}.__dlq`);
    assert.equal(letters.length, 6_000);
    assert.deepEqual(letters.map((l) => l.headers['shardbridge.original.offset']), bad.map((_, i) => String(i)));
    assert.equal((await admin.configValues('topic', [`${prefix}.__dlq`], 'max.message.bytes')).get(`${prefix}.__dlq`), String((4 << 20) + DEAD_LETTER_HEADER_ROOM));
    assert.equal(letters[0].headers['shardbridge.group.id'], groupId);
    assert.equal(letters[0].headers['shardbridge.connector'], 'test');
    assert.equal(letters[0].headers['shardbridge.error.class'], 'DecodeError');
    assert.equal(await metricValue(sink, 'shardbridge_sink_dead_letter_records_total'), 6_000);
    const warned = lines().filter((l) => l.level >= 40 && /dead-letter/.test(l.msg));
    assert.equal(warned.length, 1, 'summarised: one line a minute per partition, not one per record');
    assert.equal(warned[0].firstOffset, '0');
    assert.match(warned[0].error, /schema id 2000000000/);
    assert.equal(await stallOf(groupId), undefined);
  } finally {
    await sink.stop();
  }
});

test('a record over the dead-letter topic\'s max.message.bytes stalls its partition at it, naming the setting; raised, it goes', async () => {
  const { servers, producer, kafka, db, admin } = f.env();
  const prefix = uniqueTopic('sbdlqbig');
  const t = await f.table(prefix, 'big');
  const dlqTopic = `${prefix}.__dlq`;
  await admin.ensureTopics([{ topic: dlqTopic, partitions: 1, replicationFactor: 1, configs: { 'max.message.bytes': '4000' } }]);
  await producer.sendBatch(encodeChanges(t, inserts(1, 3)));
  await producer.sendBatch(unknownId(t, 1, 100).map((m) => ({ ...m, headers: { trace: 'abc' } })));
  await producer.sendBatch(unknownId(t, 1, 10_000).map((m) => ({ ...m, value: encodeWire(1_999_999_999, m.value!.subarray(5)) })));
  await producer.sendBatch(encodeChanges(t, inserts(4, 6)));
  const groupId = `g-${f.ID}-big`;
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { deadLetter: { enabled: true }, tables: { [`${f.SRC}.big`]: { schema: f.DST } } }), f.log, { topicRefreshMs: 500 });
  try {
    const stall = await waitFor('stall row', () => stallOf(groupId));
    assert.equal(stall.topic, t.topic);
    assert.equal(stall.next_offset, '4', 'stalled at the record too large, after the one that went');
    assert.match(stall.error, /max\.message\.bytes/);
    assert.match(stall.error, new RegExp(dlqTopic));
    assert.equal(await count('big'), 3);
    const [letter] = await readTopic(kafka, dlqTopic);
    assert.deepEqual([letter.headers['shardbridge.original.offset'], letter.headers.trace], ['3', 'abc'], 'sent with the record\'s own headers');
    assert.equal((await storedOffsets(db, groupId)).get(`${t.topic}:0`), 4n, 'the offset stops before the record not sent');
    assert.match(stall.error, new RegExp(`--entity-name ${dlqTopic.replace(/\./g, '\\.')} --add-config max\\.message\\.bytes=16384`));
    await kafkaAdmin(servers.kafka, (a) =>
      a.alterConfigs({ validateOnly: false, resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: dlqTopic, configEntries: [{ name: 'max.message.bytes', value: '16384' }] }] }),
    );
    await waitApplied(db, admin, groupId, [t.topic]);
    assert.equal(await count('big'), 6);
    assert.deepEqual((await readTopic(kafka, dlqTopic)).map((l) => l.headers['shardbridge.original.offset']), ['3', '4']);
  } finally {
    await sink.stop();
  }
});

test('a dead-letter topic deleted while the sink runs: the partition stalls at the undecodable record saying so, and goes on, sending it once, when the topic is back', async () => {
  const { servers, producer, kafka, db, admin } = f.env();
  const prefix = uniqueTopic('sbdlqgone');
  const t = await f.table(prefix, 'gone');
  const dlqTopic = `${prefix}.__dlq`;
  const groupId = `g-${f.ID}-gone`;
  const sink = await startSinkConnector(
    sinkConfig({ ...servers, prefix, groupId }, { deadLetter: { enabled: true }, stallRetryMs: 200, tables: { [`${f.SRC}.gone`]: { schema: f.DST } } }),
    f.log,
    { topicRefreshMs: 500 },
  );
  try {
    await producer.sendBatch(encodeChanges(t, inserts(1, 3)));
    await waitApplied(db, admin, groupId, [t.topic]);
    await admin.deleteTopics([dlqTopic]);
    await producer.sendBatch(unknownId(t, 1, 100));
    await producer.sendBatch(encodeChanges(t, inserts(4, 6)));
    const stall = await waitFor('stall row', () => stallOf(groupId), { timeoutMs: 40_000 });
    assert.equal(stall.next_offset, '3');
    assert.match(stall.error, new RegExp(`did not acknowledge the undecodable record at ${t.topic.replace(/\./g, '\\.')}\\[0\\] offset 3 on the dead-letter topic`));
    assert.match(stall.error, /the sink creates it only at start/);
    assert.equal(await count('gone'), 3, 'nothing after the record applied');
    assert.equal((await storedOffsets(db, groupId)).get(`${t.topic}:0`), 3n);
    await admin.ensureTopics([{ topic: dlqTopic, partitions: 1, replicationFactor: 1 }]);
    await waitApplied(db, admin, groupId, [t.topic], 40_000);
    assert.equal(await count('gone'), 6);
    assert.deepEqual((await readTopic(kafka, dlqTopic)).map((l) => l.headers['shardbridge.original.offset']), ['3'], 'sent once: the retries waited for the send under way');
  } finally {
    await sink.stop();
  }
});

test('the registry unreachable is not a bad record: in dead-letter mode too, records of a schema the sink cannot fetch wait, and nothing is set aside', async () => {
  const { servers, producer, kafka, db, admin, registry } = f.env();
  const prefix = uniqueTopic('sbdlqreg');
  let t = await f.table(prefix, 'reg');
  const proxy = await registryProxy(servers.registry);
  const groupId = `g-${f.ID}-reg`;
  const sink = await startSinkConnector(
    sinkConfig({ ...servers, registry: proxy.url, prefix, groupId }, { deadLetter: { enabled: true }, tables: { [`${f.SRC}.reg`]: { schema: f.DST } } }),
    f.log,
    { topicRefreshMs: 500 },
  );
  try {
    await producer.sendBatch(encodeChanges(t, inserts(1, 3)));
    await waitApplied(db, admin, groupId, [t.topic]);
    proxy.down();
    // A new table version: a schema id the sink has not fetched yet.
    await db.query(`ALTER TABLE ${f.SRC}.reg ADD COLUMN w int`);
    await db.query(`ALTER TABLE ${f.DST}.reg ADD COLUMN w int`);
    t = await registerTable(registry, await tableInfo(db, f.SRC, 'reg'), t.topic);
    await producer.sendBatch(encodeChanges(t, [{ kind: 'insert', new: ['4', 'v4', '40'] }]));
    const retries = await metricValue(sink, 'shardbridge_sink_apply_retries_total');
    await waitFor('the schema fetch retried', async () => (await metricValue(sink, 'shardbridge_sink_apply_retries_total')) >= retries + 3, { timeoutMs: 30_000 });
    assert.equal(await count('reg'), 3);
    assert.equal(await stallOf(groupId), undefined, 'waiting, not stalled');
    assert.equal(await metricValue(sink, 'shardbridge_sink_dead_letter_records_total'), 0);
    proxy.up();
    await waitApplied(db, admin, groupId, [t.topic]);
    assert.deepEqual((await db.query(`SELECT w FROM ${f.DST}.reg WHERE id = 4`)).rows, [{ w: 40 }]);
    assert.deepEqual(await readTopic(kafka, `${prefix}.__dlq`), []);
  } finally {
    await sink.stop();
    await proxy.close();
  }
});

/** A TCP proxy to the registry that can refuse connections (and cut those open) while down. */
async function registryProxy(target: string): Promise<{ url: string; down(): void; up(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(Number(port), hostname);
    open.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end).pipe(upstream);
    upstream.on('error', end).on('close', end).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    url,
    down() {
      refusing = true;
      for (const s of open) s.destroy();
    },
    up() {
      refusing = false;
    },
    close: () => {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function kafkaAdmin<T>(bootstrap: string, use: (admin: kafkajs.Admin) => Promise<T>): Promise<T> {
  const a = new kafkajs.Kafka({ brokers: [bootstrap], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await a.connect();
  try {
    return await use(a);
  } finally {
    await a.disconnect();
  }
}
