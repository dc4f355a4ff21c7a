/**
 * A table's own snapshot copied beside the stream (docs/source-connector.md, "A table's own
 * snapshot"): races between the held copy and the stream, DDL, failures and stops.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { caughtUp, startSourceTestEnv, stopped, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';
import { TOASTED, ownCopyHarness } from '../helpers/own-copy.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;
let bootstrap: string;
let registryUrl: string;

before(async () => {
  env = await startSourceTestEnv('test-source-own-copy');
  ({ kafka, bootstrap, registryUrl } = env);
});

after(() => env?.close());

const { start, freshDatabase, startHeld, keptThen, assertTopicEqualsTable, streamsEqual } = ownCopyHarness(() => env);

/** A database streaming `kept`, stopped; then `added` created with `rows` rows (its own snapshot at the next start). */
async function withAddedTable(t: TestContext, rows: number): Promise<{ client: pg.Client; config: SourceConfig }> {
  const { client, config } = await keptThen(t, `CREATE TABLE added (id int PRIMARY KEY, v text, doc text); INSERT INTO added SELECT g, 'a' FROM generate_series(1, ${rows}) g; UPDATE added SET doc = ${TOASTED} WHERE id = 4`);
  return { client, config };
}

async function confirmedFlush(client: pg.Client, slot: string): Promise<bigint> {
  const { rows } = await client.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return parseLsn(rows[0].l);
}

/**
 * Changes of `added` committed past its point: an insert, an update and a delete, which stream
 * at once (copy-guard.ts), then an update leaving its TOASTed `doc` (row 4) unchanged, which holds
 * the stream until the copy is done. Returns the position before that update's transaction.
 */
async function streamWaiting(client: pg.Client, lines: () => string[]): Promise<bigint> {
  await client.query(`UPDATE kept SET v = 'before the wait' WHERE id = 1`);
  await client.query(`INSERT INTO added VALUES (1000, 'during the copy'); UPDATE added SET v = 'changed during the copy' WHERE id = 2; DELETE FROM added WHERE id = 3`);
  const before = await walLsn(client);
  await client.query(`BEGIN; UPDATE kept SET v = 'in a transaction with added' WHERE id = 2; UPDATE added SET v = 'with kept' WHERE id = 4; UPDATE kept SET v = 'after added' WHERE id = 3; COMMIT`);
  await waitFor('the stream waiting', () => lines().some((l) => l.includes('the stream waits for the own snapshot of public.added')), { timeoutMs: 20_000, intervalMs: 50 });
  return before;
}

/** A new start streams and catches up, and Kafka then equals both tables. */
async function startsAgainEqual(t: TestContext, client: pg.Client, config: SourceConfig): Promise<void> {
  const again = await start(config, testLogger());
  t.after(() => again.stop());
  await streamsEqual(again, client, config);
}

test("a table rewritten (ALTER TABLE … ADD COLUMN with a volatile default) past its own snapshot's point, before the copy reads it: Kafka ends equal to the table", async (t) => {
  const { client, config } = await withAddedTable(t, 20);
  const { conn, release } = await startHeld(t, config);
  // Committed past the point: a snapshot of before then sees the rewritten table empty.
  await client.query(`ALTER TABLE added ADD COLUMN r double precision DEFAULT random()`);
  await client.query(`INSERT INTO added (id, v) VALUES (21, 'after the rewrite')`);
  release();
  const err = await stopped(conn);
  assert.match(err.message, /public\.added was truncated or rewritten .* after the snapshot's point/);
  const again = await start(config, testLogger());
  t.after(() => again.stop());
  await streaming(again);
  await caughtUp(again, await walLsn(client));
  await assertTopicEqualsTable(client, config, 'added');
  await again.stop();
});

test("VACUUM FULL and CLUSTER past its own snapshot's point, before the copy reads it: rows keep their transaction ids, so the copy goes on (no stop) and Kafka ends equal to the table", async (t) => {
  const { client, config } = await withAddedTable(t, 20);
  const { conn, release, holds } = await startHeld(t, config);
  await client.query(`DELETE FROM added WHERE id = 5`);
  await client.query(`VACUUM FULL added`);
  await client.query(`CLUSTER added USING added_pkey`);
  release();
  await streamsEqual(conn, client, config);
  assert.equal(holds(), 1, 'the copy was not taken again');
});

test("while the stream waits for the held copy it answers the server, and its connection killed meanwhile is found at once: the next session copies the table again; nothing confirmed past the waiting change; Kafka ends equal to both tables", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  const { conn, release, holds, lines } = await startHeld(t, config);
  const before = await streamWaiting(client, lines);
  const waiting = await client.query(`SELECT now() AS at, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1`, [config.slotName]);
  // Status updates go on while the socket is paused (else the server ends the connection after wal_sender_timeout).
  await waitFor('a status update after the wait began', async () => {
    const { rows } = await client.query(`SELECT reply_time > $1::timestamptz + interval '2.5 s' AS r FROM pg_stat_replication WHERE pid = $2`, [waiting.rows[0].at, waiting.rows[0].pid]);
    return rows[0]?.r === true;
  }, { timeoutMs: 10_000, intervalMs: 200 });
  // Keep-alives and heartbeats meanwhile must not confirm past the waiting change.
  await client.query(`SELECT pg_logical_emit_message(false, 'probe', 'x')`);
  assert.ok((await confirmedFlush(client, config.slotName)) <= before, 'confirmed past the waiting change');
  const { rows } = await client.query(`SELECT pg_terminate_backend(active_pid) AS t FROM pg_replication_slots WHERE slot_name = $1 AND active`, [config.slotName]);
  assert.equal(rows.length, 1);
  await waitFor('the next session at the copy', () => holds() > 1, { timeoutMs: 30_000, intervalMs: 50 });
  assert.ok((await confirmedFlush(client, config.slotName)) <= before, 'confirmed past the waiting change');
  release();
  await streaming(conn);
  await client.query(`INSERT INTO added VALUES (1001, 'streamed')`);
  await caughtUp(conn, await walLsn(client));
  await assertTopicEqualsTable(client, config, 'added');
  await assertTopicEqualsTable(client, config, 'kept');
});

