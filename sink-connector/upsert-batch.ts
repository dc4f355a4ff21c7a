/**
 * SQL text for applying a collapsed plan: unnest upserts, key deletes (the staging COPY merge:
 * staging-sql.ts), COPY text.
 * Pure; every statement is built once per (table object, column set) and cached.
 *
 * Values travel as text arrays (`$n::text[]`) and are cast to the destination column's
 * type, so each value goes through the type's own input function, exactly as COPY would.
 */
import { SchemaError } from '../shared/errors.ts';
import { tableShape, type ApplyTable, type TableShape } from './sink-change.ts';

type Value = string | null;

export interface BatchStatement {
  text: string;
  /** Columns the bound rows carry, in order. */
  columns: readonly string[];
  /** Row-major values → one text array per column (pg serialises JS arrays as array literals). */
  bind(rows: readonly (readonly Value[])[]): Value[][];
}

import { quoteIdent } from '../shared/sql.ts';

export { quoteIdent, quoteLiteral } from '../shared/sql.ts';

export function qualifiedName(table: { schema: string; name: string }): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/**
 * The type to cast input text to. An explicit cast to `varchar(n)`, `char(n)` or `bit(n)`
 * silently truncates or pads, where assignment (and COPY) raise an error; casting to the
 * unconstrained type lets the INSERT's assignment apply the length check instead. Other
 * typmods (numeric, timestamp precision) round the same way in both, so they stay.
 */
export function castType(type: string): string {
  const m = /^(character varying|character|bit varying|bit)\(\d+\)/.exec(type);
  if (!m) return type;
  const base = m[1] === 'character' ? 'bpchar' : m[1] === 'bit' ? 'bit varying' : m[1];
  return base + type.slice(m[0].length);
}

const cache = new WeakMap<ApplyTable, Map<string, unknown>>();

/**
 * Statements kept per table object. Column sets vary with the unchanged-TOAST columns each row
 * lacks, so a table of many TOASTed columns can make thousands of them over its life, and on a
 * 1,600-column table one upsert is 130 kB of SQL with 5-character names, 590 kB with 63-byte
 * ones (its cache key a sixth of that): unbounded, they grew the sink's heap without end. The
 * least recently used goes first.
 */
export const CACHED_STATEMENTS = 128;

export function cached<T>(table: ApplyTable, key: string, build: (shape: TableShape) => T): T {
  let m = cache.get(table);
  if (!m) {
    m = new Map();
    cache.set(table, m);
  }
  let v = m.get(key) as T | undefined;
  if (v === undefined) {
    v = build(tableShape(table));
    if (m.size >= CACHED_STATEMENTS) m.delete(m.keys().next().value!);
  } else m.delete(key); // re-inserted last: Map order is the recency order
  m.set(key, v);
  return v;
}

export function columnTypes(shape: TableShape, columns: readonly string[]): string[] {
  return columns.map((c) => {
    const t = shape.typeOf.get(c);
    if (t === undefined) {
      throw new SchemaError(`column ${c} is not in destination ${shape.table.schema}.${shape.table.name}`, {
        context: { table: `${shape.table.schema}.${shape.table.name}`, column: c },
      });
    }
    return castType(t);
  });
}

/**
 * Per column, `[column expression, value type]` for comparing `alias.column` with a value cast
 * from text: the column's own type, or where it has no `=` (a domain over an enum) both sides
 * as the type it compares as. The column side's cast is a relabel, which index scans see through.
 */
function compared(shape: TableShape, columns: readonly string[], alias: string): [string, string][] {
  const types = columnTypes(shape, columns);
  return columns.map((c, i) => {
    const as = shape.table.columns[shape.index.get(c)!].compareAs;
    const col = `${alias}${quoteIdent(c)}`;
    return as === undefined ? [col, types[i]] : [`${col}::${as}`, as];
  });
}

/** `t.c = k.c` per column, both sides typed (typedRows): each side as `compared` gives it. */
function matches(shape: TableShape, columns: readonly string[], op: '=' | 'IS DISTINCT FROM'): string[] {
  const t = compared(shape, columns, 't.');
  const k = compared(shape, columns, 'k.');
  return columns.map((_, i) => `${t[i][0]} ${op} ${k[i][0]}`);
}

