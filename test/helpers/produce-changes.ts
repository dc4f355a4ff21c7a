/**
 * Produces change records to Kafka exactly as the source connector shapes them, with the
 * source's own pure modules (record-schema.ts, envelope.ts) and the registry, so the sink
 * can be tested without the source runtime. Source tables live in a PostgreSQL schema of
 * the test's own: their catalog gives the TableInfo and their rows the text tuples.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { startSchemaRegistry } from '../../shared/devstack/schema-registry-server.ts';
import type { OutMessage, Producer } from '../../shared/kafka/client.ts';
import { SOURCE_SESSION_SETTINGS, type TableInfo, type TextTuple } from '../../shared/pg-types.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { buildRecordSchemas, type TableRecordSchemas } from '../../source-connector/record-schema.ts';

/** The run-wide registry (SHARDBRIDGE_TEST_SCHEMA_REGISTRY) or one of this file's own. */
export async function getTestRegistry(): Promise<{ url: string; release(): Promise<void> }> {
  const shared = process.env.SHARDBRIDGE_TEST_SCHEMA_REGISTRY;
  if (shared) return { url: shared, release: async () => {} };
  const srv = await startSchemaRegistry();
  return { url: srv.url, release: () => srv.stop() };
}

export interface ProducedTable {
  info: TableInfo;
  topic: string;
  schemas: TableRecordSchemas;
  keyId: number | null;
  valueId: number;
}

/** Build and register the key and envelope schemas of a table version under `<topic>-key` / `<topic>-value`. */
export async function registerTable(registry: RegistryClient, info: TableInfo, topic: string): Promise<ProducedTable> {
  const schemas = buildRecordSchemas(info, topic, '0.0.0-test');
  const keyId = schemas.keySchema ? await registry.register(`${topic}-key`, schemas.keySchema) : null;
  const valueId = await registry.register(`${topic}-value`, schemas.envelopeSchema);
  return { info, topic, schemas, keyId, valueId };
}

/** The TableInfo of a table, as the source's catalog reader builds it. */
export async function tableInfo(client: pg.ClientBase, schema: string, table: string): Promise<TableInfo> {
  const { tables } = await resolveTables(client, { schemas: [], include: [`${schema}.${table}`], exclude: [] });
  if (tables.length !== 1) throw new Error(`table ${schema}.${table} not found`);
  return tables[0];
}

const RAW_TEXT = { getTypeParser: () => (v: string) => v };

/** Rows as the source sees them: each column's text output under the source session settings. */
export async function textRows(client: pg.ClientBase, sql: string, params: unknown[] = []): Promise<TextTuple[]> {
  // Not search_path: the callers' statements, here and after on the same client, name tables unqualified.
  for (const [k, v] of Object.entries(SOURCE_SESSION_SETTINGS)) if (k !== 'search_path') await client.query(`SET ${k} = '${v}'`);
  const res = await client.query({ text: sql, values: params, rowMode: 'array', types: RAW_TEXT });
  return res.rows as TextTuple[];
}

export interface EncodeOptions {
  tombstones?: boolean;
  snapshot?: boolean;
  tsMs?: number;
}

/** Kafka messages for changes of one table, in order (a key change gives delete, tombstone, create). */
export function encodeChanges(t: ProducedTable, changes: readonly DecodedChange[], opts: EncodeOptions = {}): OutMessage[] {
  const tsMs = opts.tsMs ?? Date.now();
  const source = t.schemas.sourceFor({ db: 'test', tsMs, snapshot: opts.snapshot ? 'true' : 'false' });
  const out: OutMessage[] = [];
  for (const change of changes) {
    for (const ev of changeToEvents(change, { schemas: t.schemas, source, tsMs, tombstones: opts.tombstones ?? true })) {
      const key = ev.key === null || t.keyId === null ? null : encodeWire(t.keyId, t.schemas.keyType!.toBuffer(ev.key));
      const value = ev.value === null ? null : encodeWire(t.valueId, t.schemas.envelopeType.toBuffer(ev.value));
      out.push({ topic: t.topic, key, value });
    }
  }
  return out;
}

export async function produceChanges(producer: Producer, t: ProducedTable, changes: readonly DecodedChange[], opts: EncodeOptions = {}): Promise<void> {
  const messages = encodeChanges(t, changes, opts);
  for (let i = 0; i < messages.length; i += 5_000) await producer.sendBatch(messages.slice(i, i + 5_000));
}

/** Key tuple as pgoutput sends it for a delete / key change under default identity: full width, non-key columns null. */
export function keyTuple(info: TableInfo, row: TextTuple): TextTuple {
  return info.columns.map((c, i) => (info.keyColumns.includes(c.name) ? row[i] : null));
}

export function testRegistryClient(url: string, logger?: Logger): RegistryClient {
  return new RegistryClient({ url, logger });
}
