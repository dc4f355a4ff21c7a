/**
 * A session's slot decision (connector.ts runs it after the Kafka set-up and before the stream):
 *  - no slot: create one exporting a snapshot, copy the tables from it (unless snapshot mode
 *    is `never`), then stream from its consistent point;
 *  - a slot, and every table's snapshot completed from it: stream from it;
 *  - a slot, and some tables without a snapshot complete from it (added to the selection, back
 *    in the publication, cut short): snapshot those alone from a temporary slot, then stream
 *    from the kept slot, leaving out their changes older than that snapshot (skip-points.ts);
 *  - a slot, but no table's snapshot complete from it (the `__snapshot` topic says so): drop it
 *    and redo everything from a fresh slot (the sink is idempotent);
 *  - a slot that vanished or was invalidated after we published from it: stop with a
 *    SourceError — changes were lost, never silently start over.
 * `initial_only` keeps no slot: it copies from a temporary one (snapshotOnly).
 */
import type pg from 'pg';
import type { TableInfo } from '../shared/pg-types.ts';
import { describeResnapshot, judgeSnapshotState, slotCreated, slotForgotten, snapshotStarted, type SnapshotState } from './control-topics.ts';
import { snapshottedBefore } from './earlier-snapshots.ts';
import { slotLostError } from './monitor.ts';
import type { PartitionInfo } from './partitions.ts';
import { parseLsn } from './pgoutput-decoder.ts';
import { checkSlotAtStart, publicationGone, publicationRemade } from './restart-drift.ts';
import { ownSnapshotPoints, type SkipPoints } from './skip-points.ts';
import { alignmentPoint, alterSlotFailover, createSlotWithSnapshot, createTemporarySlot, dropSlot, slotStatus, temporarySlotName } from './slot.ts';
import { ensurePublication, publicationOidOf, type PublicationGaps } from './publication.ts';
import { snapshotVersions } from './snapshot.ts';
import { startOwnSnapshot, takeSnapshot, truncateBeforeResnapshot, type SnapshotRunContext } from './snapshot-run.ts';
import type { TableVersion } from './table-versions.ts';

export interface SlotDecisionContext {
  /** What the snapshots of this session need (snapshot-run.ts). */
  run(): SnapshotRunContext;
  /** The normal connection to the source. */
  client: pg.Client;
  /** `__snapshot` as of the session's start. */
  state: SnapshotState;
  /** Read before the publication is altered (publication.ts). */
  gaps: PublicationGaps;
  /** The partitions of selected partitioned tables, read before the slot (partitions.ts). */
  partitions: PartitionInfo[];
  attached: ReadonlyMap<string, string[]>;
  /** Every table version (TableVersions.all()). */
  versions(): TableVersion[];
  /** Table topics this process created (earlier-snapshots.ts). */
  freshTopics: ReadonlySet<string>;
  /** Ends what runs beside the stream (a table's own snapshot being copied) with the session. */
  sessionSignal: AbortSignal;
  beforeOwnCopy?: () => Promise<void>;
  /** Told the copy of a table's own snapshot started beside the stream, at once. */
  onOwnCopy(copied: Promise<void>): void;
}

/** Decide, create or drop the slot, take the snapshots that go first: where the stream starts and what it leaves out. */
/**
 * `publicationOid`: the publication's oid the slot is known to stream through (a slot made now, or
 * one whose marker recorded it), for the monitor to stop on another; undefined when the marker
 * predates the record.
 */
