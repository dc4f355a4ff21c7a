/**
 * Stall, never drop: a record the destination cannot take stalls only its partition with
 * one clear error, other tables keep flowing, and fixing the destination resumes it by
 * itself. autoEvolve adds the column instead; undecodable records stall, or go to the
 * dead-letter topic in that mode; a destination restart or crash mid-stream is only retried.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPostgres } from '../../shared/devstack/postgres.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { type Admin, type KafkaClient, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, readTopic, testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { encodeChanges, produceChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets, waitApplied } from '../helpers/sink.ts';
import { topicFor } from '../../source-connector/table-versions.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_ssrc_${ID}`;
const DST = `sb_sdst_${ID}`;
const log = testLogger();
let env: SinkTestEnv | undefined;
let servers: { kafka: string; registry: string; destination: string };
let db: pg.Client;
let kafka: KafkaClient;
let admin: Admin;
let producer: Producer;
let registry: RegistryClient;

before(async () => {
  env = await openSinkTestEnv([SRC, DST], log);
  ({ servers, db, admin, producer, registry } = env);
  kafka = env.kafka;
});

after(async () => {
  await env?.close();
});


async function table(name: string, ddl: string, partitions: number, prefix: string, destDdl = ddl): Promise<ProducedTable> {
  await db.query(`CREATE TABLE ${SRC}.${name} ${ddl}`);
  if (destDdl) await db.query(`CREATE TABLE ${DST}.${name} ${destDdl}`);
  const topic = `${prefix}.${SRC}.${name}`;
  await admin.ensureTopics([{ topic, partitions, replicationFactor: 1 }]);
  return registerTable(registry, await tableInfo(db, SRC, name), topic);
}

const inserts = (from: number, to: number, extra: (i: number) => (string | null)[] = (i) => [`v${i}`]) =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), ...extra(from + i)] }));

async function count(name: string): Promise<number> {
  return (await db.query(`SELECT count(*)::int AS n FROM ${DST}.${name}`)).rows[0].n;
}

async function metricValue(sink: SinkConnector, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = sink.metrics.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

test('a missing destination column stalls only its partition, with one clear error; ADD COLUMN resumes it', async () => {
  const prefix = uniqueTopic('sbstall');
  const wide = await table('wide', '(id int PRIMARY KEY, v text, extra numeric(10,3))', 1, prefix, '(id int PRIMARY KEY, v text)');
  const other = await table('other', '(id int PRIMARY KEY, v text)', 2, prefix);
  await produceChanges(producer, wide, inserts(1, 5, (i) => [`v${i}`, `${i}.5`]));
  await produceChanges(producer, other, inserts(1, 20));
  const { logger, lines } = capturingLogger();
  const groupId = `g-${ID}-stall`;
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.wide`]: { schema: DST }, [`${SRC}.other`]: { schema: DST } } }), logger, {
    topicRefreshMs: 500,
  });
  try {
    await waitApplied(db, admin, groupId, [other.topic]);
    const stall = await waitFor('stall row', async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0]);
    assert.equal(stall.topic, wide.topic);
    assert.equal(stall.next_offset, '0');
    assert.equal(stall.sqlstate, '42703');
    assert.equal(stall.table_name, `${DST}.wide`);
    assert.match(stall.error, /column "extra" of relation "[^"]+\.wide" does not exist/);
    assert.match(stall.error, /ALTER TABLE "[^"]+"\."wide" ADD COLUMN "extra" numeric\(10,3\)/);
    // Not known whether extra was there before (this sink saw no other version and no catalog with it): both said.
    assert.match(stall.error, new RegExp(`if extra was on the destination before \\(dropped there, not just added at the source\\), then also, the stall gone, shardbridge resnapshot --source-config source\\.yaml --table ${SRC}\\.wide: rows not changed since keep NULL`));
    assert.equal(await metricValue(sink, 'shardbridge_sink_stalled_partitions', { topic: wide.topic, reason: 'apply' }), 1);
    assert.equal(await metricValue(sink, 'shardbridge_sink_consumer_lag', { topic: wide.topic, partition: '0' }), 5, 'the stalled partition shows its backlog');
    const scraped = await (await fetch(`http://127.0.0.1:${sink.metricsPort}/metrics`)).text();
    assert.match(scraped, new RegExp(`shardbridge_sink_stalled_partitions\\{[^}]*topic="${wide.topic.replace(/\./g, '\\.')}"[^}]*\\} 1`));
    assert.equal(await count('wide'), 0);

    // Other tables keep flowing while the partition is stalled and retried.
    await produceChanges(producer, other, inserts(21, 30));
    await waitApplied(db, admin, groupId, [other.topic]);
    assert.equal(await count('other'), 30);
    await waitFor('a few retries', async () => (await db.query('SELECT attempts FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0]?.attempts >= 3);
    const errors = lines().filter((l) => l.level >= 50 && /stalled/.test(l.msg));
    assert.equal(errors.length, 1, 'one error line per distinct stall, not one per retry');
    assert.equal(errors[0].topic, wide.topic);
    assert.equal(errors[0].partition, 0);
    assert.equal(errors[0].offset, '0');
    assert.equal(errors[0].column, 'extra');
    assert.equal(errors[0].sqlstate, '42703');
    assert.match(errors[0].remedy, /ADD COLUMN "extra" numeric\(10,3\); or set autoEvolve: true/);

    await db.query(`ALTER TABLE ${DST}.wide ADD COLUMN extra numeric(10,3)`);
    await waitApplied(db, admin, groupId, [wide.topic]);
    const { rows } = await db.query(`SELECT id, v, extra::text FROM ${DST}.wide ORDER BY id`);
    assert.deepEqual(rows.map((r) => [r.id, r.v, r.extra]), [1, 2, 3, 4, 5].map((i) => [i, `v${i}`, `${i}.500`]));
    await waitFor('stall cleared', async () => (await db.query('SELECT 1 FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rowCount === 0);
    assert.equal(await metricValue(sink, 'shardbridge_sink_stalled_partitions'), 0);
    assert.equal(await metricValue(sink, 'shardbridge_sink_consumer_lag', { topic: wide.topic, partition: '0' }), 0);
    assert.ok(lines().some((l) => l.msg === 'stall cleared: partition applies again' && l.topic === wide.topic));

    // Dropped on the destination now that rows hold it: adding it back would leave them NULL in it, so the remedy says to resnapshot.
    await db.query(`ALTER TABLE ${DST}.wide DROP COLUMN extra`);
    await produceChanges(producer, wide, inserts(6, 6, (i) => [`v${i}`, `${i}.5`]));
    const dropped = await waitFor('the stall naming the drop', async () => {
      const row = (await db.query('SELECT error FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0];
      return /was dropped there/.test(row?.error ?? '') ? row.error : undefined;
    });
    assert.match(dropped, new RegExp(`ADD COLUMN "extra" numeric\\(10,3\\); or set autoEvolve: true; then, the stall gone, shardbridge resnapshot --source-config source\\.yaml --table ${SRC}\\.wide: extra was on the destination before`));
  } finally {
    await sink.stop();
  }
});

test('a stalled partition moved to another member and back is fetched again: the pause does not outlive the rebalance', async () => {
  const prefix = uniqueTopic('sbmoved');
  const held = await table('held', '(id int PRIMARY KEY, v text, extra int)', 1, prefix, '(id int PRIMARY KEY, v text)');
  await produceChanges(producer, held, inserts(1, 5, (i) => [`v${i}`, String(i)]));
  const groupId = `g-${ID}-moved`;
  const tables = { [`${SRC}.held`]: { schema: DST } };
  // kafkajs's round-robin assignor gives the one partition to the member whose id sorts first:
  // the second member ("aa…") takes it from the first ("zz…") when it joins.
  const member = (clientId: string) => startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables, kafka: { brokers: [servers.kafka], clientId } }), log, { topicRefreshMs: 500 });
  const first = await member(`zz-${ID}`);
  try {
    await waitFor('the first member stalled the partition', async () => (await metricValue(first, 'shardbridge_sink_stalled_partitions')) === 1, { timeoutMs: 30_000, intervalMs: 50 });
    const second = await member(`aa-${ID}`);
    try {
      await waitFor('the second member took the partition and stalled it', async () => (await metricValue(second, 'shardbridge_sink_stalled_partitions')) === 1, { timeoutMs: 60_000, intervalMs: 50 });
      assert.equal(await metricValue(first, 'shardbridge_sink_stalled_partitions'), 0, 'the first member let go of its stall');
    } finally {
      await second.stop();
    }
    // Back with the first member, which had paused it; the fix must reach it there.
    await db.query(`ALTER TABLE ${DST}.held ADD COLUMN extra int`);
    await waitApplied(db, admin, groupId, [held.topic], 60_000);
    assert.equal(await count('held'), 5);
  } finally {
    await first.stop();
  }
});

test('a batch the destination keeps cancelling as a whole (statement_timeout) goes through in halves instead of being retried forever', async () => {
  const prefix = uniqueTopic('sbhalves');
  const t = await table('heavy', '(id int PRIMARY KEY, v text)', 1, prefix);
  // Any statement writing more than 20 rows fails as a statement_timeout would.
  await db.query(`CREATE FUNCTION ${DST}.too_many() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (SELECT count(*) FROM written) > 20 THEN RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = '57014'; END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER too_many AFTER INSERT ON ${DST}.heavy REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ${DST}.too_many()`);
  await produceChanges(producer, t, inserts(1, 100));
  const groupId = `g-${ID}-halves`;
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.heavy`]: { schema: DST } } }), logger, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, groupId, [t.topic], 60_000);
    assert.equal(await count('heavy'), 100);
    assert.equal((await db.query('SELECT 1 FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rowCount, 0, 'no stall: every half of at most 20 rows went through');
    assert.ok(lines().some((l) => l.msg === 'batch failed: narrowing down' || /retrying/.test(l.msg)), 'retried, then halved');
  } finally {
    await sink.stop();
  }
});

test('records before the failing one are applied; a foreign-key violation names its remedy; the fix resumes', async () => {
  const prefix = uniqueTopic('sbfk');
  await db.query(`CREATE TABLE ${DST}.parent (id int PRIMARY KEY)`);
  const child = await table('child', '(id int PRIMARY KEY, parent_id int)', 1, prefix, `(id int PRIMARY KEY, parent_id int REFERENCES ${DST}.parent)`);
  await db.query(`INSERT INTO ${DST}.parent VALUES (1)`);
  await produceChanges(producer, child, [...inserts(1, 6, () => ['1']), ...inserts(7, 7, () => ['2']), ...inserts(8, 10, () => ['1'])]);
  const groupId = `g-${ID}-fk`;
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.child`]: { schema: DST } } }), log, { topicRefreshMs: 500 });
  try {
    const stall = await waitFor('stall row', async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0]);
    assert.equal(stall.sqlstate, '23503');
    assert.equal(stall.next_offset, '6', 'stalled exactly at the offending record');
    assert.match(stall.error, /violates foreign key constraint/);
    assert.match(stall.error, /create foreign keys at cut-over, not before/);
    assert.equal(await count('child'), 6, 'every record before it was applied');
    assert.equal((await storedOffsets(db, groupId)).get(`${child.topic}:0`), 6n);
    await db.query(`INSERT INTO ${DST}.parent VALUES (2)`);
    await waitApplied(db, admin, groupId, [child.topic]);
    assert.equal(await count('child'), 10);
  } finally {
    await sink.stop();
  }
});

test('autoEvolve adds a missing column with the source type instead of stalling', async () => {
  const prefix = uniqueTopic('sbevolve');
  const t = await table('evolving', '(id int PRIMARY KEY, v text, price numeric(10,3), tags text[])', 1, prefix, '(id int PRIMARY KEY, v text)');
  await produceChanges(producer, t, inserts(1, 3, (i) => [`v${i}`, `${i}.25`, `{a,"b c"}`]));
  const groupId = `g-${ID}-evolve`;
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { autoEvolve: true, tables: { [`${SRC}.evolving`]: { schema: DST } } }), logger, {
    topicRefreshMs: 500,
  });
  try {
    await waitApplied(db, admin, groupId, [t.topic]);
    const cols = await db.query(
      `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull FROM pg_attribute a
        WHERE a.attrelid = '${DST}.evolving'::regclass AND a.attnum > 0 ORDER BY a.attnum`,
    );
    assert.deepEqual(cols.rows.map((r) => [r.attname, r.type, r.attnotnull]), [
      ['id', 'integer', true],
      ['v', 'text', false],
      ['price', 'numeric(10,3)', false],
      ['tags', 'text[]', false],
    ]);
    const { rows } = await db.query(`SELECT price::text, tags::text FROM ${DST}.evolving ORDER BY id`);
    assert.deepEqual(rows.map((r) => [r.price, r.tags]), [1, 2, 3].map((i) => [`${i}.250`, '{a,"b c"}']));
    assert.equal((await db.query('SELECT count(*)::int AS n FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0].n, 0);
    assert.ok(!lines().some((l) => /autoEvolve: .*dropped there/.test(l.msg)), 'columns the destination never had: no resnapshot to run');

    // Dropped on the destination while rows hold it: added back, and the warning says those rows are NULL in it until a resnapshot.
    await db.query(`ALTER TABLE ${DST}.evolving DROP COLUMN price`);
    await produceChanges(producer, t, inserts(4, 4, (i) => [`v${i}`, `${i}.25`, '{}']));
    await waitApplied(db, admin, groupId, [t.topic]);
    const readded = lines().find((l) => l.level === 40 && /^autoEvolve: .*ADD COLUMN IF NOT EXISTS "price"/.test(l.msg) && /dropped there/.test(l.msg));
    assert.match(readded?.msg ?? '', new RegExp(`rows not changed since are NULL in it until shardbridge resnapshot --source-config source\\.yaml --table ${SRC}\\.evolving$`));
    const after = await db.query(`SELECT id, price::text FROM ${DST}.evolving ORDER BY id`);
    assert.deepEqual(after.rows.map((r) => [r.id, r.price]), [[1, null], [2, null], [3, null], [4, '4.250']], 'the loss the warning names');
  } finally {
    await sink.stop();
  }
});

test('a destination column type that cannot take every source value is named once at its first batch; values that fit apply', async () => {
  const prefix = uniqueTopic('sbtypes');
  const t = await table('typed', '(id int PRIMARY KEY, amount numeric(12,2), at timestamptz, qty int)', 1, prefix, '(id int PRIMARY KEY, amount numeric(12,0), at timestamptz, qty bigint)');
  await produceChanges(producer, t, inserts(1, 3, (i) => [`${i}.40`, '2024-02-29 13:45:10+00', String(i)]));
  const groupId = `g-${ID}-types`;
  const captured = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.typed`]: { schema: DST } } }), captured.logger, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, groupId, [t.topic]);
    await produceChanges(producer, t, inserts(4, 4, (i) => [`${i}.60`, '2024-02-29 13:45:10+00', String(i)]));
    await waitApplied(db, admin, groupId, [t.topic]);
    const warned = captured.lines().filter((l) => l.sourceType !== undefined);
    assert.deepEqual(
      warned.map((l) => [l.table, l.column, l.sourceType, l.destinationType]),
      [[`${DST}.typed`, 'amount', 'numeric(12,2)', 'numeric(12,0)']],
      'one warning, for the narrowed column only (bigint for int is a widening)',
    );
    assert.match(warned[0].msg, new RegExp(`ALTER TABLE "${DST}"\\."typed" ALTER COLUMN "amount" TYPE numeric\\(12,2\\)`));
    assert.equal(await metricValue(sink, 'shardbridge_sink_column_type_mismatches', { column: 'amount', source_type: 'numeric(12,2)', destination_type: 'numeric(12,0)' }), 1);
    assert.equal(await metricValue(sink, 'shardbridge_sink_column_type_mismatches', { column: 'qty' }), 0);
    // The cast rounds without an error: why the warning is there.
    const { rows } = await db.query(`SELECT amount::text FROM ${DST}.typed ORDER BY id`);
    assert.deepEqual(rows.map((r) => r.amount), ['1', '2', '3', '5']);
  } finally {
    await sink.stop();
  }
});

test('an undecodable record stalls its partition by default, and goes to the dead-letter topic in that mode', async () => {
  const prefix = uniqueTopic('sbcorrupt');
  const t = await table('plain', '(id int PRIMARY KEY, v text)', 1, prefix);
  const good = encodeChanges(t, inserts(1, 4));
  const more = encodeChanges(t, inserts(5, 8));
  const corrupt = [
    { topic: t.topic, key: null, value: encodeWire(2_000_000_000, Buffer.from('no such schema')) },
    { topic: t.topic, key: good[0].key, value: encodeWire(t.valueId, Buffer.from([0xff, 0xff, 0xff, 0x01])) },
  ];
  await producer.sendBatch([...good, ...corrupt, ...more]);

  const stallGroup = `g-${ID}-corrupt-stall`;
  const stalling = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId: stallGroup }, { tables: { [`${SRC}.plain`]: { schema: DST } } }), log, { topicRefreshMs: 500 });
  try {
    const stall = await waitFor('stall row', async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [stallGroup])).rows[0]);
    assert.equal(stall.next_offset, '4');
    assert.equal(stall.sqlstate, 'decode');
    assert.match(stall.error, /schema id 2000000000/);
    assert.equal(await count('plain'), 4);
  } finally {
    await stalling.stop();
  }

  await db.query(`TRUNCATE ${DST}.plain`);
  // A record before the undecodable ones fails to apply: its retries fetch the dead letters' chunk again.
  await db.query(`ALTER TABLE ${DST}.plain ADD CONSTRAINT not_three CHECK (id <> 3)`);
  const dlqGroup = `g-${ID}-corrupt-dlq`;
  const dlqTopic = `${prefix}.__dlq`;
  const dlq = await startSinkConnector(
    sinkConfig({ ...servers, prefix, groupId: dlqGroup }, { deadLetter: { enabled: true }, stallRetryMs: 200, tables: { [`${SRC}.plain`]: { schema: DST } } }),
    log,
    { topicRefreshMs: 500 },
  );
  try {
    await waitFor('stall retried', async () => (await db.query('SELECT attempts FROM shardbridge.stalls WHERE group_id = $1', [dlqGroup])).rows[0]?.attempts >= 3);
    assert.equal((await readTopic(kafka, dlqTopic)).length, 2, 'each undecodable record sent once, not once per stall retry');
    await db.query(`ALTER TABLE ${DST}.plain DROP CONSTRAINT not_three`);
    await waitApplied(db, admin, dlqGroup, [t.topic]);
    assert.equal(await count('plain'), 8);
    const letters = await readTopic(kafka, dlqTopic);
    assert.equal(letters.length, 2);
    assert.deepEqual(letters.map((l) => [l.headers['shardbridge.original.topic'], l.headers['shardbridge.original.offset']]), [[t.topic, '4'], [t.topic, '5']]);
    assert.match(letters[0].headers['shardbridge.error'], /schema id 2000000000/);
    assert.match(letters[1].headers['shardbridge.error'], /does not decode/);
    assert.equal(letters[0].headers['shardbridge.original.partition'], '0');
    assert.equal(await metricValue(dlq, 'shardbridge_sink_dead_letter_records_total'), 2);
  } finally {
    await dlq.stop();
  }
});

test("a stalled partition's consumer_lag in /metrics follows the records the source goes on producing, between the stall's retries", async () => {
  const prefix = uniqueTopic('sbstalllag');
  const t = await table('lagging', '(id int PRIMARY KEY, v text)', 1, prefix);
  const unknownId = { topic: t.topic, key: null, value: encodeWire(2_000_000_000, Buffer.from('no such schema')) };
  await producer.sendBatch([...encodeChanges(t, inserts(1, 2)), unknownId, ...encodeChanges(t, inserts(3, 4))]);
  const groupId = `g-${ID}-stalllag`;
  // No retry within the test: only the stalled partitions' own refresh can move the figure.
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { stallRetryMs: 600_000, tables: { [`${SRC}.lagging`]: { schema: DST } } }), log, {
    topicRefreshMs: 500,
    stalledLagMs: 300,
  });
  try {
    await waitFor('stall row', async () => (await db.query('SELECT 1 FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rowCount === 1);
    const scraped = async () => {
      const text = await (await fetch(`http://127.0.0.1:${sink.metricsPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('shardbridge_sink_consumer_lag{') && l.includes(`topic="${t.topic}"`));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    await waitFor('the backlog from the stalled record', async () => (await scraped()) === 3, { timeoutMs: 10_000 });
    await produceChanges(producer, t, inserts(5, 14));
    await waitFor('the lag grows with the partition while it stays stalled', async () => (await scraped()) === 13, { timeoutMs: 10_000 });
    const row = (await db.query('SELECT next_offset, attempts FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0];
    assert.deepEqual(row, { next_offset: '2', attempts: 1 }, 'still stalled at the record, never retried');
    assert.equal(await count('lagging'), 2);
  } finally {
    await sink.stop();
  }
});

test('a registry that refuses the sink (a wrong URL path) stalls the partition even in dead-letter mode: readable records are never set aside', async () => {
  const prefix = uniqueTopic('sbrefused');
  const t = await table('readable', '(id int PRIMARY KEY, v text)', 1, prefix);
  await produceChanges(producer, t, inserts(1, 3));
  const groupId = `g-${ID}-refused`;
  const tables = { [`${SRC}.readable`]: { schema: DST } };
  const dlqTopic = `${prefix}.__dlq`;
  const wrong = await startSinkConnector(
    sinkConfig({ ...servers, registry: `${servers.registry}/not-the-registry`, prefix, groupId }, { deadLetter: { enabled: true }, tables }),
    log,
    { topicRefreshMs: 500 },
  );
  try {
    const stall = await waitFor('stall row', async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0]);
    assert.equal(stall.next_offset, '0');
    assert.equal(stall.sqlstate, 'decode');
    assert.match(stall.error, /404/);
    assert.equal(await count('readable'), 0);
    assert.deepEqual(await readTopic(kafka, dlqTopic).catch(() => []), [], 'nothing dead-lettered');
  } finally {
    await wrong.stop();
  }
  // With the registry's URL put right, the same group applies every record.
  const right = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { deadLetter: { enabled: true }, tables }), log, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, groupId, [t.topic]);
    assert.equal(await count('readable'), 3);
  } finally {
    await right.stop();
  }
});

/** Stream 40 rounds of updates over 250 keys; `fault` strikes the destination mid-stream. */
async function destinationFault(name: string, fault: (cluster: Awaited<ReturnType<typeof startPostgres>>) => Promise<void>): Promise<void> {
  const cluster = await startPostgres({ name, logger: log });
  const table = `counter_${name.replace('-', '_')}`;
  const own = new pg.Client({ connectionString: cluster.url() });
  try {
    const prefix = uniqueTopic(name.replace('-', ''));
    await db.query(`CREATE TABLE ${SRC}.${table} (id int PRIMARY KEY, n bigint)`);
    const topic = `${prefix}.${SRC}.${table}`;
    await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1 }]);
    const t = await registerTable(registry, await tableInfo(db, SRC, table), topic);
    await own.connect();
    await own.query(`CREATE SCHEMA ${SRC}; CREATE TABLE ${SRC}.${table} (id int PRIMARY KEY, n bigint)`);
    // Every round raises n: an update that does not (a batch applied twice) is recorded.
    await own.query(`CREATE TABLE ${SRC}.not_raised (id int, old bigint, new bigint);
      CREATE FUNCTION ${SRC}.check_n() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.n <= OLD.n THEN INSERT INTO ${SRC}.not_raised VALUES (NEW.id, OLD.n, NEW.n); END IF; RETURN NEW; END $$;
      CREATE TRIGGER check_n BEFORE UPDATE ON ${SRC}.${table} FOR EACH ROW EXECUTE FUNCTION ${SRC}.check_n()`);
    await own.end();
    // Each key is updated many times; the last value per key is known.
    const ROUNDS = 40;
    const KEYS = 250;
    const round = (r: number) => Array.from({ length: KEYS }, (_, k) => ({ kind: (r === 0 ? 'insert' : 'update') as 'insert' | 'update', new: [String(k), String(r)] }));
    await produceChanges(producer, t, round(0));
    const groupId = `g-${ID}-${name}`;
    const sink = await startSinkConnector(
      sinkConfig({ kafka: servers.kafka, registry: servers.registry, destination: cluster.url(), prefix, groupId }, { batch: { maxRows: 500 } }),
      log,
      { topicRefreshMs: 500 },
    );
    try {
      const check = new pg.Client({ connectionString: cluster.url() });
      const applied = async () => {
        const c = new pg.Client({ connectionString: cluster.url() });
        c.on('error', () => {});
        try {
          await c.connect();
          return (await c.query('SELECT coalesce(sum(next_offset), 0)::int AS n FROM shardbridge.sink_offsets WHERE group_id = $1', [groupId])).rows[0].n as number;
        } finally {
          await c.end().catch(() => {});
        }
      };
      await waitFor('first round applied', async () => (await applied()) >= KEYS);
      const producing = (async () => {
        for (let r = 1; r < ROUNDS; r++) await produceChanges(producer, t, round(r));
      })();
      await waitFor('streaming under way', async () => (await applied()) > KEYS * 3, { intervalMs: 20 });
      await fault(cluster);
      await producing;
      await waitFor('everything applied after the restart', async () => (await applied()) >= KEYS * ROUNDS, { timeoutMs: 60_000 });
      await check.connect();
      const { rows } = await check.query(`SELECT count(*)::int AS keys, min(n)::int AS lo, max(n)::int AS hi FROM ${SRC}.${table}`);
      assert.deepEqual(rows[0], { keys: KEYS, lo: ROUNDS - 1, hi: ROUNDS - 1 });
      assert.deepEqual((await check.query(`SELECT * FROM ${SRC}.not_raised LIMIT 5`)).rows, [], 'no batch applied twice');
      assert.equal((await check.query('SELECT count(*)::int AS n FROM shardbridge.stalls')).rows[0].n, 0, 'no stall');
      assert.ok((await metricValue(sink, 'shardbridge_sink_apply_retries_total')) >= 1, 'the restart was seen and retried');
      await check.end();
    } finally {
      await sink.stop();
    }
  } finally {
    await cluster.destroy();
  }
}

