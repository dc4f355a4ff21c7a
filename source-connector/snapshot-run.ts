/**
 * A session's snapshots, around snapshot.ts's copy: the markers in `__snapshot` (started,
 * completed with each partition's end offset), the truncate sent before a snapshot that
 * replaces an earlier one, the sequence values after it, and a table's own snapshot from a
 * temporary slot while the connector's slot is kept (slot-decision.ts decides which).
 */
import { ShardBridgeError, SourceError, isRetriable } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';
import type { Admin } from '../shared/kafka/client.ts';
import type { SourceConfig } from './config.ts';
import { settledEndOffsets, snapshotCompleted, snapshotStarted, type ControlTopics, type SnapshotState } from './control-topics.ts';
import { truncateRecords, type TruncateFanout } from './envelope.ts';
import type { Publisher } from './publisher.ts';
import { CopyGuard } from './copy-guard.ts';
import { snapshottedBefore } from './earlier-snapshots.ts';
import { createTemporarySlot, temporarySlotName, type ExportedSlot } from './slot.ts';
import { runSnapshot } from './snapshot.ts';
import type { SourceSession } from './source-session.ts';
import type { TableVersion } from './table-versions.ts';

export interface SnapshotRunContext {
  config: SourceConfig;
  source: SourceSession;
  publisher: Publisher;
  admin: Admin;
  topics: ControlTopics;
  metrics: Metrics;
  log: Logger;
  signal: AbortSignal;
  /** Per partitioned table, its ATTACHed partitions as this session found them (partitions.ts). */
  attached(): ReadonlyMap<string, string[]>;
  truncateFanout(topic: string): TruncateFanout;
  publishSequences(): Promise<void>;
  onSnapshotPhase(): void;
  /** Awaited before a table's own snapshot is copied (StartOptions.beforeOwnCopy). */
  beforeCopy?: () => Promise<void>;
}

/**
 * Copy `tables` from the exported snapshot into their topics, with their markers. `markerSlot`:
 * the slot the markers name (a table's own snapshot is read from a temporary slot, for the kept
 * one's stream).
 */
export async function takeSnapshot(ctx: SnapshotRunContext, exported: ExportedSlot, tables: TableVersion[], markerSlot = exported.slotName): Promise<void> {
  const { config: cfg, publisher, log } = ctx;
  ctx.onSnapshotPhase();
  const started = Date.now();
  const attached = ctx.attached();
  const rows = await runSnapshot({
    connection: ctx.source.connection,
    snapshotName: exported.snapshotName,
    readers: cfg.snapshot.parallelReaders,
    chunkSize: cfg.snapshot.chunkSize,
    tables,
    publisher,
    db: ctx.source.database,
    consistentPoint: exported.consistentPoint,
    transcode: cfg.transcode,
    log,
    metrics: ctx.metrics,
    signal: ctx.signal,
    onImported: () => exported.release(),
    onTableStarted: (v, estimatedRows) => {
      const m = snapshotStarted({ table: v.qualified, tableSchema: v.table.schema, tableName: v.table.name, topic: v.topic, slot: markerSlot, consistentPoint: exported.consistentPoint, estimatedRows });
      publisher.publishRaw(ctx.topics.snapshot, m.key, m.value);
    },
    onTableRead: async (v, count) => {
      await publisher.barrier();
      const endOffsets = await settledEndOffsets(ctx.admin, v.topic, log);
      const partitions = ctx.source.tables.some((t) => t.relid === v.relid && t.partitioned) ? (attached.get(v.qualified) ?? []) : undefined;
      const m = snapshotCompleted({ table: v.qualified, tableSchema: v.table.schema, tableName: v.table.name, topic: v.topic, slot: markerSlot, consistentPoint: exported.consistentPoint, rows: count, endOffsets, attached: partitions });
      publisher.publishRaw(ctx.topics.snapshot, m.key, m.value);
    },
  });
  await publisher.barrier();
  await ctx.publishSequences();
  const total = [...rows.values()].reduce((a, b) => a + b, 0);
  const secs = (Date.now() - started) / 1000;
  log.info({ tables: rows.size, rows: total, seconds: Math.round(secs * 10) / 10, rowsPerSecond: Math.round(total / Math.max(secs, 0.001)) }, 'snapshot completed');
}

