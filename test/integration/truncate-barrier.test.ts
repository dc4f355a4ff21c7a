/**
 * Truncates on a multi-partition topic (docs/sink-connector.md, "Truncates"): records made by
 * hand as the source shapes them, to put copies exactly where a crash of the source leaves
 * them — a first delivery that reached only some partitions, then the source's replay with a
 * later delivery — and keys of an older source (no delivery field).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import avro from 'avsc';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from 'pino';
import { waitFor } from '../../shared/devstack/ports.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import type { OutMessage } from '../../shared/kafka/client.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { parseTruncateKey, TRUNCATE_KEY_SCHEMA, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { ensureSinkTables } from '../../sink-connector/offsets.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { encodeChanges, registerTable, tableInfo } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets } from '../helpers/sink.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { readRaw } from '../helpers/source.ts';

const { ID, SRC, DST, log, env } = sinkTestFile('tr');
// kafkajs itself for deleteRecords, which the connectors' wrapper does not expose.
const { Kafka, logLevel } = createRequire(import.meta.url)('kafkajs') as typeof import('kafkajs');

/** The truncate key as sources before the delivery field wrote it. */
const OLD_KEY_SCHEMA = { ...TRUNCATE_KEY_SCHEMA, fields: TRUNCATE_KEY_SCHEMA.fields.filter((f) => f.name !== 'delivery') };
const OLD_KEY = avro.Type.forSchema(OLD_KEY_SCHEMA as unknown as avro.Schema);

function oldKeys(schemaId: number, truncate: string, partitions: number): Buffer[] {
  return Array.from({ length: partitions }, (_, partition) => {
    for (let salt = 0; ; salt++) {
      const key = encodeWire(schemaId, OLD_KEY.toBuffer({ truncate, partitions, partition, salt }));
      if (partitionForKey(key, partitions) === partition) return key;
    }
  });
}

/** A table `name` (source and destination schema), its 3-partition topic, and records for it. */
async function truncateFixture(name: string) {
  const { db, admin, registry, producer } = env();
  await db.query(`CREATE TABLE ${SRC}.${name} (id int PRIMARY KEY, v text)`);
  await db.query(`CREATE TABLE ${DST}.${name} (id int PRIMARY KEY, v text)`);
  const prefix = uniqueTopic('sbtr');
  const topic = `${prefix}.${SRC}.${name}`;
  await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
  const table = await registerTable(registry, await tableInfo(db, SRC, name), topic);
  // An older source registered the key without delivery: the current schema is a compatible evolution of it.
  const oldKeySchemaId = await registry.register(`${prefix}.__truncate-key`, OLD_KEY_SCHEMA);
  const keySchemaId = await registry.register(`${prefix}.__truncate-key`, TRUNCATE_KEY_SCHEMA);
  assert.notEqual(keySchemaId, oldKeySchemaId);
  const truncateValue = encodeChanges(table, [{ kind: 'truncate' }])[0].value;
  const groupId = `g-${ID}-${name}`;
  const rows = (from: number, to: number, v: string): OutMessage[] =>
    encodeChanges(table, Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), v] })));
  return {
    topic,
    groupId,
    rows,
    /** The truncate's copies with `keys`, on the partitions in `only` (default: all). */
    copies: (keys: Buffer[], only = [0, 1, 2]): OutMessage[] => only.map((p) => ({ topic, key: keys[p], value: truncateValue })),
    keys: (id: string, delivery: number) => truncateKeys(keySchemaId, id, 3, delivery),
    oldKeys: (id: string) => oldKeys(oldKeySchemaId, id, 3),
    /** Sent in order: Kafka keeps each partition's order across sends. */
    send: async (...batches: OutMessage[][]) => {
      for (const b of batches) await producer.sendBatch(b);
    },
    startSink: (logger: Logger = log, batch: object = {}): Promise<SinkConnector> =>
      startSinkConnector(
        sinkConfig({ ...env().servers, prefix, groupId }, { batch: { maxRows: 5, adaptive: false, ...batch }, tables: { [`${SRC}.${name}`]: { schema: DST, table: name } } }),
        logger,
        { topicRefreshMs: 500 },
      ),
    /** Until the sink stored the end of every partition; on the deadline, say where each one stands and what the table holds. */
    applied: async (timeoutMs = 45_000) => {
      const ends = await admin.endOffsets(topic);
      await waitFor('the sink to apply the topic', async () => {
        const stored = await storedOffsets(db, groupId);
        return ends.every((e) => (stored.get(`${topic}:${e.partition}`) ?? 0n) >= BigInt(e.offset));
      }, { timeoutMs, intervalMs: 200 }).catch(async (err: Error) => {
        const stored = await storedOffsets(db, groupId);
        const ids = (await db.query(`SELECT id FROM ${DST}.${name} ORDER BY id`)).rows.map((r) => r.id);
        throw new Error(`${err.message}; ends ${ends.map((e) => `${e.partition}:${e.offset}`).join(' ')}, stored ${[...stored].map(([k, v]) => `${k.slice(k.lastIndexOf(':') + 1)}:${v}`).join(' ')}; destination ids ${ids.join(',')}`);
      });
    },
    name,
    table: async () => (await db.query(`SELECT id, v FROM ${DST}.${name} ORDER BY id`)).rows,
    done: async () => (await db.query(`SELECT truncate_id, delivery::text, rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 ORDER BY delivery`, [groupId, topic])).rows,
  };
}

