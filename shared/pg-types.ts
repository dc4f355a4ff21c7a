/**
 * Shapes shared by the source (type mapping, decoding, snapshot) and the sink
 * (type-aware binding). Pure data: no I/O here.
 */

/** A PostgreSQL type resolved from pg_type once (at start-up or on a new Relation message). */
export interface PgTypeInfo {
  oid: number;
  schema: string;
  /** pg_type.typname, e.g. `int8`, `_int4` for an array, `mood` for an enum. */
  name: string;
  kind: 'base' | 'enum' | 'domain' | 'array' | 'range' | 'multirange' | 'composite' | 'pseudo';
  /** Arrays: the element type. */
  elem?: PgTypeInfo;
  /** Domains: the underlying type. */
  base?: PgTypeInfo;
  /** Ranges: the subtype. */
  subtype?: PgTypeInfo;
}

export interface ColumnInfo {
  name: string;
  type: PgTypeInfo;
  /** atttypmod: -1 when none; numeric(p,s) encodes ((p << 16) | s) + 4. */
  typmod: number;
  /** Part of the primary key / replica identity key. */
  isKey: boolean;
}

export interface TableInfo {
  relid: number;
  schema: string;
  name: string;
  columns: ColumnInfo[];
  /** Key column names in key order. */
  keyColumns: string[];
  replicaIdentity: 'default' | 'full' | 'index' | 'nothing';
  /** A partitioned table: its rows are its partitions' (a plain table's inheritance children are tables of their own). */
  partitioned?: boolean;
}

/**
 * A decoded tuple in column order. `string` is PostgreSQL's text output of the value,
 * `null` is SQL NULL, `undefined` is pgoutput's unchanged-TOAST marker ('u'): the value
 * was not sent and the destination must keep what it has.
 */
export type TextTuple = (string | null | undefined)[];

/** Session settings that make text output uniform on every source connection (snapshot and walsender). */
export const SOURCE_SESSION_SETTINGS: Record<string, string> = {
  DateStyle: 'ISO',
  IntervalStyle: 'iso_8601',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  lc_monetary: 'C',
  // The catalog and snapshot SQL quote names as literals: a backslash in one is not an escape.
  standard_conforming_strings: 'on',
};

/** `options` connection parameter carrying SOURCE_SESSION_SETTINGS. */
export function sourceSessionOptions(user?: string): string {
  const ours = Object.entries(SOURCE_SESSION_SETTINGS)
    .map(([k, v]) => `-c ${k}=${v.replace(/([ \\])/g, '\\$1')}`)
    .join(' ');
  return withUserOptions(user, ours);
}

/**
 * The user's own libpq `options` (the connection URL's `options` parameter) kept, ours after
 * them: a setting given twice takes the later value, so ours hold whatever the user sets.
 */
export function withUserOptions(user: string | undefined, ours: string): string {
  return user ? `${user} ${ours}` : ours;
}
