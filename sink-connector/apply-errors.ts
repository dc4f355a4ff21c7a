/**
 * Stalls apply.ts raises itself, before a statement runs: a truncate of a destination table that
 * several source tables share, a missing column autoEvolve must not add while a column mapping
 * names no source column. Pure.
 */
import { SinkApplyError } from '../shared/errors.ts';
import type { TableVersion } from './schema-compile.ts';
import type { ApplyTable } from './sink-change.ts';

/** A truncate of one of several source tables merged into one destination table would empty the others' rows too. */
export function sharedTruncateError(v: TableVersion): SinkApplyError {
  const dest = `${v.dest.schema}.${v.dest.name}`;
  const src = `${v.source.schema}.${v.source.table}`;
  const others = v.sources.filter((s) => s !== src);
  return new SinkApplyError(`a truncate of ${src} would empty ${dest}, which also holds the rows of ${others.join(', ')}`, {
    context: { table: dest },
    remedy: `delete ${src}'s rows from ${dest} by hand, then set truncate: ignore in the sink's configuration and restart it (or map ${src} to a table of its own)`,
  });
}

export function unmatchedRenamesError(table: ApplyTable, column: { name: string }, v: TableVersion): SinkApplyError {
  const qn = `${table.schema}.${table.name}`;
  const src = `${v.source.schema}.${v.source.table}`;
  return new SinkApplyError(`column "${column.name}" of relation "${qn}" does not exist, and autoEvolve does not add it while the column mapping of ${src} names ${v.unmatchedRenames.join(', ')}, which ${src} lacks`, {
    context: { table: qn, column: column.name, sqlstate: '42703' },
    remedy: `correct tables."${src}".columns in the sink's configuration (names are case-sensitive) and restart the sink`,
  });
}
