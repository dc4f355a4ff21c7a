/**
 * A table's own snapshot copied beside the stream (docs/source-connector.md, "A table's own
 * snapshot"): races between the held copy and the stream, DDL, failures and stops.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { testLogger } from '../helpers/kafka.ts';
import { RegistryDecoder, assertRowsEqualTable, caughtUp, finalStateInTopicOrder, readDecoded, startSourceTestEnv, stopped, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;
let bootstrap: string;
let registryUrl: string;

before(async () => {
  env = await startSourceTestEnv('test-source-own-copy');
  ({ kafka, bootstrap, registryUrl } = env);
});

after(() => env?.close());

/** A database streaming `kept`, stopped; then `added` created with `rows` rows (its own snapshot at the next start). */
async function withAddedTable(t: TestContext, rows: number): Promise<{ client: pg.Client; config: SourceConfig }> {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'k' FROM generate_series(1, 5) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: bootstrap, registry: registryUrl, extra: { slotName: slot } });
  const conn = await startSourceConnector(config, testLogger());
  await streaming(conn);
  await conn.stop();
  await client.query(`CREATE TABLE added (id int PRIMARY KEY, v text); INSERT INTO added SELECT g, 'a' FROM generate_series(1, ${rows}) g`);
  return { client, config };
}

/** A start whose own copy waits until `release()`. */
async function startHeld(t: TestContext, config: SourceConfig): Promise<{ conn: SourceConnector; release: () => void }> {
  let release!: () => void;
  let held = false;
  const hold = new Promise<void>((resolve) => (release = resolve));
  const conn = await startSourceConnector(config, testLogger(), { beforeOwnCopy: () => ((held = true), hold) });
  t.after(() => conn.stop());
  t.after(() => release());
  await waitFor('the copy held', () => held, { timeoutMs: 30_000, intervalMs: 50 });
  return { conn, release };
}

async function assertTopicEqualsTable(client: pg.Client, config: SourceConfig, table: string): Promise<void> {
  const decoder = new RegistryDecoder(registryUrl);
  const records = await readDecoded(kafka, decoder, `${config.topicPrefix}.public.${table}`);
  await assertRowsEqualTable(client, table, finalStateInTopicOrder(records).values());
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
  const again = await startSourceConnector(config, testLogger());
  t.after(() => again.stop());
  await streaming(again);
  await caughtUp(again, await walLsn(client));
  await assertTopicEqualsTable(client, config, 'added');
  await again.stop();
});