/** The rows the table must end with: ids `from..to` with value `v`. */
const expectRows = (from: number, to: number, v: string) => Array.from({ length: to - from + 1 }, (_, i) => ({ id: from + i, v }));

test('a truncate whose first delivery reached only partition 0, then the replay with a later delivery on every partition: truncated once, no row comes back, no partition hangs', async (t) => {
  const f = await truncateFixture('crashed');
  const before = f.rows(1, 30, 'before');
  assert.deepEqual(new Set(before.map((m) => partitionForKey(m.key!, 3))), new Set([0, 1, 2]), 'rows before the truncate on every partition');
  // The source killed between the produce requests of the fan-out: the first copy reached partition 0 only.
  // Its restarted session replays from the slot: the rows again, the copies with a later delivery, then what follows.
  await f.send(before, f.copies(f.keys('0/1A2B3C/0', 1_000), [0]), before, f.copies(f.keys('0/1A2B3C/0', 2_000)), f.rows(21, 40, 'after'));
  const { logger, lines } = capturingLogger();
  const sink = await f.startSink(logger);
  t.after(() => sink.stop());
  await f.applied();
  assert.deepEqual(await f.table(), expectRows(21, 40, 'after'));
  assert.deepEqual(await f.done(), [{ truncate_id: '0/1A2B3C/0', delivery: '2000', rounds: 1 }], 'truncated once, by the complete delivery');
  const passed = lines().filter((l) => /truncate copy passed without truncating/.test(l.msg));
  // (A batch retried after a transient failure would log it again: compared as a set.)
  assert.deepEqual([...new Set(passed.map((l) => `${l.partition} ${l.delivery} ${l.truncate}`))], ['0 1000 0/1A2B3C/0'], 'the partial delivery passed on partition 0, and logged');
});

test('a batch with a truncate sent again after a failure of unknown outcome (it reached partitions 0 and 1 only), its copies a later delivery: every row ends as at the source, no partition hangs', async (t) => {
  const f = await truncateFixture('resent');
  const on = (partitions: number[], ms: OutMessage[]) => ms.filter((m) => partitions.includes(partitionForKey(m.key!, 3)));
  const batch = (delivery: number) => [...f.rows(1, 30, 'before'), ...f.copies(f.keys('0/4D/0', delivery)), ...f.rows(31, 35, 'mid')];
  // The first attempt landed on the broker leading partitions 0 and 1, not on partition 2's; the
  // producer sent the whole batch again under a new producer id, the copies at a later delivery.
  await f.send(on([0, 1], batch(7_000)), batch(7_001), f.rows(36, 40, 'after'));
  const sink = await f.startSink();
  t.after(() => sink.stop());
  await f.applied();
  assert.deepEqual(await f.table(), [...expectRows(31, 35, 'mid'), ...expectRows(36, 40, 'after')]);
  assert.deepEqual(await f.done(), [{ truncate_id: '0/4D/0', delivery: '7001', rounds: 1 }]);
});

test('a copy of a completed delivery read again (a sink stopped while that partition waited at it) passes without truncating again', async (t) => {
  const f = await truncateFixture('reread');
  await f.send(f.rows(1, 30, 'before'), f.copies(f.keys('0/2B/0', 5_000)), f.rows(21, 40, 'after'));
  const first = await f.startSink();
  await f.applied();
  await first.stop();
  assert.deepEqual(await f.table(), expectRows(21, 40, 'after'));
  // Partition 1 back at its copy, as a sink stopped while it waited there leaves it; the others are past theirs.
  const copy = (await readRaw(env().kafka, f.topic)).find((r) => r.partition === 1 && parseTruncateKey(r.key) !== null);
  assert.ok(copy);
  await env().db.query(`UPDATE shardbridge.sink_offsets SET next_offset = $4 WHERE group_id = $1 AND topic = $2 AND partition = $3`, [f.groupId, f.topic, 1, copy.offset.toString()]);
  const again = await f.startSink();
  t.after(() => again.stop());
  await f.applied();
  assert.deepEqual(await f.table(), expectRows(21, 40, 'after'), "the other partitions' rows after the truncate are still there");
  assert.deepEqual(await f.done(), [{ truncate_id: '0/2B/0', delivery: '5000', rounds: 1 }]);
});