test('a destination restart mid-stream is retried, not stalled: every change lands exactly once', () =>
  destinationFault('sink-restart', (cluster) => cluster.restart()));

// The sink commits with synchronous_commit off (batch.synchronousCommit): a crash can lose the
// last acknowledged commits, and their stored offsets with them, so those changes come again from Kafka.
test('a destination crash (SIGKILL) mid-stream under asynchronous commit loses no change', () =>
  destinationFault('sink-crash', async (cluster) => {
    await cluster.crash();
    await cluster.restart();
  }));

test('at start the sink reports every known table (an UNLOGGED one warned about) and names a missing one; a column added after the start is applied, not stalled on', async () => {
  const prefix = uniqueTopic('sbknown');
  const present = await table('known_present', '(id int PRIMARY KEY, v text, extra text)', 1, prefix, '(id int PRIMARY KEY, v text)');
  await table('known_absent', '(id int PRIMARY KEY, v text)', 1, prefix, '');
  await db.query(`ALTER TABLE ${DST}.known_present SET UNLOGGED`);
  const { logger, lines } = capturingLogger();
  const groupId = `g-${ID}-known`;
  const reports = () => lines().filter((l) => l.msg === 'destination table is local' && l.table === `${DST}.known_present`);
  const sink = await startSinkConnector(
    sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.known_present`]: { schema: DST }, [`${SRC}.known_absent`]: { schema: DST } } }),
    logger,
    { metricsPort: null },
  );
  try {
    // Before any record: both tables were looked at.
    assert.equal(reports().length, 1);
    const unlogged = lines().filter((l) => l.level === 40 && l.table === `${DST}.known_present` && /is UNLOGGED: a crash of the destination empties it/.test(l.msg));
    assert.equal(unlogged.length, 1, 'an UNLOGGED destination table is warned about at start');
    const missing = lines().find((l) => l.level === 40 && Array.isArray(l.tables));
    assert.deepEqual(missing?.tables, [`${DST}.known_absent`]);
    assert.match(missing!.msg, /destination tables missing: .*known_absent; their partitions stall at their first change until they exist/);
    // The operator adds the column the source has before its first change arrives: the catalog
    // read at start must not serve that change.
    await db.query(`ALTER TABLE ${DST}.known_present ADD COLUMN extra text`);
    await produceChanges(producer, present, inserts(1, 3, (i) => [`v${i}`, `e${i}`]));
    await waitApplied(db, admin, groupId, [present.topic]);
    assert.deepEqual((await db.query(`SELECT extra FROM ${DST}.known_present ORDER BY id`)).rows.map((r) => r.extra), ['e1', 'e2', 'e3']);
    assert.deepEqual(lines().filter((l) => /stalled/.test(l.msg)).map((l) => l.msg), [], 'never stalled');
    assert.equal(reports().length, 1, 'the same distribution is not reported twice');
  } finally {
    await sink.stop();
  }
});

test('a table known by a topic whose name had characters replaced is looked up by its real name, not reported missing', async () => {
  const prefix = uniqueTopic('sbnamed');
  // Unmapped, so the destination table is the source table itself ("Order Items", topic ….Order_Items).
  await db.query(`CREATE TABLE ${SRC}."Order Items" (id int PRIMARY KEY, v text)`);
  const topic = topicFor(prefix, SRC, 'Order Items');
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  await registerTable(registry, await tableInfo(db, SRC, 'Order Items'), topic);
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId: `g-${ID}-named` }), logger, { metricsPort: null });
  try {
    assert.equal(topic, `${prefix}.${SRC}.Order_Items`);
    assert.deepEqual(lines().filter((l) => /missing/.test(l.msg)).map((l) => l.msg), []);
    assert.ok(lines().some((l) => l.msg === 'destination table is local' && l.table === `${SRC}.Order Items`), 'the real table was read at start');
  } finally {
    await sink.stop();
  }
});

test('requireDistributed refuses to start while a mapped table is not distributed, naming it', async () => {
  const prefix = uniqueTopic('sbreq');
  await db.query(`CREATE TABLE ${DST}.plain_local (id int PRIMARY KEY)`);
  await assert.rejects(
    startSinkConnector(
      sinkConfig({ ...servers, prefix, groupId: `g-${ID}-req` }, { citus: { requireDistributed: true }, tables: { [`${SRC}.plain_local`]: { schema: DST } } }),
      log,
      { metricsPort: null },
    ),
    (err: Error & { context?: Record<string, unknown> }) => {
      assert.match(err.message, new RegExp(`not distributed or reference tables: ${DST}\\.plain_local`));
      assert.equal(err.context?.key, 'citus.requireDistributed');
      return true;
    },
  );
});
