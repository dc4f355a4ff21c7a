/**
 * Whether a destination table changed since the sink read its catalog. The sink reads a table's
 * catalog once (table-state.ts) and builds its statements from it; a DBA may alter the table at
 * any time meanwhile. Most changes then fail a statement, but some pass with a different effect:
 * a column made `integer` from `numeric(12,4)` takes the plan's `::numeric(12,4)` value by
 * assignment and rounds it, where a fresh plan (`::integer`) would refuse `1.5678`; a primary key
 * dropped lets a direct COPY insert without any key check. So each batch transaction ends with a
 * check that the tables it wrote still have the catalog digest they were read with (the commit's
 * round trip, no extra one), and a failing batch is checked the same way before it is narrowed
 * down to a stall. A changed table is read afresh and the batch applied again. Pure SQL text.
 */
import { quoteLiteral } from '../shared/sql.ts';
import { qualifiedName } from './upsert-batch.ts';

/**
 * SQL: a digest of what the sink's statements depend on for relation `rel` (an oid expression):
 * each column's name, type, NOT NULL, GENERATED and identity, in order, and the primary key.
 * Types by oid and typmod, not format_type(): that names a type outside the session's
 * search_path with its schema, so two sessions could digest one catalog apart.
 * Null when the relation does not exist. Read with the catalog and compared in every commit.
 *
 * `citus`: also the table's Citus layout (pg_dist_partition: kind, colocation group, distribution
 * column). create_distributed_table, alter_distributed_table (another shard count: another
 * colocation group) and undistribute_table leave the columns and key as they were, so on
 * Citus 13.2 the sink went on with the layout it had read: its staging table a coordinator
 * table beside a distributed target, or colocated with the old group, every merge then going
 * through the coordinator until the sink restarted. Now the batch is applied again with the
 * catalog read afresh, and the staging table follows (staging-layout.ts).
 */
export function catalogDigestSql(rel: string, citus = false): string {
  const layout = citus
    ? ` || coalesce((SELECT ' citus ' || p.partmethod::text || ' ' || p.colocationid::text || ' ' || coalesce(p.partkey, '') FROM pg_dist_partition p WHERE p.logicalrelid = ${rel}), '')`
    : '';
  return (
    `(SELECT md5(string_agg(a.attname || ' ' || a.atttypid::text || ':' || a.atttypmod::text || ' ' || a.attnotnull::text || a.attgenerated::text || a.attidentity::text, ',' ORDER BY a.attnum) ` +
    `|| coalesce((SELECT ' pk ' || i.indkey::text FROM pg_index i WHERE i.indrelid = ${rel} AND i.indisprimary), '')${layout}) ` +
    `FROM pg_attribute a WHERE a.attrelid = ${rel} AND a.attnum > 0 AND NOT a.attisdropped)`
  );
}

export interface DigestedTable {
  schema: string;
  name: string;
  /** catalogDigestSql's value when the catalog was read. */
  digest?: string;
  /** 'shared' on a Citus destination (table-state.ts): the digest then holds the Citus layout. */
  staging?: 'shared' | 'session';
}

/** Marks the error the commit's check raises (an integer cast of this text fails with it in the message). */
export const DRIFT_MARK = 'shardbridge: destination catalog changed since it was read: ';

/** SQL: `schema.name` of each table whose catalog is not the one read (changed, dropped or made anew); null when none has a digest. */
export function catalogDriftSql(tables: readonly DigestedTable[]): string | null {
  const seen = new Set<string>();
  const values: string[] = [];
  for (const t of tables) {
    if (t.digest === undefined) continue;
    const rel = qualifiedName(t);
    if (seen.has(rel)) continue;
    seen.add(rel);
    values.push(`(${quoteLiteral(rel)}, ${quoteLiteral(`${t.schema}.${t.name}`)}, ${quoteLiteral(t.digest)})`);
  }
  if (values.length === 0) return null;
  const citus = tables.some((t) => t.staging === 'shared');
  return (
    `SELECT v.name FROM (VALUES ${values.join(', ')}) AS v(rel, name, digest) CROSS JOIN LATERAL (SELECT to_regclass(v.rel) AS oid) AS r ` +
    `WHERE ${catalogDigestSql('r.oid', citus)} IS DISTINCT FROM v.digest`
  );
}

/**
 * SQL for the commit's round trip: fails (22P02, DRIFT_MARK in the message) when a table's catalog
 * changed, so the statements after it (offset, COMMIT) do not run; '' when nothing is checked.
 * The failing text is built by format(), a stable function: with a constant (the VALUES row's
 * name) the planner would fold `'…' || name)::int` and fail when nothing changed.
 */
export function failOnDriftSql(tables: readonly DigestedTable[]): string {
  const drift = catalogDriftSql(tables);
  return drift === null ? '' : `SELECT format('%s%s', ${quoteLiteral(DRIFT_MARK)}, d.name)::int FROM (${drift}) AS d; `;
}

/** Whether `message` is the commit check's failure. Pure. */
export const isDriftFailure = (message: string): boolean => message.includes(DRIFT_MARK);
