/**
 * Pure SQL for comparing a source table with its destination copy: per key range, a row
 * count and an order-free checksum of the text form of every column. The same expressions
 * run on both sides (only the names differ, through the sink's table mapping), so equal
 * data gives equal sums whatever the physical order or the shard layout.
 */
import { quoteIdent } from '../../source-connector/catalog.ts';
import { comparisonCast } from '../checks/type-compat.ts';

export interface VerifyTable {
  source: { schema: string; name: string };
  destination: { schema: string; name: string };
  /** Source key columns, in key order. */
  keyColumns: string[];
  /** Source columns to compare, in a fixed order (keys included). */
  columns: string[];
  /** Source column → destination column, where the sink's mapping renames one. */
  columnMap?: Record<string, string>;
  /** The single key column is int2/int4/int8: split by key quantiles instead of hashing. */
  integerKey?: boolean;
}

/** One side's view of a table: its own names, in the source's column order. */
export interface SideTable {
  schema: string;
  name: string;
  keyColumns: string[];
  columns: string[];
  /** Column → type its values are cast to before their text form is taken (see destinationCasts). */
  casts?: Record<string, string>;
}

/** `casts`: by source column, from destinationCasts; they apply to the destination side. */
export function sideTables(t: VerifyTable, casts: Record<string, string> = {}): { source: SideTable; destination: SideTable } {
  const map = (c: string) => t.columnMap?.[c] ?? c;
  const destination: SideTable = { schema: t.destination.schema, name: t.destination.name, keyColumns: t.keyColumns.map(map), columns: t.columns.map(map) };
  if (Object.keys(casts).length > 0) destination.casts = Object.fromEntries(Object.entries(casts).map(([c, type]) => [map(c), type]));
  return { source: { schema: t.source.schema, name: t.source.name, keyColumns: t.keyColumns, columns: t.columns }, destination };
}

/**
 * Source column → source type, for each compared column whose destination type is a widening
 * that prints differently (real → double precision): the destination value is compared cast
 * back to the source's type. Types as `format_type` prints them, by each side's own names.
 */
export function destinationCasts(t: VerifyTable, sourceTypes: ReadonlyMap<string, string>, destinationTypes: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of t.columns) {
    const s = sourceTypes.get(c);
    const d = destinationTypes.get(t.columnMap?.[c] ?? c);
    const cast = s !== undefined && d !== undefined ? comparisonCast(s, d) : null;
    if (cast) out[c] = cast;
  }
  return out;
}

/**
 * How the key space is cut. `int`: ranges between sampled key quantiles; `bounds` are the
 * lower bounds (inclusive) of ranges 1..n, range 0 is everything below bounds[0].
 * Integer bounds compare the same on both sides; text keys would not (collations differ), so
 * every other key is split by a hash of its text form instead.
 */
export type RangePlan = { kind: 'int'; column: string; bounds: string[] } | { kind: 'hash'; buckets: number };

export function rangeCount(plan: RangePlan): number {
  return plan.kind === 'int' ? plan.bounds.length + 1 : plan.buckets;
}