test("a sink session holding a truncate's barrier lock without moving (a member frozen before its copy's transaction ended) is ended by the others waiting there", async (t) => {
  const f = await truncateFixture('frozen');
  const truncate = '0/5E/0';
  await f.send(f.rows(1, 30, 'before'), f.copies(f.keys(truncate, 3)), f.rows(21, 40, 'after'));
  // As a frozen member's session: the barrier's lock taken, then stopped inside a COPY that gets no data.
  const holder = new pg.Client({ connectionString: env().servers.destination, application_name: 'shardbridge-sink-test' });
  await holder.connect();
  const ended = new Promise<Error>((resolve) => holder.on('error', resolve));
  t.after(() => holder.end().catch(() => {}));
  const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  await holder.query(`BEGIN; SELECT pg_advisory_xact_lock(hashtextextended($$${f.groupId}/${f.topic}/${truncate}$$, 0))`);
  holder.query(copyFrom(`COPY ${DST}.${f.name} FROM STDIN`)).on('error', () => {});
  const { logger, lines } = capturingLogger();
  const sink = await f.startSink(logger, { idleInTransactionTimeoutMs: 1000 });
  t.after(() => sink.stop());
  await f.applied();
  assert.match((await ended).message, /terminat/, "the holder's connection ended");
  assert.deepEqual(await f.table(), expectRows(21, 40, 'after'));
  assert.deepEqual(await f.done(), [{ truncate_id: truncate, delivery: '3', rounds: 1 }]);
  const logged = lines().find((l) => /^ended the destination session of a sink member that held the barrier of truncate/.test(l.msg));
  assert.deepEqual([logged?.pid, logged?.truncate, logged?.topic], [pid, truncate, f.topic]);
});

