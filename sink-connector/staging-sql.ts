/**
 * SQL text for the staging path (snapshot rows, big upsert groups): COPY into a staging table,
 * then one pushed-down merge; and COPY straight into the target. Pure; cached per table object
 * as upsert-batch.ts's statements are.
 */
import { createHash } from 'node:crypto';
import type { ApplyTable } from './sink-change.ts';
import { cached, columnTypes, conflictClause, overriding, qualifiedName, quoteIdent, requireColumns } from './upsert-batch.ts';

// ---- staging path (snapshot rows): COPY into a staging table, then one pushed-down merge.

export const STAGING_SCHEMA = 'shardbridge_staging';

/**
 * Unquoted name of the staging table: `schema__table`. Falls back to a hashed name when
 * that would exceed PostgreSQL's 63-byte identifiers (it would be cut silently) or could
 * be read two ways (a schema ending in `_` or containing `__`).
 */
export function stagingBaseName(table: { schema: string; name: string }): string {
  const plain = `${table.schema}__${table.name}`;
  if (Buffer.byteLength(plain) <= 63 && !/__|_$/.test(table.schema)) return plain;
  const hash = createHash('sha256').update(`${table.schema}\u0000${table.name}`).digest('hex').slice(0, 12);
  // Whole characters: a UTF-16 cut could leave half an emoji, which reaches PostgreSQL as U+FFFD.
  const chars = Array.from(plain);
  let bytes = Buffer.byteLength(plain);
  while (bytes > 50) bytes -= Buffer.byteLength(chars.pop()!);
  return `${chars.join('')}_${hash}`;
}

/** Staging in a temporary table per connection (a destination without Citus). */
export const sessionStaging = (table: ApplyTable): boolean => table.staging === 'session';

/** `shardbridge_staging."schema__table"`, or `pg_temp."schema__table"` for session staging. */
export function stagingTableName(table: ApplyTable): string {
  return cached(table, 'staging', () => `${sessionStaging(table) ? 'pg_temp' : STAGING_SCHEMA}.${quoteIdent(stagingBaseName(table))}`);
}

/**
 * No index or key comes along, so COPY never conflicts. Session staging is made afresh for
 * each table version (its columns follow the target's).
 */
export function createStagingSql(table: ApplyTable): string {
  const like = `(LIKE ${qualifiedName(table)} INCLUDING DEFAULTS)`;
  if (sessionStaging(table)) {
    const nullable = stagingNullableSql(table, table.columns.filter((c) => c.notNull).map((c) => c.name));
    return `DROP TABLE IF EXISTS ${stagingTableName(table)}; CREATE TEMPORARY TABLE ${stagingTableName(table)} ${like} ON COMMIT DELETE ROWS${nullable ? `; ${nullable}` : ''}`;
  }
  return `CREATE TABLE IF NOT EXISTS ${stagingTableName(table)} ${like}`;
}

/**
 * LIKE copies NOT NULL but not identities or generated expressions: a destination column the
 * source lacks (an identity, say) would refuse every staged row, though the merge never
 * writes it (it inserts the carried columns only, where the target's own NOT NULL holds).
 * Key columns are always carried, and a distribution column stays as Citus made it.
 */
export function stagingNullableSql(table: ApplyTable, notNull: readonly string[]): string | null {
  const drop = notNull.filter((c) => !table.destKey.includes(c) && c !== table.distributionColumn);
  if (drop.length === 0) return null;
  return `ALTER TABLE ${stagingTableName(table)} ${drop.map((c) => `ALTER COLUMN ${quoteIdent(c)} DROP NOT NULL`).join(', ')}`;
}

/** `COPY relation (columns) FROM STDIN` in text format (feed it `copyTextChunks`), or in binary (copy-binary.ts). */
const copyFromStdin = (relation: string, columns: readonly string[], binary: boolean): string =>
  `COPY ${relation} (${columns.map(quoteIdent).join(', ')}) FROM STDIN${binary ? ' WITH (FORMAT binary)' : ''}`;

/** COPY into the staging table. */
export function copyIntoStagingSql(table: ApplyTable, columns: readonly string[], binary = false): string {
  return cached(table, `copy\u0000${binary}\u0000${columns.join('\u0000')}`, (shape) => {
    columnTypes(shape, columns);
    return copyFromStdin(stagingTableName(table), columns, binary);
  });
}

/**
 * COPY fresh rows straight into the target (direct-copy.ts): no conflict handling, so a row
 * already there fails it with unique_violation and the batch goes the upsert way instead.
 * COPY writes identity columns as given (like OVERRIDING SYSTEM VALUE); on Citus it is
 * routed to the shards.
 */
export function copyIntoTargetSql(table: ApplyTable, columns: readonly string[], binary = false): string {
  return cached(table, `direct\u0000${binary}\u0000${columns.join('\u0000')}`, (shape) => {
    requireColumns(shape, columns, table.destKey, 'a direct COPY');
    columnTypes(shape, columns);
    return copyFromStdin(qualifiedName(table), columns, binary);
  });
}

/** Upsert the staged rows into the target (same types on both sides: no casts). */
export function mergeFromStagingSql(table: ApplyTable, columns: readonly string[]): string {
  return cached(table, `merge\u0000${columns.join('\u0000')}`, (shape) => {
    requireColumns(shape, columns, table.destKey, 'a staging merge');
    columnTypes(shape, columns);
    const q = columns.map(quoteIdent).join(', ');
    return `INSERT INTO ${qualifiedName(table)} (${q}) ${overriding(table)}SELECT ${q} FROM ${stagingTableName(table)} ${conflictClause(shape, columns)}`;
  });
}

/**
 * Empty the staging table inside the batch transaction. DELETE rather than TRUNCATE: it
 * takes no exclusive lock, so two sink workers sharing one staging table each remove only
 * the rows they can see (their own), and Citus allows it after the parallel merge. The shared
 * table is cleared after each merge; session staging only before a second group of the same
 * transaction is staged (the commit empties it, ON COMMIT DELETE ROWS, which also drops the
 * dead rows: autovacuum cannot reach a temporary table).
 */
export function clearStagingSql(table: ApplyTable): string {
  return `DELETE FROM ${stagingTableName(table)}`;
}
