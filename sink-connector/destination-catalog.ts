/**
 * Reads the destination's catalog: Citus presence, and per mapped table its columns with
 * their declared types, primary key and distribution. Read once per table (and again
 * after a schema change, a stall, or a change a batch's check found: catalog-drift.ts), never per row.
 */
import type pg from 'pg';
import type { CitusTableKind } from '../shared/schema/citus-table-kind.ts';
import { LOCAL_TABLE, readCitusTables, type CitusInfo, type CitusTable } from '../shared/schema/citus-catalog.ts';
import { catalogDigestSql } from './catalog-drift.ts';

export interface DestinationTable {
  schema: string;
  name: string;
  exists: boolean;
  /** Columns with `format_type` text, e.g. `numeric(12,2)`, `timestamp with time zone`, `integer[]`. */
  columns: { name: string; type: string; notNull: boolean; identityAlways?: boolean; domain?: boolean; compareAs?: string }[];
  /** GENERATED columns, which take no values (left out of `columns`). */
  generatedColumns?: string[];
  primaryKey: string[];
  /** Columns of every unique constraint or unique index (primary key included). */
  uniqueKeys: string[][];
  citus: CitusTableKind;
  /** Null for every kind but 'distributed'. */
  distributionColumn: string | null;
  /** Foreign keys from this table (name and definition), which per-table apply cannot honour. */
  foreignKeys: { name: string; definition: string }[];
  /** UNLOGGED: a crash of the destination empties it, while the sink's stored offsets stay. */
  unlogged?: boolean;
  /** catalog-drift.ts: what each batch compares to see that the table did not change since this read. */
  digest?: string;
}

// Each query takes every table at once: over thousands of tables (a schema per tenant) one
// round trip per table and query took the sink's start seconds.
const tablesSql = (citus: boolean) => `
SELECT x.i::int AS i, c.oid::int AS oid, c.relpersistence = 'u' AS unlogged, ${catalogDigestSql('c.oid', citus)} AS digest
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(schema, name, i)
  JOIN pg_namespace n ON n.nspname = x.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = x.name AND c.relkind IN ('r', 'p')`;

const TABLES_SQL = tablesSql(false);
const TABLES_SQL_CITUS = tablesSql(true);

const COLUMNS_SQL = `
SELECT a.attrelid::int AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attidentity = 'a' AS identity_always, t.typtype = 'd' AS domain, a.attgenerated <> '' AS generated,
       -- A domain over an enum has no '=' (anyenum matches enums only): its values compare as the enum.
       CASE WHEN t.typtype = 'd' THEN (
         WITH RECURSIVE b AS (SELECT t.typbasetype AS oid UNION ALL SELECT p.typbasetype FROM b JOIN pg_type p ON p.oid = b.oid AND p.typtype = 'd')
         SELECT format_type(e.oid, NULL) FROM b JOIN pg_type e ON e.oid = b.oid AND e.typtype = 'e') END AS compare_as
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`;

const UNIQUE_SQL = `
SELECT i.indrelid::int AS oid, i.indisprimary AS primary, array_agg(a.attname::text ORDER BY k.ord) AS cols
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE k.ord <= i.indnkeyatts AND i.indrelid = ANY($1::oid[]) AND i.indisunique
 GROUP BY i.indrelid, i.indexrelid, i.indisprimary
 ORDER BY i.indrelid, i.indexrelid`;

const FKEYS_SQL = `SELECT conrelid::int AS oid, conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = ANY($1::oid[]) AND contype = 'f' ORDER BY conrelid, conname`;

interface ColumnRow { oid: number; name: string; type: string; not_null: boolean; identity_always: boolean; domain: boolean; generated: boolean; compare_as: string | null }
interface UniqueRow { oid: number; primary: boolean; cols: string[] }
interface ForeignKeyRow { oid: number; name: string; definition: string }

export async function readDestinationTable(client: pg.ClientBase, schema: string, name: string, citus: CitusInfo): Promise<DestinationTable> {
  return (await readDestinationTables(client, [{ schema, name }], citus))[0];
}

