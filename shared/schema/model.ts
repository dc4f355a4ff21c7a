/**
 * Table definitions as read from a catalog (shared/schema/read.ts), the input of the pure
 * DDL generator. Type names, defaults and definitions are PostgreSQL's own text, printed with
 * an empty search_path so every user object is schema-qualified.
 */

export interface ColumnDef {
  name: string;
  /** `format_type`, e.g. `numeric(12,2)`, `public.mood`, `integer[]`. */
  type: string;
  notNull: boolean;
  /** `pg_get_expr` of the default (absent for identity and generated columns). */
  default: string | null;
  /** `a` ALWAYS / `d` BY DEFAULT identity, or ''. */
  identity: '' | 'a' | 'd';
  /** Identity sequence options, when identity. */
  identitySequence?: SequenceOptions & { schema: string; name: string };
  /** Generated column expression (stored, or virtual when `virtual`). */
  generated: string | null;
  /** A virtual generated column (PostgreSQL 18): computed when read, never stored nor replicated. */
  virtual?: boolean;
  /** Non-default collation, already quoted (`pg_catalog."C"`). */
  collation: string | null;
}

export interface ConstraintDef {
  name: string;
  /** p primary key, u unique, c check, x exclusion, f foreign key. */
  type: 'p' | 'u' | 'c' | 'x' | 'f';
  /** `pg_get_constraintdef`, e.g. `PRIMARY KEY (id)`, `FOREIGN KEY (a) REFERENCES public.t(id)`. */
  definition: string;
  columns: string[];
  /**
   * Exclusion constraints: the columns it compares with an equality operator (a btree `=`), in
   * its order; the only columns Citus counts as holding the distribution column.
   */
  equalityColumns?: string[];
  /** Foreign keys: the referenced table (source names), its columns in order, and the actions. */
  references?: ForeignKeyTarget;
}

/** `confupdtype`/`confdeltype`: a no action, r restrict, c cascade, n set null, d set default. */
export type ForeignKeyAction = 'a' | 'r' | 'c' | 'n' | 'd';

export interface ForeignKeyTarget {
  schema: string;
  table: string;
  columns: string[];
  onUpdate: ForeignKeyAction;
  onDelete: ForeignKeyAction;
}

export interface IndexDef {
  name: string;
  /** `pg_get_indexdef`: `CREATE [UNIQUE] INDEX name ON schema.table USING ...`. */
  definition: string;
  unique: boolean;
  /** Key columns by name (expressions left out). */
  columns: string[];
}

export interface TableDef {
  schema: string;
  name: string;
  /** `schema.table` as PostgreSQL prints it inside definitions (quote_ident rules). */
  printed: string;
  /** r table, p partitioned table. */
  kind: 'r' | 'p';
  /** A partitioned table's `pg_get_partkeydef` (`RANGE (happened_at)`). */
  partitionKey?: string;
  /** A partitioned table's partitions at every level, each after its parent. */
  partitions?: PartitionDef[];
  unlogged: boolean;
  columns: ColumnDef[];
  constraints: ConstraintDef[];
  indexes: IndexDef[];
}

/** A partition, created on the destination as `PARTITION OF` its parent (which holds the columns, keys and indexes). */
export interface PartitionDef {
  schema: string;
  name: string;
  /** The parent's source name: the partitioned table itself, or a partition of it (sub-partitioning). */
  parent: { schema: string; name: string };
  /** `pg_get_expr(relpartbound)`: `FOR VALUES FROM (…) TO (…)`, `DEFAULT`. */
  bound: string;
  /** Set when this partition is partitioned in turn. */
  partitionKey: string | null;
  unlogged: boolean;
}

/** A view (or materialized view) over selected tables. */
export interface ViewDef {
  schema: string;
  name: string;
  kind: 'v' | 'm';
  /** `pg_get_viewdef`, without its closing semicolon, every name schema-qualified. */
  definition: string;
  /** `reloptions` (`security_barrier=true`, `check_option=local`), or none. */
  options: string[];
  /** The relations it reads (tables, views, other relations), by source name. */
  reads: { schema: string; name: string }[];
}

export interface SequenceOptions {
  /** `format_type` of the sequence data type: smallint, integer, bigint. */
  dataType: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

export interface SequenceDef extends SequenceOptions {
  schema: string;
  name: string;
  /** The column owning it (serial), if any. */
  ownedBy: { schema: string; table: string; column: string } | null;
}

export type TypeDef =
  | { kind: 'enum'; schema: string; name: string; labels: string[] }
  | { kind: 'domain'; schema: string; name: string; baseType: string; notNull: boolean; default: string | null; checks: { name: string; definition: string }[] }
  /** Base, composite, range... types we do not create: they must exist on the destination (often from an extension). */
  | { kind: 'other'; schema: string; name: string; typtype: string };

export interface SchemaModel {
  tables: TableDef[];
  /** Views reading the selected tables (absent: none read). */
  views?: ViewDef[];
  /** In dependency order (a domain after the types it is based on). */
  types: TypeDef[];
  sequences: SequenceDef[];
  /** User functions the tables' defaults, generated columns, check constraints and indexes, or the domains' checks, call (absent: none). */
  functions?: FunctionUse[];
}

/** A function outside pg_catalog that a table or domain definition calls: it must exist on the destination before the table is created. */
export interface FunctionUse {
  schema: string;
  name: string;
  /** `schema.name(argument types)`. */
  signature: string;
  /** The extension it belongs to, if any. */
  extension: string | null;
  /** What calls it: `check constraint c of app.t`, `default of app.t.col`, `index app.i`... */
  usedBy: string[];
  /** `schema.name` of the tables and domains whose definitions call it. */
  owners: string[];
}
