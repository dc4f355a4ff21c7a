/**
 * The stored offset against what Kafka still has. Stall, never drop:
 *
 * - a fetched batch starting above the stored offset (after one seek back to it) is a gap. If
 *   Kafka's log start is above the stored offset, records the sink never applied are gone
 *   (retention, deleteRecords): the partition stalls until its offset is moved (replay). If not,
 *   the offsets in between hold no records (transaction markers, compaction): nothing is lost.
 * - a stored offset above the partition's end (its high watermark) means the topic was deleted and
 *   created again (or lost its data) under the sink's offsets: every record of the new topic
 *   would be dropped as already applied. It stalls too.
 *
 * Pure: the decisions and their stall descriptions; partition-batch.ts asks Kafka and stalls.
 */
import type { StallInfo } from './stall.ts';
import { resnapshotCommand } from '../shared/migration/remedies.ts';
import { recreatedRemedy } from './topic-identity.ts';

export type GapKind = 'lost' | 'empty';

/** Whether the offsets between the stored one and the first fetched record held records Kafka no longer has. Pure. */
export function classifyGap(stored: bigint, logStart: bigint): GapKind {
  return logStart > stored ? 'lost' : 'empty';
}

/** The partition's tables: source (for resnapshot) and destination (the one missing changes). */
export interface GapTables {
  source?: string;
  dest?: string;
}

/** Records between `stored` and `logStart` are gone. Pure. */
export function lostRecordsStall(at: { topic: string; partition: number; stored: bigint; logStart: bigint }, tables: GapTables): StallInfo {
  const gone = at.logStart - at.stored;
  const resnapshot = `run \`${resnapshotCommand(tables.source ?? '<schema.table>')}\` (the source connector truncates and copies that table again: at once while it streams, else at its next start)`;
  const replay = `\`shardbridge replay --sink-config sink.yaml --topic ${at.topic} --partition ${at.partition} --to-offset ${at.logStart}\``;
  return {
    topic: at.topic,
    partition: at.partition,
    offset: String(at.stored),
    reason: 'gap',
    table: tables.dest,
    message:
      `records the sink never applied are gone from Kafka (retention or deleteRecords): ${at.topic}[${at.partition}] has stored offset ${at.stored} ` +
      `but the first offset Kafka has is ${at.logStart}: ${gone} offset${gone === 1n ? ' is' : 's are'} gone`,
    remedy:
      `the destination table${tables.dest ? ` ${tables.dest}` : ''} misses those changes. To repair it: ${resnapshot}; ` +
      `then, with the sink stopped, ${replay} to go on from what Kafka has`,
  };
}

/** The stored offset is past the partition's end. Pure. */
export function pastEndStall(at: { topic: string; partition: number; stored: bigint; end: bigint }, tables: GapTables): StallInfo {
  return {
    topic: at.topic,
    partition: at.partition,
    offset: String(at.stored),
    reason: 'past-end',
    table: tables.dest,
    message:
      (at.stored > at.end
        ? `stored offset ${at.stored} is past the end of the partition (Kafka's end offset is ${at.end}): `
        : `stored offset ${at.stored} was found past the end of the partition before (Kafka's end offset is now ${at.end}): `) +
      `${at.topic}[${at.partition}] was deleted and created again, ` +
      'or lost its data, under the sink\'s stored offsets; its records would be dropped as already applied',
    remedy: recreatedRemedy(at.topic, at.partition, tables.source),
  };
}

/**
 * A stored offset above the batch's high watermark cannot be right: the sink stores an offset
 * only after applying the record before it, which Kafka had then. Pure.
 */
export function pastEnd(stored: bigint | undefined, highWatermark: bigint): boolean {
  return stored !== undefined && stored > highWatermark;
}
