/**
 * Key columns whose equality is not their bytes and whose Kafka key text cannot be made
 * canonical (shared/type-mapping/key-text.ts does numeric, float and interval): text under a
 * nondeterministic collation (`'A'` = `'a'` under `und-u-ks-level2`), citext, jsonb (`{"a": 1.0}`
 * = `{"a": 1.00}`), unconstrained bpchar (`'a'` = `'a '`), arrays and ranges of numeric, float,
 * interval, jsonb or citext, composite types holding any of these. PostgreSQL logs an update of such a key to an equal value spelled
 * otherwise as a key change: a delete and a create under two Kafka keys, on two partitions, which
 * the sink may apply create first, then delete: the row is lost at the destination
 * (test/integration/key-equality.test.ts measured it for each type). Canonical text would need
 * the collation's own code, so such tables' topics get one partition (kafka-setup.ts), and
 * `check` (and the connector's start) say so.
 */
import type pg from 'pg';
import type { Finding } from './checks.ts';

export interface KeyEqualityFact {
  table: string;
  column: string;
  /** format_type, with the collation when it is the reason. */
  type: string;
  /** Why equal values can be spelled apart, with an example. */
  why: string;
}

// Key columns of the selected tables, by primary key; domains resolved to their base type
// (whose collation attcollation already gives). Nondeterministic collations exist from 12 on.
const KEY_EQUALITY_SQL = `
WITH RECURSIVE keycols AS (
  SELECT c.oid AS relid, n.nspname || '.' || c.relname AS tbl, a.attname AS col, a.attnum, a.atttypmod, a.attcollation,
         format_type(a.atttypid, a.atttypmod) AS shown, a.atttypid AS typ, 0 AS depth
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey[0:i.indnkeyatts - 1])
   WHERE i.indisprimary AND i.indrelid = ANY($1::oid[])
  UNION ALL
  SELECT k.relid, k.tbl, k.col, k.attnum, t.typtypmod, k.attcollation, k.shown, t.typbasetype, k.depth + 1
    FROM keycols k JOIN pg_type t ON t.oid = k.typ WHERE t.typtype = 'd' AND k.depth < 32
), walk AS (
  -- Every type inside a key column's type (domains, array elements, range subtypes, composite
  -- attributes, at any depth), \`inside\` once a composite's attribute was passed.
  SELECT k.tbl, k.attnum, k.typ, k.attcollation AS coll, k.atttypmod AS typmod, false AS inside, 0 AS depth FROM keycols k WHERE k.depth = 0
  UNION ALL
  SELECT w.tbl, w.attnum, x.child, x.coll, x.typmod, w.inside OR x.composite, w.depth + 1
    FROM walk w JOIN pg_type wt ON wt.oid = w.typ
    CROSS JOIN LATERAL (
      SELECT a.atttypid AS child, a.attcollation AS coll, a.atttypmod AS typmod, true AS composite FROM pg_attribute a
       WHERE wt.typtype = 'c' AND a.attrelid = wt.typrelid AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL SELECT wt.typelem, w.coll, w.typmod, false WHERE wt.typcategory = 'A' AND wt.typelem <> 0
      UNION ALL SELECT wt.typbasetype, w.coll, wt.typtypmod, false WHERE wt.typtype = 'd'
      UNION ALL SELECT r.rngsubtype, r.rngcollation, -1, false FROM pg_range r WHERE r.rngtypid = wt.oid OR r.rngmultitypid = wt.oid
    ) x
   WHERE w.depth < 32
), composite AS (
  SELECT w.tbl, w.attnum,
         array_agg(DISTINCT CASE WHEN coalesce(NOT co.collisdeterministic, false) THEN 'collation ' || co.collname ELSE t.typname::text END) AS inner_types
    FROM walk w JOIN pg_type t ON t.oid = w.typ LEFT JOIN pg_collation co ON co.oid = w.coll
   WHERE w.inside AND (coalesce(NOT co.collisdeterministic, false) OR t.typname IN ('numeric', 'float4', 'float8', 'interval', 'jsonb', 'citext') OR (t.typname = 'bpchar' AND w.typmod < 0))
   GROUP BY 1, 2
)
SELECT k.tbl AS "table", k.col AS "column", k.shown AS type, t.typname AS base, t.typcategory AS category, k.atttypmod AS typmod,
       coalesce(NOT co.collisdeterministic, false) AS nondeterministic, co.collname AS collation,
       coalesce(e.typname, s.typname) AS inner_base, c.inner_types AS composite_inner
  FROM keycols k
  JOIN pg_type t ON t.oid = k.typ AND t.typtype <> 'd'
  LEFT JOIN pg_collation co ON co.oid = k.attcollation
  LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN pg_range r ON r.rngtypid = t.oid OR r.rngmultitypid = t.oid
  LEFT JOIN pg_type s ON s.oid = r.rngsubtype
  LEFT JOIN composite c ON c.tbl = k.tbl AND c.attnum = k.attnum
 ORDER BY 1, k.attnum`;

