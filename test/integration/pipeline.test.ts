/**
 * The whole pipeline with the real source connector: source PostgreSQL → source connector →
 * real Kafka → sink connector → destination, compared row by row (key and the text form of
 * every column). The every-type table through snapshot and streaming; inserts, a primary-key
 * change, deletes; updates that leave a NOT NULL TOASTed column unchanged, and a key change
 * that does too; a truncate with rows around it; then a replay of every topic from offset
 * zero (`shardbridge replay`), which converges to the same rows.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { runCli } from '../helpers/cli.ts';
import { ITEMS_DDL, ITEM_ROWS } from '../helpers/every-type-sql.ts';
import { capturingLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig, tableText } from '../helpers/sink.ts';
import { startSourceTestEnv, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
const dir = mkdtempSync(join(tmpdir(), 'sb-pipeline-'));

before(async () => {
  env = await startSourceTestEnv('test-pipeline');
});

after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

const TABLES = ['items', 'notes', 'logs'];

/** A connection to the test destination and a schema of the test's own there, dropped after. */
async function destinationSchema(t: TestContext, name: string): Promise<{ url: string; dst: pg.Client; D: string }> {
  const dest = await getTestDestination();
  t.after(() => dest.release());
  const dst = new pg.Client({ connectionString: dest.url });
  dst.on('error', () => {}); // the cluster may go first at teardown
  await dst.connect();
  const D = `sb_${name}_${process.pid}_${Date.now().toString(36)}`;
  t.after(async () => {
    await dst.query(`DROP SCHEMA IF EXISTS ${D} CASCADE`).catch(() => {});
    await dst.end();
  });
  return { url: dest.url, dst, D };
}

/** Until the source has confirmed everything written so far and the sink has applied `topics` up to their ends. */
function caughtUp(client: pg.Client, source: SourceConnector, dst: pg.Client, groupId: string, topics: string[]): Promise<void> {
  return pipelineCaughtUp(env.kafka, { client, source }, { db: dst, groupId, topics });
}

