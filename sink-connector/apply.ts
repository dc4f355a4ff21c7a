/**
 * One chunk of one topic-partition → one destination transaction: lock the partition's
 * offsets row, drop what is already applied, per table collapse and run the batched
 * statements (unnest upserts, `= ANY` deletes, COPY staging for big snapshot groups, updates
 * in place for unchanged-TOAST rows),
 * then store the next offset and commit. Rows and position commit together, so a crash
 * at any point neither loses nor repeats a batch.
 *
 * Errors leave as: SinkApplyError with the database's fields (retriable by SQLSTATE),
 * RetriableError for a lost connection, or the error our own code threw.
 */
import type pg from 'pg';
import { isRetriable, RetriableError, ShardBridgeError, SinkApplyError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { collapse, type ApplyPlan, type UpsertGroup } from './collapse.ts';
import type { DecodedRecord } from './decode.ts';
import type { TableVersion } from './schema-compile.ts';
import { beginAndLockOffset, storeOffsetAndCommitSql } from './offsets.ts';
import { arriveAtBarrier, type TruncateMark } from './truncate-barrier.ts';
import type { ApplyTable } from './sink-change.ts';
import { addColumnSql, generatedColumnError, identityAlwaysError, missingColumns, type TableStates } from './table-state.ts';
import { classify, queryWith, withTable, type Query } from './destination-errors.ts';
import { copyIntoTarget, ensureStaging, upsertViaStaging } from './staging.ts';
import type { DirectCopyPolicy } from './direct-copy.ts';
import { applyFastRows, DirectCopyConflict, stagesFastRows, TablePaths } from './apply-fast.ts';
import type { FastRow } from './fast-rows.ts';
import { arrayLiterals, buildDelete, buildSparingDelete, buildUpsert, truncateSql } from './upsert-batch.ts';
import { createInPlaceGroup, updateInPlace } from './update-in-place.ts';
import { catalogDriftSql, failOnDriftSql, isDriftFailure } from './catalog-drift.ts';
import { destIdOf } from './schema-compile.ts';
import { segmentsOf, type TableRun } from './table-runs.ts';
import { count, opOf, type Counts } from './apply-counts.ts';
import { sharedTruncateError, unmatchedRenamesError } from './apply-errors.ts';

export interface ApplyContext {
  groupId: string;
  states: TableStates;
  truncate: 'apply' | 'ignore';
  autoEvolve: boolean;
  /**
   * Upsert groups at least this big go through COPY staging; Infinity: never. Measured on
   * plain PostgreSQL (100k rows) staging beats unnest, and on Citus it is the fastest shape,
   * so it is not limited to snapshot reads.
   */
  stagingMinRows: number;
  /**
   * The same for fast rows (already COPY text): staging costs the sink nothing per row there,
   * while the alternative decodes them after all. In the benchmark's replay (updates ~1,200 per
   * batch) staging them instead of unnest cut the sink's CPU by a quarter, the destination's
   * unchanged. 200 on PostgreSQL, 1,000 on Citus (processor-wiring.ts).
   */
  fastStagingMinRows: number;
  /**
   * ...or this many bytes of their COPY lines, however few the rows: decoded for unnest, one
   * 30 MB bytea took ~10 times its size in strings and array text (stagesFastRows).
   */
  fastStagingMinBytes: number;
  /** Fresh rows, when a group has at least minRows of them, may be COPied straight into the table (direct-copy.ts); null: never. */
  directCopy: { policy: DirectCopyPolicy; minRows: number } | null;
  /** A direct COPY met an existing row (metrics). */
  onDirectCopyConflict?: (table: string) => void;
  /** The general decode of a fast row, for when it has to take the upsert path after all. */
  redecode(row: FastRow): DecodedRecord;
  logger: Logger;
  /** How long a batch waits for its partition's offsets row before ending a sink session that holds it (offsets.ts); absent: no bound. */
  offsetLockWaitMs?: number;
}

export type UpsertPath = 'direct_copy' | 'staging' | 'unnest' | 'in_place';

export interface Chunk {
  topic: string;
  partition: number;
  /** Offset of the chunk's first Kafka record (tombstones and set-aside records included). */
  firstOffset: bigint;
  /** Last Kafka record's offset + 1: stored on commit. */
  nextOffset: bigint;
  /** Data changes, in offset order. */
  records: readonly DecodedRecord[];
  /** Rows that skip the general decode (fast-rows.ts), in offset order; none in a chunk with `truncates`. */
  fast?: readonly FastRow[];
  /** More work inside the same transaction (control records); gets the records not yet applied. */
  extra?: (client: pg.ClientBase, fromOffset: bigint) => Promise<void>;
  /** By offset: `t` records that are one copy of a truncate sent to several partitions (truncate-barrier.ts). */
  truncates?: ReadonlyMap<string, TruncateMark>;
  /** Kafka's first offset of each partition of the topic: with it, a completed truncate prunes the barrier's rows of older ones. */
  logStarts?: () => Promise<ReadonlyMap<number, bigint>>;
}

export type ChunkOutcome =
  | { kind: 'applied'; counts: Counts; paths: Counts; transcoded: Counts; rows: number }
  /** Everything up to nextOffset was applied already (by us before a crash, or another member). */
  | { kind: 'behind'; stored: bigint }
  /** The stored offset is below the chunk: records between were never applied. The caller seeks. */
  | { kind: 'gap'; stored: bigint }
  /** Applied up to a truncate's copy at `at` (stored offset = at); the other partitions have not all reached theirs. */
  | { kind: 'waiting'; at: bigint; truncate: string; delivery: number; arrived: number; partitions: number; counts: Counts; paths: Counts; transcoded: Counts; rows: number };

/**
 * Apply a chunk. `gapFrom`: a stored offset below the chunk whose gap holds no records Kafka
 * lost (offset-gaps.ts): applied from there; any other stored offset below the chunk is a gap.
 */
export async function applyChunk(client: pg.ClientBase, chunk: Chunk, ctx: ApplyContext, gapFrom?: bigint): Promise<ChunkOutcome> {
  const q = queryWith(client);
  const segments = segmentsOf(chunk, ctx.truncate);
  // Catalog reads and DDL (autoEvolve, staging tables) happen before the batch transaction.
  const tables = new Map<TableRun, PreparedRun>();
  for (const seg of segments) for (const run of seg.runs) tables.set(run, await prepareRun(client, q, run, chunk.topic, ctx));
  const written = [...tables.values()].map((p) => p.table).filter((t): t is ApplyTable => t !== null);
  // Every commit first checks that the tables still have the catalog their statements were built from.
  const driftCheck = failOnDriftSql(written);
  const commitSql = (next: bigint): string => driftCheck + storeOffsetAndCommitSql(ctx.groupId, chunk.topic, chunk.partition, next);

  let current: string | undefined;
  try {
    const wait = ctx.offsetLockWaitMs === undefined ? undefined : { ms: ctx.offsetLockWaitMs, logger: ctx.logger };
    const lockOffset = () =>
      beginAndLockOffset(client, ctx.groupId, chunk.topic, chunk.partition, wait).catch((err: unknown) => {
        throw classify(err, {});
      });
    let stored = await lockOffset();
    if (stored >= chunk.nextOffset) {
      await q('COMMIT');
      return { kind: 'behind', stored };
    }
    if (stored < chunk.firstOffset && stored !== gapFrom) {
      await q('ROLLBACK');
      return { kind: 'gap', stored };
    }
    const counts: Counts = new Map();
    const paths: Counts = new Map();
    const transcoded: Counts = new Map();
    const staged = new Set<string>();
    let rows = 0;
    for (const seg of segments) {
      for (const run of seg.runs) {
        const partial = stored > chunk.firstOffset;
        const records = partial ? run.records.filter((r) => BigInt(r.change.offset) >= stored) : run.records;
        const fast = partial ? run.fast.filter((f) => BigInt(f.raw.offset) >= stored) : run.fast;
        if (records.length === 0 && fast.length === 0) continue;
        const { table, omit } = tables.get(run)!;
        current = `${run.version.dest.schema}.${run.version.dest.name}`;
        const tablePaths = new TablePaths(current, ctx, paths, transcoded, staged);
        count(counts, current, records, opOf);
        count(counts, current, fast, (f) => f.op);
        // Applies the fast rows; returns those left to the general path.
        const applyFast = async (): Promise<DecodedRecord[]> => {
          const done = await applyFastRows(client, q, table!, fast, ctx, tablePaths, omit);
          rows += done.rows;
          return done.general;
        };
        const applyGeneral = async (rs: DecodedRecord[]): Promise<void> => {
          if (rs.length === 0) return;
          const truncate = run.version.sources.length > 1 ? rs.find((r) => r.change.op === 't') : undefined;
          if (truncate) throw sharedTruncateError(truncate.table);
          const plan: ApplyPlan = table === null ? [{ kind: 'truncate' }] : collapse(rs.map((r) => r.change), table, omit);
          rows += await runPlan(client, q, table ?? truncateTarget(run.version), plan, ctx, tablePaths);
        };
        // Fast rows' keys have no event among the records, yet may equal one of them at the
        // destination (`'A'` = `'a'` under a case-insensitive collation: no canonical key
        // text, key-equality.ts). Such a key's delete precedes its create in the partition, so
        // records that delete go first; otherwise the fast rows do, their fallbacks joining
        // the records' collapse (one upsert statement).
        const withFast = table !== null && fast.length > 0;
        if (withFast && !records.some(deletes)) {
          await applyGeneral(records.concat(await applyFast()));
        } else {
          await applyGeneral(records);
          if (withFast) await applyGeneral(await applyFast());
        }
      }
      const b = seg.barrier;
      if (!b || BigInt(b.record.change.offset) < stored) continue;
      const at = BigInt(b.record.change.offset);
      const v = b.record.table;
      current = `${v.dest.schema}.${v.dest.name}`;
      const res = await arriveAtBarrier(client, { groupId: ctx.groupId, topic: chunk.topic, partition: chunk.partition, offset: at }, b.mark, wait, chunk.logStarts && { logStarts: chunk.logStarts, logger: ctx.logger }).catch((err: unknown) =>
        Promise.reject(classify(err, {})),
      );
      if (res.verdict === 'wait') {
        // Everything before the copy is applied; the copy itself is applied once all partitions reached theirs.
        await q(commitSql(at));
        return { kind: 'waiting', at, truncate: b.mark.id, delivery: b.mark.delivery, arrived: res.arrived, partitions: b.mark.partitions, counts, paths, transcoded, rows };
      }
      if (res.verdict === 'truncate') await q(truncateSql(truncateTarget(v)));
      if (res.verdict === 'abandoned') {
        ctx.logger.info(
          { topic: chunk.topic, partition: chunk.partition, offset: String(at), truncate: b.mark.id, delivery: b.mark.delivery, table: current },
          'truncate copy passed without truncating: the source sent this truncate again (a replay after a crash part-way through its copies), and its later delivery truncates once every partition reached it',
        );
      }
      count(counts, current, [b.record], opOf);
      if (seg === segments[segments.length - 1]) continue;
      // The barrier's lock lasts as long as this transaction: end it here, so that the rest of
      // the batch (its own transaction) cannot hold every other partition at the barrier, be
      // it slow or frozen in the middle of a COPY.
      await q(commitSql(at + 1n));
      stored = await lockOffset();
      if (stored >= chunk.nextOffset) {
        await q('COMMIT');
        return { kind: 'behind', stored };
      }
      staged.clear();
    }
    current = undefined;
    if (chunk.extra) await chunk.extra(client, stored > chunk.firstOffset ? stored : chunk.firstOffset);
    await q(commitSql(chunk.nextOffset));
    return { kind: 'applied', counts, paths, transcoded, rows };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    if (err instanceof DirectCopyConflict) return applyChunk(client, chunk, { ...ctx, directCopy: null }, gapFrom);
    await readAfreshIfChanged(client, err, written, ctx);
    // Driver errors were classified where they happened; a bug of ours must not look retriable.
    if (err instanceof ShardBridgeError && current && err.context.table === undefined) throw withTable(err, current);
    throw err;
  }
}

/**
 * After a failed batch: when a table it wrote changed since its catalog was read (the commit's
 * check said so, or a statement failed for good and the catalog differs now), the catalogs are
 * forgotten and the batch is retried, read afresh, rather than narrowed down to a stall: a
 * column widened to take a value the old plan's cast refuses is then no stall at all, and one
 * that still fails stalls with what the new catalog says. Returns when nothing changed.
 */
async function readAfreshIfChanged(client: pg.ClientBase, err: unknown, written: readonly ApplyTable[], ctx: ApplyContext): Promise<void> {
  let changed: string[];
  if (err instanceof Error && isDriftFailure(err.message)) changed = written.map((t) => `${t.schema}.${t.name}`);
  else {
    // Only failures that would stall: transient ones are retried as they are anyway.
    if (!(err instanceof SinkApplyError) || isRetriable(err)) return;
    const sql = catalogDriftSql(written);
    if (sql === null) return;
    try {
      changed = (await client.query<{ name: string }>(sql)).rows.map((r) => r.name);
    } catch {
      return; // the failure itself is what the caller reports
    }
  }
  if (changed.length === 0) return;
  for (const t of written) ctx.states.invalidate(destIdOf(t.schema, t.name));
  ctx.logger.info({ tables: changed }, `destination table ${changed.join(', ')} changed since the sink read its catalog: the batch is applied again with the catalog read afresh`);
  throw new RetriableError(`destination table ${changed.join(', ')} changed since its catalog was read: applying the batch again with the catalog read afresh`, {
    context: { table: changed[0] },
    cause: err,
  });
}

/** What a run is applied against: its table (null: truncates only), and the columns its records carry that the source dropped since (not written). */
interface PreparedRun {
  table: ApplyTable | null;
  omit: ReadonlySet<string>;
}

const NOTHING: ReadonlySet<string> = new Set();

/**
 * The ApplyTable for a run, adding missing columns under autoEvolve; columns the destination
 * lacks and the source dropped in a later version are left out (source-drops.ts), once per
 * version here, so that every path below writes the rows without them.
 */
async function prepareRun(client: pg.ClientBase, q: Query, run: TableRun, topic: string, ctx: ApplyContext): Promise<PreparedRun> {
  if (run.key === null && run.fast.length === 0 && run.records.every((r) => r.change.op === 't')) return { table: null, omit: NOTHING };
  const key = run.key ?? [];
  const versions = new Set<TableVersion>();
  for (const r of run.records) versions.add(r.table);
  for (const f of run.fast) versions.add(f.table);
  let table = await resolve(client, run.version, key, ctx);
  for (const v of versions) table = await resolve(client, v, key, ctx);
  const omit = new Set<string>();
  // Missing columns of `v` the source did not drop since; 'unknown' when the registry could not say.
  const missingOf = async (v: TableVersion): Promise<{ missing: { name: string; pgType: string | null }[]; registryDown: boolean }> => {
    const all = missingColumns(table, v).filter((c) => !omit.has(c.name));
    if (all.length === 0) return { missing: all, registryDown: false };
    const dropped = await ctx.states.droppedAtSource(table, v, topic, all);
    if (dropped === 'unknown') return { missing: all, registryDown: true };
    for (const c of dropped) omit.add(c);
    return { missing: all.filter((c) => !dropped.has(c.name)), registryDown: false };
  };
  for (const v of versions) {
    const always = identityAlwaysError(table, v);
    if (always) throw always;
    const { missing, registryDown } = await missingOf(v);
    if (missing.length === 0) continue;
    const generated = missing.find((c) => table.generated?.includes(c.name));
    if (generated) throw generatedColumnError(table, generated.name, v);
    if (!ctx.autoEvolve) throw ctx.states.missingColumnError(table, v, missing[0], registryDown);
    // Not knowing whether the source dropped it, autoEvolve could add back a column the source no
    // longer has: retried (as an unreachable registry is), until the registry answers.
    if (registryDown) {
      throw new RetriableError(`column ${missing[0].name} is missing on ${table.schema}.${table.name}, and the schema registry did not answer whether the source dropped it since: autoEvolve adds it only once it does`, {
        context: { table: `${table.schema}.${table.name}`, column: missing[0].name },
      });
    }
    // A mapping that names no source column was meant for one of these: adding them would leave the intended column empty.
    if (v.unmatchedRenames.length > 0) throw unmatchedRenamesError(table, missing[0], v);
    for (const c of missing) {
      if (c.pgType === null) throw ctx.states.missingColumnError(table, v, c);
      const sql = addColumnSql(table, { name: c.name, pgType: c.pgType });
      ctx.logger.warn({ table: `${table.schema}.${table.name}`, column: c.name, type: c.pgType }, ctx.states.autoEvolveLine(v, c.name, sql));
      await q(sql).catch((err: unknown) => {
        throw classify(err, { table: `${table.schema}.${table.name}`, column: c.name });
      });
    }
    ctx.states.invalidate(v.destId);
    table = await resolve(client, v, key, ctx);
    const still = missingColumns(table, v).filter((c) => !omit.has(c.name));
    if (still.length > 0) throw ctx.states.missingColumnError(table, v, still[0]);
  }
  // Fast rows stage from their own, lower threshold (apply-fast.ts).
  if (run.records.length + run.fast.length >= ctx.stagingMinRows || stagesFastRows(run.fast, ctx)) await ensureStaging(client, q, table);
  return { table, omit: omit.size === 0 ? NOTHING : omit };
}

async function resolve(client: pg.ClientBase, v: TableVersion, key: readonly string[], ctx: ApplyContext): Promise<ApplyTable> {
  try {
    return await ctx.states.resolve(client, v, key);
  } catch (err) {
    throw classify(err, { table: `${v.dest.schema}.${v.dest.name}` });
  }
}

function truncateTarget(v: TableVersion): ApplyTable {
  if (v.sources.length > 1) throw sharedTruncateError(v);
  return { schema: v.dest.schema, name: v.dest.name, columns: [], sourceKey: [], destKey: [], citus: 'local' };
}

/** Runs the plan's statements; returns the number of rows bound. */
async function runPlan(client: pg.ClientBase, q: Query, table: ApplyTable, plan: ApplyPlan, ctx: ApplyContext, paths: TablePaths): Promise<number> {
  let rows = 0;
  for (const step of plan) {
    if (step.kind === 'truncate') {
      await q(truncateSql(table));
      continue;
    }
    for (const g of step.upserts) {
      if (!g.inPlace) continue;
      await updateInPlace(q, table, g, ctx.logger);
      paths.used('in_place', g.rows.length);
      rows += g.rows.length;
    }
    for (const ks of [step.deletes, step.exactDeletes]) {
      if (ks.rows.length === 0) continue;
      const st = buildDelete(table, ks.columns);
      await q(st.text, arrayLiterals(st.bind(ks.rows)));
      rows += ks.rows.length;
    }
    if (step.sparingDeletes.rows.length > 0) {
      const st = buildSparingDelete(table);
      await q(st.text, arrayLiterals(st.bind(step.sparingDeletes.rows)));
    }
    for (const g of step.upserts) if (g.inPlace) await createInPlaceGroup(q, table, g, ctx.logger);
    for (const g of step.upserts) {
      if (g.inPlace) continue;
      await upsertGroup(client, q, table, g, ctx, paths);
      rows += g.rows.length;
    }
  }
  return rows;
}

/** A record whose plan may delete rows: a delete, or an update whose before-image may name another key or place. */
const deletes = (r: DecodedRecord): boolean => r.change.op === 'd' || (r.change.op === 'u' && r.change.before !== null);

/** A group's fresh rows straight into the table when the policy allows, the rest by upsert. */
async function upsertGroup(client: pg.ClientBase, q: Query, table: ApplyTable, g: UpsertGroup, ctx: ApplyContext, paths: TablePaths): Promise<void> {
  let rest = g.rows;
  if (paths.direct(g.fresh)) {
    const fresh = g.fresh === g.rows.length ? g.rows : g.rows.slice(0, g.fresh);
    if ((await copyIntoTarget(client, table, g.columns, { rows: fresh })) === 'conflict') paths.conflict();
    paths.succeeded();
    paths.used('direct_copy', fresh.length);
    rest = fresh === g.rows ? [] : g.rows.slice(g.fresh);
  }
  if (rest.length === 0) return;
  if (rest.length >= ctx.stagingMinRows) {
    await upsertViaStaging(client, q, table, g.columns, { rows: rest }, paths.staged);
    paths.used('staging', rest.length);
  } else {
    const st = buildUpsert(table, g.columns);
    await q(st.text, arrayLiterals(st.bind(rest)));
    paths.used('unnest', rest.length);
  }
}

