/**
 * schema copy's views: which views over the selected tables it creates (last, after the tables
 * are distributed) and which it names in a note, and on Citus the views that stay on the
 * coordinator only. Pure.
 */
import type { CitusLayout } from './citus-foreign-keys.ts';
import { createViewSql } from './generate.ts';
import type { SchemaModel, TableDef } from './model.ts';
import type { DestinationState, Step } from './plan.ts';

const key = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

/**
 * Views over the selected tables that the destination lacks: created when everything they read is
 * there under the same name (a selected table, a relation the destination has, a view this plan makes);
 * otherwise a note names them, as a materialized view (its data would be stale at cut-over). Without
 * this the application met a missing view after cut-over, and no command had said so.
 */
export function planViews(model: SchemaModel, dest: DestinationState, destOf: (t: TableDef) => { schema: string; name: string }, notes: string[]): PlannedView[] {
  const tables = new Map(model.tables.map((t) => [key(t), t]));
  const made = new Set<string>();
  const out: PlannedView[] = [];
  for (const v of model.views ?? []) {
    if (dest.relations?.has(key(v)) || dest.tables.has(key(v))) continue;
    const dump = `pg_dump --schema-only -t '${key(v)}' of the source`;
    if (v.kind === 'm') {
      notes.push(`materialized view ${key(v)} reads the migrated tables and is not created: create it on the destination (${dump}) and REFRESH it once the data is there`);
      continue;
    }
    const renamed = v.reads.filter((r) => tables.has(key(r)) && key(destOf(tables.get(key(r))!)) !== key(r));
    const missing = v.reads.filter((r) => !tables.has(key(r)) && !dest.relations?.has(key(r)) && !made.has(key(r)));
    if (renamed.length || missing.length) {
      const why = renamed.length
        ? `reads ${renamed.map(key).join(', ')}, which the sink mapping renames`
        : `also reads ${missing.map(key).join(', ')}, not migrated and not on the destination`;
      notes.push(`view ${key(v)} ${why}: not created; create it on the destination by hand if the application uses it (${dump})`);
      continue;
    }
    made.add(key(v));
    out.push({ schema: v.schema, reads: v.reads.map(key), step: { phase: 'views', action: 'create view', object: key(v), sql: [createViewSql(v)] } });
  }
  return out;
}

export interface PlannedView {
  schema: string;
  /** What it reads, as `schema.name` on the source. */
  reads: string[];
  step: Step;
}

/**
 * Citus (11.0 on, which propagates views) creates a view reading a table outside its metadata on
 * the coordinator only (WARNING `"view …" has dependency to "table …" that is not in Citus'
 * metadata`, DETAIL `… will be created only locally`: dependency.c,
 * DeferErrorIfHasUnsupportedDependency), and a query through a worker then finds no such view.
 * A Citus local table is in its metadata (marked distributed, citus_add_local_table_to_metadata.c):
 * a view over it is created on every node, so it is no reason for the note.
 */
export function viewsOverLocalTables(views: PlannedView[], layouts: Map<string, CitusLayout>, citusLocal: ReadonlySet<string>): string[] {
  return views.flatMap(({ reads, step }) => {
    const local = reads.filter((r) => layouts.get(r)?.kind === 'local' && !citusLocal.has(r));
    return local.length
      ? [`view ${step.object} reads ${local.join(', ')}, which stays a local table: Citus creates the view on the coordinator only (a query sent to a worker does not find it); distribute or reference ${local.length === 1 ? 'that table' : 'those tables'} to have it on every node`]
      : [];
  });
}