test('source → Kafka → sink: every type, key changes, NOT NULL TOAST left unchanged, a truncate, then a replay from zero: destination = source', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await destinationSchema(t, 'pipe');
  const { dst, D } = dest;
  // `notes.body` is NOT NULL and stored out of line: updates that leave it alone send pgoutput's
  // "unchanged TOAST" marker instead of its value.
  const OTHER_DDL = (s: string) => `
    CREATE TABLE ${s}.notes (id bigint PRIMARY KEY, title text, body text NOT NULL);
    ALTER TABLE ${s}.notes ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE ${s}.logs (id int PRIMARY KEY, msg text)`;
  await client.query(ITEMS_DDL('public'));
  await client.query(OTHER_DDL('public'));
  await client.query(ITEM_ROWS('public'));
  await client.query(`INSERT INTO notes SELECT g, 'note ' || g, repeat(md5(g::text), 200) FROM generate_series(1, 60) g`);
  await client.query(`INSERT INTO logs SELECT g, 'log ' || g FROM generate_series(1, 40) g`);
  await dst.query(`CREATE SCHEMA ${D}`);
  await dst.query(ITEMS_DDL(D));
  await dst.query(OTHER_DDL(D));

  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 3 } } });
  const prefix = config.topicPrefix;
  const topics = TABLES.map((name) => `${prefix}.public.${name}`);
  const groupId = `g-${prefix}`;
  const sinkCfg = sinkConfig(
    { kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix, groupId },
    { tables: Object.fromEntries(TABLES.map((name) => [`public.${name}`, { schema: D }])) },
  );
  const source = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => source.stop());
  const sinkLog = capturingLogger();
  // Started before the source makes its topics: a short refresh finds them at once, not up to 10 s later.
  let sink = await startSinkConnector(sinkCfg, sinkLog.logger, { topicRefreshMs: 500 });
  t.after(() => sink.stop());
  await waitFor('streaming', () => source.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });

  // The snapshot applied first: in one batch with it the updates would merge with the rows they update.
  await caughtUp(client, source, dst, groupId, topics);

  await client.query(`INSERT INTO items (id, t, big, mood, ints) VALUES (10, 'ten', repeat('z', 50000), 'sad', '{10}'), (11, 'eleven', NULL, NULL, NULL)`);
  await client.query(`UPDATE items SET t = 'one, updated', num = 42.5, jb = '{"v": 2}' WHERE id = 1`);
  await client.query(`UPDATE items SET i4 = 22 WHERE id = 2; UPDATE items SET i4 = 222, t = 'two' WHERE id = 2`);
  await client.query(`DELETE FROM items WHERE id = 3`);
  await client.query(`UPDATE items SET id = 40 WHERE id = 4`);
  // Half the notes get a new title only (body unchanged, so not sent), one a new body, one is
  // deleted, and two change key with the body unchanged (delete + create; the create cannot
  // carry the body): REPLICA IDENTITY FULL on notes gives the sink the old row for those.
  await client.query(`UPDATE notes SET title = 'retitled ' || id WHERE id % 2 = 0`);
  await client.query(`UPDATE notes SET body = 'short now' WHERE id = 5`);
  await client.query(`DELETE FROM notes WHERE id = 7`);
  await client.query(`ALTER TABLE notes REPLICA IDENTITY FULL`);
  await client.query(`UPDATE notes SET id = id + 1000 WHERE id IN (9, 11)`);
  await client.query(`BEGIN; INSERT INTO logs VALUES (100, 'before the truncate'); TRUNCATE logs; INSERT INTO logs SELECT g, 'after ' || g FROM generate_series(1, 12) g; COMMIT`);
  await client.query(`UPDATE logs SET msg = 'updated' WHERE id % 4 = 0`);

  const assertEqual = async (when: string) => {
    for (const name of TABLES) {
      const columns = (await client.query(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [`public.${name}`])).rows.map((r) => r.attname as string);
      const want = await tableText(client, `public.${name}`, columns, 'id');
      const got = await tableText(dst, `${D}.${name}`, columns, 'id');
      assert.equal(got.length, want.length, `${when}: ${name} row count`);
      for (let i = 0; i < want.length; i++) {
        for (let c = 0; c < columns.length; c++) assert.equal(got[i][c], want[i][c], `${when}: ${name} id=${want[i][0]} column ${columns[c]}`);
      }
    }
  };
  await caughtUp(client, source, dst, groupId, topics);
  await assertEqual('after streaming');
  const notes = (await dst.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE length(body) = 6400)::int AS big FROM ${D}.notes`)).rows[0];
  assert.deepEqual(notes, { n: 59, big: 58 }, 'every note but the deleted one, every body but the one replaced kept');
  assert.deepEqual(sinkLog.lines().filter((l) => /stalled/.test(l.msg)).map((l) => l.msg), [], 'never stalled');
  const paths = await sink.metrics.getSingleMetric('shardbridge_sink_upsert_rows_total')!.get();
  const inPlace = paths.values.filter((v) => v.labels.path === 'in_place' && v.labels.table === `${D}.notes`).reduce((n, v) => n + v.value, 0);
  assert.ok(inPlace >= 29, `the retitled notes were updated in place (${inPlace})`);

  // A replay of every topic from offset zero, the sink stopped: the same rows again.
  await sink.stop();
  const file = join(dir, 'sink.json');
  writeFileSync(file, JSON.stringify({ ...sinkCfg, logLevel: 'warn' }));
  for (const topic of topics) {
    const replayed = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', file]);
    assert.equal(replayed.code, 0, replayed.stderr);
  }
  sink = await startSinkConnector(sinkCfg, sinkLog.logger);
  await caughtUp(client, source, dst, groupId, topics);
  await assertEqual('after the replay from zero');
});

test('a table added while the source is stopped is snapshotted alone: the others are not read again, their changes meanwhile stream; destination = source', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await destinationSchema(t, 'resnap');
  const { dst, D } = dest;
  await client.query(`CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 10) g`);
  await dst.query(`CREATE SCHEMA ${D}; CREATE TABLE ${D}.a (id int PRIMARY KEY, v text); CREATE TABLE ${D}.b (id int PRIMARY KEY, w text)`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } });
  const prefix = config.topicPrefix;
  const groupId = `g-${prefix}`;
  const sinkCfg = sinkConfig(
    { kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix, groupId },
    { tables: { 'public.a': { schema: D }, 'public.b': { schema: D } } },
  );
  const rows = async (c: pg.Client, table: string) => (await c.query(`SELECT * FROM ${table} ORDER BY id`)).rows;

  const first = await startSourceConnector(config, capturingLogger().logger);
  const sink = await startSinkConnector(sinkCfg, capturingLogger().logger, { topicRefreshMs: 500 });
  t.after(() => sink.stop());
  await waitFor('streaming', () => first.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  await caughtUp(client, first, dst, groupId, [`${prefix}.public.a`]);
  assert.equal((await rows(dst, `${D}.a`)).length, 10);
  await first.stop();

  // While the source is stopped: a delete, an insert, and a new table in the selection.
  await client.query(`DELETE FROM a WHERE id = 5; INSERT INTO a VALUES (11, 'a11')`);
  await client.query(`CREATE TABLE b (id int PRIMARY KEY, w text); INSERT INTO b VALUES (1, 'b1'), (2, 'b2')`);
  // A row only the destination has: a truncate of a (a snapshot of every table again) would take it.
  await dst.query(`INSERT INTO ${D}.a VALUES (1000, 'destination only')`);
  const log = capturingLogger();
  const second = await startSourceConnector(config, log.logger);
  t.after(() => second.stop());
  await waitFor('streaming again', () => second.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  assert.ok(log.lines().some((l) => /taking a snapshot of public\.b alone, keeping the slot/.test(l.msg)), 'the snapshot of b alone is announced');
  await caughtUp(client, second, dst, groupId, [`${prefix}.public.a`, `${prefix}.public.b`]);
  const destA = await rows(dst, `${D}.a`);
  assert.deepEqual(destA.at(-1), { id: 1000, v: 'destination only' }, 'a was not truncated');
  assert.deepEqual(destA.slice(0, -1), await rows(client, 'a'), 'row 5, deleted while the source was stopped, is gone');
  assert.deepEqual(await rows(dst, `${D}.b`), await rows(client, 'b'));
});

test('keys with INCLUDE columns (source primary key, destination primary key): keyed, upserted and deleted by the key columns alone', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await destinationSchema(t, 'incl');
  const { dst, D } = dest;
  // An INCLUDE column is stored in the index but is not part of its key (pg_index.indnkeyatts).
  await client.query(`CREATE TABLE c (id int, w int, v text, PRIMARY KEY (id) INCLUDE (w)); INSERT INTO c SELECT g, g, 'v' || g FROM generate_series(1, 20) g`);
  await dst.query(`CREATE SCHEMA ${D}; CREATE TABLE ${D}.c (id int, w int, v text, PRIMARY KEY (id) INCLUDE (v))`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot } });
  const prefix = config.topicPrefix;
  const groupId = `g-${prefix}`;
  const source = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => source.stop());
  const sink = await startSinkConnector(
    sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix, groupId }, { tables: { 'public.c': { schema: D } } }),
    capturingLogger().logger,
    { topicRefreshMs: 500 },
  );
  t.after(() => sink.stop());
  await waitFor('streaming', () => source.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  await client.query(`UPDATE c SET w = w + 100, v = 'u' || id WHERE id <= 5; DELETE FROM c WHERE id BETWEEN 6 AND 8; INSERT INTO c VALUES (21, 21, 'v21')`);
  await caughtUp(client, source, dst, groupId, [`${prefix}.public.c`]);
  const rows = async (c: pg.Client, table: string) => (await c.query(`SELECT * FROM ${table} ORDER BY id`)).rows;
  assert.deepEqual(await rows(dst, `${D}.c`), await rows(client, 'c'));
  assert.equal((await rows(dst, `${D}.c`)).length, 18);
});