test("stop() while the stream waits for the held copy, then a start: the table is copied again and Kafka ends equal to both tables", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  const { conn, lines } = await startHeld(t, config);
  const before = await streamWaiting(client, lines);
  await conn.stop();
  assert.ok((await confirmedFlush(client, config.slotName)) <= before, 'confirmed past the waiting change');
  await startsAgainEqual(t, client, config);
});

test("stop() while the copy is held, before any change of the table: a clean stop, and the next start copies it", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  const { conn } = await startHeld(t, config);
  await client.query(`UPDATE kept SET v = 'while held' WHERE id = 1`);
  await conn.stop();
  await conn.done;
  await client.query(`UPDATE added SET v = 'while stopped' WHERE id = 1`);
  await startsAgainEqual(t, client, config);
});

test("the copy failing on a row too large for its topic, while the stream waits for it: a stop naming the table, nothing confirmed past the waiting change, and a start after the row shrank recovers", async (t) => {
  const { url, client, slot } = await freshDatabase(t);
  await client.query(`CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'k' FROM generate_series(1, 5) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: bootstrap, registry: registryUrl, extra: { slotName: slot, topics: { maxMessageBytes: 50_000 } } });
  const first = await start(config, testLogger());
  await streaming(first);
  await first.stop();
  await client.query(`CREATE TABLE added (id int PRIMARY KEY, v text, doc text); INSERT INTO added SELECT g, 'a' FROM generate_series(1, 50) g; UPDATE added SET doc = ${TOASTED} WHERE id = 4`);
  // Incompressible: 200 kB of random hex.
  await client.query(`UPDATE added SET v = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 6000)) WHERE id = 7`);
  const { conn, release, lines } = await startHeld(t, config);
  const before = await streamWaiting(client, lines);
  release();
  const err = await stopped(conn);
  assert.match(err.message, /public\.added/);
  assert.ok((await confirmedFlush(client, config.slotName)) <= before, 'confirmed past the waiting change');
  await client.query(`UPDATE added SET v = 'small again' WHERE id = 7`);
  await startsAgainEqual(t, client, config);
});

test("the table dropped while its copy is held: a stop naming it, and the next start streams the other tables", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  const { conn, release } = await startHeld(t, config);
  await client.query(`UPDATE kept SET v = 'while held' WHERE id = 1`);
  await client.query(`DROP TABLE added`);
  release();
  const err = await stopped(conn);
  assert.match(err.message, /^the own snapshot of public\.added failed: relation "public\.added" does not exist/);
  const again = await start(config, testLogger());
  t.after(() => again.stop());
  await streaming(again);
  await client.query(`UPDATE kept SET v = 'after' WHERE id = 2`);
  await caughtUp(again, await walLsn(client));
  await assertTopicEqualsTable(client, config, 'kept');
});

test("two tables copied at once, only one written during the copy, and a TRUNCATE of the other: Kafka ends equal to every table", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  await client.query(`CREATE TABLE quiet (id int PRIMARY KEY, v text); INSERT INTO quiet SELECT g, 'q' FROM generate_series(1, 30) g`);
  const { conn, release, lines } = await startHeld(t, config);
  await streamWaiting(client, lines);
  await client.query(`INSERT INTO added SELECT g, 'bulk' FROM generate_series(2000, 2100) g`);
  release();
  await streaming(conn);
  await client.query(`TRUNCATE quiet; INSERT INTO quiet VALUES (1, 'after the truncate')`);
  await caughtUp(conn, await walLsn(client));
  for (const table of ['added', 'kept', 'quiet']) await assertTopicEqualsTable(client, config, table);
});

test("a column added (no rewrite) to the table while its copy is held, and rows written with it: Kafka ends equal to the table", async (t) => {
  const { client, config } = await withAddedTable(t, 50);
  const { conn, release, lines } = await startHeld(t, config);
  await streamWaiting(client, lines);
  await client.query(`ALTER TABLE added ADD COLUMN extra int; UPDATE added SET extra = id WHERE id <= 10; INSERT INTO added (id, v, extra) VALUES (3000, 'with extra', 3000)`);
  release();
  await streamsEqual(conn, client, config);
});

test("a partitioned table copied beside the stream, written in several partitions meanwhile: Kafka ends equal to it", async (t) => {
  const { url, client, slot } = await freshDatabase(t);
  await client.query(`CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'k' FROM generate_series(1, 5) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: bootstrap, registry: registryUrl, extra: { slotName: slot } });
  const first = await start(config, testLogger());
  await streaming(first);
  await first.stop();
  await client.query(`CREATE TABLE added (id int PRIMARY KEY, v text, doc text) PARTITION BY RANGE (id);
    CREATE TABLE added_a PARTITION OF added FOR VALUES FROM (0) TO (100);
    CREATE TABLE added_b PARTITION OF added FOR VALUES FROM (100) TO (10000);
    INSERT INTO added SELECT g, 'a' FROM generate_series(1, 150) g; UPDATE added SET doc = ${TOASTED} WHERE id = 4`);
  const { conn, release, lines } = await startHeld(t, config);
  await streamWaiting(client, lines);
  await client.query(`UPDATE added SET v = 'moved', id = id + 1000 WHERE id IN (5, 6); DELETE FROM added WHERE id = 120; INSERT INTO added VALUES (5, 'back in a'), (500, 'in b')`);
  release();
  await streamsEqual(conn, client, config);
});