function textParams(count: number, from = 1): string {
  return Array.from({ length: count }, (_, i) => `$${i + from}::text[]`).join(', ');
}

/**
 * The bound rows as a relation `alias(columns)` whose columns have the destination's types, for
 * UPDATE and DELETE. Citus refuses an UPDATE or DELETE on a distributed table whose SET list or
 * WHERE applies a STABLE function to a column, and the text input of dates, times, enums,
 * domains, ranges and arrays is STABLE ("STABLE functions used in UPDATE queries cannot be
 * called with column references"). So each text array is cast as a parameter, which Citus
 * evaluates once on the coordinator, and the statement compares and sets plain columns. An
 * array column cannot be cast so (unnest would flatten its values): when there is one, the
 * rows are cast in a MATERIALIZED CTE, which Citus sends to the shards whole.
 */
function typedRows(shape: TableShape, columns: readonly string[], alias: string): { with: string; from: string } {
  const types = columnTypes(shape, columns);
  const q = columns.map(quoteIdent);
  const isArray = types.map((t) => t.endsWith(']'));
  const params = types.map((t, i) => (isArray[i] ? `$${i + 1}::text[]` : `$${i + 1}::text[]::${t}[]`)).join(', ');
  const unnest = `unnest(${params}) AS ${alias}(${q.join(', ')})`;
  if (!isArray.includes(true)) return { with: '', from: unnest };
  const cast = q.map((c, i) => (isArray[i] ? `${alias}.${c}::${types[i]} AS ${c}` : `${alias}.${c}`));
  return { with: `WITH ${alias} AS MATERIALIZED (SELECT ${cast.join(', ')} FROM ${unnest}) `, from: alias };
}

function columnBinder(columns: readonly string[]): (rows: readonly (readonly Value[])[]) => Value[][] {
  const n = columns.length;
  return (rows) => {
    const out: Value[][] = new Array(n);
    for (let c = 0; c < n; c++) out[c] = new Array(rows.length);
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      if (row.length !== n) throw new RangeError(`row ${r} has ${row.length} values for ${n} columns`);
      for (let c = 0; c < n; c++) out[c][r] = row[c];
    }
    return out;
  };
}

/** The `ON CONFLICT …` tail: SET every non-key column but the distribution column (Citus refuses setting it). */
export function conflictClause(shape: TableShape, columns: readonly string[]): string {
  const { destKey, distributionColumn } = shape.table;
  const set = columns
    .filter((c) => !destKey.includes(c) && c !== distributionColumn)
    .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
  const target = `ON CONFLICT (${destKey.map(quoteIdent).join(', ')})`;
  return set.length === 0 ? `${target} DO NOTHING` : `${target} DO UPDATE SET ${set.join(', ')}`;
}

export function requireColumns(shape: TableShape, columns: readonly string[], needed: readonly string[], what: string): void {
  for (const c of needed) {
    if (!columns.includes(c)) {
      throw new SchemaError(`${what} needs key column ${c}`, { context: { table: `${shape.table.schema}.${shape.table.name}`, column: c } });
    }
  }
}

/** The source's identity values must be kept, so an ALWAYS identity column needs the override. */
export function overriding(table: ApplyTable): string {
  return table.identityAlways ? 'OVERRIDING SYSTEM VALUE ' : '';
}

/**
 * `INSERT … SELECT … FROM unnest(text arrays) … ON CONFLICT (destKey) DO UPDATE` for the
 * given column set (must include the destination key). One row per key per statement.
 */
export function buildUpsert(table: ApplyTable, columns: readonly string[]): BatchStatement {
  return cached(table, `upsert\u0000${columns.join('\u0000')}`, (shape) => {
    requireColumns(shape, columns, table.destKey, 'an upsert');
    const types = columnTypes(shape, columns);
    const q = columns.map(quoteIdent);
    const text =
      `INSERT INTO ${qualifiedName(table)} (${q.join(', ')}) ${overriding(table)}` +
      `SELECT ${q.map((c, i) => `u.${c}::${types[i]}`).join(', ')} ` +
      `FROM unnest(${textParams(columns.length)}) AS u(${q.join(', ')}) ` +
      conflictClause(shape, columns);
    return { text, columns: [...columns], bind: columnBinder(columns) };
  });
}

