/**
 * Which tables about to be snapshotted had a snapshot (or changes) in Kafka before, so that a
 * truncate goes to their topics first (snapshot-run.ts, truncateBeforeResnapshot). The
 * `__snapshot` markers say so, but an operator may delete that topic, or shorten its retention
 * under a `delete` policy, while the connectors are stopped: the table topics then still hold
 * records the sink applied, and rows deleted at the source since the last confirmed position
 * would stay at the destination (the new snapshot has no record of rows that are gone). So a
 * table without a marker counts as snapshotted before when its topic ever had a record.
 */
import type { Admin } from '../shared/kafka/ports.ts';
import type { Logger } from '../shared/logger.ts';
import { inParallel } from '../shared/in-parallel.ts';
import type { SnapshotState } from './control-topics.ts';

/** End-offset requests at once: one per topic (kafkajs has no request for many). */
const CONCURRENCY = 16;

/**
 * No marker at all while the connector's slot exists: `__snapshot` was deleted or emptied
 * (the slot is only ever made with its marker written after). Pure.
 */
export function snapshotTopicLost(state: SnapshotState, slotExists: boolean): boolean {
  return slotExists && state.tables.size === 0 && state.slots.size === 0;
}

/**
 * The tables among `tables` with a marker, or, without one, whose topic ever had a record
 * (an end offset above 0). Topics in `fresh` were created by this process and are not asked
 * about: a first start of thousands of tables makes no request per table.
 */
export async function snapshottedBefore<T extends { qualified: string; topic: string }>(
  admin: Admin,
  tables: readonly T[],
  state: SnapshotState,
  fresh: ReadonlySet<string>,
  log: Logger,
): Promise<T[]> {
  const unmarked = tables.filter((t) => !state.tables.has(t.qualified) && !fresh.has(t.topic));
  const held = await inParallel(unmarked, CONCURRENCY, async (t) => (await admin.endOffsets(t.topic)).some((e) => BigInt(e.offset) > 0n));
  const withRecords = new Set(unmarked.filter((_, i) => held[i]).map((t) => t.qualified));
  if (withRecords.size > 0) {
    log.warn(
      { tables: [...withRecords] },
      'tables without a snapshot marker in __snapshot have records in their topics (the control topic was deleted, or its records removed by retention): they count as snapshotted before',
    );
  }
  return tables.filter((t) => state.tables.has(t.qualified) || withRecords.has(t.qualified));
}
