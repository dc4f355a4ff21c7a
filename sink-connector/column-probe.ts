/**
 * The column behind a stall whose error names none. PostgreSQL reports a value a column type
 * refuses (22001 too long, 22P02 bad input, 22003 out of range, 22007/22008 datetime, a domain's
 * check) without the column, and a table's check constraint (23514) by its own name: over a
 * wide table the operator is left guessing. On the stall path only, once per distinct stall,
 * the stalled record's values are probed against the destination column types: the length
 * checks an INSERT's assignment adds are done here (pure), the casts the apply makes
 * (`$n::text::type`, upsert-batch.ts castType) in one statement (of at most 1,000: PROBE_CASTS),
 * then in halves of it to the first column that fails (1 + log2(columns) round trips, outside
 * any transaction). An array
 * column's elements are probed alike (one-dimensional arrays): the element lengths here, the
 * element that fails the cast in halves of the elements. A probe that fails or finds nothing
 * leaves the stall as it was.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { formatTypeName } from '../shared/type-mapping/index.ts';
import { parseArray1D } from '../shared/type-mapping/arrays.ts';
import { withPooledClient } from './destination-errors.ts';
import type { DecodedRecord } from './decode.ts';
import { tpKey } from './offsets.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { remedyFor, type StallInfo } from './stall.ts';
import type { TableStates } from './table-state.ts';
import { castType, qualifiedName, quoteIdent } from './upsert-batch.ts';

/** A value of the stalled record and the destination column it goes to. */
export interface ProbedValue {
  column: string;
  /** The destination column's `format_type` text. */
  type: string;
  value: string;
  /** The source column's type, when the record's schema carries it. */
  sourceType?: string;
}

/** What the probe found about one column. */
export interface ColumnFinding {
  column: string;
  type: string;
  sqlstate: string;
  /** e.g. `column note (character varying(5)) cannot hold a value of 12 characters`. */
  text: string;
  /** The statement that lets the column take the value, when one is known. */
  alter?: string;
}

/** Whether a stall's error is one the probe can name the column of. Pure. */
export function wantsColumn(info: Pick<StallInfo, 'reason' | 'column' | 'sqlstate'>): boolean {
  if (info.reason !== 'apply' || info.column !== undefined || info.sqlstate === undefined) return false;
  return info.sqlstate.startsWith('22') || info.sqlstate === '23514';
}

const LENGTH_TYPE = /^(character varying|character|bit varying|bit)\((\d+)\)$/;

/** Bits a bit-string literal spells: `x1F` 4 per digit, `b0101` or `0101` 1 per digit. */
function bitLength(value: string): number {
  if (/^[xX]/.test(value)) return (value.length - 1) * 4;
  return /^[bB]/.test(value) ? value.length - 1 : value.length;
}

/**
 * The length check an INSERT's assignment to `varchar(n)`, `char(n)`, `bit(n)` or
 * `varbit(n)` makes (the apply casts to the unconstrained type first: castType), as
 * PostgreSQL makes it: characters past n must all be spaces; bit(n) takes exactly n bits.
 * And a NUL byte, which no text value can hold (the probe could not even send it). Pure.
 */
export function valueProblem(v: ProbedValue): { sqlstate: string; what: string } | undefined {
  if (v.value.includes('\u0000')) return { sqlstate: '22021', what: 'a value with a NUL byte (0x00), which no PostgreSQL text value can hold' };
  const elements = arrayElements(v);
  if (elements) {
    // The assignment checks each element's length as it would a column's.
    if (!LENGTH_TYPE.test(elements.type)) return undefined;
    for (const e of elements.values) {
      const p = valueProblem(e);
      if (p) return { sqlstate: p.sqlstate, what: `${p.what.replace(/^a value/, 'an element')} (${e.column})` };
    }
    return undefined;
  }
  const m = LENGTH_TYPE.exec(v.type);
  if (!m) return undefined;
  const n = Number(m[2]);
  if (m[1] === 'bit' || m[1] === 'bit varying') {
    const bits = bitLength(v.value);
    if (m[1] === 'bit' ? bits !== n : bits > n) return { sqlstate: m[1] === 'bit' ? '22026' : '22001', what: `a value of ${bits} bits` };
    return undefined;
  }
  const chars = Array.from(v.value);
  if (chars.length > n && chars.slice(n).some((c) => c !== ' ')) return { sqlstate: '22001', what: `a value of ${chars.length} characters` };
  return undefined;
}

/**
 * The elements of an array column's value, each as a value of the element type, named by its
 * place (`element 2 of 3`); NULLs left out. Undefined for a column that is not an array, or a
 * value that is not a plain one-dimensional array literal (a multi-dimensional one is cast whole). Pure.
 */
