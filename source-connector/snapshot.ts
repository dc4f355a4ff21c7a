/**
 * The consistent snapshot: parallel readers import the slot's exported snapshot and copy the
 * tables in CTID-range chunks (`COPY (SELECT … WHERE ctid >= … AND ctid < …) TO STDOUT`),
 * decoded by the COPY parser into `read` events for the publisher. Chunk boundaries come from
 * the table's size in pages and the row estimate; the last chunk of a table is open-ended, so
 * rows beyond the estimate (the table grew, stale statistics) are read too.
 *
 * Progress per table (rows done of the estimate, rows/s, ETA) goes to the log every few
 * seconds and to metrics after every COPY data chunk.
 */
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import type { Counter, Gauge } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';
import { sourceSessionOptions, type TableInfo } from '../shared/pg-types.ts';
import { quoteIdent, quoteQualified, sameDefinition, tablesNow } from './catalog.ts';
import { ShardBridgeError, SourceError, isRetriable } from '../shared/errors.ts';
import { CopyTextParser } from './copy-parser.ts';
import { scanCopyRow, transcoderFor, TupleRef } from './row-transcode.ts';
import { changeToEvents, type ChangeContext } from './envelope.ts';
import type { Publisher } from './publisher.ts';
import type { TableVersion } from './table-versions.ts';
import { resetTransactionTimeout } from '../shared/timeout-reset.ts';

export interface ChunkRange {
  /** First page (inclusive). */
  fromPage: number;
  /** Page after the chunk; null for the open-ended last chunk. */
  toPage: number | null;
}

/** Rows per 8 kB page assumed when the table was never analysed. */
const ROWS_PER_PAGE_GUESS = 100;

/** Page ranges of about `chunkSize` rows each; the last one open-ended. Pure. */
export function planChunks(pages: number, estimatedRows: number, chunkSize: number): ChunkRange[] {
  if (pages <= 0) return [{ fromPage: 0, toPage: null }];
  const rowsPerPage = estimatedRows > 0 ? estimatedRows / pages : ROWS_PER_PAGE_GUESS;
  const perChunk = Math.max(1, Math.floor(chunkSize / Math.max(rowsPerPage, 1)));
  const out: ChunkRange[] = [];
  for (let p = 0; p < pages; p += perChunk) out.push({ fromPage: p, toPage: p + perChunk });
  out[out.length - 1].toPage = null;
  return out;
}

/** The COPY statement of one chunk. Pure. */
export function chunkSql(table: TableInfo, range: ChunkRange): string {
  const cols = table.columns.map((c) => quoteIdent(c.name)).join(', ');
  const where = [`ctid >= '(${range.fromPage},0)'::tid`];
  if (range.toPage !== null) where.push(`ctid < '(${range.toPage},0)'::tid`);
  // ONLY: an inheritance child is a selected table of its own (its own topic and stream); a
  // partitioned table's rows are all in its partitions.
  return `COPY (SELECT ${cols} FROM ${table.partitioned ? '' : 'ONLY '}${quoteQualified(table)} WHERE ${where.join(' AND ')}) TO STDOUT`;
}

/**
 * The current versions of the selected tables, as the snapshot copies them. Pure. A version
 * made from a Relation message (a column added while streaming) does not say that its table is
 * partitioned, and read ONLY a partitioned table has no rows: a snapshot taken again in a later
 * session would copy none, after the truncate that precedes it. The start-up catalog says it.
 */
export function snapshotVersions(versions: TableVersion[], selected: TableInfo[]): TableVersion[] {
  return versions.flatMap((v) => {
    const t = selected.find((x) => x.relid === v.relid);
    if (!t) return [];
    return t.partitioned && !v.table.partitioned ? [{ ...v, table: { ...v.table, partitioned: true } }] : [v];
  });
}

