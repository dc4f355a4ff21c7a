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
 */
import { SinkApplyError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { UpsertGroup } from './collapse.ts';
import type { Query } from './destination-errors.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { arrayLiterals, buildElsewhereQuery, buildUpdateInPlace, qualifiedName } from './upsert-batch.ts';

type Value = string | null;

/** Runs before the segment's deletes (a sparing delete would remove a moved row first). */
export async function updateInPlace(q: Query, table: ApplyTable, g: UpsertGroup, logger: Logger): Promise<void> {
  const st = buildUpdateInPlace(table, g.columns);
  let found = g.rows.length;
  if (st !== null) found = (await q(st.text, arrayLiterals(st.bind(g.rows)))).rowCount ?? 0;
  const shape = tableShape(table);
  const name = `${table.schema}.${table.name}`;
  if (shape.destOnly.length > 0 && (st === null || found < g.rows.length)) {
    const check = buildElsewhereQuery(table);
    const { rows } = await q(check.text, arrayLiterals(check.bind(project(g.rows, g.columns, check.columns))));
    if (rows.length > 0) {
      const unknown = table.columns.map((c) => c.name).filter((c) => !g.columns.includes(c));
      const key = table.sourceKey.map((c) => `${c}=${(rows[0] as Record<string, unknown>)[c]}`).join(', ');
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
  if (st !== null && found < g.rows.length) {
    logger.warn(
      { table: name, rows: g.rows.length - found },
      `updates leaving TOASTed columns unchanged found no row at the destination: skipped, as their unchanged values are unknown (a replay past the rows' later delete; otherwise compare ${qualifiedName(table)} with shardbridge verify)`,
    );
  }
}

/** The rows' values for `want` (a subset of `columns`), in that order. */
function project(rows: readonly Value[][], columns: readonly string[], want: readonly string[]): Value[][] {
  const at = want.map((c) => columns.indexOf(c));
  return rows.map((r) => at.map((i) => r[i]));
}