test("the barrier's lock ends with the copy's transaction: the rest of the batch applies in a transaction of its own", async (t) => {
  const f = await truncateFixture('released');
  const { db } = env();
  // Each row written records how many advisory locks its transaction holds.
  await db.query(`CREATE TABLE ${DST}.released_locks (id int, locks int);
    CREATE FUNCTION ${DST}.released_locks() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO ${DST}.released_locks SELECT NEW.id, count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid(); RETURN NEW; END $$;
    CREATE TRIGGER released_locks AFTER INSERT ON ${DST}.released FOR EACH ROW EXECUTE FUNCTION ${DST}.released_locks()`);
  await f.send(f.rows(1, 30, 'before'), f.copies(f.keys('0/6F/0', 4)), f.rows(31, 60, 'after'));
  const sink = await f.startSink(log, { maxRows: 500 });
  t.after(() => sink.stop());
  await f.applied();
  assert.deepEqual(await f.table(), expectRows(31, 60, 'after'));
  const held = await db.query(`SELECT id, locks FROM ${DST}.released_locks WHERE id > 30 AND locks > 0 ORDER BY id`);
  assert.deepEqual(held.rows, [], 'no row after the copy written while the barrier was held');
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.released_locks WHERE id > 30`)).rows[0].n, 30);
});

test('keys of an older source (no delivery field): the barrier as before, a replayed truncate a second round', async (t) => {
  const f = await truncateFixture('oldkeys');
  const keys = f.oldKeys('0/3C/0');
  const before = f.rows(1, 30, 'before');
  await f.send(before, f.copies(keys), f.rows(21, 25, 'after'), before, f.copies(keys), f.rows(21, 40, 'after'));
  const sink = await f.startSink();
  t.after(() => sink.stop());
  await f.applied();
  assert.deepEqual(await f.table(), expectRows(21, 40, 'after'));
  assert.deepEqual(await f.done(), [{ truncate_id: '0/3C/0', delivery: '0', rounds: 2 }]);
});

test("a completed truncate's barrier rows are pruned by the topic's next truncate once Kafka no longer has its copies; while Kafka has them they stay", async (t) => {
  const f = await truncateFixture('pruned');
  const { db, admin, servers } = env();
  const recorded = async () => {
    const arrived = await db.query(`SELECT DISTINCT truncate_id FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 ORDER BY 1`, [f.groupId, f.topic]);
    const done = await db.query(`SELECT truncate_id FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 ORDER BY 1`, [f.groupId, f.topic]);
    return { arrived: arrived.rows.map((r) => r.truncate_id), done: done.rows.map((r) => r.truncate_id) };
  };
  await f.send(f.rows(1, 10, 'a'), f.copies(f.keys('0/A1/0', 1)), f.rows(11, 20, 'b'));
  const sink = await f.startSink();
  t.after(() => sink.stop());
  await f.applied();
  await f.send(f.copies(f.keys('0/A2/0', 1)), f.rows(21, 30, 'c'));
  await f.applied();
  assert.deepEqual(await recorded(), { arrived: ['0/A1/0', '0/A2/0'], done: ['0/A1/0', '0/A2/0'] }, 'a replay may still read the first truncate');
  // Retention (here deleteRecords) removes every record so far from Kafka.
  const raw = new Kafka({ brokers: [servers.kafka], clientId: 'test-truncate-prune', logLevel: logLevel.NOTHING }).admin();
  await raw.connect();
  try {
    await raw.fetchTopicMetadata({ topics: [f.topic] });
    await raw.deleteTopicRecords({ topic: f.topic, partitions: (await admin.endOffsets(f.topic)).map((e) => ({ partition: e.partition, offset: String(e.offset) })) });
  } finally {
    await raw.disconnect();
  }
  await f.send(f.copies(f.keys('0/A3/0', 1)), f.rows(31, 40, 'd'));
  await f.applied();
  assert.deepEqual(await recorded(), { arrived: ['0/A3/0'], done: ['0/A3/0'] });
  assert.deepEqual(await f.table(), expectRows(31, 40, 'd'));
});

test('barrier tables made before deliveries are migrated at start: what they hold is delivery 0, another delivery of the same truncate a row of its own', async (t) => {
  const { db, servers } = env();
  const name = `sb_trmig_${ID}`;
  await db.query(`CREATE DATABASE ${name}`);
  const url = new URL(servers.destination);
  url.pathname = `/${name}`;
  const old = new pg.Client({ connectionString: url.toString() });
  await old.connect();
  t.after(async () => {
    await old.end().catch(() => {});
    await db.query(`DROP DATABASE IF EXISTS ${name}`);
  });
  // The tables as sinks before deliveries made them.
  await old.query(`CREATE SCHEMA shardbridge;
    CREATE TABLE shardbridge.sink_truncate_arrivals (
      group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
      arrived_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (group_id, topic, truncate_id, kafka_partition, kafka_offset));
    CREATE TABLE shardbridge.sink_truncates (
      group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, rounds int NOT NULL,
      truncated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (group_id, topic, truncate_id));
    INSERT INTO shardbridge.sink_truncate_arrivals VALUES ('g', 'x', '0/1/0', 0, 7);
    INSERT INTO shardbridge.sink_truncates VALUES ('g', 'x', '0/1/0', 1)`);
  await ensureSinkTables(old);
  await ensureSinkTables(old); // every later start: nothing left to do
  assert.deepEqual((await old.query(`SELECT truncate_id, delivery::int FROM shardbridge.sink_truncate_arrivals`)).rows, [{ truncate_id: '0/1/0', delivery: 0 }]);
  await old.query(`INSERT INTO shardbridge.sink_truncates (group_id, topic, truncate_id, delivery, rounds) VALUES ('g', 'x', '0/1/0', 5, 1)`);
  assert.deepEqual((await old.query(`SELECT delivery::int, rounds FROM shardbridge.sink_truncates ORDER BY delivery`)).rows, [{ delivery: 0, rounds: 1 }, { delivery: 5, rounds: 1 }]);
  // A rollback to a version before deliveries, as the runbook has it (its key back, the column
  // kept), then the upgrade again: migrated again, so another delivery is a row of its own.
  await old.query(`DELETE FROM shardbridge.sink_truncates WHERE delivery = 0;
    ALTER TABLE shardbridge.sink_truncates DROP CONSTRAINT sink_truncates_pkey, ADD PRIMARY KEY (group_id, topic, truncate_id)`);
  await ensureSinkTables(old);
  await old.query(`INSERT INTO shardbridge.sink_truncates (group_id, topic, truncate_id, delivery, rounds) VALUES ('g', 'x', '0/1/0', 6, 1)`);
  assert.deepEqual((await old.query(`SELECT delivery::int FROM shardbridge.sink_truncates ORDER BY delivery`)).rows, [{ delivery: 5 }, { delivery: 6 }]);
});
