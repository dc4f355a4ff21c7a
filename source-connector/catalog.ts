/**
 * Reads what the source connector needs from the source catalog, once at start-up (and
 * again for a relation whose Relation message shows a type we have not seen). Never
 * called per row.
 */
import type pg from 'pg';
import type { ColumnInfo, PgTypeInfo, TableInfo } from '../shared/pg-types.ts';
import { identityMismatches, readPartitions } from './partitions.ts';

export interface TableSelection {
  schemas: string[];
  include: string[];
  exclude: string[];
}

export interface ResolvedTables {
  /** Tables whose replica identity the stream cannot key by their primary key (replicaIdentityProblem). */
  badReplicaIdentity: { table: string; message: string; remedy: string }[];
  tables: TableInfo[];
  /** Listed in `include` but not found. */
  missing: string[];
  /** Selected tables that have no primary key (`schema.table`). */
  noPrimaryKey: string[];
}

/** `schema.table`, accepting quoted identifiers: `"My Schema"."T"`. */
export function splitQualifiedName(name: string, defaultSchema = 'public'): { schema: string; table: string } {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (quoted) {
      if (ch === '"' && name[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === '.') {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.length >= 2 ? { schema: parts[0], table: parts.slice(1).join('.') } : { schema: defaultSchema, table: parts[0] };
}

export function qualifiedName(t: { schema: string; name: string }): string {
  return `${t.schema}.${t.name}`;
}

import { quoteIdent } from '../shared/sql.ts';

export { quoteIdent };

export function quoteQualified(t: { schema: string; name: string }): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

const TABLES_SQL = `
SELECT c.oid::int AS relid, n.nspname AS schema, c.relname AS name, c.relreplident AS ident, c.relkind = 'p' AS partitioned
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND (n.nspname = ANY($1::text[]) OR (n.nspname || '.' || c.relname) = ANY($2::text[]))
 ORDER BY n.nspname, c.relname`;

// Generated columns are not sent by pgoutput (PostgreSQL 15), so they are not ours either.
const COLUMNS_SQL = `
SELECT a.attrelid::int AS relid, a.attname AS name, a.atttypid::int AS typeoid, a.atttypmod AS typmod
  FROM pg_attribute a
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attrelid, a.attnum`;

// Each table's primary key and replica-identity index, columns in index order.
const KEY_INDEXES_SQL = `
SELECT i.indrelid::int AS relid, i.indisprimary AS "primary", i.indisreplident AS identity, array_agg(a.attname::text ORDER BY k.ord) AS cols
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE (i.indisprimary OR i.indisreplident) AND i.indrelid = ANY($1::oid[])
 GROUP BY i.indexrelid, i.indrelid, i.indisprimary, i.indisreplident`;

/** Primary key and replica-identity index columns, by table. */
export async function keyIndexes(client: pg.ClientBase, relids: number[]): Promise<{ primary: Map<number, string[]>; identity: Map<number, string[]> }> {
  const { rows } = await client.query(KEY_INDEXES_SQL, [relids]);
  const primary = new Map<number, string[]>();
  const identity = new Map<number, string[]>();
  for (const r of rows) {
    if (r.primary) primary.set(r.relid, r.cols);
    if (r.identity) identity.set(r.relid, r.cols);
  }
  return { primary, identity };
}

/** A table as the catalog shows it now (stream checks against it); null when it is gone. */
export type TableNow = { schema: string; name: string; columns: { name: string; typeoid: number; typmod: number }[] };

/** Name and columns of each table as the client's snapshot sees them (absent: dropped). */
export async function tablesNow(client: pg.ClientBase, relids: number[]): Promise<Map<number, TableNow>> {
  const { rows } = await client.query(
    `SELECT c.oid::int AS relid, n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[])`,
    [relids],
  );
  const out = new Map<number, TableNow>(rows.map((r) => [r.relid, { schema: r.schema, name: r.name, columns: [] }]));
  for (const c of (await client.query(COLUMNS_SQL, [relids])).rows) out.get(c.relid)?.columns.push({ name: c.name, typeoid: c.typeoid, typmod: c.typmod });
  return out;
}

/** Whether `table` (as read at start-up) still has this name and these columns and types. Pure. */
export function sameDefinition(table: TableInfo, now: TableNow | null | undefined): boolean {
  if (!now || now.schema !== table.schema || now.name !== table.name) return false;
  const cols = now.columns;
  return cols.length === table.columns.length && table.columns.every((c, i) => cols[i].name === c.name && cols[i].typeoid === c.type.oid && cols[i].typmod === c.typmod);
}

// Columns with a default or identity: an ADD COLUMN gave the existing rows that value.
const COLUMN_DEFAULTS_SQL = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
       CASE a.attidentity WHEN 'a' THEN 'GENERATED ALWAYS AS IDENTITY' WHEN 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY'
            ELSE pg_get_expr(d.adbin, d.adrelid) END AS "default"
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = $1 AND a.attname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attgenerated = '' AND (d.adbin IS NOT NULL OR a.attidentity <> '')
 ORDER BY a.attnum`;

/** Of `columns`, those with a default or identity (with its expression), as the catalog shows them now. */
export async function columnDefaults(client: pg.ClientBase, relid: number, columns: string[]): Promise<{ column: string; type: string; default: string; notNull: boolean }[]> {
  const { rows } = await client.query(COLUMN_DEFAULTS_SQL, [relid, columns]);
  return rows.map((r) => ({ column: r.name, type: r.type, default: r.default, notNull: r.notNull }));
}

const TYPES_SQL = `
WITH RECURSIVE t(oid) AS (
  SELECT unnest($1::oid[])
  UNION
  SELECT x FROM t JOIN pg_type p ON p.oid = t.oid
    LEFT JOIN pg_range r ON r.rngtypid = p.oid
    CROSS JOIN LATERAL (VALUES (NULLIF(p.typelem, 0)), (NULLIF(p.typbasetype, 0)), (r.rngsubtype)) v(x)
   WHERE x IS NOT NULL
)
SELECT p.oid::int AS oid, n.nspname AS schema, p.typname AS name, p.typtype AS typtype, p.typcategory AS category,
       p.typelem::int AS elem, p.typbasetype::int AS base, r.rngsubtype::int AS subtype
  FROM pg_type p JOIN pg_namespace n ON n.oid = p.typnamespace LEFT JOIN pg_range r ON r.rngtypid = p.oid
 WHERE p.oid IN (SELECT oid FROM t)`;

const IDENT: Record<string, TableInfo['replicaIdentity']> = { d: 'default', f: 'full', i: 'index', n: 'nothing' };

/** Resolve every selected table with columns, key and fully resolved column types. */
export async function resolveTables(client: pg.ClientBase, sel: TableSelection): Promise<ResolvedTables> {
  const include = sel.include.map((n) => splitQualifiedName(n)).map((q) => `${q.schema}.${q.table}`);
  const exclude = new Set(sel.exclude.map((n) => splitQualifiedName(n)).map((q) => `${q.schema}.${q.table}`));
  // With an include list, only those tables; otherwise every table of the listed schemas.
  const schemas = include.length ? [] : sel.schemas;
  const { rows } = await client.query(TABLES_SQL, [schemas, include]);
  const found = rows.filter((r) => !exclude.has(`${r.schema}.${r.name}`));
  const missing = include.filter((q) => !rows.some((r) => `${r.schema}.${r.name}` === q) && !exclude.has(q));
  const relids = found.map((r) => r.relid);
  const cols = await client.query(COLUMNS_SQL, [relids]);
  const keys = await keyIndexes(client, relids);
  const types = await loadTypes(client, [...new Set(cols.rows.map((c) => c.typeoid as number))]);
  const tables: TableInfo[] = found.map((r) => {
    const keyColumns = keys.primary.get(r.relid) ?? [];
    const columns: ColumnInfo[] = cols.rows
      .filter((c) => c.relid === r.relid)
      .map((c) => ({ name: c.name, type: types.get(c.typeoid)!, typmod: c.typmod, isKey: keyColumns.includes(c.name) }));
    return { relid: r.relid, schema: r.schema, name: r.name, columns, keyColumns, replicaIdentity: IDENT[r.ident] ?? 'default', ...(r.partitioned ? { partitioned: true } : {}) };
  });
  // FULL on a partitioned table is FULL only if every partition has it too (partitions.ts).
  const fullParents = tables.filter((t) => t.partitioned && t.replicaIdentity === 'full' && t.keyColumns.length > 0).map((t) => t.relid);
  return {
    tables,
    missing,
    noPrimaryKey: tables.filter((t) => t.keyColumns.length === 0).map(qualifiedName),
    badReplicaIdentity: [
      ...tables.flatMap((t) => replicaIdentityProblem(t, keys.identity.get(t.relid))),
      ...identityMismatches(await readPartitions(client, fullParents)),
    ],
  };
}

/**
 * Pure: a replica identity the stream cannot work with. NOTHING: once the table is published,
 * PostgreSQL refuses the application's UPDATE and DELETE on it. USING INDEX on other columns
 * than the primary key: the stream's changes would be keyed by those columns, the snapshot's
 * rows by the primary key, so one row would have two keys (and partitions).
 */
export function replicaIdentityProblem(t: TableInfo, indexColumns: string[] | undefined): { table: string; message: string; remedy: string }[] {
  const table = qualifiedName(t);
  const fix = `ALTER TABLE ${quoteQualified(t)} REPLICA IDENTITY DEFAULT;  (or FULL)`;
  if (t.keyColumns.length === 0) return [];
  if (t.replicaIdentity === 'nothing') {
    return [{ table, message: `table ${table} has REPLICA IDENTITY NOTHING: once published, the source refuses UPDATE and DELETE on it`, remedy: fix }];
  }
  if (t.replicaIdentity === 'index' && indexColumns) {
    const same = indexColumns.length === t.keyColumns.length && indexColumns.every((c) => t.keyColumns.includes(c));
    if (!same) {
      return [{ table, message: `table ${table} has REPLICA IDENTITY USING INDEX on (${indexColumns.join(', ')}), not its primary key (${t.keyColumns.join(', ')}): its changes would be keyed apart from its snapshot rows`, remedy: fix }];
    }
  }
  return [];
}

/** Load and link type descriptions for the given oids and everything they refer to. */
export async function loadTypes(client: pg.ClientBase, oids: number[]): Promise<Map<number, PgTypeInfo>> {
  const { rows } = await client.query(TYPES_SQL, [oids]);
  return linkTypes(rows);
}

export interface PgTypeRow {
  oid: number;
  schema: string;
  name: string;
  typtype: string;
  category: string;
  elem: number;
  base: number;
  subtype: number | null;
}

/** Pure: turn pg_type rows into linked PgTypeInfo objects. */
export function linkTypes(rows: PgTypeRow[]): Map<number, PgTypeInfo> {
  const out = new Map<number, PgTypeInfo>();
  for (const r of rows) {
    const kind: PgTypeInfo['kind'] =
      r.typtype === 'e' ? 'enum'
      : r.typtype === 'd' ? 'domain'
      : r.typtype === 'r' ? 'range'
      : r.typtype === 'm' ? 'multirange'
      : r.typtype === 'c' ? 'composite'
      : r.typtype === 'p' ? 'pseudo'
      : r.category === 'A' && r.elem ? 'array'
      : 'base';
    out.set(r.oid, { oid: r.oid, schema: r.schema, name: r.name, kind });
  }
  for (const r of rows) {
    const t = out.get(r.oid)!;
    if (t.kind === 'array') t.elem = out.get(r.elem);
    if (t.kind === 'domain') t.base = out.get(r.base);
    if (t.kind === 'range' && r.subtype) t.subtype = out.get(r.subtype);
  }
  return out;
}

export interface TableSequence {
  /** format('%I.%I', schema, name): each part quoted where it needs it, so unambiguous and valid SQL. For display and keys; code uses `sequenceId`. */
  sequence: string;
  sequenceId: { schema: string; name: string };
  /** `schema.table` as the rest of the product shows tables (display only); code uses `tableId`. */
  table: string;
  tableId: { schema: string; name: string };
  column: string;
  /** The role may SELECT or USE it: otherwise pg_sequences shows no value for it. */
  readable: boolean;
}

// Owned sequences (serial, identity) and those a column default calls without owning them
// (`DEFAULT nextval('shared_seq')`): cut-over must move both. One row per sequence, the owner
// first when a sequence is both owned and shared.
const TABLE_SEQUENCES_SQL = `
WITH uses AS (
  SELECT d.objid AS seq, d.refobjid AS tbl, d.refobjsubid AS att, 0 AS pref
    FROM pg_depend d
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.deptype IN ('a', 'i') AND d.refobjid = ANY($1::oid[])
  UNION ALL
  SELECT d.refobjid, ad.adrelid, ad.adnum, 1
    FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
   WHERE ad.adrelid = ANY($1::oid[])
)
SELECT DISTINCT ON (sn.nspname, s.relname)
       format('%I.%I', sn.nspname, s.relname) AS seq, sn.nspname AS seq_schema, s.relname AS seq_name, tn.nspname AS tbl_schema, t.relname AS tbl_name, a.attname AS col,
       has_sequence_privilege(s.oid, 'SELECT,USAGE') AS readable
  FROM uses u
  JOIN pg_class s ON s.oid = u.seq AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = u.tbl
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.att
 ORDER BY sn.nspname, s.relname, u.pref, tn.nspname, t.relname, a.attname`;

/** The sequences the given tables' columns own (serial, bigserial, identity) or call in their defaults. */
export async function tableSequences(client: pg.ClientBase, relids: number[]): Promise<TableSequence[]> {
  const { rows } = await client.query(TABLE_SEQUENCES_SQL, [relids]);
  return rows.map((r) => ({
    sequence: r.seq,
    sequenceId: { schema: r.seq_schema, name: r.seq_name },
    table: `${r.tbl_schema}.${r.tbl_name}`,
    tableId: { schema: r.tbl_schema, name: r.tbl_name },
    column: r.col,
    readable: r.readable,
  }));
}

export interface StandaloneSequence {
  sequence: string;
  sequenceId: { schema: string; name: string };
}

/**
 * Sequences of the given schemas that no table owns and no column default calls: ones the
 * application calls itself (`nextval('invoice_no')`). No table's changes carry them, yet a
 * destination copy of one must not hand out values the source already did.
 */
export async function standaloneSequences(client: pg.ClientBase, schemas: string[]): Promise<StandaloneSequence[]> {
  const { rows } = await client.query(
    `SELECT format('%I.%I', n.nspname, c.relname) AS sequence, n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname = ANY($1::text[])
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
      ORDER BY n.nspname, c.relname`,
    [schemas],
  );
  return rows.map((r) => ({ sequence: r.sequence, sequenceId: { schema: r.schema, name: r.name } }));
}

export interface SequenceFacts {
  /** Last value as decimal text (bigint range); null when never used, or not readable. */
  value: string | null;
  increment: bigint;
  min: bigint;
  max: bigint;
  /** The role may SELECT or USE it: otherwise `value` is null whether or not it was used. */
  readable: boolean;
}

/**
 * Values and bounds of sequences, keyed by their `sequence` text. Matched by (schema, name)
 * pairs, never by a concatenated `schema.name` (a dot in a name would make two sequences one).
 */
export async function sequenceValues(client: pg.ClientBase, seqs: readonly { sequence: string; sequenceId: { schema: string; name: string } }[]): Promise<Map<string, SequenceFacts>> {
  const out = new Map<string, SequenceFacts>();
  if (seqs.length === 0) return out;
  const { rows } = await client.query(
    `SELECT format('%I.%I', n.nspname, c.relname) AS seq, q.seqincrement::text AS inc, q.seqmin::text AS min, q.seqmax::text AS max, r.readable,
            CASE WHEN r.readable THEN pg_sequence_last_value(c.oid)::text END AS v
       FROM unnest($1::text[], $2::text[]) AS w(schema, name)
       JOIN pg_namespace n ON n.nspname = w.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind = 'S'
       JOIN pg_sequence q ON q.seqrelid = c.oid
       CROSS JOIN LATERAL (SELECT has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable) r`,
    [seqs.map((s) => s.sequenceId.schema), seqs.map((s) => s.sequenceId.name)],
  );
  for (const r of rows) {
    out.set(r.seq, { value: r.v, increment: BigInt(r.inc), min: BigInt(r.min), max: BigInt(r.max), readable: r.readable });
  }
  return out;
}

/** Planner's row estimates, for snapshot progress and chunking. */
export async function tableEstimates(client: pg.ClientBase, relids: number[]): Promise<Map<number, { rows: number; pages: number }>> {
  const { rows } = await client.query(
    `SELECT oid::int AS relid, GREATEST(reltuples, 0)::float8 AS rows, relpages::int AS pages FROM pg_class WHERE oid = ANY($1::oid[])`,
    [relids],
  );
  return new Map(rows.map((r) => [r.relid, { rows: Math.round(r.rows), pages: r.pages }]));
}
