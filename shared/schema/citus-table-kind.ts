/**
 * How Citus holds a table, told from its `pg_dist_partition` row the way Citus itself tells
 * it (metadata_cache.c, IsCitusTableTypeInternal): partition method `n` (no distribution
 * column) covers three kinds, told apart by the replication model and colocation group —
 * reference tables (`t`, a copy on every node), single-shard distributed tables (Citus 12's
 * schema-based sharding and `create_distributed_table(t, null)`: one shard in a colocation
 * group) and Citus local tables (colocation 0: the rows stay on the coordinator). Pure.
 */

/** `local`: not in Citus's metadata, or a Citus local table; either way its rows stay on the coordinator. */
export type CitusTableKind = 'distributed' | 'single-shard' | 'reference' | 'local';

export interface DistPartitionRow {
  partmethod: string;
  repmodel: string;
  colocationid: number | string;
}

/** REPLICATION_MODEL_2PC, which only reference tables have. */
const REFERENCE_REPMODEL = 't';

export function citusTableKind(row: DistPartitionRow | undefined): CitusTableKind {
  if (!row) return 'local';
  if (row.partmethod !== 'n') return 'distributed';
  if (row.repmodel === REFERENCE_REPMODEL) return 'reference';
  return Number(row.colocationid) === 0 ? 'local' : 'single-shard';
}

/** For logs and check reports: `distributed by customer_id`, `a reference table (a copy on every node)`, … */
export function describeCitusTable(kind: CitusTableKind, distributionColumn: string | null | undefined): string {
  switch (kind) {
    case 'distributed':
      return `distributed by ${distributionColumn}`;
    case 'single-shard':
      return 'a single-shard distributed table (no distribution column: all its rows in one shard, on one node)';
    case 'reference':
      return 'a reference table (a copy on every node)';
    case 'local':
      return 'local';
  }
}
