/**
 * Reads the destination's catalog: Citus presence, and per mapped table its columns with
 * their declared types, primary key and distribution. Read once per table (and again
 * after a schema change or a stall), never per row.
 */
import type pg from 'pg';
import type { CitusTableKind } from '../shared/schema/citus-table-kind.ts';
import { LOCAL_TABLE, readCitusTables, type CitusInfo } from '../shared/schema/citus-catalog.ts';

export interface DestinationTable {
  schema: string;
  name: string;
  exists: boolean;
  /** Columns with `format_type` text, e.g. `numeric(12,2)`, `timestamp with time zone`, `integer[]`. */
  columns: { name: string; type: string; notNull: boolean; identityAlways?: boolean; domain?: boolean }[];
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
}

const TABLE_SQL = `
SELECT c.oid, c.relpersistence = 'u' AS unlogged FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

const COLUMNS_SQL = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attidentity = 'a' AS identity_always, t.typtype = 'd' AS domain, a.attgenerated <> '' AS generated
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

const UNIQUE_SQL = `
SELECT i.indisprimary AS primary, array_agg(a.attname::text ORDER BY k.ord) AS cols
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE k.ord <= i.indnkeyatts AND i.indrelid = $1 AND i.indisunique
 GROUP BY i.indexrelid, i.indisprimary`;

const FKEYS_SQL = `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = $1 AND contype = 'f'`;

export async function readDestinationTable(client: pg.ClientBase, schema: string, name: string, citus: CitusInfo): Promise<DestinationTable> {
  const empty: DestinationTable = {
    schema, name, exists: false, columns: [], primaryKey: [], uniqueKeys: [], citus: 'local', distributionColumn: null, foreignKeys: [],
  };
  const { rows: rel } = await client.query(TABLE_SQL, [schema, name]);
  if (rel.length === 0) return empty;
  const oid = Number(rel[0].oid);
  // One client runs one query at a time: sequential, not Promise.all (pg deprecates queueing).
  const cols = await client.query(COLUMNS_SQL, [oid]);
  const uniq = await client.query(UNIQUE_SQL, [oid]);
  const fks = await client.query(FKEYS_SQL, [oid]);
  const dist = citus.present ? (await readCitusTables(client, [oid])).get(oid) ?? LOCAL_TABLE : LOCAL_TABLE;
  return {
    schema,
    name,
    exists: true,
    columns: cols.rows.filter((c) => !c.generated).map((c) => ({ name: c.name, type: c.type, notNull: c.not_null, identityAlways: c.identity_always, domain: c.domain })),
    generatedColumns: cols.rows.filter((c) => c.generated).map((c) => c.name as string),
    primaryKey: uniq.rows.find((u) => u.primary)?.cols ?? [],
    uniqueKeys: uniq.rows.map((u) => u.cols),
    citus: dist.kind,
    distributionColumn: dist.distributionColumn,
    foreignKeys: fks.rows,
    unlogged: rel[0].unlogged === true,
  };
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
