/**
 * Citus's own catalog on a destination, read: whether Citus is there, how it holds each table
 * (told apart by citus-table-kind.ts) and Citus 12's distributed schemas. The sink
 * (destination-catalog.ts) and schema copy (read.ts) read it through here.
 */
import type pg from 'pg';
import { citusTableKind, type CitusTableKind, type DistPartitionRow } from './citus-table-kind.ts';

export interface CitusInfo {
  present: boolean;
  version: string | null;
}

export async function detectCitus(client: pg.ClientBase): Promise<CitusInfo> {
  const { rows } = await client.query(`SELECT extversion FROM pg_extension WHERE extname = 'citus'`);
  return { present: rows.length > 0, version: rows[0]?.extversion ?? null };
}

export interface CitusTable {
  kind: CitusTableKind;
  /** Only for 'distributed'. */
  distributionColumn: string | null;
  /** Only for 'distributed' and 'single-shard'. */
  colocationId: number | null;
}

export const LOCAL_TABLE: CitusTable = { kind: 'local', distributionColumn: null, colocationId: null };

/** How Citus holds each of the tables (by oid) it has in its metadata; a table absent from the map is local. Citus destinations only. */
export async function readCitusTables(client: pg.ClientBase, oids: readonly number[]): Promise<Map<number, CitusTable>> {
  const { rows } = await client.query<DistPartitionRow & { oid: number; col: string | null }>(
    `SELECT logicalrelid::oid::int AS oid, partmethod, repmodel, colocationid, CASE WHEN partkey IS NULL THEN NULL ELSE column_to_column_name(logicalrelid, partkey) END AS col
       FROM pg_dist_partition WHERE logicalrelid::oid = ANY($1::oid[])`,
    [oids],
  );
  return new Map(rows.map((r) => {
    const kind = citusTableKind(r);
    const grouped = kind === 'distributed' || kind === 'single-shard';
    return [r.oid, { kind, distributionColumn: kind === 'distributed' ? r.col : null, colocationId: grouped ? Number(r.colocationid) : null }];
  }));
}

/**
 * Citus 12's distributed schemas (schema-based sharding; `pg_dist_schema`, absent before 12)
 * by name with their colocation group, and whether a schema created in this session becomes one.
 */
export async function readSchemaSharding(client: pg.ClientBase): Promise<{ distributedSchemas: Map<string, number>; schemaBasedSharding: boolean }> {
  const { rows: [{ present, sharding }] } = await client.query(
    `SELECT to_regclass('pg_dist_schema') IS NOT NULL AS present, current_setting('citus.enable_schema_based_sharding', true) AS sharding`,
  );
  const rows = present
    ? (await client.query(`SELECT n.nspname AS name, s.colocationid FROM pg_dist_schema s JOIN pg_namespace n ON n.oid = s.schemaid`)).rows
    : [];
  return { distributedSchemas: new Map(rows.map((r) => [r.name, Number(r.colocationid)])), schemaBasedSharding: sharding === 'on' };
}