const qualified = (t: { schema: string; name: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
/** A column as compared: quoted, with its side's cast if any. */
const colExpr = (t: SideTable, c: string) => (t.casts?.[c] ? `${quoteIdent(c)}::${t.casts[c]}` : quoteIdent(c));
const colList = (t: SideTable, cols: string[]) => cols.map((c) => colExpr(t, c)).join(', ');

/** Text form of the key: `ROW(k1, k2)::text`, identical on both sides for equal keys. */
export function keyTextExpr(t: SideTable): string {
  return `ROW(${colList(t, t.keyColumns)})::text`;
}

/** The row checksum term: the first 64 bits of md5(row text) as a signed number (summed as numeric, no overflow). */
export function rowDigestExpr(t: SideTable): string {
  return `('x' || substr(md5(ROW(${colList(t, t.columns)})::text), 1, 16))::bit(64)::bigint::numeric`;
}

/**
 * Hash bucket of a key at a level: level 0 picks the range of a hash plan, levels 1-3 narrow
 * a differing range further. Each level reads its own 32 bits of md5(key text).
 */
export function hashBucketExpr(t: SideTable, level: number, buckets: number): string {
  if (level < 0 || level > 3) throw new RangeError(`hash level ${level} out of 0..3`);
  return `mod(('x' || substr(md5(${keyTextExpr(t)}), ${1 + 8 * level}, 8))::bit(32)::bigint, ${buckets})`;
}

export interface SqlText {
  text: string;
  values: unknown[];
}

/**
 * Source only: the lower bounds of `ranges` key ranges, by `percentile_disc` over the key
 * (or over a block sample when the table is large). Duplicates are removed by the caller.
 */
export function boundsSql(t: SideTable, ranges: number, samplePercent?: number): SqlText {
  const fractions = Array.from({ length: Math.max(0, ranges - 1) }, (_, i) => (i + 1) / ranges);
  const sample = samplePercent !== undefined && samplePercent < 100 ? ` TABLESAMPLE SYSTEM (${Number(samplePercent.toFixed(6))})` : '';
  return {
    text: `SELECT (percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY ${quoteIdent(t.keyColumns[0])}))::text[] AS bounds FROM ${qualified(t)}${sample}`,
    values: [fractions],
  };
}

/** Pure: sorted, distinct, non-null bounds from the percentile array. */
export function cleanBounds(raw: (string | null)[] | null): string[] {
  const vals = (raw ?? []).filter((v): v is string => v !== null).map((v) => BigInt(v));
  const uniq = [...new Set(vals)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return uniq.map(String);
}

/**
 * WHERE-clause for range `index` of a plan, with its parameters numbered from `first`. The
 * first integer range also holds NULL keys (a destination without a primary key may have
 * them): no comparison with a bound would ever count them.
 */
export function rangePredicate(plan: RangePlan, t: SideTable, index: number, first = 1): SqlText {
  if (plan.kind === 'hash') return { text: `${hashBucketExpr(t, 0, plan.buckets)} = ${index}`, values: [] };
  const k = quoteIdent(t.keyColumns[0]);
  const n = plan.bounds.length;
  if (n === 0) return { text: 'true', values: [] };
  if (index === 0) return { text: `(${k} < $${first}::int8 OR ${k} IS NULL)`, values: [plan.bounds[0]] };
  if (index === n) return { text: `${k} >= $${first}::int8`, values: [plan.bounds[n - 1]] };
  return { text: `${k} >= $${first}::int8 AND ${k} < $${first + 1}::int8`, values: [plan.bounds[index - 1], plan.bounds[index]] };
}

/** Human form of range `index`, e.g. `id in [100, 200)`, `id in [-∞, 100) or NULL` or `hash bucket 3 of 16 over (a, b)`. */
export function describeRange(plan: RangePlan, keyColumns: string[], index: number): { from: string | null; to: string | null; text: string } {
  if (plan.kind === 'hash') {
    return { from: null, to: null, text: `hash bucket ${index} of ${plan.buckets} over (${keyColumns.join(', ')})` };
  }
  const n = plan.bounds.length;
  const from = index === 0 ? null : plan.bounds[index - 1];
  const to = index === n ? null : plan.bounds[index];
  const nulls = index === 0 && n > 0 ? ' or NULL' : '';
  return { from, to, text: `${plan.column} in [${from ?? '-∞'}, ${to ?? '+∞'})${nulls}` };
}

/** Count and checksum of the rows matching a predicate: one row (rows, sum). */
export function rangeChecksumSql(t: SideTable, where: SqlText): SqlText {
  return {
    text: `SELECT count(*)::int8::text AS rows, coalesce(sum(${rowDigestExpr(t)}), 0)::text AS sum FROM ${qualified(t)} WHERE ${where.text}`,
    values: where.values,
  };
}

/** Count and checksum per hash bucket (buckets without rows are absent), optionally within a predicate. */
export function bucketChecksumsSql(t: SideTable, level: number, buckets: number, where?: SqlText): SqlText {
  const b = hashBucketExpr(t, level, buckets);
  return {
    text:
      `SELECT ${b} AS bucket, count(*)::int8::text AS rows, sum(${rowDigestExpr(t)})::text AS sum` +
      ` FROM ${qualified(t)}${where ? ` WHERE ${where.text}` : ''} GROUP BY 1`,
    values: where?.values ?? [],
  };
}

/** Every key (as text per key column) with the md5 of its row text, within a predicate. */
export function rowDigestsSql(t: SideTable, where: SqlText): SqlText {
  const keys = t.keyColumns.map((k, i) => `${colExpr(t, k)}::text AS k${i}`).join(', ');
  return {
    text: `SELECT ${keys}, md5(ROW(${colList(t, t.columns)})::text) AS digest FROM ${qualified(t)} WHERE ${where.text}`,
    values: where.values,
  };
}

/** `a AND b`, renumbering b's parameters after a's. */
export function andPredicates(a: SqlText, b: SqlText): SqlText {
  const shift = a.values.length;
  const text = b.text.replace(/\$(\d+)/g, (_m, n: string) => `$${Number(n) + shift}`);
  return { text: `(${a.text}) AND (${text})`, values: [...a.values, ...b.values] };
}

export function bucketPredicate(t: SideTable, level: number, buckets: number, bucket: number): SqlText {
  return { text: `${hashBucketExpr(t, level, buckets)} = ${bucket}`, values: [] };
}
