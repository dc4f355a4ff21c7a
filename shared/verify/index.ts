/**
 * Table verification (used by `cutover --verify-only`, the demo and the benchmark): row counts
 * and checksums per key range on both sides in parallel, then, for each differing range, the
 * first differing keys (narrowed by sub-hashing so no side ever ships a large range).
 *
 * Both sides run with the source connectors' session settings (UTC, ISO dates, hex bytea...)
 * so the text form of equal values is equal; a destination column widened in a way that prints
 * differently (real → double precision) is cast back to the source's type. Not a snapshot across connections: run it once
 * writes have stopped (cut-over), or expect ranges that are still moving to differ.
 */
import pg from 'pg';
import { LONG_READ_SETTINGS, SOURCE_SESSION_SETTINGS, sourceSessionOptions } from '../pg-types.ts';
import { redactUrl } from '../redact.ts';
import { resetTransactionTimeout } from '../timeout-reset.ts';
import { compareKeys, diffDigests, differingIndexes, type DigestRow, type KeyDifference, type RangeStat } from './compare.ts';
import {
  andPredicates,
  boundsSql,
  bucketChecksumsSql,
  bucketPredicate,
  cleanBounds,
  describeRange,
  destinationCasts,
  rangeChecksumSql,
  rangeCount,
  rangePredicate,
  rowDigestsSql,
  sideTables,
  type RangePlan,
  type SideTable,
  type SqlText,
  type VerifyTable,
} from './sql.ts';

export type { VerifyTable } from './sql.ts';
export type { KeyDifference } from './compare.ts';

export interface VerifyOptions {
  source: pg.ClientConfig;
  destination: pg.ClientConfig;
  tables: VerifyTable[];
  /** Key ranges per table (default 16). */
  ranges?: number;
  /** Concurrent queries per side (default 4): each side's pool size, which queues the rest. */
  parallel?: number;
  /** Differing keys listed per range (default 10). */
  sampleKeys?: number;
}

export interface DifferingRange {
  /** Integer-key ranges: lower bound (inclusive) and upper bound (exclusive), null = unbounded; hash buckets: null. */
  from: string | null;
  to: string | null;
  /** e.g. `id in [1000, 2000)` or `hash bucket 3 of 16 over (a, b)`. */
  range: string;
  sourceRows: number;
  destRows: number;
  sampleKeys: KeyDifference[];
}

export interface TableVerifyReport {
  source: string;
  destination: string;
  sourceRows: number | null;
  destRows: number | null;
  match: boolean;
  /** How the key space was split. */
  split: 'key ranges' | 'key hash';
  ranges: number;
  differingRanges: DifferingRange[];
  /** Set when the table could not be compared (missing, unreadable, incompatible key). */
  error?: string;
}

export interface VerifyReport {
  match: boolean;
  tables: TableVerifyReport[];
  durationMs: number;
}

const NARROW_BUCKETS = 16;
/** A differing range with at most this many rows per side is fetched row by row. */
const FETCH_LIMIT = 20_000;
/** Above this many estimated rows, key quantiles come from a block sample. */
const SAMPLE_ROWS = 1_000_000;

interface Side {
  query(q: SqlText): Promise<any[]>;
}

