/**
 * Replaying a topic: `shardbridge replay` (run with the sink stopped) resets both the
 * destination's stored offsets and the group's committed offsets; the sink then re-applies
 * the events in order and converges to the same rows, even over a damaged destination.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runCli } from '../helpers/cli.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { type Admin, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { encodeChanges, keyTuple, produceChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { TRUNCATE_KEY_SCHEMA, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { sinkConfig, storedOffsets, tableText, waitApplied } from '../helpers/sink.ts';
import type { DecodedChange } from '../../source-connector/envelope.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_rsrc_${ID}`;
const DST = `sb_rdst_${ID}`;
const log = testLogger();
const dir = mkdtempSync(join(tmpdir(), 'sb-replay-'));
let env: SinkTestEnv | undefined;
let servers: { kafka: string; registry: string; destination: string };
let db: pg.Client;
let admin: Admin;
let producer: Producer;
let registry: RegistryClient;

before(async () => {
  env = await openSinkTestEnv([SRC, DST], log);
  ({ servers, db, admin, producer, registry } = env);
});

after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Fixture {
  prefix: string;
  groupId: string;
  t: ProducedTable;
  configFile: string;
  extra: Record<string, unknown>;
}

async function fixture(name: string, partitions = 2): Promise<Fixture> {
  const prefix = uniqueTopic(`sbreplay${name}`);
  await db.query(`CREATE TABLE ${SRC}.${name} (id int PRIMARY KEY, balance int, note text)`);
  await db.query(`CREATE TABLE ${DST}.${name} (id int PRIMARY KEY, balance int, note text)`);
  const topic = `${prefix}.${SRC}.${name}`;
  await admin.ensureTopics([{ topic, partitions, replicationFactor: 1 }]);
  const t = await registerTable(registry, await tableInfo(db, SRC, name), topic);
  const groupId = `g-${ID}-${name}`;
  const extra = { tables: { [`${SRC}.${name}`]: { schema: DST } } };
  const configFile = join(dir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify({ ...sinkConfig({ ...servers, prefix, groupId }, extra), logLevel: 'warn' }));
  return { prefix, groupId, t, configFile, extra };
}

/** Inserts, repeated updates, deletes and a key change: replay must redo all of them in order. */
function history(info: ProducedTable['info']): DecodedChange[] {
  const row = (id: number, balance: number, note: string) => [String(id), String(balance), note];
  const out: DecodedChange[] = [];
  for (let id = 1; id <= 60; id++) out.push({ kind: 'insert', new: row(id, 0, `n${id}`) });
  for (let round = 1; round <= 3; round++) for (let id = 1; id <= 60; id += 2) out.push({ kind: 'update', new: row(id, round * 10, `r${round}`) });
  for (let id = 50; id <= 55; id++) out.push({ kind: 'delete', key: keyTuple(info, row(id, 0, '')) });
  out.push({ kind: 'update', key: keyTuple(info, row(7, 0, '')), new: row(700, 30, 'moved') });
  // A deleted key inserted again, and updates leaving the (TOASTed) note unchanged: no value sent for it.
  const unchanged = (id: number, balance: number) => [String(id), String(balance), undefined];
  out.push({ kind: 'insert', new: row(52, 5, 'reborn') }, { kind: 'update', new: unchanged(52, 6) }, { kind: 'update', new: unchanged(3, 77) });
  return out;
}

function startSink(f: Fixture): Promise<SinkConnector> {
  return startSinkConnector(sinkConfig({ ...servers, prefix: f.prefix, groupId: f.groupId }, f.extra), log, { topicRefreshMs: 500 });
}

const replay = (args: string[]) => runCli(['replay', ...args]);

async function groupOffsets(groupId: string, topic: string): Promise<string[]> {
  const [t] = await admin.fetchGroupOffsets(groupId, [topic]);
  return t.partitions.map((p) => p.offset);
}

