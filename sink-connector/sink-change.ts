/**
 * The sink's input contract (one decoded Kafka record) and the description of the
 * destination table that collapse and SQL generation work against. Pure data plus a
 * validated, cached derivation of the table; no I/O.
 */
import { SchemaError } from '../shared/errors.ts';
import type { CitusTableKind } from '../shared/schema/citus-table-kind.ts';

export interface SinkChange {
  op: 'c' | 'u' | 'd' | 'r' | 't';
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string. */
  offset: string;
  /** Source key columns → text (from the Kafka key). */
  key: Record<string, string>;
  /** Row after the change (c/u/r): destination-named columns → text or null. Columns listed in unchangedToast are absent. */
  after: Record<string, string | null> | null;
  /** Row before (u/d): all columns under REPLICA IDENTITY FULL, else null (deletes carry only the key). */
  before: Record<string, string | null> | null;
  unchangedToast: string[];
  /**
   * A tombstone read as a delete of its key (decode.ts): right after the key's `d` it changes
   * nothing (collapse.ts drops it); alone, compaction removed that `d`, and it deletes the key.
   */
  tombstone?: true;
}

export interface ApplyColumn {
  name: string;
  /** `format_type` text, e.g. `numeric(12,2)`, `timestamp with time zone`, `integer[]`. */
  type: string;
  notNull?: boolean;
  /** The type its values compare as, where `type` has no `=` (a domain over an enum: the enum). */
  compareAs?: string;
}

/**
 * A destination table as the sink writes it. Keep one object per table (per schema
 * version): statements are cached on the object's identity.
 */
export interface ApplyTable {
  schema: string;
  name: string;
  /** Destination columns in table order (generated columns left out). */
  columns: ApplyColumn[];
  /** Source key columns, in destination names. */
  sourceKey: string[];
  /** Destination primary key: the source key, possibly plus the distribution column. */
  destKey: string[];
  distributionColumn?: string;
  citus: CitusTableKind;
  /**
   * Where COPY staging goes: 'session' a temporary table per connection (no WAL, emptied at
   * commit; a destination without Citus), 'shared' (default) one table in the staging schema,
   * distributed colocated with a distributed target.
   */
  staging?: 'session' | 'shared';
  /** A column is GENERATED ALWAYS AS IDENTITY: inserts must say OVERRIDING SYSTEM VALUE to keep the source's values. */
  identityAlways?: boolean;
  /** Those columns outside the destination key: no UPDATE (nor ON CONFLICT DO UPDATE) may set them. */
  identityAlwaysSet?: readonly string[];
  /** GENERATED columns of the destination (not in `columns`): a source column of that name cannot be applied. */
  generated?: readonly string[];
  /** The catalog digest this description was built from (catalog-drift.ts); absent: never checked. */
  digest?: string;
}

/** What collapse and the SQL builders derive from an ApplyTable, once per table object. */
export interface TableShape {
  table: ApplyTable;
  /** Column name → position in `table.columns`. */
  index: Map<string, number>;
  /** Column name → `format_type` text. */
  typeOf: Map<string, string>;
  /** Destination key columns the source key lacks (a row can move between their values). */
  destOnly: string[];
  /** For each destKey column: where its value sits in `[...sourceKey, ...destOnly]`. */
  destKeyFrom: number[];
}

const shapes = new WeakMap<ApplyTable, TableShape>();

/** Validated derivation of `table`, cached per object. Throws SchemaError on an inconsistent description. */
export function tableShape(table: ApplyTable): TableShape {
  let shape = shapes.get(table);
  if (!shape) {
    shape = deriveShape(table);
    shapes.set(table, shape);
  }
  return shape;
}

function deriveShape(table: ApplyTable): TableShape {
  const qn = `${table.schema}.${table.name}`;
  const fail = (message: string, column?: string): never => {
    throw new SchemaError(`${message} (destination ${qn})`, { context: { table: qn, column } });
  };
  const index = new Map<string, number>();
  const typeOf = new Map<string, string>();
  table.columns.forEach((c, i) => {
    if (index.has(c.name)) fail(`column ${c.name} listed twice`, c.name);
    index.set(c.name, i);
    typeOf.set(c.name, c.type);
  });
  if (table.sourceKey.length === 0) fail('no source key');
  for (const c of [...table.sourceKey, ...table.destKey]) {
    if (!index.has(c)) fail(`key column ${c} is not a destination column`, c);
  }
  // A destination key without every source key column could merge distinct source rows.
  for (const c of table.sourceKey) {
    if (!table.destKey.includes(c)) fail(`destination key lacks source key column ${c}`, c);
  }
  const dist = table.distributionColumn;
  if (dist !== undefined && !index.has(dist)) fail(`distribution column ${dist} is not a destination column`, dist);
  if (table.citus === 'distributed' && dist === undefined) fail('distributed table without a distribution column');
  const destOnly = table.destKey.filter((c) => !table.sourceKey.includes(c));
  const carried = [...table.sourceKey, ...destOnly];
  const destKeyFrom = table.destKey.map((c) => carried.indexOf(c));
  return { table, index, typeOf, destOnly, destKeyFrom };
}