test("source → Kafka → sink: a table taken out of the selection and back, its own snapshot held while its connection is killed, then copied again: the destination ends equal to the source", async (t) => {
  const { url, client, slot } = await freshDatabase(t);
  const dest = await getTestDestination();
  const dst = new pg.Client({ connectionString: dest.url });
  await dst.connect();
  const [kept, back] = [`k_${Date.now().toString(36)}`, `b_${Date.now().toString(36)}`];
  let sink: SinkConnector | null = null;
  // One hook, in this order: a destination of the test's own is destroyed on release, which the sink must not outlive.
  t.after(async () => {
    await sink?.stop().catch(() => {});
    await dst.query(`DROP TABLE IF EXISTS public.${kept}, public.${back}`).catch(() => {});
    await dst.end().catch(() => {});
    await dest.release();
  });
  for (const c of [client, dst]) await c.query(`CREATE TABLE public.${kept} (id int PRIMARY KEY, v text); CREATE TABLE public.${back} (id int PRIMARY KEY, v text, doc text)`);
  await client.query(`INSERT INTO ${kept} SELECT g, 'k' FROM generate_series(1, 20) g; INSERT INTO ${back} SELECT g, 'b' FROM generate_series(1, 80) g; UPDATE ${back} SET doc = ${TOASTED} WHERE id = 60`);
  const base = { sourceUrl: url, kafka: bootstrap, registry: registryUrl };
  const config = testSourceConfig({ ...base, extra: { slotName: slot } });
  const first = await start(config, testLogger());
  await streaming(first);
  await first.stop();
  // Out of the selection for a while: rows deleted and inserted again meanwhile.
  const without = testSourceConfig({ ...base, prefix: config.topicPrefix, extra: { slotName: slot, tables: { exclude: [`public.${back}`] } } });
  const out = await start(without, testLogger());
  await streaming(out);
  await client.query(`DELETE FROM ${back} WHERE id <= 30; INSERT INTO ${back} VALUES (5, 'again'); UPDATE ${kept} SET v = 'while out' WHERE id = 1`);
  await caughtUp(out, await walLsn(client));
  await out.stop();
  const groupId = `g-${config.topicPrefix}`;
  sink = await startSinkConnector(sinkConfig({ kafka: bootstrap, registry: registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId }, { batch: { maxRows: 7, adaptive: false } }), testLogger());
  const { conn, release, holds, lines } = await startHeld(t, config);
  // The insert and the delete stream at once; the update leaving the TOASTed doc unchanged waits for the copy.
  await client.query(`UPDATE ${kept} SET v = 'while held' WHERE id = 2; INSERT INTO ${back} VALUES (1000, 'while held'); DELETE FROM ${back} WHERE id = 40; UPDATE ${back} SET v = 'toast kept' WHERE id = 60`);
  await waitFor('the stream waiting', () => lines().some((l) => l.includes(`the stream waits for the own snapshot of public.${back}`)), { timeoutMs: 20_000, intervalMs: 50 });
  await client.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, [config.slotName]);
  await waitFor('the next session at the copy', () => holds() > 1, { timeoutMs: 30_000, intervalMs: 50 });
  release();
  await streaming(conn);
  await client.query(`UPDATE ${back} SET v = 'after' WHERE id = 50`);
  await pipelineCaughtUp(kafka, { client, source: conn }, { db: dst, groupId, topics: [kept, back].map((x) => `${config.topicPrefix}.public.${x}`) });
  for (const x of [kept, back]) {
    const want = (await client.query(`SELECT * FROM ${x} ORDER BY id`)).rows;
    assert.deepEqual((await dst.query(`SELECT * FROM public.${x} ORDER BY id`)).rows, want, x);
  }
});
