/**
 * The sink's table mapping applied to source names: where a source table lands on the
 * destination and what its columns are called there. Pure; shared by check, schema copy
 * and verification so all three look at the same destination objects.
 */
import { splitQualifiedName } from '../../source-connector/catalog.ts';
import type { SinkTableMapping } from '../../sink-connector/config.ts';
import type { VerifyTable } from '../verify/sql.ts';

export interface MappedTable {
  source: { schema: string; name: string };
  destination: { schema: string; name: string };
  /** Source column → destination column, only where the mapping renames. */
  columnMap: Record<string, string>;
}

/** Destination of a source table under the sink's `tables` mapping (keys are `schema.table`). */
export function mapTable(source: { schema: string; name: string }, tables: Record<string, SinkTableMapping> = {}): MappedTable {
  const entry = Object.entries(tables).find(([k]) => {
    const q = splitQualifiedName(k);
    return q.schema === source.schema && q.table === source.name;
  })?.[1];
  return {
    source: { schema: source.schema, name: source.name },
    destination: { schema: entry?.schema ?? source.schema, name: entry?.table ?? source.name },
    columnMap: { ...(entry?.columns ?? {}) },
  };
}

export const destColumn = (m: MappedTable, column: string): string => m.columnMap[column] ?? column;

/** What verifyTables needs for a source table with its columns and key. */
export function verifyTableFor(t: { schema: string; name: string; columns: { name: string }[]; keyColumns: string[] }, tables?: Record<string, SinkTableMapping>): VerifyTable {
  const m = mapTable(t, tables);
  return {
    source: m.source,
    destination: m.destination,
    keyColumns: t.keyColumns,
    columns: t.columns.map((c) => c.name),
    columnMap: Object.keys(m.columnMap).length ? m.columnMap : undefined,
  };
}
