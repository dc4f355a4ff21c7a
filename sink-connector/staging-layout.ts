/**
 * The shared staging table's Citus layout (pure SQL and verdicts): on a hash-distributed
 * target it must be distributed colocated with it, by the same column, or the merge
 * (`INSERT … SELECT … FROM staging`) is not pushed down to the shards but goes through the
 * coordinator. The staging table outlives the sink, so a target distributed anew since
 * (`alter_distributed_table`: another shard count, column or colocation) finds it made for
 * the old layout.
 */
import { quoteLiteral } from '../shared/sql.ts';
import type { ApplyTable } from './sink-change.ts';
import { qualifiedName, stagingTableName } from './upsert-batch.ts';

/** Whether the staging table of `table` needs distributing (Citus, hash-distributed target). */
const colocates = (table: ApplyTable): table is ApplyTable & { distributionColumn: string } =>
  table.citus === 'distributed' && table.distributionColumn !== undefined;

/**
 * The staging table's layout beside the target's: no row when the staging table is not a
 * Citus table. Null when the target needs no colocated staging table.
 */
export function stagingLayoutSql(table: ApplyTable): string | null {
  if (!colocates(table)) return null;
  const staging = quoteLiteral(stagingTableName(table));
  return (
    `SELECT s.partmethod::text AS method, s.colocationid = t.colocationid AS colocated, column_to_column_name(s.logicalrelid, s.partkey) AS "column" ` +
    `FROM pg_dist_partition s JOIN pg_dist_partition t ON t.logicalrelid = ${quoteLiteral(qualifiedName(table))}::regclass ` +
    `WHERE s.logicalrelid = ${staging}::regclass`
  );
}

export interface StagingLayoutRow {
  method: string;
  colocated: boolean;
  column: string | null;
}

/**
 * 'absent': not a Citus table yet, distribute it; 'ok': hash-distributed by the target's
 * column in its colocation group; 'stale': made for another layout, make it anew (it holds no
 * committed rows: each batch removes its own). Pure.
 */
export function stagingLayout(row: StagingLayoutRow | undefined, table: ApplyTable): 'absent' | 'ok' | 'stale' {
  if (row === undefined) return 'absent';
  return row.method === 'h' && row.colocated && row.column === table.distributionColumn ? 'ok' : 'stale';
}

/**
 * On Citus, distribute the staging table colocated with the target so the merge runs
 * shard-to-shard in parallel. Idempotent. Null when the target is not hash-distributed
 * (the staging table then stays a coordinator table).
 */
export function distributeStagingSql(table: ApplyTable): string | null {
  if (!colocates(table)) return null;
  const staging = quoteLiteral(stagingTableName(table));
  return (
    `SELECT create_distributed_table(${staging}, ${quoteLiteral(table.distributionColumn)}, ` +
    `colocate_with => ${quoteLiteral(qualifiedName(table))}) ` +
    `WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = ${staging}::regclass)`
  );
}

/** Citus's refusal to distribute a table another sink process distributed a moment before. */
export function alreadyDistributed(sqlstate: string | undefined, message: string): boolean {
  return sqlstate === '42P16' && /is already distributed/.test(message);
}
