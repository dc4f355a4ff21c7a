/**
 * Pure: `schema copy`'s `--distribute TABLE=COLUMN` and `--reference TABLE` arguments, checked
 * against the selected source tables, each error naming the argument and the name meant.
 */
import { splitQualifiedName } from '../../source-connector/catalog.ts';
import type { TableDef } from './model.ts';

const key = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

/** `--distribute TABLE=COLUMN` / `--reference TABLE` names: `schema.table`, or a table name unique among the selected. */
export function resolveTableArg(arg: string, tables: TableDef[]): { table?: TableDef; error?: string } {
  const hasSchema = splitQualifiedName(arg, '\u0000').schema !== '\u0000';
  const q = splitQualifiedName(arg);
  const hits = tables.filter((t) => t.name === q.table && (!hasSchema || t.schema === q.schema));
  if (hits.length === 1) return { table: hits[0] };
  if (hits.length === 0) {
    // Names are case-sensitive (public.Orders is not public.orders): say which one was meant.
    const lower = (x: string) => x.toLowerCase();
    const near = tables.filter((t) => lower(t.name) === lower(q.table) && (!hasSchema || lower(t.schema) === lower(q.schema)));
    // A partition is created with its table, never selected itself (Citus also refuses to distribute one on its own).
    const root = tables.find((t) => (t.partitions ?? []).some((p) => p.name === q.table && (!hasSchema || p.schema === q.schema)));
    if (root) return { error: `${arg} is a partition of ${key(root)}: name ${key(root)} (its partitions go with it; Citus distributes no partition on its own)` };
    return { error: `${arg} is not among the selected source tables${near.length > 0 ? ` (names are case-sensitive: did you mean ${near.map(key).join(' or ')}?)` : ''}` };
  }
  return { error: `${arg} is ambiguous (${hits.map(key).join(', ')}): give schema.table` };
}

/** Parse and check `--distribute` / `--reference` against the selected tables; errors name the argument. */
export function resolveDistribution(
  distribute: string[],
  reference: string[],
  tables: TableDef[],
): { distribute: { table: string; column: string }[]; reference: string[]; errors: string[] } {
  const errors: string[] = [];
  const dist: { table: string; column: string }[] = [];
  for (const arg of distribute) {
    const eq = arg.lastIndexOf('=');
    if (eq <= 0 || eq === arg.length - 1) {
      errors.push(`--distribute ${arg}: expected TABLE=COLUMN`);
      continue;
    }
    const r = resolveTableArg(arg.slice(0, eq), tables);
    const column = arg.slice(eq + 1);
    if (!r.table) errors.push(`--distribute ${arg}: ${r.error}`);
    else if (!r.table.columns.some((c) => c.name === column)) {
      const near = r.table.columns.find((c) => c.name.toLowerCase() === column.toLowerCase());
      errors.push(`--distribute ${arg}: ${key(r.table)} has no column ${column}${near ? ` (names are case-sensitive: did you mean ${near.name}?)` : ''}`);
    }
    else dist.push({ table: key(r.table), column });
  }
  const ref: string[] = [];
  for (const arg of reference) {
    const r = resolveTableArg(arg, tables);
    if (!r.table) errors.push(`--reference ${arg}: ${r.error}`);
    else if (dist.some((d) => d.table === key(r.table!))) errors.push(`--reference ${arg}: also given to --distribute`);
    else ref.push(key(r.table));
  }
  return { distribute: dist, reference: ref, errors };
}