export async function verifyTables(opts: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const ranges = Math.max(1, opts.ranges ?? 16);
  const parallel = Math.max(1, opts.parallel ?? 4);
  const limit = opts.sampleKeys ?? 10;
  const srcPool = new pg.Pool({ ...withSessionOptions(opts.source), max: parallel });
  const dstPool = new pg.Pool({ ...withSessionOptions(opts.destination), max: parallel });
  // Idle-client errors (server restart) surface on the next query instead of crashing the process.
  srcPool.on('error', () => {});
  dstPool.on('error', () => {});
  try {
    const source = sessions(srcPool, opts.source.options);
    const destination = sessions(dstPool, opts.destination.options);
    const src: Side = { query: (q) => source.run((c) => c.query(q.text, q.values)).then((r) => r.rows) };
    const citus = (await destination.run((c) => c.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`))).rowCount! > 0;
    const dst: Side = { query: (q) => destinationQuery(destination, citus, q) };
    const tables = await Promise.all(opts.tables.map((t) => verifyOne(t, src, dst, ranges, limit)));
    return { match: tables.every((t) => t.match), tables, durationMs: Date.now() - started };
  } finally {
    await Promise.all([srcPool.end(), dstPool.end()]);
  }
}

async function verifyOne(
  t: VerifyTable,
  src: Side,
  dst: Side,
  ranges: number,
  limit: number,
): Promise<TableVerifyReport> {
  const report: TableVerifyReport = {
    source: `${t.source.schema}.${t.source.name}`,
    destination: `${t.destination.schema}.${t.destination.name}`,
    sourceRows: null,
    destRows: null,
    match: false,
    split: 'key hash',
    ranges: 0,
    differingRanges: [],
  };
  try {
    if (t.keyColumns.length === 0) throw new Error('no key columns: cannot split or narrow the comparison');
    const [srcTypes, dstTypes] = await Promise.all([columnTypes(src, t.source), columnTypes(dst, t.destination)]);
    const sides = sideTables(t, destinationCasts(t, srcTypes, dstTypes));
    const plan = await planRanges(t, sides.source, srcTypes, src, ranges);
    report.split = plan.kind === 'int' ? 'key ranges' : 'key hash';
    report.ranges = rangeCount(plan);
    const stats = await rangeStats(plan, sides, src, dst);
    report.sourceRows = sumRows(stats.source);
    report.destRows = sumRows(stats.destination);
    const differing = differingIndexes(stats.source, stats.destination);
    report.differingRanges = await Promise.all(
      differing.map(async (i) => {
        const s = stats.source.get(i) ?? { rows: 0, sum: '0' };
        const d = stats.destination.get(i) ?? { rows: 0, sum: '0' };
        const where = { source: rangePredicate(plan, sides.source, i), destination: rangePredicate(plan, sides.destination, i) };
        const sampleKeys = await narrow(sides, where, Math.max(s.rows, d.rows), 1, t.keyColumns, limit, src, dst);
        const r = describeRange(plan, t.keyColumns, i);
        return { from: r.from, to: r.to, range: r.text, sourceRows: s.rows, destRows: d.rows, sampleKeys };
      }),
    );
    report.match = differing.length === 0;
  } catch (e) {
    report.error = redactUrl(e instanceof Error ? e.message : String(e));
  }
  return report;
}

async function planRanges(t: VerifyTable, s: SideTable, types: ReadonlyMap<string, string>, src: Side, ranges: number): Promise<RangePlan> {
  const integer = t.integerKey ?? (s.keyColumns.length === 1 && ['smallint', 'integer', 'bigint'].includes(types.get(s.keyColumns[0]) ?? ''));
  if (!integer || ranges === 1) return { kind: 'hash', buckets: ranges };
  const [est] = await src.query({
    text: `SELECT GREATEST(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = $1::regclass`,
    values: [`${quoteQ(s.schema)}.${quoteQ(s.name)}`],
  });
  const percent = est && est.n > SAMPLE_ROWS ? (100 * SAMPLE_ROWS) / est.n : undefined;
  const [row] = await src.query(boundsSql(s, ranges, percent));
  return { kind: 'int', column: s.keyColumns[0], bounds: cleanBounds(row?.bounds ?? null) };
}

const quoteQ = (id: string) => `"${id.replace(/"/g, '""')}"`;

/** Column name → type as `format_type` prints it (the form check's type rules read). */
async function columnTypes(side: Side, t: { schema: string; name: string }): Promise<Map<string, string>> {
  const rows = await side.query({
    text: `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    values: [`${quoteQ(t.schema)}.${quoteQ(t.name)}`],
  });
  return new Map(rows.map((r) => [r.attname as string, r.type as string]));
}

type Stats = { source: Map<number, RangeStat>; destination: Map<number, RangeStat> };

/** Integer plans: one indexed range query per range; hash plans: one grouped scan per side. */
async function rangeStats(plan: RangePlan, sides: { source: SideTable; destination: SideTable }, src: Side, dst: Side): Promise<Stats> {
  const stats: Stats = { source: new Map(), destination: new Map() };
  if (plan.kind === 'hash') {
    const [s, d] = await Promise.all([
      src.query(bucketChecksumsSql(sides.source, 0, plan.buckets)),
      dst.query(bucketChecksumsSql(sides.destination, 0, plan.buckets)),
    ]);
    for (const r of s) stats.source.set(Number(r.bucket), toStat(r));
    for (const r of d) stats.destination.set(Number(r.bucket), toStat(r));
    return stats;
  }
  await Promise.all(
    Array.from({ length: rangeCount(plan) }, async (_, i) => {
      const [[s], [d]] = await Promise.all([
        src.query(rangeChecksumSql(sides.source, rangePredicate(plan, sides.source, i))),
        dst.query(rangeChecksumSql(sides.destination, rangePredicate(plan, sides.destination, i))),
      ]);
      stats.source.set(i, toStat(s));
      stats.destination.set(i, toStat(d));
    }),
  );
  return stats;
}

/** The first differing keys inside a predicate: fetch rows when few, else sub-hash and recurse into differing buckets. */
async function narrow(
  sides: { source: SideTable; destination: SideTable },
  where: { source: SqlText; destination: SqlText },
  rows: number,
  level: number,
  keyColumns: string[],
  limit: number,
  src: Side,
  dst: Side,
): Promise<KeyDifference[]> {
  if (limit <= 0) return [];
  if (rows <= FETCH_LIMIT || level > 3) {
    const [s, d] = await Promise.all([
      src.query(rowDigestsSql(sides.source, where.source)),
      dst.query(rowDigestsSql(sides.destination, where.destination)),
    ]);
    return diffDigests(s.map(toDigest(keyColumns.length)), d.map(toDigest(keyColumns.length)), keyColumns, limit);
  }
  const [s, d] = await Promise.all([
    src.query(bucketChecksumsSql(sides.source, level, NARROW_BUCKETS, where.source)),
    dst.query(bucketChecksumsSql(sides.destination, level, NARROW_BUCKETS, where.destination)),
  ]);
  const sm = new Map(s.map((r) => [Number(r.bucket), toStat(r)]));
  const dm = new Map(d.map((r) => [Number(r.bucket), toStat(r)]));
  const out: KeyDifference[] = [];
  for (const b of differingIndexes(sm, dm)) {
    if (out.length >= limit) break;
    const sub = {
      source: andPredicates(where.source, bucketPredicate(sides.source, level, NARROW_BUCKETS, b)),
      destination: andPredicates(where.destination, bucketPredicate(sides.destination, level, NARROW_BUCKETS, b)),
    };
    const subRows = Math.max(sm.get(b)?.rows ?? 0, dm.get(b)?.rows ?? 0);
    out.push(...(await narrow(sides, sub, subRows, level + 1, keyColumns, limit - out.length, src, dst)));
  }
  // Buckets are visited in hash order: restore key order for the report.
  const keyOf = (k: KeyDifference) => keyColumns.map((c) => k.key[c]);
  return out.sort((a, b) => compareKeys(keyOf(a), keyOf(b)));
}

const toStat = (r: { rows: string; sum: string | null }): RangeStat => ({ rows: Number(r.rows), sum: r.sum ?? '0' });
const toDigest = (n: number) => (r: Record<string, string | null>): DigestRow => ({
  key: Array.from({ length: n }, (_, i) => r[`k${i}`]),
  digest: r.digest!,
});
const sumRows = (m: Map<number, RangeStat>) => [...m.values()].reduce((a, s) => a + s.rows, 0);

/**
 * On Citus the row text is computed on the workers, which do not see session options of the
 * coordinator connection: SET LOCAL with propagation carries the settings to them.
 */
async function destinationQuery(pool: Sessions, citus: boolean, q: SqlText): Promise<any[]> {
  return pool.run(async (client) => {
    if (!citus) return (await client.query(q.text, q.values)).rows;
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL citus.propagate_set_commands = 'local'`);
      // SET statements (not set_config()) are what Citus propagates. The timeouts too: a worker's
      // role may carry an application's statement_timeout, which would cut a checksum's scan.
      for (const [k, v] of Object.entries({ ...LONG_READ_SETTINGS, ...SOURCE_SESSION_SETTINGS })) await client.query(`SET LOCAL ${k} = '${v.replace(/'/g, "''")}'`);
      const { rows } = await client.query(q.text, q.values);
      await client.query('COMMIT');
      return rows;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    }
  });
}

interface Sessions {
  /** `fn` on a session of the pool whose transaction_timeout was reset (timeout-reset.ts) before its first statement. */
  run<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T>;
}

function sessions(pool: pg.Pool, userOptions: string | undefined): Sessions {
  const reset = new WeakSet<pg.PoolClient>();
  return {
    async run(fn) {
      const c = await pool.connect();
      try {
        if (!reset.has(c)) {
          await resetTransactionTimeout(c, userOptions);
          reset.add(c);
        }
        return await fn(c);
      } finally {
        c.release();
      }
    },
  };
}

function withSessionOptions(c: pg.ClientConfig): pg.ClientConfig {
  return { ...c, application_name: c.application_name ?? 'shardbridge-verify', options: sourceSessionOptions(c.options) };
}