export function arrayElements(v: ProbedValue): { type: string; values: ProbedValue[] } | undefined {
  const m = /^(.+?)((?:\[\])+)$/.exec(v.type);
  if (!m || m[2] !== '[]') return undefined;
  // box is the one built-in type whose elements ';' separates; its values have no length to check.
  const items = parseArray1D(v.value, m[1] === 'box' ? ';' : ',');
  if (!items) return undefined;
  const values: ProbedValue[] = [];
  items.forEach((value, i) => {
    if (value !== null) values.push({ column: `element ${i + 1} of ${items.length}`, type: m[1], value });
  });
  return { type: m[1], values };
}

/** The type to widen a column to: the source's; for a length, the unbounded type (of the elements, for an array). Pure. */
function widerType(v: ProbedValue): string | undefined {
  if (v.sourceType && v.sourceType !== v.type) return v.sourceType;
  const m = /^(character varying|character|bit varying|bit)\(\d+\)((?:\[\])*)$/.exec(v.type);
  if (m) return (m[1] === 'character varying' || m[1] === 'character' ? 'text' : 'bit varying') + m[2];
  return undefined;
}

/**
 * Failures no column type can help: a NUL byte (22021) no text value holds, a character the
 * database's encoding has no code for (22P05: a LATIN1 database refuses it in any type).
 */
const NOT_THE_TYPE = new Set(['22021', '22P05']);

/** A finding for `v` failing with `sqlstate`: `what` the value is, or the probe's own message. Pure. */
export function findingFor(table: { schema: string; name: string }, v: ProbedValue, sqlstate: string, what: string): ColumnFinding {
  const to = NOT_THE_TYPE.has(sqlstate) ? undefined : widerType(v);
  return {
    column: v.column,
    type: v.type,
    sqlstate,
    text: `column ${v.column} (${v.type}) cannot hold ${what}`,
    ...(to ? { alter: `ALTER TABLE ${qualifiedName(table)} ALTER COLUMN ${quoteIdent(v.column)} TYPE ${to}` } : {}),
  };
}

/** One statement casting each value as the apply does: `SELECT $1::text::integer, …`. Pure. */
export function castProbeSql(values: readonly ProbedValue[]): string {
  return `SELECT ${values.map((v, i) => `$${i + 1}::text::${castType(v.type)}`).join(', ')}`;
}

/** The stall with the column found: named in its column, its message's finding and, unless the error brought its own, its remedy. Pure. */
export function withFinding(info: StallInfo, f: ColumnFinding): StallInfo {
  const generic = info.remedy === remedyFor(info);
  const named: StallInfo = { ...info, column: f.column, finding: f.text };
  if (!generic) return named;
  if (f.alter) named.remedy = `${f.alter}; the partition resumes by itself`;
  else if (f.sqlstate === '22021') named.remedy = `a text column cannot hold a NUL byte: make ${f.column} bytea, or remove the NUL bytes at the source`;
  // The stall's own remedy for the encoding, whatever the stall's SQLSTATE (the probe met it first).
  else if (f.sqlstate === '22P05') named.remedy = remedyFor({ ...named, sqlstate: '22P05' });
  else named.remedy = remedyFor(named);
  return named;
}

/** The stalled record's values the destination has columns for, in the table's column order (nulls cannot fail a cast). Pure. */
export function probedValues(record: DecodedRecord, table: ApplyTable): ProbedValue[] {
  const change = record.change;
  const values: Record<string, string | null> = change.after ?? { ...change.before, ...change.key };
  const sourceTypes = new Map(record.table.columns.map((c) => [c.name, c.pgType === null ? undefined : (formatTypeName(c.pgType) ?? undefined)]));
  const out: ProbedValue[] = [];
  for (const c of table.columns) {
    const value = values[c.name];
    if (value === undefined || value === null) continue;
    const sourceType = sourceTypes.get(c.name);
    out.push({ column: c.name, type: tableShape(table).typeOf.get(c.name)!, value, ...(sourceType ? { sourceType } : {}) });
  }
  return out;
}

type Run = (sql: string, params: unknown[]) => Promise<pg.QueryResult>;

/** A database error (it has a SQLSTATE and a severity): the probe's answer, where anything else is its failure. */
function databaseError(err: unknown): { code: string; message: string } | undefined {
  const e = err as { code?: unknown; severity?: unknown; message?: string };
  return typeof e?.code === 'string' && typeof e.severity === 'string' ? { code: e.code, message: e.message ?? '' } : undefined;
}

/**
 * Casts per probe statement: a SELECT takes at most 1,664 entries (PostgreSQL's
 * MaxTupleAttributeNumber; a statement 65,535 parameters). An array of more elements than
 * that failed every statement with 54011, which the halving took for the cast's error: it
 * named element 1,665 of any longer array.
 */
export const PROBE_CASTS = 1000;

/**
 * The first of `values` whose cast fails, and how: statements of up to PROBE_CASTS casts in
 * turn, and within the first that fails, halves of its prefix, each run on its own outside
 * any transaction.
 */
