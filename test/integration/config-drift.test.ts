/**
 * Configuration edited between two runs, on the real servers. Sink: a table mapping changed
 * after rows were applied is refused at start (the new destination table would start empty at
 * the stored offset), until the topic is replayed from 0; a new groupId or topicPrefix over
 * positions stored elsewhere is said at start. Source: a new publicationName over the kept slot
 * and a slot another topicPrefix's connector made are refused naming the key; an old slot left
 * behind by a new slotName is named in a warning.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../shared/cli/main.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { ConfigError } from '../../shared/errors.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { caughtUp, dropSlot, finalStateInTopicOrder, readDecoded, RegistryDecoder, startSourceTestEnv, testSourceConfig, uniquePrefix, walLsn, type SourceTestEnv } from '../helpers/source.ts';

const file = sinkTestFile('drift');
const { ID, SRC, DST, log } = file;

/** A source table and its topic only: each test maps it to destinations of its own. */
const sourceTable = (name: string, prefix: string, partitions = 2) => file.table(prefix, name, { partitions, destDdl: null });

const insert = (id: number) => ({ kind: 'insert' as const, new: [String(id), `v${id}`] });
const ids = async (table: string): Promise<number[]> => (await file.env().db.query(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id);

/** Run a sink until it has applied `topics`, then stop it. */
/** `shardbridge replay --topic T --to-offset 0` through the CLI's main(), the sink stopped. */
async function replayFromZero(prefix: string, groupId: string, topic: string): Promise<void> {
  const { servers } = file.env();
  const dir = mkdtempSync(join(tmpdir(), 'sb-drift-'));
  try {
    const cfg = join(dir, 'sink.json');
    writeFileSync(cfg, JSON.stringify({ groupId, topicPrefix: prefix, kafka: { brokers: [servers.kafka] }, schemaRegistry: { url: servers.registry }, destination: { url: servers.destination } }));
    let out = '';
    const code = await main(['node', 'shardbridge', 'replay', '--sink-config', cfg, '--topic', topic, '--to-offset', '0', '--log-level', 'warn'], { stdout: (x) => (out += x), stderr: (x) => (out += x), env: {} });
    assert.equal(code, 0, out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function applyOnce(config: ReturnType<typeof sinkConfig>, topics: string[], logger = log): Promise<void> {
  const { db, admin } = file.env();
  const sink = await startSinkConnector(config, logger, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, config.groupId, topics);
  } finally {
    await sink.stop();
  }
}

test('a table mapping changed after rows were applied is refused, naming the key, both targets and the remedy; after replay --to-offset 0 the new mapping applies every row', async () => {
  const { servers, db, producer } = file.env();
  const prefix = uniqueTopic('sbdrift');
  const t = await sourceTable('t', prefix);
  for (const n of ['a', 'b']) await db.query(`CREATE TABLE ${DST}.${n} (id int PRIMARY KEY, v text, w text)`);
  await produceChanges(producer, t, [insert(1), insert(2), insert(3)]);
  const groupId = `g-${ID}-map`;
  const key = `${SRC}.t`;
  await applyOnce(sinkConfig({ ...servers, prefix, groupId }, { tables: { [key]: { schema: DST, table: 'a' } } }), [t.topic]);
  assert.deepEqual(await ids(`${DST}.a`), [1, 2, 3]);

  await produceChanges(producer, t, [insert(4)]);
  const moved = sinkConfig({ ...servers, prefix, groupId }, { tables: { [key]: { schema: DST, table: 'b' } } });
  const err = await startSinkConnector(moved, log, { topicRefreshMs: 500 }).then(
    async (s) => {
      await s.stop();
      return null;
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, `refused at start, got ${String(err)}`);
  assert.match(err.message, new RegExp(`tables\\."${SRC}\\.t": ${t.topic.replace(/\./g, '\\.')} was applied into ${DST}\\.a up to offset \\d+ \\(group ${groupId}\\), and is now mapped to ${DST}\\.b`));
  assert.equal(err.context?.key, `tables."${key}"`);
  assert.match(err.remedy ?? '', /replay .*--to-offset 0/);
  assert.match(err.remedy ?? '', /DELETE FROM shardbridge\.sink_mappings/);
  assert.deepEqual(await ids(`${DST}.b`), [], 'nothing applied into the new table');

  // A column renamed by the mapping is a change too.
  const renamed = sinkConfig({ ...servers, prefix, groupId }, { tables: { [key]: { schema: DST, table: 'a', columns: { v: 'w' } } } });
  await assert.rejects(startSinkConnector(renamed, log), /columns v → w/);

  // The remedy: replay the topic from 0 (sink stopped), then the new mapping takes every row.
  await replayFromZero(prefix, groupId, t.topic);
  await applyOnce(moved, [t.topic]);
  assert.deepEqual(await ids(`${DST}.b`), [1, 2, 3, 4]);
});

test('a new groupId over positions another group stored is said at start, naming the key; re-applied from offset 0 the rows are the same', async () => {
  const { servers, db, producer } = file.env();
  const prefix = uniqueTopic('sbdriftg');
  const t = await sourceTable('g', prefix, 1); // one partition: a truncate of the test's producer is one record
  await db.query(`CREATE TABLE ${DST}.g (id int PRIMARY KEY, v text)`);
  await produceChanges(producer, t, [insert(1), insert(2), { kind: 'truncate' }, insert(3), { kind: 'delete', key: ['3', null] }, insert(4)]);
  const first = `g-${ID}-first`;
  const tables = { tables: { [`${SRC}.g`]: { schema: DST } } };
  await applyOnce(sinkConfig({ ...servers, prefix, groupId: first }, tables), [t.topic]);
  assert.deepEqual(await ids(`${DST}.g`), [4]);

  const { logger, lines } = capturingLogger();
  const second = `g-${ID}-second`;
  await applyOnce(sinkConfig({ ...servers, prefix, groupId: second }, tables), [t.topic], logger);
  assert.deepEqual(await ids(`${DST}.g`), [4], 'the same rows');
  const warned = lines().find((l) => l.level === 40 && l.key === 'groupId');
  assert.ok(warned, 'the new group is said at start');
  assert.match(warned.msg, new RegExp(`groupId ${second} has applied none of these topics, but group\\(s\\) ${first} have`));
});

test('a sink whose topicPrefix changed says that its group applied topics under another prefix', async () => {
  const { servers, db, producer } = file.env();
  const [p1, p2] = [uniqueTopic('sbdriftp1'), uniqueTopic('sbdriftp2')];
  const t1 = await sourceTable('p', p1);
  await db.query(`CREATE TABLE ${DST}.p (id int PRIMARY KEY, v text)`);
  await produceChanges(producer, t1, [insert(1)]);
  const groupId = `g-${ID}-prefix`;
  const tables = { tables: { [`${SRC}.p`]: { schema: DST } } };
  await applyOnce(sinkConfig({ ...servers, prefix: p1, groupId }, tables), [t1.topic]);
  const t2 = { ...t1, topic: `${p2}.${SRC}.p` };
  await file.env().admin.ensureTopics([{ topic: t2.topic, partitions: 1, replicationFactor: 1 }]);
  await produceChanges(producer, t2, [insert(2)]);
  const { logger, lines } = capturingLogger();
  await applyOnce(sinkConfig({ ...servers, prefix: p2, groupId }, tables), [t2.topic], logger);
  assert.deepEqual(await ids(`${DST}.p`), [1, 2]);
  const warned = lines().find((l) => l.level === 40 && l.key === 'topicPrefix');
  assert.ok(warned, 'the prefix change is said at start');
  assert.match(warned.msg, new RegExp(`group ${groupId} has applied 1 topic\\(s\\) outside this topicPrefix \\(${t1.topic.replace(/\./g, '\\.')}`));
});

test('a sink started after its table topics were replayed to offset 0 (only its control topics show applied) does not say its prefix changed', async () => {
  const { servers, db, producer } = file.env();
  const prefix = uniqueTopic('sbdriftr');
  const t = await sourceTable('r', prefix);
  await db.query(`CREATE TABLE ${DST}.r (id int PRIMARY KEY, v text)`);
  await produceChanges(producer, t, [insert(1)]);
  const groupId = `g-${ID}-replayed`;
  const tables = { tables: { [`${SRC}.r`]: { schema: DST } } };
  await applyOnce(sinkConfig({ ...servers, prefix, groupId }, tables), [t.topic]);
  // What the sink stores for a control topic it applied (no source here to write one).
  await db.query(`INSERT INTO shardbridge.sink_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 3)`, [groupId, `${prefix}.__snapshot`]);
  await replayFromZero(prefix, groupId, t.topic);
  const { logger, lines } = capturingLogger();
  await applyOnce(sinkConfig({ ...servers, prefix, groupId }, tables), [t.topic], logger);
  assert.deepEqual(await ids(`${DST}.r`), [1]);
  console.log('DBG', JSON.stringify(lines().filter((l) => l.level >= 40).map((l) => l.msg)));
  assert.deepEqual(lines().filter((l) => l.level === 40 && l.key === 'topicPrefix').map((l) => l.msg), []);
});

test('a destination whose positions were stored reading another Kafka cluster is refused, naming the key and both clusters', async () => {
  const { servers, db, producer } = file.env();
  const prefix = uniqueTopic('sbdriftk');
  const t = await sourceTable('k', prefix, 1);
  await db.query(`CREATE TABLE ${DST}.k (id int PRIMARY KEY, v text)`);
  await produceChanges(producer, t, [insert(1), insert(2)]);
  const groupId = `g-${ID}-cluster`;
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.k`]: { schema: DST } } });
  await applyOnce(config, [t.topic]);
  const { rows } = await db.query('SELECT kafka_cluster FROM shardbridge.sink_mappings WHERE group_id = $1', [groupId]);
  assert.ok(rows[0]?.kafka_cluster, 'the cluster id is recorded');
  // As a destination restored from another environment would hold them.
  await db.query(`UPDATE shardbridge.sink_mappings SET kafka_cluster = 'another-cluster' WHERE group_id = $1`, [groupId]);
  const err = await startSinkConnector(config, log).then(async (s) => (await s.stop(), null), (e: unknown) => e);
  assert.ok(err instanceof ConfigError, String(err));
  assert.equal(err.context?.key, 'destination');
  assert.match(err.message, new RegExp(`positions of group ${groupId} stored while reading Kafka cluster another-cluster \\(${t.topic.replace(/\./g, '\\.')}\\), and this sink reads cluster ${rows[0].kafka_cluster}`));
  assert.match(err.remedy ?? '', /DELETE FROM shardbridge\.sink_offsets WHERE group_id/);
});

// The source's cases: a source cluster of this file's own (slot names are cluster-wide).
let sourceEnv: SourceTestEnv | undefined;
before(async () => {
  sourceEnv = await startSourceTestEnv('config-drift');
});
after(async () => {
  await sourceEnv?.close();
});

async function sourceDb(t: TestContext): Promise<{ url: string; client: import('pg').Client; slot: string; run: (extra: Record<string, unknown>, prefix: string) => Promise<{ lines: () => Record<string, any>[]; failure: Promise<unknown> }> }> {
  const env = sourceEnv!;
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')`);
  /** Start the connector with `extra`; stream until caught up and stop, or until it fails (`failure`: the error, else null). */
  const run = async (extra: Record<string, unknown>, prefix: string) => {
    const { logger, lines } = capturingLogger();
    const conn = await startSourceConnector(testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, prefix, extra: { slotName: slot, ...extra } }), logger, { serveMetrics: false });
    const failed = conn.done.then(() => null, (e: unknown) => e);
    // Streaming, or failed (streaming() would poll on to its deadline after a failure).
    const phase = await waitFor('the connector streaming or failed', () => ['streaming', 'failed'].find((p) => p === conn.state().phase), { timeoutMs: 60_000, intervalMs: 50 });
    if (phase === 'streaming') {
      await caughtUp(conn, await walLsn(client));
      await conn.stop();
      return { lines, failure: Promise.resolve(null) };
    }
    return { lines, failure: failed };
  };
  return { url, client, slot, run };
}

test('source: a publicationName changed over the kept slot is refused naming the key and the publication the slot streams through; nothing is created', async (t) => {
  const { client, slot, run } = await sourceDb(t);
  const prefix = uniquePrefix();
  assert.equal(await (await run({ publicationName: 'pub_a' }, prefix)).failure, null);
  await client.query(`INSERT INTO t VALUES (3, 'c')`);
  const err = await (await run({ publicationName: 'pub_b' }, prefix)).failure;
  assert.ok(err instanceof ConfigError, String(err));
  assert.equal(err.context?.key, 'publicationName');
  assert.match(err.message, new RegExp(`publication "pub_b" does not exist, but replication slot "${slot}" does`));
  assert.match(err.remedy ?? '', /set publicationName back \(publications of this database listing the selected tables: pub_a\)/);
  assert.equal((await client.query(`SELECT 1 FROM pg_publication WHERE pubname = 'pub_b'`)).rowCount, 0);
  assert.equal(await (await run({ publicationName: 'pub_a' }, prefix)).failure, null, 'set back, it streams on');
});

test('source: a slot made under another topicPrefix is refused, naming the key, and kept', async (t) => {
  const { client, slot, run } = await sourceDb(t);
  const p1 = uniquePrefix();
  assert.equal(await (await run({}, p1)).failure, null);
  const p2 = uniquePrefix();
  const err = await (await run({}, p2)).failure;
  assert.ok(err instanceof ConfigError, String(err));
  assert.equal(err.context?.key, 'topicPrefix');
  assert.match(err.message, new RegExp(`replication slot "${slot}" exists, but ${p2}\\.__snapshot has no record of it`));
  assert.match(err.remedy ?? '', /set topicPrefix back/);
  assert.equal((await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount, 1, 'the slot is kept');
  assert.equal(await (await run({ snapshot: { mode: 'never' } }, p2)).failure, null, 'under snapshot mode never the slot streams on into the new topics');
});

test('source: a slot left behind by a new slotName is named in a warning with its WAL and the statement that drops it', async (t) => {
  const { client, slot, run } = await sourceDb(t);
  const prefix = uniquePrefix();
  assert.equal(await (await run({}, prefix)).failure, null);
  const { lines, failure } = await run({ slotName: `${slot}_b` }, prefix);
  assert.equal(await failure, null);
  const warned = lines().find((l) => l.level === 40 && l.key === 'slotName');
  assert.ok(warned, 'the old slot is named');
  assert.equal(warned.leftSlot, slot);
  assert.match(warned.msg, new RegExp(`replication slot "${slot}", which this connector made and published from .* still exists and holds back WAL`));
  assert.match(warned.msg, new RegExp(`SELECT pg_drop_replication_slot\\('${slot}'\\)`));
  await dropSlot(client, `${slot}_b`);
  await dropSlot(client, slot);
});

test('source: snapshot mode never, then initial: the slot that streamed is dropped, and its topic truncated before the snapshot, so a row deleted while stopped does not stay', async (t) => {
  const { client, run } = await sourceDb(t);
  const prefix = uniquePrefix();
  assert.equal(await (await run({ snapshot: { mode: 'never' } }, prefix)).failure, null);
  await client.query(`INSERT INTO t VALUES (3, 'c')`);
  assert.equal(await (await run({ snapshot: { mode: 'never' } }, prefix)).failure, null, 'row 3 streamed');
  await client.query(`DELETE FROM t WHERE id = 3`); // in the slot only: the next start drops it
  assert.equal(await (await run({}, prefix)).failure, null);
  const decoder = new RegistryDecoder(sourceEnv!.registryUrl);
  const rows = [...finalStateInTopicOrder(await readDecoded(sourceEnv!.kafka, decoder, `${prefix}.public.t`)).values()].map((r) => r.id).sort();
  assert.deepEqual(rows, ['1', '2'], 'the topic describes the table');
});
