/**
 * Rows whose unchanged-TOAST columns no event gave (collapse.ts, `inPlace`) update the row
 * where it is instead of upserting it: an upsert would write NULL into those columns for a
 * row it inserts, and PostgreSQL checks NOT NULL on the proposed row before it looks for the
 * conflict, so a NOT NULL TOASTed column failed every such update although the row existed.
 *
 * A key with no row at the destination gets none: the column values it would need are not
 * known (the source keeps them in TOAST and sent a marker). That happens on a replay past the
 * key's later delete, which re-applies it and converges, or when the destination lost the
 * row; the count is logged. On a table whose destination key has columns the source key
 * lacks, a row found under other values of those (the update moved it) cannot be moved
 * without the unknown values: that stalls, naming the remedy, instead of the sparing delete
 * removing it.
 *
 * A primary-key change under REPLICA IDENTITY DEFAULT arrives as a delete and a create whose
 * unchanged TOASTed values are missing too (PostgreSQL does not send them, and the old key's
 * row may be gone already: it is another key, often another partition). Those created rows
 * are upserted without the values, loudly: NULL there, or a stall naming the remedy when the
 * column is NOT NULL.
 */
import { SinkApplyError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { UpsertGroup } from './collapse.ts';
import { sqlStateOf, type Query } from './destination-errors.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { arrayLiterals, buildElsewhereQuery, buildUpdateInPlace, buildUpsert, qualifiedName } from './upsert-batch.ts';

type Value = string | null;

/** The group's updated rows. Runs before the segment's deletes (a sparing delete would remove a moved row first). */
export async function updateInPlace(q: Query, table: ApplyTable, g: UpsertGroup, logger: Logger): Promise<void> {
  const updated = g.fresh > 0 ? g.rows.slice(g.fresh) : g.rows;
  if (updated.length > 0) await updateRows(q, table, g, updated, logger);
}

/** The group's created rows. Runs after the segment's deletes: a key deleted and created again in it (collapse.ts) is deleted first. */
export async function createInPlaceGroup(q: Query, table: ApplyTable, g: UpsertGroup, logger: Logger): Promise<void> {
  if (g.fresh > 0) await createWithout(q, table, g, g.rows.slice(0, g.fresh), logger);
}

async function updateRows(q: Query, table: ApplyTable, g: UpsertGroup, rows: Value[][], logger: Logger): Promise<void> {
  const columns = g.columns;
  const st = buildUpdateInPlace(table, columns);
  let found = rows.length;
  if (st !== null) found = (await q(st.text, arrayLiterals(st.bind(rows)))).rowCount ?? 0;
  const shape = tableShape(table);
  const name = `${table.schema}.${table.name}`;
  if (shape.destOnly.length > 0 && (st === null || found < rows.length)) {
    const check = buildElsewhereQuery(table);
    const { rows: moved } = await q(check.text, arrayLiterals(check.bind(project(rows, columns, check.columns))));
    if (moved.length > 0) {
      const unknown = g.unchangedToast ?? [];
      const key = table.sourceKey.map((c) => `${c}=${(moved[0] as Record<string, unknown>)[c]}`).join(', ');
      throw new SinkApplyError(
        `an update of ${name} (${key}) moves the row to other ${shape.destOnly.join(', ')} values but leaves TOASTed column(s) ${unknown.join(', ')} unchanged, ` +
          'and no before-image gives their values: the row cannot be moved without them',
        {
          context: { table: name, column: unknown[0] },
          remedy:
            'set REPLICA IDENTITY FULL on the source table, so that updates carry the old values; for this row, put it under its new key at the destination by hand ' +
            `(delete and insert it with the new ${shape.destOnly.join(', ')}), and the sink resumes by itself`,
        },
      );
    }
  }
  if (st !== null && found < rows.length) {
    logger.warn(
      { table: name, rows: rows.length - found },
      `updates leaving TOASTed columns unchanged found no row at the destination: skipped, as their unchanged values are unknown (a replay past the rows' later delete; otherwise compare ${qualifiedName(table)} with the source: shardbridge cutover --verify-only)`,
    );
  }
}

/** Keys a primary-key change created without their unchanged TOASTed values: upserted with what they carry. */
async function createWithout(q: Query, table: ApplyTable, g: UpsertGroup, rows: Value[][], logger: Logger): Promise<void> {
  const columns = g.columns;
  const name = `${table.schema}.${table.name}`;
  const unknown = g.unchangedToast ?? [];
  const st = buildUpsert(table, columns);
  try {
    await q(st.text, arrayLiterals(st.bind(rows)));
  } catch (err) {
    const failed = (err as { column?: string }).column;
    // A NOT NULL column of the destination's own (not one the change left unchanged) fails as any insert would.
    if (sqlStateOf(err) !== '23502' || (failed !== undefined && !unknown.includes(failed))) throw err;
    const key = table.sourceKey.map((c) => `${c}=${rows[0][columns.indexOf(c)]}`).join(', ');
    throw new SinkApplyError(
      `a primary-key change of ${name} (new key ${key}) left TOASTed column(s) ${unknown.join(', ')} unchanged: PostgreSQL does not send their values ` +
        'under REPLICA IDENTITY DEFAULT, and the destination requires them (NOT NULL)',
      {
        context: { table: name, column: failed ?? unknown[0] },
        cause: err,
        remedy:
          'set REPLICA IDENTITY FULL on the source table, so that key changes carry the old values; for this row, insert it at the destination by hand ' +
          'with its values from the source, and the sink resumes by itself',
      },
    );
  }
  logger.warn(
    { table: name, rows: rows.length, columns: unknown },
    'primary-key changes left TOASTed columns unchanged, whose values PostgreSQL does not send under REPLICA IDENTITY DEFAULT: the rows under their new keys have NULL there (set REPLICA IDENTITY FULL on the source table)',
  );
}



/** The rows' values for `want` (a subset of `columns`), in that order. */
function project(rows: readonly Value[][], columns: readonly string[], want: readonly string[]): Value[][] {
  const at = want.map((c) => columns.indexOf(c));
  return rows.map((r) => at.map((i) => r[i]));
}
