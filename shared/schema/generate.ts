/**
 * Pure DDL text for `schema copy`: types, sequences, tables (without foreign keys), indexes,
 * key extension, the deferred foreign keys table and the Citus distribution calls. The
 * definitions come from PostgreSQL's own deparsers (format_type, pg_get_expr,
 * pg_get_constraintdef, pg_get_indexdef); only names are rewritten, through the mapping.
 */
import type { ColumnDef, ConstraintDef, IndexDef, PartitionDef, SequenceDef, SequenceOptions, TableDef, TypeDef, ViewDef } from './model.ts';
import { createOwnSchemasSql, quoteIdent, quoteLiteral } from '../sql.ts';

export { quoteIdent, quoteLiteral };
export const qualify = (t: { schema: string; name: string }): string => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;

/** Where `cut-over` finds the foreign keys kept aside: `ALTER TABLE <table_name> ADD CONSTRAINT <constraint_name> <definition>`. */
export const DEFERRED_FK_TABLE = 'shardbridge.deferred_foreign_keys';

export function createSchemaSql(schema: string): string {
  return `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`;
}

export function createTypeSql(t: TypeDef): string {
  if (t.kind === 'enum') return `CREATE TYPE ${qualify(t)} AS ENUM (${t.labels.map(quoteLiteral).join(', ')})`;
  if (t.kind === 'domain') {
    const parts = [`CREATE DOMAIN ${qualify(t)} AS ${t.baseType}`];
    if (t.default !== null) parts.push(`DEFAULT ${t.default}`);
    if (t.notNull) parts.push('NOT NULL');
    for (const c of t.checks) parts.push(`CONSTRAINT ${quoteIdent(c.name)} ${c.definition}`);
    return parts.join(' ');
  }
  throw new Error(`type ${t.schema}.${t.name} (typtype ${t.typtype}) is not created by schema copy`);
}

function sequenceOptions(s: SequenceOptions): string {
  return `START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`;
}

export function createSequenceSql(s: SequenceDef): string {
  return `CREATE SEQUENCE ${qualify(s)} AS ${s.dataType} ${sequenceOptions(s)}`;
}

export function sequenceOwnedBySql(s: SequenceDef, table: { schema: string; name: string }, column: string): string {
  return `ALTER SEQUENCE ${qualify(s)} OWNED BY ${qualify(table)}.${quoteIdent(column)}`;
}

export function setDefaultSql(table: { schema: string; name: string }, column: string, expr: string): string {
  return `ALTER TABLE ${qualify(table)} ALTER COLUMN ${quoteIdent(column)} SET DEFAULT ${expr}`;
}

/** `virtualColumns`: the destination takes VIRTUAL generated columns (PostgreSQL 18, not Citus); else they are made STORED. */
export function columnSql(c: ColumnDef, virtualColumns = false): string {
  const parts = [quoteIdent(c.name), c.type];
  if (c.collation) parts.push(`COLLATE ${c.collation}`);
  if (c.generated !== null) parts.push(`GENERATED ALWAYS AS (${c.generated}) ${c.virtual && virtualColumns ? 'VIRTUAL' : 'STORED'}`);
  else if (c.identity) {
    const seq = c.identitySequence;
    const opts = seq ? ` (SEQUENCE NAME ${qualify(seq)} ${sequenceOptions(seq)})` : '';
    parts.push(`GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${opts}`);
  } else if (c.default !== null) parts.push(`DEFAULT ${c.default}`);
  if (c.notNull) parts.push('NOT NULL');
  return parts.join(' ');
}

/**
 * Columns GENERATED ALWAYS AS IDENTITY outside the primary key: the sink's upserts must set them
 * to the source's values, which PostgreSQL refuses for ALWAYS (only DEFAULT may be written
 * there), so they are made BY DEFAULT until cut-over (cutover reminds to set ALWAYS again). In
 * the key they stay ALWAYS: the sink inserts keys with OVERRIDING SYSTEM VALUE and never updates them. Pure.
 */
export function identityDeferred(t: TableDef): string[] {
  const key = new Set(t.constraints.find((c) => c.type === 'p')?.columns ?? []);
  return t.columns.filter((c) => c.identity === 'a' && c.generated === null && !key.has(c.name)).map((c) => c.name);
}

/** CREATE TABLE with columns and every constraint except foreign keys (kept aside for cut-over). */
/**
 * A check constraint NOT VALID on the source: rows written before it may break it. Left out of
 * CREATE TABLE, which would make it a valid one that refuses those rows when the sink writes
 * them (NOT VALID only spares the rows already there when it is added). Pure.
 */
export const notValidCheck = (c: ConstraintDef): boolean => c.type === 'c' && / NOT VALID$/.test(c.definition);

export function createTableSql(t: TableDef, dest: { schema: string; name: string }, virtualColumns = false): string {
  const deferred = new Set(identityDeferred(t));
  const lines = [
    ...t.columns.map((c) => columnSql(deferred.has(c.name) ? { ...c, identity: 'd' } : c, virtualColumns)),
    ...t.constraints.filter((c) => c.type !== 'f' && !notValidCheck(c)).map((c) => `CONSTRAINT ${quoteIdent(c.name)} ${c.definition}`),
  ];
  return `CREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${qualify(dest)} (\n  ${lines.join(',\n  ')}\n)${partitionBy(t.kind === 'p' ? t.partitionKey : undefined)}`;
}

/**
 * A partition as `PARTITION OF` its parent: the columns, keys, checks and indexes come from the
 * parent. `parent`: the parent's destination name (the partitioned table may be renamed by the
 * sink mapping; its partitions keep their source names).
 */