/**
 * A snapshot that replaces an earlier one (cut short, or from a slot dropped to take it
 * again) is preceded by a truncate of each of its tables into its topic (all partitions, as a
 * source TRUNCATE): the sink empties the destination tables first. Otherwise a row the earlier
 * snapshot sent, or that was there when the dropped slot's unstreamed WAL deleted it, would
 * stay at the destination: the new snapshot has no record of rows that are gone.
 * The same id every time, told apart by the session's delivery: a fan-out cut short by a
 * crash is then abandoned by the next attempt's copies, not waited for forever.
 */
export async function truncateBeforeResnapshot(ctx: SnapshotRunContext, tables: TableVersion[]): Promise<void> {
  const tsMs = Date.now();
  for (const v of tables) {
    const source = v.schemas.sourceFor({ db: ctx.source.database, tsMs });
    const { value, keys } = truncateRecords({ schemas: v.schemas, source, tsMs, tombstones: false }, ctx.truncateFanout(v.topic), 'resnapshot');
    ctx.publisher.publishFanout(v, value, keys, null);
  }
  await ctx.publisher.barrier();
  ctx.log.warn({ tables: tables.map((v) => v.qualified) }, 'a truncate of each table went to its topic before its new snapshot: the sink empties these destination tables and applies the snapshot again');
}

/**
 * Tables added to the selection (or back in it) while the slot is kept: each is snapshotted
 * on its own, after a truncate into its topic when it had a snapshot before, from a temporary
 * slot's exported snapshot. Returns once that snapshot is exported, with its point and the
 * copy under way: the stream resumes from the kept slot meanwhile, leaving out these tables'
 * changes committed before the point and holding their later ones until the copy is done
 * (skip-points.ts); the other tables are neither read again nor held back.
 */
export async function startOwnSnapshot(
  ctx: SnapshotRunContext,
  versions: TableVersion[],
  state: SnapshotState,
  /** Table topics this process created (earlier-snapshots.ts). */
  freshTopics: ReadonlySet<string> = new Set(),
): Promise<{ point: bigint; copied: Promise<void> }> {
  const slot = ctx.config.slotName;
  // A marker, or records in the topic without one (__snapshot lost): rows deleted since the slot's position must go.
  const earlier = await snapshottedBefore(ctx.admin, versions, state, freshTopics, ctx.log);
  if (earlier.length > 0) await truncateBeforeResnapshot(ctx, earlier);
  const exported = await createTemporarySlot(ctx.source.connection, temporarySlotName(slot, 'own'), "a table's own snapshot", ctx.log, ctx.signal, ctx.source.primaryConnection);
  ctx.onSnapshotPhase();
  // Before the stream resumes: its changes of these tables are sent as they come, their keys noted.
  const guard = new CopyGuard(versions.map((v) => v.topic));
  const unguard = ctx.publisher.guardKeys(guard);
  const copied = (async () => {
    try {
      if (ctx.beforeCopy) await Promise.race([ctx.beforeCopy(), new Promise<never>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }))]);
      await takeSnapshot(ctx, exported, versions, slot);
      for (const [topic, n] of guard.skipped) {
        ctx.log.info({ topic, leftOut: n }, `${n} snapshot row(s) of ${topic} left out: the stream had already sent a later change of their keys`);
      }
    } catch (err) {
      throw ownCopyError(err, versions);
    } finally {
      unguard();
      await exported.release();
    }
  })();
  // Settled by whoever waits for it (the stream, the session's end); never unhandled.
  copied.catch(() => {});
  return { point: exported.consistentPoint, copied };
}

/**
 * The copy's failure reaches the connector through the stream (connector.ts), which would take
 * a server error for its own ("replication stream failed: relation … does not exist"): said as
 * the copy's, naming its tables. Ours and retriable ones (a connection lost) pass as they are.
 */
function ownCopyError(err: unknown, versions: TableVersion[]): unknown {
  if (err instanceof ShardBridgeError || isRetriable(err)) return err;
  const tables = versions.map((v) => v.qualified).join(', ');
  const e = err as { message?: string; code?: string };
  return new SourceError(`the own snapshot of ${tables} failed: ${e?.message ?? String(err)}`, {
    cause: err,
    context: { tables, sqlstate: e?.code ?? null },
    remedy: 'start the source connector again: it takes these tables\' snapshot again (a table dropped meanwhile is no longer selected)',
  });
}