/**
 * Delete rows matching the given key columns (the source key, or the destination key for
 * exact deletes). One column: `= ANY(array)`, which Citus prunes on. Several: a join with
 * unnest, plus `distcol = ANY(…)` when the distribution column is among them, because the
 * join alone does not prune and would touch every shard.
 */
export function buildDelete(table: ApplyTable, columns: readonly string[]): BatchStatement {
  return cached(table, `delete\u0000${columns.join('\u0000')}`, (shape) => {
    requireColumns(shape, columns, table.sourceKey, 'a key delete');
    const qn = qualifiedName(table);
    let text: string;
    if (columns.length === 1 && !columnTypes(shape, columns)[0].endsWith(']')) {
      const [[col, type]] = compared(shape, columns, '');
      text = `DELETE FROM ${qn} WHERE ${col} = ANY($1::text[]::${type}[])`;
    } else {
      text = `${deleteUsing(shape, qn, columns)} WHERE ${matches(shape, columns, '=').join(' AND ')}${pruneClause(shape, columns)}`;
    }
    return { text, columns: [...columns], bind: columnBinder(columns) };
  });
}

/**
 * For rows that may have moved (no before-image): delete rows with the source key whose
 * destination-only key columns differ from the new values, sparing the row just upserted.
 * Bound columns: sourceKey, then the destination-only key columns.
 */
export function buildSparingDelete(table: ApplyTable): BatchStatement {
  return cached(table, 'sparing', (shape) => {
    const { columns, where } = elsewhere(shape, 'a sparing delete');
    return { text: `${deleteUsing(shape, qualifiedName(table), columns)} WHERE ${where}`, columns, bind: columnBinder(columns) };
  });
}

/**
 * The source keys among the bound rows that have a row at another place than the bound
 * destination-only key values (the rows a sparing delete would remove). Bound columns as
 * buildSparingDelete's.
 */
export function buildElsewhereQuery(table: ApplyTable): BatchStatement {
  return cached(table, 'elsewhere', (shape) => {
    const { columns, where } = elsewhere(shape, 'a moved-row check');
    const sk = table.sourceKey.map((c) => `k.${quoteIdent(c)}`);
    const rows = typedRows(shape, columns, 'k');
    const text = `${rows.with}SELECT ${sk.join(', ')} FROM ${qualifiedName(table)} AS t, ${rows.from} WHERE ${where}`;
    return { text, columns, bind: columnBinder(columns) };
  });
}

/** Rows `t` with the source key of `k` whose destination-only key columns differ from `k`'s. */
function elsewhere(shape: TableShape, what: string): { columns: string[]; where: string } {
  const { table, destOnly } = shape;
  const sk = table.sourceKey;
  const columns = [...sk, ...destOnly];
  if (destOnly.length === 0) {
    throw new SchemaError(`${what} needs destination key columns beyond the source key`, { context: { table: `${table.schema}.${table.name}` } });
  }
  const match = matches(shape, sk, '=');
  const differs = matches(shape, destOnly, 'IS DISTINCT FROM');
  return { columns, where: `${match.join(' AND ')}${pruneClause(shape, sk)} AND (${differs.join(' OR ')})` };
}

/**
 * `UPDATE … SET <the carried non-key columns> FROM unnest(…) WHERE <destination key>`, for
 * rows whose unchanged-TOAST columns are unknown (collapse.ts, `inPlace`): the row keeps
 * them, and a key with no row at the destination gets none. Never sets a key column (nor so
 * the distribution column); on Citus the distribution column's `= ANY` prunes the shards.
 * Null when the rows carry no column to set.
 */
