/**
 * Helpers for the source connector's integration tests: a config for a test source, and the
 * records of a topic read back from Kafka and decoded through the registry (createAvroType
 * over the schema the registry holds for each record's id).
 */
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type avro from 'avsc';
import pg from 'pg';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { ShardBridgeError } from '../../shared/errors.ts';
import { startSchemaRegistry } from '../../shared/devstack/schema-registry-server.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';
import { createAvroType, textEncoderFor, type TextEncoder } from '../../shared/type-mapping/index.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';
import { readTopicToEnd, type TopicRecord as RawRecord } from '../../source-connector/control-topics.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import type { SourceConnector } from '../../source-connector/run.ts';
import { getTestKafka, testLogger } from './kafka.ts';
import { startTestSource } from './postgres.ts';

/** What a source integration test file shares: the broker, the registry, one source cluster. */
export interface SourceTestEnv {
  bootstrap: string;
  registryUrl: string;
  kafka: KafkaClient;
  source: PgCluster;
  /** A fresh database (its client ends after the test): publications and tables never collide; `slot` is unique too (slot names are cluster-wide). */
  freshDatabase(t: TestContext): Promise<{ url: string; client: pg.Client; slot: string }>;
  close(): Promise<void>;
}

/** The run's broker and registry (or this file's own), and a source cluster of this file's own. */
export async function startSourceTestEnv(clientId: string): Promise<SourceTestEnv> {
  const releases: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const r of releases.reverse()) await r().catch(() => {});
  };
  try {
    const k = await getTestKafka();
    releases.push(k.release);
    let registryUrl = process.env.SHARDBRIDGE_TEST_SCHEMA_REGISTRY ?? '';
    if (!registryUrl) {
      const r = await startSchemaRegistry({ logger: testLogger() });
      releases.push(r.stop);
      registryUrl = r.url;
    }
    const source = await startTestSource();
    releases.push(() => source.destroy());
    const db = new pg.Client({ connectionString: source.url() });
    await db.connect();
    releases.push(() => db.end());
    return {
      bootstrap: k.bootstrap,
      registryUrl,
      kafka: createKafka({ brokers: [k.bootstrap], clientId }, testLogger()),
      source,
      async freshDatabase(t) {
        const name = `t_${randomBytes(4).toString('hex')}`;
        await db.query(`CREATE DATABASE ${name}`);
        const url = source.url(name);
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        t.after(() => client.end());
        return { url, client, slot: `slot_${name}` };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Drop a slot a stopped connector used: its walsender ends after the client has gone, and until
 * then the slot is active and the drop refused (55006).
 */
export async function dropSlot(c: pg.ClientBase, slot: string): Promise<void> {
  await waitFor(`slot ${slot} dropped`, () => c.query('SELECT pg_drop_replication_slot($1)', [slot]).then(() => true, (err: { code?: string }) => {
    if (err.code !== '55006') throw err;
    return false;
  }), { timeoutMs: 10_000, intervalMs: 50 });
}

export async function walLsn(c: pg.ClientBase): Promise<bigint> {
  return parseLsn((await c.query(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l);
}

/** Until the connector confirmed a position at or past `lsn` (so Kafka has everything before it). */
export async function caughtUp(conn: SourceConnector, lsn: bigint, timeoutMs = 60_000): Promise<void> {
  await waitFor(`confirmed LSN >= ${lsn}`, () => {
    const c = conn.state().confirmedLsn;
    return c !== null && parseLsn(c) >= lsn;
  }, { timeoutMs, intervalMs: 50 });
}

/** Until the connector streams (throws when it failed first). */
export async function streaming(conn: SourceConnector): Promise<void> {
  await waitFor('the connector streaming', () => {
    const { phase } = conn.state();
    if (phase === 'failed') throw new Error('connector failed');
    return phase === 'streaming';
  }, { timeoutMs: 120_000, intervalMs: 50 });
}

/** The connector's failure, once it stopped (polled: a connector that wrongly goes on fails the test at the deadline). */
export async function stopped(conn: SourceConnector, timeoutMs = 60_000): Promise<ShardBridgeError> {
  let failure: unknown = null;
  conn.done.catch((err: unknown) => (failure = err));
  await waitFor('the connector stopped with an error', () => failure !== null, { timeoutMs, intervalMs: 100 });
  assert.ok(failure instanceof ShardBridgeError, String(failure));
  return failure;
}

export type { TopicRecord as RawRecord } from '../../source-connector/control-topics.ts';

export interface DecodedRecord {
  partition: number;
  offset: bigint;
  key: Record<string, unknown> | null;
  /** null: a tombstone. */
  value: { before: Record<string, unknown> | null; after: Record<string, unknown> | null; op: string; source: Record<string, unknown>; unchanged_toast: string[] } | null;
  valueSchemaId: number | null;
  /** `after` as PostgreSQL input text per column (the sink's textEncoderFor), null when there is no `after`. */
  afterText: Record<string, string | null> | null;
}

/** A source config for tests: strict-parsed like the real one, so defaults apply. */
export function testSourceConfig(args: {
  sourceUrl: string;
  kafka: string;
  registry: string;
  prefix?: string;
  extra?: Record<string, unknown>;
}): SourceConfig {
  return sourceConfigSchema.parse({
    name: 'test',
    source: { url: args.sourceUrl },
    kafka: { brokers: [args.kafka] },
    schemaRegistry: { url: args.registry },
    topicPrefix: args.prefix ?? uniquePrefix(),
    metricsPort: 0,
    logLevel: 'warn',
    ...args.extra,
  });
}

export function uniquePrefix(): string {
  return `sb${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Every record of `topic` up to its end offsets at the time of the call (keys and values as bytes). */
export function readRaw(kafka: KafkaClient, topic: string, timeoutMs = 60_000): Promise<RawRecord[]> {
  return readTopicToEnd(kafka, topic, testLogger(), { timeoutMs, maxBytes: 64 << 20 });
}

/** Decodes Confluent-framed Avro through the registry; one avsc type per schema id. */
export class RegistryDecoder {
  readonly registry: RegistryClient;
  private readonly types = new Map<number, Promise<{ type: avro.Type; text: Map<string, { column: string; encode: TextEncoder }> }>>();

  constructor(url: string) {
    this.registry = new RegistryClient({ url });
  }

  /** The value and, for an envelope, the sink's text form of each row field keyed by pg.column. */
  async decode(buf: Buffer | null): Promise<{ value: any; schemaId: number | null; toText(row: Record<string, unknown>): Record<string, string | null> }> {
    if (buf === null) return { value: null, schemaId: null, toText: () => ({}) };
    const { schemaId, payloadOffset } = decodeWireHeader(buf);
    let t = this.types.get(schemaId);
    if (!t) {
      t = this.registry.getSchema(schemaId).then((schema) => ({ type: createAvroType(schema), text: rowEncoders(schema) }));
      this.types.set(schemaId, t);
    }
    const { type, text } = await t;
    return {
      value: type.fromBuffer(buf.subarray(payloadOffset)),
      schemaId,
      toText: (row) => {
        const out: Record<string, string | null> = {};
        for (const [field, v] of Object.entries(row)) {
          const e = text.get(field);
          if (e) out[e.column] = v === null ? null : e.encode(v);
        }
        return out;
      },
    };
  }
}

/** For an envelope schema: the Value record's fields -> (pg.column, text encoder). */
function rowEncoders(schema: any): Map<string, { column: string; encode: TextEncoder }> {
  const out = new Map<string, { column: string; encode: TextEncoder }>();
  const before = schema?.fields?.find((f: any) => f.name === 'before');
  const record = Array.isArray(before?.type) ? before.type.find((x: any) => x && typeof x === 'object' && x.type === 'record') : undefined;
  for (const f of record?.fields ?? []) out.set(f.name, { column: f['pg.column'] ?? f.name, encode: textEncoderFor(f.type) });
  return out;
}

export async function readDecoded(kafka: KafkaClient, decoder: RegistryDecoder, topic: string): Promise<DecodedRecord[]> {
  const raw = await readRaw(kafka, topic);
  const out: DecodedRecord[] = [];
  for (const r of raw) {
    const key = await decoder.decode(r.key);
    const value = await decoder.decode(r.value);
    out.push({
      partition: r.partition,
      offset: r.offset,
      key: key.value,
      value: value.value,
      valueSchemaId: value.schemaId,
      afterText: value.value?.after ? value.toText(value.value.after) : null,
    });
  }
  return out;
}

/** JSON records of a control topic. */
export async function readJson(kafka: KafkaClient, topic: string): Promise<{ key: string; value: any }[]> {
  return (await readRaw(kafka, topic)).map((r) => ({ key: r.key?.toString() ?? '', value: r.value ? JSON.parse(r.value.toString()) : null }));
}

/**
 * The table state Kafka describes, as text per column: per key (JSON of the key record) the
 * last row; a delete or tombstone removes the key, a truncate empties the table, columns
 * listed in unchanged_toast keep the value the key had. Records are put in source order by
 * their commit LSN (`source.lsn`; a tombstone takes its delete's), which keeps partition
 * order within a transaction: keys of one table land on one partition each.
 */
export function finalState(records: DecodedRecord[]): Map<string, Record<string, string | null>> {
  const lastLsn = new Map<number, bigint>();
  const ordered = records.map((r) => {
    const lsn = (r.value?.source.lsn as bigint | null | undefined) ?? lastLsn.get(r.partition) ?? 0n;
    lastLsn.set(r.partition, lsn);
    return { r, lsn };
  });
  ordered.sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
  const state = new Map<string, Record<string, string | null>>();
  for (const { r } of ordered) {
    if (r.value?.op === 't') {
      state.clear();
      continue;
    }
    applyRecord(state, r);
  }
  return state;
}

function applyRecord(state: Map<string, Record<string, string | null>>, r: DecodedRecord): void {
  const key = stableKey(r.key);
  if (r.value === null || r.value.op === 'd') state.delete(key);
  else if (r.afterText) {
    const row = { ...r.afterText };
    const prev = state.get(key);
    for (const c of r.value.unchanged_toast) row[c] = prev ? prev[c] : row[c];
    state.set(key, row);
  }
}

/**
 * The rows as the sink leaves them: each partition's records applied in offset order (a
 * truncate empties what that partition brought), the partitions' rows together. Unlike
 * finalState, a record replayed out of source order shows.
 */
export function finalStateInTopicOrder(records: DecodedRecord[]): Map<string, Record<string, string | null>> {
  const partitions = new Map<number, DecodedRecord[]>();
  for (const r of records) {
    const list = partitions.get(r.partition);
    if (list) list.push(r);
    else partitions.set(r.partition, [r]);
  }
  const out = new Map<string, Record<string, string | null>>();
  for (const list of partitions.values()) {
    list.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
    const state = new Map<string, Record<string, string | null>>();
    for (const r of list) {
      if (r.value?.op === 't') state.clear();
      else applyRecord(state, r);
    }
    for (const [k, row] of state) out.set(k, row);
  }
  return out;
}

/**
 * Asserts that `rows` (column -> input text, as finalState gives them) are exactly the rows of
 * `table`: both sides are cast to the columns' types and compared by their text output.
 */
export async function assertRowsEqualTable(client: pg.ClientBase, table: string, rows: Iterable<Record<string, string | null>>): Promise<void> {
  const { rows: cols } = await client.query(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [table],
  );
  const list = [...rows];
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const arrays = cols.map((c) => list.map((r) => (r[c.name] === undefined ? null : r[c.name])));
  const fromKafka = cols.map((c, i) => `($${i + 1}::text[])`).join(', ');
  const cast = cols.map((c, i) => `(x.c${i}::${c.type})::text`).join(', ');
  const own = cols.map((c) => `${q(c.name)}::text`).join(', ');
  const { rows: diff } = await client.query(
    `WITH k AS (SELECT ${cast} FROM unnest(${fromKafka}) AS x(${cols.map((_, i) => `c${i}`).join(', ')})),
          s AS (SELECT ${own} FROM ${table})
     (SELECT 'only in kafka' AS side, * FROM (TABLE k EXCEPT ALL TABLE s) a)
     UNION ALL (SELECT 'only in table', * FROM (TABLE s EXCEPT ALL TABLE k) b) LIMIT 10`,
    arrays,
  );
  assert.deepEqual(diff, [], `Kafka's state of ${table} differs from the table`);
}

/** JSON with bigints as strings: comparable text for keys and rows. */
export function stableKey(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** Records written to every partition of `topic` so far (0 before it exists). */
export async function sumEndOffsets(kafka: KafkaClient, topic: string): Promise<number> {
  const admin = kafka.admin();
  try {
    return (await admin.endOffsets(topic)).reduce((n, e) => n + Number(e.offset), 0);
  } catch {
    return 0; // not created yet
  } finally {
    await admin.disconnect();
  }
}
