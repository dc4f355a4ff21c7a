/**
 * The servers and clients every sink integration test file needs: the shared broker,
 * registry and destination, a destination connection with the file's schemas created,
 * an admin client, a connected producer and a registry client. `close()` drops the
 * schemas and releases everything, in reverse order.
 */
import { after, before } from 'node:test';
import pg from 'pg';
import type { Logger } from 'pino';
import { createKafka, type Admin, type KafkaClient, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { getTestKafka, testLogger } from './kafka.ts';
import { getTestDestination } from './postgres.ts';
import { getTestRegistry, registerTable, tableInfo, testRegistryClient, type ProducedTable } from './produce-changes.ts';

export interface SinkTestEnv {
  servers: { kafka: string; registry: string; destination: string };
  db: pg.Client;
  kafka: KafkaClient;
  admin: Admin;
  producer: Producer;
  registry: RegistryClient;
  close(): Promise<void>;
}

export async function openSinkTestEnv(schemas: string[], log: Logger): Promise<SinkTestEnv> {
  const releases: (() => Promise<void>)[] = [];
  const [k, r, d] = await Promise.all([getTestKafka(), getTestRegistry(), getTestDestination()]);
  releases.push(k.release, r.release, d.release);
  const db = new pg.Client({ connectionString: d.url });
  await db.connect();
  for (const s of schemas) await db.query(`CREATE SCHEMA ${s}`);
  const kafka = createKafka({ brokers: [k.bootstrap] }, log);
  const admin = kafka.admin();
  const producer = kafka.producer();
  await producer.connect();
  return {
    servers: { kafka: k.bootstrap, registry: r.url, destination: d.url },
    db,
    kafka,
    admin,
    producer,
    registry: testRegistryClient(r.url, log),
    async close() {
      await producer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
      for (const s of schemas) await db.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
      await db.end().catch(() => {});
      for (const release of releases.reverse()) await release();
    },
  };
}

/**
 * A sink test file's two schemas (`sb_<tag>src_<id>`, `sb_<tag>dst_<id>`) and its SinkTestEnv,
 * opened before the file's tests and closed after them; `env()` inside a test.
 */
/** A table of a sink test file: made in the source schema (and the destination's), its topic, and its schemas registered. */
export interface FileTableOptions {
  /** Columns and key, as CREATE TABLE takes them; default `(id int PRIMARY KEY, v text)`. */
  ddl?: string;
  /** The destination table's; default `ddl`; null: none made. */
  destDdl?: string | null;
  /** Of the topic; default 1. */
  partitions?: number;
  /**
   * Laid out as SHARDBRIDGE_TEST_CITUS_DISTRIBUTE asks on a Citus destination (default true);
   * false keeps it a local table (a test of what Citus refuses on distributed tables: two-phase
   * commit across nodes).
   */
  distribute?: boolean;
}

/**
 * How this run lays out the sink tests' destination tables on a Citus destination
 * (SHARDBRIDGE_TEST_CITUS_DISTRIBUTE, README): hash-distributed by their first key column (`1`),
 * as reference tables, or as single-shard distributed tables; unset: local coordinator tables.
 */
function citusLayout(): 'distributed' | 'reference' | 'single-shard' | null {
  const v = (process.env.SHARDBRIDGE_TEST_CITUS_DISTRIBUTE ?? '').toLowerCase();
  if (v === '' || v === '0') return null;
  if (v === 'reference' || v === 'single-shard') return v;
  return 'distributed';
}

/** `table` laid out as this run asks, on a Citus destination. */
async function distributeIfAsked(db: pg.Client, table: string): Promise<void> {
  const layout = citusLayout();
  if (layout === null) return;
  if ((await db.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount !== 1) return;
  if (layout === 'reference') return void (await db.query('SELECT create_reference_table($1)', [table]));
  if (layout === 'single-shard') return void (await db.query('SELECT create_distributed_table($1, NULL)', [table]));
  const { rows } = await db.query(
    `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = $1::regclass AND i.indisprimary`,
    [table],
  );
  if (rows.length === 1) await db.query('SELECT create_distributed_table($1, $2)', [table, rows[0].attname]);
}

export function sinkTestFile(tag: string): {
  ID: string;
  SRC: string;
  DST: string;
  log: Logger;
  env(): SinkTestEnv;
  /** `<SRC>.<name>` (and `<DST>.<name>`), topic `<prefix>.<SRC>.<name>`, ready to produce records for. */
  table(prefix: string, name: string, opts?: FileTableOptions): Promise<ProducedTable>;
} {
  const ID = `${process.pid}_${Date.now().toString(36)}`;
  const SRC = `sb_${tag}src_${ID}`;
  const DST = `sb_${tag}dst_${ID}`;
  const log = testLogger();
  let env: SinkTestEnv | undefined;
  before(async () => {
    env = await openSinkTestEnv([SRC, DST], log);
  });
  after(async () => {
    await env?.close();
  });
  const opened = () => {
    if (!env) throw new Error('the sink test env is opened in before()');
    return env;
  };
  return {
    ID,
    SRC,
    DST,
    log,
    env: opened,
    async table(prefix, name, opts = {}) {
      const { db, admin, registry } = opened();
      const ddl = opts.ddl ?? '(id int PRIMARY KEY, v text)';
      const destDdl = opts.destDdl === undefined ? ddl : opts.destDdl;
      await db.query(`CREATE TABLE ${SRC}.${name} ${ddl}`);
      if (destDdl !== null) await db.query(`CREATE TABLE ${DST}.${name} ${destDdl}`);
      if (destDdl !== null && opts.distribute !== false) await distributeIfAsked(db, `${DST}.${name}`);
      const topic = `${prefix}.${SRC}.${name}`;
      await admin.ensureTopics([{ topic, partitions: opts.partitions ?? 1, replicationFactor: 1 }]);
      return registerTable(registry, await tableInfo(db, SRC, name), topic);
    },
  };
}