export interface SnapshotOptions {
  connection: pg.ClientConfig;
  snapshotName: string;
  readers: number;
  chunkSize: number;
  tables: TableVersion[];
  publisher: Publisher;
  /** Database name for `source.db`. */
  db: string;
  consistentPoint: bigint;
  /** Rows without escapes written from their COPY bytes (row-transcode.ts). Default true. */
  transcode?: boolean;
  log: Logger;
  metrics?: Metrics;
  signal: AbortSignal;
  /** Every reader imported the snapshot: the exporting connection may close. */
  onImported(): Promise<void> | void;
  /** Before a table's first row is read. */
  onTableStarted(v: TableVersion, estimatedRows: number): Promise<void> | void;
  /** After a table's last chunk was read (its records are queued, maybe not yet acknowledged). */
  onTableRead(v: TableVersion, rows: number): Promise<void>;
}

interface TableProgress {
  v: TableVersion;
  estimate: number;
  rows: number;
  chunksLeft: number;
  startedAt: number;
  done: boolean;
  gauges?: { rows: Gauge.Internal<string>; ratio: Gauge.Internal<string>; rate: Gauge.Internal<string>; eta: Gauge.Internal<string>; transcoded: Counter.Internal };
}

const PROGRESS_LOG_MS = 5_000;