/** The catalogs of `tables`, in their order, in five queries whatever their number. */
export async function readDestinationTables(client: pg.ClientBase, tables: readonly { schema: string; name: string }[], citus: CitusInfo): Promise<DestinationTable[]> {
  const { rows: rel } = await client.query(citus.present ? TABLES_SQL_CITUS : TABLES_SQL, [tables.map((t) => t.schema), tables.map((t) => t.name)]);
  const found = new Map<number, { oid: number; unlogged: boolean; digest: string }>(rel.map((r) => [r.i - 1, { oid: r.oid, unlogged: r.unlogged === true, digest: r.digest }]));
  const oids = [...found.values()].map((f) => f.oid);
  const byOid = <R extends { oid: number }>(rows: R[]) => {
    const out = new Map<number, R[]>();
    for (const r of rows) {
      const list = out.get(r.oid);
      if (list) list.push(r);
      else out.set(r.oid, [r]);
    }
    return out;
  };
  // One client runs one query at a time: sequential, not Promise.all (pg deprecates queueing).
  const none = oids.length === 0;
  const cols = byOid(none ? [] : (await client.query<ColumnRow>(COLUMNS_SQL, [oids])).rows);
  const uniq = byOid(none ? [] : (await client.query<UniqueRow>(UNIQUE_SQL, [oids])).rows);
  const fks = byOid(none ? [] : (await client.query<ForeignKeyRow>(FKEYS_SQL, [oids])).rows);
  const dist = citus.present && oids.length > 0 ? await readCitusTables(client, oids) : new Map<number, CitusTable>();
  return tables.map(({ schema, name }, i) => {
    const f = found.get(i);
    if (!f) return { schema, name, exists: false, columns: [], primaryKey: [], uniqueKeys: [], citus: 'local', distributionColumn: null, foreignKeys: [] };
    const c = cols.get(f.oid) ?? [];
    const u = uniq.get(f.oid) ?? [];
    const d = dist.get(f.oid) ?? LOCAL_TABLE;
    return {
      schema,
      name,
      exists: true,
      columns: c.filter((x) => !x.generated).map((x) => ({ name: x.name, type: x.type, notNull: x.not_null, identityAlways: x.identity_always, domain: x.domain, ...(x.compare_as ? { compareAs: x.compare_as } : {}) })),
      generatedColumns: c.filter((x) => x.generated).map((x) => x.name),
      primaryKey: u.find((x) => x.primary)?.cols ?? [],
      uniqueKeys: u.map((x) => x.cols),
      citus: d.kind,
      distributionColumn: d.distributionColumn,
      foreignKeys: (fks.get(f.oid) ?? []).map((x) => ({ name: x.name, definition: x.definition })),
      unlogged: f.unlogged,
      digest: f.digest,
    };
  });
}

export interface KeyFinding {
  level: 'WARN' | 'FAIL';
  message: string;
}

/**
 * Pure: how the destination key relates to the source key. Allowed: equal, or the source
 * key plus the distribution column (the migration guide's rule). Warns where Citus would
 * refuse a constraint that lacks the distribution column.
 */
export function judgeDestinationKey(dest: DestinationTable, sourceKey: string[]): KeyFinding[] {
  const out: KeyFinding[] = [];
  const qn = `${dest.schema}.${dest.name}`;
  if (!dest.exists) return [{ level: 'FAIL', message: `destination table ${qn} does not exist` }];
  if (dest.primaryKey.length === 0) return [{ level: 'FAIL', message: `destination table ${qn} has no primary key` }];
  const missing = sourceKey.filter((c) => !dest.primaryKey.includes(c));
  const extra = dest.primaryKey.filter((c) => !sourceKey.includes(c));
  if (missing.length) {
    out.push({ level: 'FAIL', message: `destination primary key (${dest.primaryKey.join(', ')}) of ${qn} lacks source key column(s) ${missing.join(', ')}` });
  }
  if (extra.length && !(extra.length === 1 && extra[0] === dest.distributionColumn)) {
    out.push({ level: 'FAIL', message: `destination primary key of ${qn} adds ${extra.join(', ')}: only the distribution column may be added to the source key` });
  }
  if (dest.citus === 'distributed' && dest.distributionColumn) {
    for (const u of dest.uniqueKeys) {
      if (!u.includes(dest.distributionColumn)) {
        out.push({ level: 'WARN', message: `unique key (${u.join(', ')}) of ${qn} lacks the distribution column ${dest.distributionColumn}: Citus refuses such constraints` });
      }
    }
  }
  return out;
}

/** Pure: the warning for an UNLOGGED destination table, or null. */
export function unloggedWarning(dest: DestinationTable): { message: string; remedy: string } | null {
  if (!dest.unlogged) return null;
  const qn = `${dest.schema}.${dest.name}`;
  return {
    message: `destination table ${qn} is UNLOGGED: a crash of the destination empties it, while the sink's stored offsets (a logged table) stay, so the rows applied before the crash would not come back`,
    remedy: `ALTER TABLE ${qn} SET LOGGED;  (before cut-over at the latest; after a destination crash meanwhile, replay the topic from offset 0: shardbridge replay)`,
  };
}