export async function decideSlot(ctx: SlotDecisionContext): Promise<{ from: bigint | null; skip: SkipPoints; publicationOid: number | undefined }> {
  const { client, state, gaps } = ctx;
  const { config: cfg, source, publisher, topics, admin, log } = ctx.run();
  const selectedVersions = () => snapshotVersions(ctx.versions(), source.tables);
  let slot = await slotStatus(client, cfg.slotName);
  // Configuration changed while stopped, a lost __snapshot (restart-drift.ts).
  await checkSlotAtStart(client, slot, state, {
    slot: cfg.slotName,
    database: source.database,
    topicPrefix: cfg.topicPrefix,
    snapshotTopic: topics.snapshot,
    mode: cfg.snapshot.mode,
    topicsExisted: selectedVersions().some((v) => !ctx.freshTopics.has(v.topic)),
  }, log);
  if (slot && !gaps.exists) {
    const selected = source.tables.map(qualified);
    await publicationGone(client, { slot: cfg.slotName, publication: cfg.publicationName, selected, mode: cfg.snapshot.mode }, log);
    gaps.missing = selected;
  } else if (slot && publicationRemade(state.slots.get(cfg.slotName)?.publicationOid, gaps.oid, { slot: cfg.slotName, publication: cfg.publicationName, mode: cfg.snapshot.mode }, log)) {
    gaps.missing = source.tables.map(qualified);
  }
  const verdict = judgeSnapshotState(state, { slot: cfg.slotName, tables: source.tables.map(qualified), slotExists: slot !== null, republished: gaps.missing, narrowed: gaps.narrowed, attached: ctx.attached });
  if (verdict.publishedFromSlot || slot !== null) {
    const lost = slotLostError(slot, cfg.slotName);
    if (lost) throw lost;
  }
  let own: TableInfo[] = [];
  if (slot && cfg.snapshot.mode === 'initial' && verdict.incomplete.length > 0) {
    const confirmed = slot.confirmedFlushLsn;
    const slotKept = confirmed !== null && verdict.incomplete.length < source.tables.length;
    const why = describeResnapshot(verdict.incomplete, { slotKept });
    log.warn({ slot: cfg.slotName, ...why.tables }, why.message);
    if (slotKept) {
      const names = new Set(verdict.incomplete.map((i) => i.table));
      own = source.tables.filter((t) => names.has(qualified(t)));
      // Said before the publication changes: a stop before their snapshots complete leaves
      // them started, so that the next start takes them again (a table back in the
      // publication no longer shows as missing from it).
      for (const v of snapshotVersions(ctx.versions(), own)) {
        const m = snapshotStarted({ table: v.qualified, tableSchema: v.table.schema, tableName: v.table.name, topic: v.topic, slot: cfg.slotName, consistentPoint: confirmed, estimatedRows: 0 });
        publisher.publishRaw(topics.snapshot, m.key, m.value);
      }
      await publisher.barrier();
    } else {
      // Said before the drop: a start that finds the slot gone after a stop in between (say,
      // while the new slot waits for old transactions) knows the connector dropped it itself.
      const forget = slotForgotten(cfg.slotName);
      publisher.publishRaw(topics.snapshot, forget.key, forget.value);
      await publisher.barrier();
      await dropSlot(client, cfg.slotName, log);
      slot = null;
    }
  }
  // Written on a standby source's primary (source.write()): the standby has it once replayed.
  const writer = await source.write();
  await ensurePublication(writer, cfg.publicationName, source.tables, log, source.primaryConnection ? 'primary' : 'source');
  // Altering keeps the oid: read again only for one this start made.
  const publicationOid = gaps.oid ?? (await publicationOidOf(writer, cfg.publicationName));
  let vouched = state.slots.get(cfg.slotName)?.publicationOid === publicationOid ? publicationOid : undefined;
  // Changes of tables no longer selected that the slot still holds were committed before this, or made by transactions running now.
  const aligned = await alignmentPoint(writer);
  // A slot made on a standby before it replayed the publication would decode changes through none.
  await source.replayed(`publication ${cfg.publicationName}`, ctx.run().signal);
  let ownCopy: { point: bigint; copied: Promise<void> } | null = null;
  if (!slot) {
    // A slot that published (also under snapshot mode never) may have sent rows its drop leaves stale; so may a
    // table with a marker, or records in its topic without one (earlier-snapshots.ts): truncate first.
    const earlier =
      cfg.snapshot.mode === 'initial' &&
      (verdict.publishedFromSlot || (await snapshottedBefore(admin, selectedVersions(), state, ctx.freshTopics, log)).length > 0);
    if (earlier) await truncateBeforeResnapshot(ctx.run(), selectedVersions());
    const exported = await createSlotWithSnapshot(source.connection, cfg.slotName, log, { signal: ctx.run().signal, failover: cfg.slotFailover, primary: source.primaryConnection });
    try {
      const marker = slotCreated(cfg.slotName, exported.consistentPoint, undefined, publicationOid);
      vouched = publicationOid;
      publisher.publishRaw(topics.snapshot, marker.key, marker.value);
      await publisher.barrier();
      if (cfg.snapshot.mode === 'initial') await takeSnapshot(ctx.run(), exported, selectedVersions());
    } finally {
      await exported.release();
    }
    slot = await slotStatus(client, cfg.slotName);
    const lost = slotLostError(slot, cfg.slotName);
    if (lost) throw lost;
  } else {
    // The kept slot follows slotFailover (17+: before, failover is null and slotFailover refused by the start-up checks).
    if (typeof slot.failover === 'boolean' && slot.failover !== cfg.slotFailover) await alterSlotFailover(source.connection, cfg.slotName, cfg.slotFailover, log);
    if (!state.slots.has(cfg.slotName) && slot.confirmedFlushLsn !== null) {
      // The slot kept, its marker gone (__snapshot deleted or emptied; snapshot.mode never keeps
      // the slot even then): written again, so that the slot vanishing later is still lost changes.
      const marker = slotCreated(cfg.slotName, slot.confirmedFlushLsn, undefined, publicationOid);
      vouched = publicationOid;
      publisher.publishRaw(topics.snapshot, marker.key, marker.value);
      await publisher.barrier();
    }
    if (own.length > 0) {
      ownCopy = await startOwnSnapshot({ ...ctx.run(), signal: ctx.sessionSignal, beforeCopy: ctx.beforeOwnCopy }, snapshotVersions(ctx.versions(), own), state, ctx.freshTopics);
      ctx.onOwnCopy(ownCopy.copied);
    }
  }
  const from = slot!.confirmedFlushLsn;
  const completed = [...state.tables.values()].flatMap((m) => (m.kind === 'completed' && m.slot === cfg.slotName ? [{ table: m.table, consistentPoint: parseLsn(m.consistentPoint) }] : []));
  if (ownCopy) for (const t of own) completed.push({ table: qualified(t), consistentPoint: ownCopy.point });
  return {
    from,
    publicationOid: vouched,
    skip: {
      tables: ownSnapshotPoints(completed, from),
      unselectedBefore: aligned.lsn,
      runningAtAlignment: aligned.running,
      partitions: new Map(ctx.partitions.map((p) => [p.name, p.rootName])),
      copying: ownCopy ? { tables: new Set(own.map(qualified)), done: ownCopy.copied } : undefined,
    },
  };
}

/** Snapshot mode `initial_only`: the tables copied from a temporary slot, no stream after. */
export async function snapshotOnly(run: SnapshotRunContext, client: pg.Client, tables: TableVersion[]): Promise<void> {
  const { config: cfg, source, log } = run;
  const writer = await source.write();
  await ensurePublication(writer, cfg.publicationName, source.tables, log, source.primaryConnection ? 'primary' : 'source');
  await source.replayed(`publication ${cfg.publicationName}`, run.signal);
  const exported = await createTemporarySlot(source.connection, temporarySlotName(cfg.slotName, 'init'), 'snapshot mode initial_only', log, run.signal, source.primaryConnection);
  try {
    await takeSnapshot(run, exported, tables);
  } finally {
    await exported.release();
  }
}

function qualified(t: TableInfo): string {
  return `${t.schema}.${t.name}`;
}