export async function firstFailingCast(run: Run, values: readonly ProbedValue[]): Promise<{ index: number; code: string; message: string } | undefined> {
  const failure = async (from: number, to: number) => {
    try {
      await run(castProbeSql(values.slice(from, to)), values.slice(from, to).map((v) => v.value));
      return undefined;
    } catch (err) {
      const e = databaseError(err);
      if (!e) throw err;
      return e;
    }
  };
  for (let from = 0; from < values.length; from += PROBE_CASTS) {
    const to = Math.min(values.length, from + PROBE_CASTS);
    let failed = await failure(from, to);
    if (!failed) continue;
    // The casts from `from` to `lo` pass, those to `hi` fail: the value at hi - 1 fails, with the error of prefix hi.
    let lo = from;
    let hi = to;
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      const f = await failure(from, mid);
      if (f) {
        hi = mid;
        failed = f;
      } else lo = mid;
    }
    return { index: hi - 1, ...failed };
  }
  return undefined;
}

const CHECK_COLUMNS_SQL = `
SELECT a.attname AS name
  FROM pg_constraint c
  JOIN pg_class r ON r.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = r.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
 WHERE n.nspname = $1 AND r.relname = $2 AND c.contype = 'c'
   -- A Citus shard's constraint carries the shard id: qty_positive_102008.
   AND c.conname::text IN ($3::text, regexp_replace($3::text, '_[0-9]+$', ''))
 ORDER BY a.attnum`;

/** The column that fails, as far as the probe can tell; undefined when none does. */
export async function findColumn(run: Run, table: ApplyTable, values: readonly ProbedValue[], info: Pick<StallInfo, 'sqlstate' | 'constraint'> & { message?: string }): Promise<ColumnFinding | undefined> {
  if (info.sqlstate === '23514' && info.constraint) {
    const { rows } = await run(CHECK_COLUMNS_SQL, [table.schema, table.name, info.constraint]);
    const names: string[] = rows.map((r) => r.name);
    if (names.length > 0) {
      const list = names.length === 1 ? `column ${names[0]}` : `columns ${names.join(', ')}`;
      // One column is the one; of several, the first stands in the column field and all in the text.
      return { column: names[0], type: tableShape(table).typeOf.get(names[0]) ?? '', sqlstate: '23514', text: `check constraint ${info.constraint} reads ${list}` };
    }
  }
  const pure = values.findIndex((v) => valueProblem(v) !== undefined);
  // Only the columns before a pure finding are cast: one of those, failing, came first.
  const cast = await firstFailingCast(run, pure < 0 ? values : values.slice(0, pure));
  if (cast) {
    const failing = values[cast.index];
    // An array's: which element, by the same halving over its elements.
    const elements = arrayElements(failing);
    const element = elements && elements.values.length > 1 ? await firstFailingCast(run, elements.values) : undefined;
    const value = element ? `${elements!.values[element.index].column} of the source's value` : "the source's value";
    // The probe's message only where it says more than the stall's own.
    return findingFor(table, failing, cast.code, cast.message === info.message ? value : `${value}: ${cast.message}`);
  }
  if (pure < 0) return undefined;
  const p = valueProblem(values[pure])!;
  return findingFor(table, values[pure], p.sqlstate, p.what);
}

/** Per partition, the stall last named and the catalog it was named under: each retry meets the same error, probed once. */
export class ColumnNamer {
  private readonly last = new Map<string, { signature: string; named: StallInfo }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly states: TableStates,
    private readonly logger: Logger,
  ) {}

  /** `info` with its column named when the stalled record shows it; `info` itself otherwise, whatever the probe met. */
  async name(info: StallInfo, record: DecodedRecord | null): Promise<StallInfo> {
    if (!wantsColumn(info) || record === null || record.keyColumns === null) return info;
    const keyColumns = record.keyColumns;
    const k = tpKey(info.topic, info.partition);
    // The catalog's digest too: after an ALTER another column may fail with the same message.
    const signature = (t: ApplyTable) => `${info.offset}\u0000${info.sqlstate}\u0000${info.message}\u0000${t.digest ?? ''}`;
    // The failed apply read the catalog (a retry reads it afresh): known here, without a round trip.
    const known = this.states.peek(record.table, keyColumns);
    const hit = this.last.get(k);
    if (known && hit?.signature === signature(known)) return hit.named;
    try {
      const { table, finding } = await withPooledClient(this.pool, async (client) => {
        const table = known ?? (await this.states.resolve(client, record.table, keyColumns));
        return { table, finding: await findColumn((sql, params) => client.query(sql, params), table, probedValues(record, table), info) };
      });
      const named = finding ? withFinding(info, finding) : info;
      this.last.set(k, { signature: signature(table), named });
      return named;
    } catch (err) {
      // Not remembered: the next retry probes again.
      this.logger.debug({ err, topic: info.topic, partition: info.partition, offset: info.offset }, 'could not probe which column the stalled record fails on');
      return info;
    }
  }
}