/** Copies every table; resolves with rows per relid once all onTableRead callbacks have finished. */
export async function runSnapshot(opts: SnapshotOptions): Promise<Map<number, number>> {
  const log = opts.log.child({ component: 'snapshot' });
  const clients: pg.Client[] = [];
  const abortAll = () => {
    for (const c of clients) c.end().catch(() => {});
  };
  opts.signal.addEventListener('abort', abortAll, { once: true });
  const progressTimer = setInterval(() => logProgress(log, progress), PROGRESS_LOG_MS);
  const progress = new Map<number, TableProgress>();
  try {
    opts.signal.throwIfAborted();
    // Every reader imports the snapshot before the exporting connection may go.
    const n = Math.max(1, opts.readers);
    for (let i = 0; i < n; i++) {
      const c = new pg.Client({ ...opts.connection, options: sourceSessionOptions(opts.connection.options), application_name: `shardbridge-snapshot-${i}` });
      c.on('error', (err) => log.debug({ err }, 'snapshot reader connection error'));
      clients.push(c);
    }
    await Promise.all(
      clients.map(async (c) => {
        await c.connect();
        await resetTransactionTimeout(c, opts.connection.options);
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        await c.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotName.replace(/'/g, "''")}'`);
      }),
    );
    await opts.onImported();
    await checkDefinitions(clients[0], opts.tables);

    const estimates = await tableSizes(clients[0], opts.tables.map((v) => v.relid));
    const queue: { p: TableProgress; range: ChunkRange }[] = [];
    const gauges = opts.metrics && snapshotGauges(opts.metrics);
    for (const v of opts.tables) {
      const est = estimates.get(v.relid) ?? { rows: 0, pages: 0 };
      const ranges = planChunks(est.pages, est.rows, opts.chunkSize);
      const estimate = est.rows > 0 ? est.rows : est.pages * ROWS_PER_PAGE_GUESS;
      const p: TableProgress = { v, estimate, rows: 0, chunksLeft: ranges.length, startedAt: 0, done: false };
      if (gauges) {
        gauges.estimate.labels(v.qualified).set(estimate);
        p.gauges = {
          rows: gauges.rows.labels(v.qualified),
          ratio: gauges.ratio.labels(v.qualified),
          rate: gauges.rate.labels(v.qualified),
          eta: gauges.eta.labels(v.qualified),
          transcoded: gauges.transcoded.labels(v.qualified),
        };
        p.gauges.rows.set(0);
        p.gauges.ratio.set(0);
      }
      progress.set(v.relid, p);
      for (const range of ranges) queue.push({ p, range });
    }
    log.info(
      { tables: opts.tables.length, chunks: queue.length, readers: clients.length, estimatedRows: [...progress.values()].reduce((s, p) => s + p.estimate, 0) },
      'snapshot started',
    );

    const completions: Promise<void>[] = [];
    let next = 0;
    let firstError: unknown;
    const reader = async (client: pg.Client): Promise<void> => {
      while (next < queue.length && firstError === undefined) {
        opts.signal.throwIfAborted();
        const { p, range } = queue[next++];
        if (p.startedAt === 0) {
          p.startedAt = Date.now();
          await checkNotRewritten(client, p.v);
          await opts.onTableStarted(p.v, p.estimate);
        }
        await copyChunk(client, p, range, opts).catch((err: unknown) => {
          throw readError(err, p.v);
        });
        if (--p.chunksLeft === 0) {
          p.done = true;
          p.gauges?.ratio.set(1);
          // A read table's rate and ETA say nothing: two series fewer for each of thousands of tables.
          gauges?.rate.remove(p.v.qualified);
          gauges?.eta.remove(p.v.qualified);
          const secs = (Date.now() - p.startedAt) / 1000;
          // At info only for a table long enough to have had progress lines: a database of
          // thousands of small tables would log a line for each.
          const level = secs * 1000 >= PROGRESS_LOG_MS ? 'info' : 'debug';
          log[level]({ table: p.v.qualified, rows: p.rows, seconds: Math.round(secs * 10) / 10, rowsPerSecond: Math.round(p.rows / Math.max(secs, 0.001)) }, 'table read');
          const read = opts.onTableRead(p.v, p.rows);
          read.catch(() => {}); // observed below, after the readers; must not go unhandled meanwhile
          completions.push(read);
        }
      }
    };
    // The first failure ends the other readers' connections, so they fail fast too.
    const results = await Promise.allSettled(
      clients.map((c) =>
        reader(c).catch((err: unknown) => {
          if (firstError === undefined) {
            firstError = err;
            abortAll();
          }
          throw err;
        }),
      ),
    );
    if (results.some((r) => r.status === 'rejected')) throw opts.signal.aborted ? opts.signal.reason : firstError;
    await Promise.all(completions);
    await Promise.all(clients.map((c) => c.query('COMMIT')));
    return new Map([...progress].map(([relid, p]) => [relid, p.rows]));
  } catch (err) {
    abortAll();
    throw err;
  } finally {
    clearInterval(progressTimer);
    opts.signal.removeEventListener('abort', abortAll);
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

/**
 * The tables as the snapshot sees them must be the versions read at start-up: a column added
 * since (a session retried long after the start, or DDL between the start-up checks and the
 * slot) would be missing from every row the snapshot sends.
 */
async function checkDefinitions(client: pg.Client, tables: readonly TableVersion[]): Promise<void> {
  const now = await tablesNow(client, tables.map((v) => v.relid));
  const changed = tables.filter((v) => !sameDefinition(v.table, now.get(v.relid))).map((v) => v.qualified);
  if (changed.length === 0) return;
  throw new SourceError(
    `${changed.join(', ')} changed since the connector read the table definitions (a column added, dropped, renamed or retyped, or the table renamed): a snapshot with the old column lists would lose values`,
    { context: { tables: changed.join(',') }, remedy: 'start the source connector again: it reads the definitions anew and takes the snapshot from a fresh slot' },
  );
}

/**
 * TRUNCATE and the ALTER TABLEs that rewrite a table (a type change, a column added with a
 * volatile default) are not MVCC-safe: committed after the snapshot's point, they leave the
 * table empty to it, and the rewrite's rows are in no change record either, so they would be
 * lost. The table is locked (ACCESS SHARE, as its COPY would, until the snapshot ends: no such
 * DDL after this), then its storage as the snapshot's catalog sees it is compared with the
 * current one. Checked by whichever reader starts the table: a reader copying another of its
 * chunks before this check could only have met a rewrite that this check sees too.
 */
async function checkNotRewritten(client: pg.Client, v: TableVersion): Promise<void> {
  const relid = Number(v.relid);
  const rels = v.table.partitioned ? `SELECT relid FROM pg_partition_tree(${relid})` : String(relid);
  // One round trip: the lock, then the check (pg_relation_filenode reads the current catalog, the SELECT the snapshot's).
  // ONLY: a lock taken down a partitioned table needs privileges on each partition, its COPY does
  // not; a rewrite of a partition's column comes through its root, which this lock holds back.
  const res = (await client.query(
    `LOCK TABLE ONLY ${quoteQualified(v.table)} IN ACCESS SHARE MODE;
     SELECT c.oid::regclass::text AS rel, has_table_privilege(c.oid, 'SELECT') AS readable FROM pg_class c
      WHERE c.oid IN (${rels}) AND c.relkind = 'r' AND c.relfilenode <> pg_relation_filenode(c.oid)`,
  )) as unknown as pg.QueryResult[];
  const rewritten: string[] = [];
  for (const r of res[1].rows as { rel: string; readable: boolean }[]) {
    // VACUUM FULL, CLUSTER and SET TABLESPACE move rows with their transaction ids: the snapshot
    // sees the new storage as it saw the old. TRUNCATE and a rewriting ALTER TABLE give every row
    // a new one: nothing is visible. So a row visible says the rewrite kept them; none, that it
    // may not have (or that the relation was empty: taken again, harmlessly).
    const kept = r.readable && (await client.query(`SELECT EXISTS (SELECT 1 FROM ONLY ${r.rel}) AS e`)).rows[0].e === true;
    if (!kept) rewritten.push(r.rel);
  }
  if (rewritten.length === 0) return;
  throw new SourceError(
    `${v.qualified} was truncated or rewritten (ALTER TABLE changing a column's type or adding one with a volatile default, or a tool copying its rows into new storage) after the snapshot's point and before the snapshot read it (${rewritten.join(', ')}): the snapshot would see it empty`,
    { context: { table: v.qualified, rewritten: rewritten.join(',') }, remedy: 'start the source connector again: it takes the snapshot of the tables not completed again, after the change' },
  );
}

/** A server's refusal while a table is read (a value it cannot send as UTF-8, …), named by the table; a lost connection stays retriable. */
function readError(err: unknown, v: TableVersion): unknown {
  if (err instanceof ShardBridgeError) {
    err.context.table ??= v.qualified;
    return err;
  }
  const e = err as { message?: string; code?: string };
  if (isRetriable(err) || typeof e?.code !== 'string') return err;
  return new SourceError(`reading the snapshot of ${v.qualified} failed: ${e.message ?? String(err)}`, {
    cause: err,
    context: { table: v.qualified, sqlstate: e.code },
    remedy: e.code === '22021'
      ? 'the table holds text that is not valid UTF-8 (a SQL_ASCII database): fix those values on the source (docs/type-mapping.md, "Session settings and encodings"), then start the connector again'
      : e.code.startsWith('42')
        ? 'the table changed while it was read (a column or the table dropped): start the connector again: it takes the snapshot of the tables not completed again'
        : 'fix what the server reports, then start the connector again: it takes the snapshot of the tables not completed again',
  });
}

async function copyChunk(client: pg.Client, p: TableProgress, range: ChunkRange, opts: SnapshotOptions): Promise<void> {
  const v = p.v;
  const parser = new CopyTextParser(v.table.columns.length);
  const ctx: ChangeContext = {
    schemas: v.schemas,
    source: v.schemas.sourceFor({ db: opts.db, tsMs: Date.now(), snapshot: 'true', lsn: opts.consistentPoint }),
    tsMs: Date.now(),
    tombstones: false,
  };
  const publisher = opts.publisher;
  // Rows without escapes (other than NULL) are written to Avro from their COPY bytes
  // (row-transcode.ts); the rest are decoded into values first. The records are the same.
  const tc = opts.transcode === false ? null : transcoderFor(v.schemas);
  const source = tc?.sourceBytes(ctx.source);
  const ref = new TupleRef();
  const width = v.table.columns.length;
  let rows = 0;
  let transcoded = 0;
  const each = (b: Buffer, s: number, e: number, bs: number): void => {
    if (tc && scanCopyRow(ref, b, s, e, width) && publisher.publishTranscoded(v, tc, 'r', b, ref, source!, ctx.tsMs as number, null, false)) {
      parser.counted();
      rows++;
      transcoded++;
      return;
    }
    const row = parser.decodeRow(b, s, e, bs);
    if (row === null) return;
    publisher.publish(v, changeToEvents({ kind: 'read', new: row }, ctx), null);
    rows++;
  };
  const stream = client.query(copyStreams.to(chunkSql(v.table, range)));
  for await (const chunk of stream) {
    ctx.tsMs = Date.now();
    rows = 0;
    transcoded = 0;
    parser.pushLines(chunk as Buffer, each);
    p.rows += rows;
    if (transcoded > 0) p.gauges?.transcoded.inc(transcoded);
    if (p.gauges) updateGauges(p);
    if (!publisher.writable) await publisher.whenWritable();
  }
  parser.end();
}

function updateGauges(p: TableProgress): void {
  const g = p.gauges!;
  const secs = Math.max((Date.now() - p.startedAt) / 1000, 0.001);
  const rate = p.rows / secs;
  g.rows.set(p.rows);
  g.ratio.set(p.estimate > 0 ? Math.min(p.rows / p.estimate, 1) : 0);
  g.rate.set(rate);
  g.eta.set(rate > 0 ? Math.max(p.estimate - p.rows, 0) / rate : -1);
}

function logProgress(log: Logger, progress: Map<number, TableProgress>): void {
  for (const p of progress.values()) {
    if (p.done || p.startedAt === 0) continue;
    const secs = Math.max((Date.now() - p.startedAt) / 1000, 0.001);
    const rate = p.rows / secs;
    const left = Math.max(p.estimate - p.rows, 0);
    log.info(
      {
        table: p.v.qualified,
        rows: p.rows,
        estimatedRows: p.estimate,
        percent: p.estimate > 0 ? Math.min(100, Math.round((1000 * p.rows) / p.estimate) / 10) : null,
        rowsPerSecond: Math.round(rate),
        etaSeconds: rate > 0 ? Math.round(left / rate) : null,
      },
      'snapshot progress',
    );
  }
}

function snapshotGauges(m: Metrics) {
  return {
    rows: m.gauge('snapshot_rows', 'Rows read by the snapshot so far, per table', ['table']),
    estimate: m.gauge('snapshot_rows_estimated', 'Estimated rows of the table at snapshot start', ['table']),
    ratio: m.gauge('snapshot_progress_ratio', 'Snapshot rows read / estimated (1 when the table is done)', ['table']),
    rate: m.gauge('snapshot_rows_per_second', 'Snapshot read rate per table', ['table']),
    eta: m.gauge('snapshot_eta_seconds', 'Estimated seconds until the table is read (-1 unknown)', ['table']),
    transcoded: m.counter('snapshot_rows_transcoded_total', 'Snapshot rows written to Avro straight from their COPY bytes (transcode), per table', ['table']),
  };
}

/** Size in pages now (pg_relation_size: exact, unlike relpages) and the planner's row estimate. */
async function tableSizes(client: pg.ClientBase, relids: number[]): Promise<Map<number, { rows: number; pages: number }>> {
  const { rows } = await client.query(
    `SELECT c.oid::int AS relid, GREATEST(c.reltuples, 0)::float8 AS rows,
            (pg_relation_size(c.oid) / current_setting('block_size')::int)::int AS pages
       FROM pg_class c WHERE c.oid = ANY($1::oid[])`,
    [relids],
  );
  return new Map(rows.map((r) => [r.relid as number, { rows: Math.round(r.rows as number), pages: r.pages as number }]));
}
