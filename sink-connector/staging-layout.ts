/**
 * The shared staging table's preparation (pure SQL and verdicts): its columns follow the
 * target's, and on a hash-distributed target it must be distributed colocated with it, by the
 * same column, or the merge (`INSERT … SELECT … FROM staging`) is not pushed down to the
 * shards but goes through the coordinator. The staging table outlives the sink, so a target
 * distributed anew since (`alter_distributed_table`: another shard count, column or
 * colocation) finds it made for the old layout, and a retyped one with old column types.
 *
 * A distributed staging table has REPLICA IDENTITY FULL: its shards move with the target's
 * (one colocation group), and Citus moves shards by logical replication (citus_move_shard_placement's
 * and the rebalancer's default), which it refuses for a table without a replica identity. A
 * staging table with none, key-less by design, made every online shard move and rebalance of
 * its target fail ('cannot use logical replication to transfer shards of the relation …', seen on
 * Citus 13.2). It holds no committed rows, so FULL costs the old row of each staged row's DELETE
 * in the workers' WAL, nothing more.
 */
import { quoteIdent, quoteLiteral } from '../shared/sql.ts';
import type { ApplyTable } from './sink-change.ts';
import { qualifiedName } from './upsert-batch.ts';
import { createStagingSql, stagingNullableSql, stagingTableName } from './staging-sql.ts';

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

/**
 * Opens the preparation's transaction (after BEGIN). The lock serialises sink processes: each
 * decides on what the one before it left (two deciding at once from the old catalog made the
 * table anew twice, the second dropping the first's), and a batch of another process waits
 * for the COPY until the commit instead of meeting the table dropped, not yet distributed or
 * still NOT NULL. On Citus, sequential mode first: a transaction that ran a multi-shard
 * statement over parallel connections (DROP, ALTER of a distributed table) may not then run
 * DDL on another Citus table or create_distributed_table ('there was a parallel operation on
 * a distributed table in the transaction'); every shard is empty, so one connection per
 * worker costs little, and only when the staging table changes.
 */
export function openStagingPrepareSql(table: ApplyTable): string[] {
  const lock = `LOCK TABLE ${stagingTableName(table)} IN ACCESS EXCLUSIVE MODE`;
  return colocates(table) ? [`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`, lock] : [lock];
}

/** A column of the staging table as pg_attribute has it (a dropped one keeps its number). */
export interface StagingColumn {
  attname: string;
  type: string;
  attnotnull: boolean;
  attisdropped: boolean;
  /** The table's pg_class.relreplident (the same on every row): 'f' for FULL. */
  replident?: string;
}

/** The staging table's replica identity made FULL (module comment: shard moves). */
export const stagingIdentitySql = (table: ApplyTable): string => `ALTER TABLE ${stagingTableName(table)} REPLICA IDENTITY FULL`;

/** PostgreSQL's MaxHeapAttributeNumber: the column numbers a table may use, dropped columns' included (never reused). */
export const MAX_TABLE_COLUMNS = 1600;

/**
 * The ALTERs that give the shared staging table the target's columns and types, or null when
 * it is to be made anew instead: each column made again for a new type leaves a dropped one
 * behind, and past 1,600 column numbers ADD COLUMN fails (54011 'tables can have at most 1600
 * columns'), which stalled a table near PostgreSQL's limit at its first type change. Pure.
 */
export function stagingColumnChanges(table: ApplyTable, rows: readonly StagingColumn[]): string[] | null {
  const have = new Map(rows.filter((r) => !r.attisdropped).map((r) => [r.attname, r.type]));
  const staging = stagingTableName(table);
  const alters: string[] = [];
  let added = 0;
  for (const c of table.columns) {
    const type = have.get(c.name);
    if (type === undefined) {
      alters.push(`ALTER TABLE ${staging} ADD COLUMN IF NOT EXISTS ${quoteIdent(c.name)} ${c.type}`);
      added++;
    }
    // The target's type changed since the staging table was made (it outlives the sink): COPY
    // into the old type would round a new numeric scale or refuse a widened value. The table
    // holds no committed rows (each batch removes its own), so the column is simply made anew.
    else if (type !== c.type && c.name !== table.distributionColumn) {
      alters.push(`ALTER TABLE ${staging} DROP COLUMN ${quoteIdent(c.name)}, ADD COLUMN ${quoteIdent(c.name)} ${c.type}`);
      added++;
    }
  }
  // A column dropped from the target since the staging table was made could be NOT NULL there.
  const wanted = new Set(table.columns.map((c) => c.name));
  for (const name of have.keys()) {
    if (!wanted.has(name)) alters.push(`ALTER TABLE ${staging} DROP COLUMN IF EXISTS ${quoteIdent(name)}`);
  }
  return rows.length + added > MAX_TABLE_COLUMNS ? null : alters;
}

/**
 * The rest of the preparation's transaction, from the staging table's `layout` (stagingLayout;
 * 'ok' when the target needs no colocated one) and its `columns` read under the lock: made
 * anew (DROP, CREATE … LIKE the target, distributed colocated with it) when laid out for
 * another layout or past 1,600 column numbers, else distributed if not yet and altered; then
 * the NOT NULLs the merge never fills dropped; a distributed one's replica identity made FULL
 * (before it is distributed when made here: no shards to alter). The new table takes the
 * target's shard count through colocate_with. Pure.
 */
export function stagingPrepareSql(table: ApplyTable, layout: 'absent' | 'ok' | 'stale', columns: readonly StagingColumn[]): string[] {
  const alters = layout === 'stale' ? null : stagingColumnChanges(table, columns);
  const distribute = layout === 'ok' && alters !== null ? null : distributeStagingSql(table);
  const identity = colocates(table) ? stagingIdentitySql(table) : null;
  if (alters === null) {
    // Made anew from the target (LIKE): its columns, NOT NULL included, and no dropped ones.
    const nullable = stagingNullableSql(table, table.columns.filter((c) => c.notNull).map((c) => c.name));
    return [`DROP TABLE ${stagingTableName(table)}`, createStagingSql(table), identity, distribute, nullable].filter((s): s is string => s !== null);
  }
  // One made before this (or by an older sink) may have none: altered in place, shards included.
  const missing = identity !== null && columns.length > 0 && columns[0].replident !== 'f' ? identity : null;
  const wanted = new Set(table.columns.map((c) => c.name));
  const nullable = stagingNullableSql(
    table,
    columns.filter((r) => !r.attisdropped && r.attnotnull && wanted.has(r.attname)).map((r) => r.attname),
  );
  return [layout === 'absent' ? missing : null, distribute, ...alters, nullable, layout === 'absent' ? null : missing].filter((s): s is string => s !== null);
}