export function createPartitionSql(p: PartitionDef, parent: { schema: string; name: string }): string {
  return `CREATE ${p.unlogged ? 'UNLOGGED ' : ''}TABLE ${qualify(p)} PARTITION OF ${qualify(parent)} ${p.bound}${partitionBy(p.partitionKey)}`;
}

/** ` PARTITION BY <key>` of a partitioned table or sub-partitioned partition (pg_get_partkeydef), else nothing. */
const partitionBy = (key: string | null | undefined): string => (key ? ` PARTITION BY ${key}` : '');

/** CREATE VIEW from its source definition; `check_option` is a clause, the other options go in WITH. */
export function createViewSql(v: ViewDef): string {
  const check = v.options.find((o) => o.startsWith('check_option='));
  const rest = v.options.filter((o) => o !== check);
  return `CREATE VIEW ${qualify(v)}${rest.length ? ` WITH (${rest.join(', ')})` : ''} AS\n${v.definition}${check ? `\nWITH ${check.slice('check_option='.length).toUpperCase()} CHECK OPTION` : ''}`;
}

/** pg_get_indexdef text aimed at the destination table, with IF NOT EXISTS. */
export function indexSql(idx: IndexDef, t: TableDef, dest: { schema: string; name: string }): string {
  const m = /^CREATE (UNIQUE )?INDEX (.+?) ON (ONLY )?/.exec(idx.definition);
  if (!m) throw new Error(`unexpected index definition: ${idx.definition}`);
  const rest = idx.definition.slice(m[0].length);
  if (!rest.startsWith(`${t.printed} `)) throw new Error(`index ${idx.name} is not on ${t.printed}: ${idx.definition}`);
  // A partitioned table's index prints as ON ONLY; made after the partitions without it, it is
  // made on each of them too (with ONLY it would stay invalid until each partition's were attached).
  const only = t.kind === 'p' ? '' : m[3] ?? '';
  return `CREATE ${m[1] ?? ''}INDEX IF NOT EXISTS ${m[2]} ON ${only}${qualify(dest)}${rest.slice(t.printed.length)}`;
}

/** Does a primary key / unique constraint lack the column (and so needs extending for Citus)? */
export function lacksColumn(c: ConstraintDef, column: string): boolean {
  return (c.type === 'p' || c.type === 'u') && !c.columns.includes(column);
}

/**
 * Does an exclusion constraint not compare the column with `=`? Citus refuses to distribute by
 * such a column (it needs the distribution column compared by equality); not extendable.
 */
export function excludesWithoutColumn(c: ConstraintDef, column: string): boolean {
  return c.type === 'x' && !(c.equalityColumns ?? []).includes(column);
}

/** The most columns a PostgreSQL index (so a primary key or unique constraint) may have: INDEX_MAX_KEYS, fixed at build time. */
export const INDEX_MAX_KEYS = 32;

/**
 * Drop and re-add a primary key or unique constraint with the distribution column appended.
 * INCLUDE / WITH / tablespace clauses of the original are not carried over.
 */
export function extendKeySql(dest: { schema: string; name: string }, c: ConstraintDef, column: string): string {
  if (c.type !== 'p' && c.type !== 'u') throw new Error(`constraint ${c.name} is not a primary key or unique constraint`);
  const kind = c.type === 'p' ? 'PRIMARY KEY' : /^UNIQUE NULLS NOT DISTINCT\b/.test(c.definition) ? 'UNIQUE NULLS NOT DISTINCT' : 'UNIQUE';
  const cols = [...c.columns, column].map(quoteIdent).join(', ');
  return `ALTER TABLE ${qualify(dest)} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${kind} (${cols})`;
}

export const DEFERRED_FK_TABLE_SQL = [
  createOwnSchemasSql('shardbridge'),
  `CREATE TABLE IF NOT EXISTS ${DEFERRED_FK_TABLE} (
  table_name text NOT NULL,
  constraint_name text NOT NULL,
  definition text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, constraint_name)
)`,
];

/**
 * Keep a foreign key aside. `table_name` is the quoted destination name; references to
 * tables the mapping renames are rewritten to their destination names.
 */
export function recordForeignKeySql(dest: { schema: string; name: string }, c: ConstraintDef, renames: Map<string, string>): string {
  const definition = rewriteReferences(c.definition, renames);
  return `INSERT INTO ${DEFERRED_FK_TABLE} (table_name, constraint_name, definition) VALUES (${quoteLiteral(qualify(dest))}, ${quoteLiteral(c.name)}, ${quoteLiteral(definition)}) ON CONFLICT (table_name, constraint_name) DO UPDATE SET definition = EXCLUDED.definition`;
}

/** `REFERENCES <printed source name>(` → `REFERENCES <destination name>(` for renamed tables. */
export function rewriteReferences(definition: string, renames: Map<string, string>): string {
  const m = /\bREFERENCES (.+?)\(/.exec(definition);
  if (!m) return definition;
  const to = renames.get(m[1]);
  return to === undefined ? definition : definition.slice(0, m.index) + `REFERENCES ${to}(` + definition.slice(m.index + m[0].length);
}

export function distributeSql(dest: { schema: string; name: string }, column: string, colocateWith?: { schema: string; name: string }): string {
  const colocate = colocateWith ? `, colocate_with => ${quoteLiteral(qualify(colocateWith))}` : '';
  return `SELECT create_distributed_table(${quoteLiteral(qualify(dest))}, ${quoteLiteral(column)}${colocate})`;
}

export function referenceSql(dest: { schema: string; name: string }): string {
  return `SELECT create_reference_table(${quoteLiteral(qualify(dest))})`;
}
