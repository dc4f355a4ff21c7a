/**
 * The sink's stored offsets against what Kafka still has. Records the sink never applied that
 * Kafka no longer has (retention, deleteRecords) stall their partition instead of being skipped;
 * `replay --to-offset <log start>` goes on from what is there. Offsets without records that lost
 * nothing (transaction markers) are passed as before. A stored offset past the partition's end
 * (the topic deleted and created again) stalls instead of dropping every new record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { encodeChanges, produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets, waitApplied } from '../helpers/sink.ts';
import { runCli } from '../helpers/cli.ts';

const require = createRequire(import.meta.url);
// kafkajs itself: deleteRecords and transactions, which the connectors' wrapper does not expose.
const { Kafka, logLevel } = require('kafkajs') as typeof import('kafkajs');

const { ID, SRC, DST, log, env, table: fileTable } = sinkTestFile('gap');
const dir = mkdtempSync(join(tmpdir(), 'sb-gaps-'));
const rawKafka = () => new Kafka({ brokers: [env().servers.kafka], clientId: 'test-gaps', logLevel: logLevel.NOTHING });

const table = (name: string, prefix: string) => fileTable(prefix, name);

const inserts = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), `v${from + i}`] }));

const ids = async (name: string): Promise<number[]> => (await env().db.query(`SELECT id FROM ${DST}.${name} ORDER BY id`)).rows.map((r) => r.id as number);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface Fixture {
  prefix: string;
  groupId: string;
  extra: Record<string, unknown>;
  configFile: string;
}

function fixture(name: string, tables: string[]): Fixture {
  const prefix = uniqueTopic(`sbgap${name}`);
  const groupId = `g-${ID}-${name}`;
  const extra = { tables: Object.fromEntries(tables.map((t) => [`${SRC}.${t}`, { schema: DST }])) };
  const configFile = join(dir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify({ ...sinkConfig({ ...env().servers, prefix, groupId }, extra), logLevel: 'warn' }));
  return { prefix, groupId, extra, configFile };
}

function startSink(f: Fixture, logger = log): Promise<SinkConnector> {
  return startSinkConnector(sinkConfig({ ...env().servers, prefix: f.prefix, groupId: f.groupId }, f.extra), logger, { topicRefreshMs: 500 });
}

async function applyAll(f: Fixture, topics: string[]): Promise<void> {
  const sink = await startSink(f);
  try {
    await waitApplied(env().db, env().admin, f.groupId, topics);
  } finally {
    await sink.stop();
  }
}

async function deleteRecordsBelow(topic: string, offset: number): Promise<void> {
  const a = rawKafka().admin();
  await a.connect();
  try {
    await a.fetchTopicMetadata({ topics: [topic] });
    await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: String(offset) }] });
  } finally {
    await a.disconnect();
  }
}

const stallRow = async (groupId: string) => (await env().db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0];

async function metricValue(sink: SinkConnector, name: string, labels: Record<string, string>): Promise<number> {
  const m = sink.metrics.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

const replay = (args: string[]) => runCli(['replay', ...args]);

test('records the sink never applied that Kafka deleted stall their partition with one clear error; replay to the log start goes on from there', async () => {
  const { db, admin, producer } = env();
  const f = fixture('retention', ['gapped', 'other']);
  const gapped = await table('gapped', f.prefix);
  const other = await table('other', f.prefix);
  await produceChanges(producer, gapped, inserts(1, 10)); // offsets 0..9
  await produceChanges(producer, other, inserts(1, 5));
  await applyAll(f, [gapped.topic, other.topic]);

  // While the sink is down: 10..19 produced, then everything below 15 deleted (as retention would).
  await produceChanges(producer, gapped, inserts(11, 20));
  await deleteRecordsBelow(gapped.topic, 15);
  const { logger, lines } = capturingLogger();
  let sink = await startSink(f, logger);
  try {
    const stall = await waitFor('stall row', () => stallRow(f.groupId), { timeoutMs: 30_000 });
    assert.equal(stall.topic, gapped.topic);
    assert.equal(stall.partition, 0);
    assert.equal(stall.next_offset, '10');
    assert.equal(stall.table_name, `${DST}.gapped`);
    assert.match(stall.error, /stored offset 10 .*first offset Kafka has is 15: 5 offsets are gone/);
    assert.match(stall.error, new RegExp(`shardbridge resnapshot --source-config source\\.yaml --table ${SRC}\\.gapped`));
    assert.match(stall.error, new RegExp(`shardbridge replay --sink-config sink\\.yaml --topic ${gapped.topic.replace(/\./g, '\\.')} --partition 0 --to-offset 15`));
    assert.equal(await metricValue(sink, 'shardbridge_sink_stalled_partitions', { topic: gapped.topic, reason: 'gap' }), 1);

    // The other table keeps flowing; the gapped one is not advanced past the gap.
    await produceChanges(producer, other, inserts(6, 10));
    await waitApplied(db, admin, f.groupId, [other.topic]);
    assert.deepEqual(await ids('other'), range(1, 10));
    await waitFor('a few retries', async () => (await stallRow(f.groupId))?.attempts >= 3);
    assert.deepEqual(await ids('gapped'), range(1, 10));
    assert.equal((await storedOffsets(db, f.groupId)).get(`${gapped.topic}:0`), 10n);
    const errors = lines().filter((l) => l.level >= 50 && /stalled/.test(l.msg));
    assert.equal(errors.length, 1, 'one error line, not one per retry');
    assert.match(errors[0].msg, new RegExp(`${gapped.topic.replace(/\./g, '\\.')}\\[0\\]`));
    assert.ok(!lines().some((l) => /applying from what is there/.test(l.msg)), 'the gap is not accepted');
  } finally {
    await sink.stop();
  }

  const r = await replay(['--topic', gapped.topic, '--partition', '0', '--to-offset', '15', '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[0\]: next offset 10 -> 15 \(destination and group [^)]+\): moved forward to Kafka's first offset 15: offsets 10\.\.14 are gone from Kafka/);
  sink = await startSink(f);
  try {
    await waitApplied(db, admin, f.groupId, [gapped.topic]);
    assert.deepEqual(await ids('gapped'), [...range(1, 10), ...range(16, 20)]);
    await waitFor('stall cleared', async () => (await stallRow(f.groupId)) === undefined);
  } finally {
    await sink.stop();
  }
});

test('offsets without records that lose nothing (transaction markers) are passed without a stall or a warning', async () => {
  const f = fixture('markers', ['txn']);
  const t = await table('txn', f.prefix);
  const producer = rawKafka().producer({ transactionalId: `tx-${f.prefix}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const inTransaction = async (from: number, to: number) => {
    const tx = await producer.transaction();
    await tx.send({ topic: t.topic, messages: encodeChanges(t, inserts(from, to)).map((m) => ({ key: m.key, value: m.value, partition: 0 })) });
    await tx.commit();
  };
  try {
    await inTransaction(1, 5); // offsets 0..4, its commit marker at 5
    const { logger, lines } = capturingLogger();
    let sink = await startSink(f, logger);
    try {
      await waitFor('first transaction applied', async () => (await ids('txn')).length === 5, { timeoutMs: 30_000 });
    } finally {
      await sink.stop();
    }
    await inTransaction(6, 10); // offsets 6..10: the sink's stored offset 5 is the marker
    sink = await startSink(f, logger);
    try {
      await waitFor('second transaction applied', async () => (await ids('txn')).length === 10, { timeoutMs: 30_000 });
      assert.equal(await stallRow(f.groupId), undefined);
      assert.deepEqual(
        lines().filter((l) => l.level >= 40 && !/kafkajs/.test(String(l.component ?? ''))).map((l) => l.msg),
        [],
        'no warning: nothing was lost',
      );
    } finally {
      await sink.stop();
    }
  } finally {
    await producer.disconnect();
  }
});

test('a topic deleted and created again under the stored offsets stalls instead of dropping its records; replay to 0 applies them', async () => {
  const { db, admin, kafka } = env();
  const f = fixture('recreated', ['again']);
  const t = await table('again', f.prefix);
  const first = kafka.producer();
  await first.connect();
  await produceChanges(first, t, inserts(1, 10));
  await first.disconnect();
  await applyAll(f, [t.topic]);

  await admin.deleteTopics([t.topic]);
  await admin.ensureTopics([{ topic: t.topic, partitions: 1, replicationFactor: 1 }]);
  const second = kafka.producer();
  await second.connect();
  await produceChanges(second, t, inserts(101, 103)); // offsets 0..2 of the new topic
  await second.disconnect();
  let sink = await startSink(f);
  try {
    const stall = await waitFor('stall row', () => stallRow(f.groupId), { timeoutMs: 30_000 });
    assert.equal(stall.topic, t.topic);
    assert.equal(stall.next_offset, '10');
    // Told by the topic's id (topic-identity.ts); a broker without ids says it by the end offset (offset-gaps.ts).
    assert.match(stall.error, /was deleted and created again under the sink's stored offset 10 \(topic id [0-9a-f]{32} when stored, [0-9a-f]{32} now\); the new partition holds offsets 0\.\.2:/);
    assert.match(stall.error, new RegExp(`shardbridge replay --sink-config sink\\.yaml --topic ${t.topic.replace(/\./g, '\\.')} --partition 0 --to-offset 0`));
    assert.deepEqual(await ids('again'), range(1, 10));
  } finally {
    await sink.stop();
  }
  // The new topic grows past the stored offset: its end no longer shows it, the recorded stall does.
  const third = kafka.producer();
  await third.connect();
  await produceChanges(third, t, inserts(104, 112)); // offsets 3..11
  await third.disconnect();
  sink = await startSink(f);
  try {
    await waitFor('stalled again after the restart', async () => (await metricValue(sink, 'shardbridge_sink_stalled_partitions', { topic: t.topic, reason: 'past-end' })) === 1, {
      timeoutMs: 30_000,
    });
    assert.match((await stallRow(f.groupId)).error, /under the sink's stored offset 10 .*; the new partition holds offsets 0\.\.11:/);
    assert.deepEqual(await ids('again'), range(1, 10), 'offsets 10 and 11 of the new topic not applied over a gap of ten');
    assert.equal((await storedOffsets(db, f.groupId)).get(`${t.topic}:0`), 10n);
  } finally {
    await sink.stop();
  }
  const r = await replay(['--topic', t.topic, '--to-offset', '0', '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  sink = await startSink(f);
  try {
    await waitApplied(db, admin, f.groupId, [t.topic]);
    assert.deepEqual(await ids('again'), [...range(1, 10), ...range(101, 112)]);
    await waitFor('stall cleared', async () => (await stallRow(f.groupId)) === undefined);
  } finally {
    await sink.stop();
  }
});

test('a topic deleted and created again with fewer partitions, grown past the stored offset while the sink was stopped: stalls by its topic id, names the partition that is gone; replay to 0 applies the new records', async () => {
  const { db, admin, kafka } = env();
  const f = fixture('regrown', ['regrown']);
  const t = await fileTable(f.prefix, 'regrown', { partitions: 2 });
  const raw = rawKafka().producer();
  await raw.connect();
  try {
    // Odd keys to partition 0, even ones to 1.
    await raw.send({ topic: t.topic, messages: encodeChanges(t, inserts(1, 20)).map((m, i) => ({ key: m.key, value: m.value, partition: i % 2 })) });
  } finally {
    await raw.disconnect();
  }
  await applyAll(f, [t.topic]);
  const before = await storedOffsets(db, f.groupId);
  const stored0 = before.get(`${t.topic}:0`)!;
  const stored1 = before.get(`${t.topic}:1`)!;
  assert.ok(stored0 > 0n && stored1 > 0n, `both partitions applied: ${stored0}, ${stored1}`);

  await admin.deleteTopics([t.topic]);
  await admin.ensureTopics([{ topic: t.topic, partitions: 1, replicationFactor: 1 }]);
  const second = kafka.producer();
  await second.connect();
  await produceChanges(second, t, inserts(101, 140)); // offsets 0..39 of the new partition 0: past its stored offset
  await second.disconnect();
  const { logger, lines } = capturingLogger();
  let sink = await startSink(f, logger);
  try {
    const stall = await waitFor('stall row', () => stallRow(f.groupId), { timeoutMs: 30_000 });
    assert.equal(stall.topic, t.topic);
    assert.equal(stall.partition, 0);
    assert.equal(stall.next_offset, String(stored0));
    assert.equal(stall.table_name, `${DST}.regrown`);
    assert.match(stall.error, new RegExp(`was deleted and created again under the sink's stored offset ${stored0} \\(topic id [0-9a-f]{32} when stored, [0-9a-f]{32} now\\); the new partition holds offsets 0\\.\\.39`));
    assert.match(stall.error, new RegExp(`shardbridge replay --sink-config sink\\.yaml --topic ${t.topic.replace(/\./g, '\\.')} --partition 0 --to-offset 0`));
    const gone = lines().find((l) => l.level >= 50 && /partitions it no longer has/.test(l.msg));
    assert.ok(gone, 'the partition that is gone is named');
    assert.match(gone.msg, new RegExp(`has 1 partition now, but the sink stored offsets in partitions it no longer has: \\[1\\] at ${stored1}\\.`));
    await waitFor('a retry', async () => (await stallRow(f.groupId))?.attempts >= 2, { timeoutMs: 30_000 });
    assert.deepEqual(await ids('regrown'), range(1, 20), 'no record of the new topic applied over the skipped ones');
    assert.equal((await storedOffsets(db, f.groupId)).get(`${t.topic}:0`), stored0);
  } finally {
    await sink.stop();
  }

  const r = await replay(['--topic', t.topic, '--to-offset', '0', '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\\[1\\]: next offset ${stored1} forgotten: the topic has 1 partition now`));
  const after = capturingLogger();
  sink = await startSink(f, after.logger);
  try {
    await waitApplied(db, admin, f.groupId, [t.topic]);
    assert.deepEqual(await ids('regrown'), [...range(1, 20), ...range(101, 140)]);
    await waitFor('stall cleared', async () => (await stallRow(f.groupId)) === undefined);
    assert.deepEqual(after.lines().filter((l) => l.level >= 50).map((l) => l.msg), []);
  } finally {
    await sink.stop();
  }
});