interface KeyColumnRow {
  table: string;
  column: string;
  type: string;
  base: string;
  category: string;
  typmod: number;
  nondeterministic: boolean;
  collation: string | null;
  inner_base: string | null;
  /** Inside a composite type (at any depth): the types (or `collation <name>`) whose equal values differ in their bytes. */
  composite_inner: string[] | null;
}

const INNER_WHY: Record<string, string> = {
  numeric: "numeric elements or bounds: 1.0 = 1.00",
  float4: 'float elements or bounds: -0 = 0',
  float8: 'float elements or bounds: -0 = 0',
  interval: "interval elements or bounds: '1 day' = '24 hours'",
  jsonb: 'jsonb elements: numbers compare by value',
  citext: "citext elements: 'A' = 'a'",
};

/** Pure: why the column's equal values can differ in their bytes, or null. */
export function keyEqualityWhy(r: Omit<KeyColumnRow, 'table' | 'column' | 'type'>): string | null {
  if (r.nondeterministic) return `nondeterministic collation ${r.collation}: values it counts equal (such as 'A' and 'a' under a case-insensitive one) differ in their bytes`;
  if (r.base === 'citext') return "citext: 'A' = 'a'";
  if (r.base === 'jsonb') return 'jsonb: numbers compare by value, {"a": 1.0} = {"a": 1.00}';
  if (r.base === 'bpchar' && r.typmod < 0) return "bpchar without a length: trailing spaces do not count, 'a' = 'a '";
  if (r.inner_base !== null && INNER_WHY[r.inner_base]) return INNER_WHY[r.inner_base];
  if (r.composite_inner && r.composite_inner.length > 0) {
    return `a composite type with ${r.composite_inner.join(', ')} inside: values equal field by field can differ in their bytes (such as (1.0) and (1.00))`;
  }
  return null;
}

export async function gatherKeyEquality(client: pg.ClientBase, relids: number[], serverVersionNum: number): Promise<KeyEqualityFact[]> {
  if (relids.length === 0) return [];
  const sql = serverVersionNum >= 120000 ? KEY_EQUALITY_SQL : KEY_EQUALITY_SQL.replaceAll('coalesce(NOT co.collisdeterministic, false)', 'false');
  const { rows } = await client.query<KeyColumnRow>(sql, [relids]);
  const out: KeyEqualityFact[] = [];
  for (const r of rows) {
    const why = keyEqualityWhy(r);
    if (why !== null) out.push({ table: r.table, column: r.column, type: r.nondeterministic ? `${r.type} COLLATE ${r.collation}` : r.type, why });
  }
  return out;
}

/** Pure: one WARN per table with such key columns. */
export function keyEqualityFindings(facts: KeyEqualityFact[], topicPrefix: string): Finding[] {
  const byTable = new Map<string, KeyEqualityFact[]>();
  for (const f of facts) byTable.set(f.table, [...(byTable.get(f.table) ?? []), f]);
  return [...byTable].map(([table, cols]) => ({
    level: 'WARN' as const,
    check: 'key equality',
    object: table,
    message:
      `key column(s) ${cols.map((c) => `${c.column} (${c.type}; ${c.why})`).join(', ')}: an update of the key to an equal value spelled otherwise is sent as a delete and a create under ` +
      `two Kafka keys, which can land on two partitions and be applied create first: the row is then lost at the destination`,
    remedy:
      `the source makes the topic ${topicPrefix}.${table} with one partition, which keeps such changes in order; a topic made earlier with more keeps them ` +
      `(delete it and start again from a new snapshot if the key of ${table} can change so: a case change of a case-insensitive key, for one); verify at cut-over (docs/source-connector.md, "Limits")`,
  }));
}