test('replay from offset zero resets stored and group offsets, and re-applying converges over a damaged destination', async () => {
  const f = await fixture('accounts');
  await produceChanges(producer, f.t, history(f.t.info));
  const ends = (await admin.endOffsets(f.t.topic)).map((e) => e.offset);
  let sink = await startSink(f);
  try {
    await waitApplied(db, admin, f.groupId, [f.t.topic]);
    // Group offsets follow the destination's, for monitoring.
    await waitFor('group offsets committed', async () => JSON.stringify(await groupOffsets(f.groupId, f.t.topic)) === JSON.stringify(ends));
  } finally {
    await sink.stop();
  }
  const columns = ['id', 'balance', 'note'];
  const expected = await tableText(db, `${DST}.accounts`, columns, 'id');
  assert.equal(expected.length, 60 - 6 + 1);
  assert.ok(expected.some((r) => r[0] === '700') && !expected.some((r) => r[0] === '7'));
  assert.deepEqual([expected.find((r) => r[0] === '52'), expected.find((r) => r[0] === '3')], [['52', '6', 'reborn'], ['3', '77', 'r3']]);

  // Damage the destination: values changed, rows lost, deleted rows back.
  await db.query(`UPDATE ${DST}.accounts SET balance = -1, note = 'damaged'`);
  await db.query(`DELETE FROM ${DST}.accounts WHERE id < 20`);
  await db.query(`INSERT INTO ${DST}.accounts VALUES (50, 1, 'zombie'), (7, 1, 'zombie')`);

  // As if a snapshot's completion marker had ended at the topic's end: complete before the replay.
  await db.query(
    `INSERT INTO shardbridge.snapshot_status (topic, table_name, state, rows_expected, end_offsets, completed_at) VALUES ($1, $2, 'complete', 60, $3, now())`,
    [f.t.topic, `${DST}.accounts`, JSON.stringify(ends.map((offset, partition) => ({ partition, offset })))],
  );
  const snapshotState = async () => (await db.query('SELECT state, completed_at FROM shardbridge.snapshot_status WHERE topic = $1', [f.t.topic])).rows[0];

  const r = await replay(['--topic', f.t.topic, '--to-offset', '0', '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /its snapshot is applied again/);
  assert.deepEqual(await snapshotState(), { state: 'applying', completed_at: null }, 'no longer complete while it is re-applied');
  assert.match(r.stdout, new RegExp(`\\[0\\]: next offset ${ends[0]} -> 0 \\(destination and group ${f.groupId}\\)`));
  assert.match(r.stdout, new RegExp(`\\[1\\]: next offset ${ends[1]} -> 0`));
  const stored = await storedOffsets(db, f.groupId);
  assert.deepEqual([stored.get(`${f.t.topic}:0`), stored.get(`${f.t.topic}:1`)], [0n, 0n]);
  assert.deepEqual(await groupOffsets(f.groupId, f.t.topic), ['0', '0']);

  sink = await startSink(f);
  try {
    await waitApplied(db, admin, f.groupId, [f.t.topic]);
    assert.deepEqual(await tableText(db, `${DST}.accounts`, columns, 'id'), expected);
    await waitFor('the snapshot complete again', async () => (await snapshotState()).state === 'complete', { timeoutMs: 30_000, intervalMs: 100 });
  } finally {
    await sink.stop();
  }
});

test('replay refuses while the sink runs; --partition with --to-time rewinds only that partition to that time', async () => {
  const f = await fixture('ledger');
  await produceChanges(producer, f.t, history(f.t.info).slice(0, 60));
  const sink = await startSink(f);
  let before: Map<string, bigint>;
  try {
    await waitApplied(db, admin, f.groupId, [f.t.topic]);
    before = await storedOffsets(db, f.groupId);
    const refused = await replay(['--topic', f.t.topic, '--to-offset', '0', '--sink-config', f.configFile]);
    // Not a usage or configuration error: the sink's state, exit 1.
    assert.equal(refused.code, 1, refused.stderr);
    assert.doesNotMatch(refused.stderr, /configuration error/);
    // The members named by client id and host: which machine runs one.
    assert.match(refused.stderr, new RegExp(`^shardbridge replay: the sink is still running: its consumer group ${f.groupId} has members shardbridge-sink-\\S+ \\(127\\.0\\.0\\.1\\) \\(state [A-Za-z]+\\)`));
    assert.match(refused.stderr, /a process killed moments ago \(a sink, or a replay\) stays a member until its session times out/);
    assert.match(refused.stderr, new RegExp(`remedy: stop the sink connector \\(every member of group ${f.groupId}\\) first, then run replay again`));
    assert.deepEqual(await storedOffsets(db, f.groupId), before, 'destination untouched');
  } finally {
    await sink.stop();
  }
  // Changes after `mark` are the ones --to-time re-applies.
  const mark = Date.now();
  await waitFor('the clock to move past the mark', () => Date.now() > mark + 5, { intervalMs: 2 });
  await produceChanges(producer, f.t, history(f.t.info).slice(60, 120));
  const atMark = await admin.offsetsAtTime(f.t.topic, mark);
  const r = await replay(['--topic', f.t.topic, '--partition', '1', '--to-time', new Date(mark).toISOString(), '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^--to-time ${new Date(mark).toISOString().replace(/\./g, '\\.')}: each partition's first offset at or after it$`, 'm'));
  const after = await storedOffsets(db, f.groupId);
  assert.equal(after.get(`${f.t.topic}:0`), before.get(`${f.t.topic}:0`), 'partition 0 untouched');
  const p1 = BigInt(atMark.find((o) => o.partition === 1)!.offset);
  // Nothing after the mark was applied yet: the target is the stored offset itself, left alone.
  assert.equal(after.get(`${f.t.topic}:1`), before.get(`${f.t.topic}:1`));
  assert.equal(p1, before.get(`${f.t.topic}:1`));
  assert.match(r.stdout, /\[1\]: next offset \d+, already at or before the target: unchanged/);
  // Stalls recorded at both partitions' positions (as a sink stopped at them leaves them): the moved one's is forgotten.
  for (const p of [0, 1]) {
    await db.query(`INSERT INTO shardbridge.stalls (group_id, topic, partition, next_offset, error) VALUES ($1, $2, $3, $4, 'stalled')`, [f.groupId, f.t.topic, p, String(before.get(`${f.t.topic}:${p}`))]);
  }
  // A time before every record: from the first offset. -1 ms is also Kafka's code for 'latest' (it rewound nothing).
  const earlier = await replay(['--topic', f.t.topic, '--partition', '1', '--to-time', '1969-12-31T23:59:59.999Z', '--sink-config', f.configFile]);
  assert.equal(earlier.code, 0, earlier.stderr);
  assert.equal((await storedOffsets(db, f.groupId)).get(`${f.t.topic}:1`), 0n);
  assert.equal((await storedOffsets(db, f.groupId)).get(`${f.t.topic}:0`), before.get(`${f.t.topic}:0`));
  assert.equal((await groupOffsets(f.groupId, f.t.topic))[1], '0');
  // Before, status showed partition 1 stalled at its old offset until the sink applied there again.
  assert.deepEqual((await db.query('SELECT partition FROM shardbridge.stalls WHERE group_id = $1', [f.groupId])).rows, [{ partition: 0 }]);
});

/** A sink run until it has applied the topic to its end, then stopped. */
async function applyAll(f: Fixture): Promise<void> {
  const sink = await startSink(f);
  try {
    await waitApplied(db, admin, f.groupId, [f.t.topic]);
  } finally {
    await sink.stop();
  }
}

test("the destination's stored offsets decide where the sink starts when the group's committed offsets disagree: behind, nothing is applied again; ahead, with no new records, the sink seeks back", async () => {
  const f = await fixture('positions', 1);
  const inserts = history(f.t.info).slice(0, 60); // ids 1..60 at offsets 0..59
  await produceChanges(producer, f.t, inserts);
  await applyAll(f);
  const ids = async () => (await db.query(`SELECT id FROM ${DST}.positions ORDER BY id`)).rows.map((r) => r.id as number);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  // Group behind: offsets committed at 0, stored at the end. Rows 1..30 removed stay removed.
  await db.query(`DELETE FROM ${DST}.positions WHERE id <= 30`);
  await admin.setGroupOffsets(f.groupId, f.t.topic, [{ partition: 0, offset: '0' }]);
  await produceChanges(producer, f.t, [{ kind: 'insert', new: ['61', '0', 'n61'] }]);
  await applyAll(f);
  assert.deepEqual(await ids(), range(31, 61), 'records below the stored offset were not applied again');

  // Group ahead: committed at the end (61), stored put back to 30, nothing new in the topic.
  await waitFor('group offsets committed', async () => (await groupOffsets(f.groupId, f.t.topic))[0] === '61');
  await db.query(`DELETE FROM ${DST}.positions WHERE id > 30`);
  await db.query(`UPDATE shardbridge.sink_offsets SET next_offset = 30 WHERE group_id = $1`, [f.groupId]);
  await applyAll(f);
  assert.deepEqual(await ids(), range(31, 61), 'the records from the stored offset on were applied again, and only they');
});

test('replay refuses a topic its sink does not read (another prefix, its dead-letter topic) and a time without its zone, changing nothing', async () => {
  const f = await fixture('foreign', 1);
  const other = `${uniqueTopic('sbreplayother')}.${SRC}.foreign`;
  const deadLetter = `${f.prefix}.__dlq`;
  await admin.ensureTopics([{ topic: other, partitions: 1, replicationFactor: 1 }, { topic: deadLetter, partitions: 1, replicationFactor: 1 }]);
  // Before, this stored positions the sink never reads and said "-> 0 (destination and group …)".
  const foreign = await replay(['--topic', other, '--to-offset', '0', '--sink-config', f.configFile]);
  assert.equal(foreign.code, 2, foreign.stdout);
  assert.match(foreign.stderr, new RegExp(`--topic ${other.replace(/\./g, '\\.')}: not a topic this sink reads: the sink applies the topics under its topicPrefix ${f.prefix} `));
  const dlq = await replay(['--topic', deadLetter, '--to-offset', '0', '--sink-config', f.configFile]);
  assert.equal(dlq.code, 2, dlq.stdout);
  assert.match(dlq.stderr, /not a topic this sink reads/);
  // Without a zone JavaScript reads the machine's local time: refused, naming the flag.
  const zoneless = await replay(['--topic', f.t.topic, '--to-time', '2026-12-07T10:00:00', '--sink-config', f.configFile]);
  assert.equal(zoneless.code, 2);
  assert.match(zoneless.stderr, /option '--to-time <ts>' argument '2026-12-07T10:00:00' is invalid\. no time zone/);
  assert.equal((await db.query('SELECT count(*)::int AS n FROM shardbridge.sink_offsets WHERE group_id = $1', [f.groupId])).rows[0].n, 0, 'nothing stored');
  assert.deepEqual((await admin.fetchGroupOffsets(f.groupId, [other]))[0].partitions.map((p) => p.offset), ['-1'], 'no group offsets set');
});

test('replay of the whole topic to an offset between the copies of a truncate (they sit at other offsets on each partition) takes the partitions past their copy back to it, and converges', async () => {
  const f = await fixture('cut', 3);
  const keySchemaId = await registry.register(`${f.prefix}.__truncate-key`, TRUNCATE_KEY_SCHEMA);
  const row = (id: number, note: string) => [String(id), '0', note];
  await produceChanges(producer, f.t, Array.from({ length: 30 }, (_, i) => ({ kind: 'insert' as const, new: row(i + 1, 'before') })));
  const truncate = encodeChanges(f.t, [{ kind: 'truncate' }])[0].value;
  await producer.sendBatch(truncateKeys(keySchemaId, '0/5E/0', 3, 1).map((key) => ({ topic: f.t.topic, key, value: truncate })));
  await produceChanges(producer, f.t, Array.from({ length: 20 }, (_, i) => ({ kind: 'insert' as const, new: row(i + 21, 'after') })));
  await applyAll(f);
  const table = async () => (await db.query(`SELECT id, note FROM ${DST}.cut ORDER BY id`)).rows;
  const expected = Array.from({ length: 20 }, (_, i) => ({ id: i + 21, note: 'after' }));
  assert.deepEqual(await table(), expected);
  const { rows: copies } = await db.query<{ p: number; o: string }>(
    'SELECT kafka_partition AS p, kafka_offset::text AS o FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 ORDER BY 1',
    [f.groupId],
  );
  const at = copies.map((c) => BigInt(c.o));
  const n = at.reduce((a, b) => (a > b ? a : b));
  // The keys 1..30 hash unevenly over the 3 partitions: the copies are at different offsets.
  assert.ok(at.some((o) => o < n), `copies at ${at.join(', ')}`);

  // Before, refused (exit 2: 'the replay crosses truncate …, replay every partition … to a point before the truncate'), which it was.
  const r = await replay(['--topic', f.t.topic, '--to-offset', String(n), '--sink-config', f.configFile]);
  assert.equal(r.code, 0, r.stderr);
  const stored = await storedOffsets(db, f.groupId);
  assert.deepEqual([0, 1, 2].map((p) => stored.get(`${f.t.topic}:${p}`)), at, 'each partition at its copy: the lowest of the target and it');
  for (const [p, o] of at.entries()) if (o < n) assert.match(r.stdout, new RegExp(`\\[${p}\\]: next offset \\d+ -> ${o} \\(destination and group [^)]+\\): back to its copy of truncate 0/5E/0`));
  assert.match(r.stdout, /truncate 0\/5E\/0 will be applied again once every partition reaches it/);
  await db.query(`INSERT INTO ${DST}.cut VALUES (1, 0, 'a row the truncate removes')`);
  await applyAll(f);
  assert.deepEqual(await table(), expected);
  assert.deepEqual((await db.query('SELECT rounds FROM shardbridge.sink_truncates WHERE group_id = $1', [f.groupId])).rows, [{ rounds: 1 }]);
});