export function buildUpdateInPlace(table: ApplyTable, columns: readonly string[]): BatchStatement | null {
  return cached(table, `in place\u0000${columns.join('\u0000')}`, (shape) => {
    requireColumns(shape, columns, table.destKey, 'an update in place');
    const { destKey, distributionColumn } = table;
    const set = columns.filter((c) => !destKey.includes(c) && c !== distributionColumn).map((c) => `${quoteIdent(c)} = k.${quoteIdent(c)}`);
    if (set.length === 0) return null;
    const rows = typedRows(shape, columns, 'k');
    const text =
      `${rows.with}UPDATE ${qualifiedName(table)} AS t SET ${set.join(', ')} ` +
      `FROM ${rows.from} ` +
      `WHERE ${matches(shape, columns.filter((c) => destKey.includes(c)), '=').join(' AND ')}${pruneClause(shape, columns)}`;
    return { text, columns: [...columns], bind: columnBinder(columns) };
  });
}

function deleteUsing(shape: TableShape, qn: string, columns: readonly string[]): string {
  const rows = typedRows(shape, columns, 'k');
  return `${rows.with}DELETE FROM ${qn} AS t USING ${rows.from}`;
}

/** `AND t.dist = ANY($i…)` reusing the distribution column's own parameter, when it is matched by equality. */
function pruneClause(shape: TableShape, matched: readonly string[]): string {
  const dist = shape.table.distributionColumn;
  if (shape.table.citus !== 'distributed' || dist === undefined) return '';
  const i = matched.indexOf(dist);
  if (i < 0 || columnTypes(shape, [dist])[0].endsWith(']')) return '';
  const [[col, type]] = compared(shape, [dist], 't.');
  return ` AND ${col} = ANY($${i + 1}::text[]::${type}[])`;
}

export function truncateSql(table: ApplyTable): string {
  return `TRUNCATE ${qualifiedName(table)}`;
}

const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const copyEscape = (ch: string): string => COPY_ESCAPES[ch];

/** A field of COPY text format: `\N` for NULL, backslash escapes for backslash, tab, LF and CR. */
function copyField(v: Value): string {
  if (v === null) return '\\N';
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x5c || c === 0x09 || c === 0x0a || c === 0x0d) return v.replace(COPY_SPECIAL_ALL, copyEscape);
  }
  return v;
}

/**
 * One line of COPY text format without its newline: tab-separated fields. Joined once, not
 * appended field by field: ropes of small strings cost more to build and to flatten.
 */
export function encodeCopyTextLine(values: readonly Value[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) parts[i] = copyField(values[i]);
  return parts.join('\t');
}

const COPY_CHUNK_BYTES = 1 << 20;

/** Rows as COPY text, newline-terminated, joined per ~1 MB (one string per COPY data write). */
export function* copyTextChunks(rows: readonly (readonly Value[])[]): Generator<string> {
  let chunk: string[] = [];
  let size = 0;
  for (const r of rows) {
    const line = encodeCopyTextLine(r);
    chunk.push(line);
    size += line.length + 1;
    if (size >= COPY_CHUNK_BYTES) {
      yield chunk.join('\n') + '\n';
      chunk = [];
      size = 0;
    }
  }
  if (chunk.length > 0) yield chunk.join('\n') + '\n';
}

const ESCAPES = /["\\]/g;

/**
 * Bound columns as `text[]` literals. pg would serialise the JS arrays itself, but with two
 * regex replaces per element; quoting every element here (escaping only when needed) is
 * cheaper on the hot path and always safe (empty strings, "NULL", braces, commas, spaces).
 * Elements are joined once rather than appended one by one (half the time: no long rope of
 * small strings for pg to flatten).
 */
export function arrayLiterals(columns: readonly (readonly (string | null)[])[]): string[] {
  return columns.map((values) => {
    const parts = new Array<string>(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null) parts[i] = 'NULL';
      else if (v.indexOf('"') === -1 && v.indexOf('\\') === -1) parts[i] = '"' + v + '"';
      else parts[i] = '"' + v.replace(ESCAPES, '\\$&') + '"';
    }
    return '{' + parts.join(',') + '}';
  });
}
