/**
 * Whether a stored offset is still a position in the same topic. A topic deleted and created
 * again under its name (by an operator, or by the source after a cleanup) starts at offset 0
 * again, below the sink's stored offsets: past the stored one the new records would be applied
 * and those before it skipped as applied, silently, since Kafka serves those offsets all the same
 * (a stored offset past the new end is caught by offset-gaps.ts, but not this). Kafka's topic id
 * (KIP-516) tells the two topics apart: each partition's row in `shardbridge.sink_offsets` keeps
 * the id its offset was stored under, recorded at the group join that assigns it.
 *
 * Pure; join-positions.ts reads and records, group-join.ts stalls.
 */
import type { StallInfo } from './stall.ts';
import type { GapTables } from './offset-gaps.ts';
import { tpKey } from './offsets.ts';

export interface StoredRow {
  topic: string;
  partition: number;
  offset: bigint;
  /** null: stored before ids were recorded, or moved by `shardbridge replay` since. */
  topicId: string | null;
}

export interface TopicCheck {
  /** Assigned partitions whose stored offset is a position in another topic of the same name. */
  recreated: { topic: string; partition: number; stored: bigint; was: string; now: string }[];
  /** Stored offsets of partitions the topic no longer has (a topic made again with fewer partitions). */
  vanished: { topic: string; partitions: number; stored: { partition: number; offset: bigint }[] }[];
  /** Assigned partitions to record the current id for: no row yet, no id yet, or nothing applied under the old one. */
  record: { topic: string; partition: number; id: string }[];
}

/**
 * `rows`: every stored row of the assigned partitions' topics; `current`: the topics' ids and
 * partition counts (null: the broker has none, nothing is checked).
 */
export function checkTopicIds(
  tps: readonly { topic: string; partition: number }[],
  rows: readonly StoredRow[],
  current: ReadonlyMap<string, { id: string; partitions: number }> | null,
): TopicCheck {
  const out: TopicCheck = { recreated: [], vanished: [], record: [] };
  if (current === null) return out;
  const byKey = new Map(rows.map((r) => [tpKey(r.topic, r.partition), r]));
  for (const { topic, partition } of tps) {
    const now = current.get(topic);
    if (!now) continue;
    const row = byKey.get(tpKey(topic, partition));
    if (!row || row.topicId === null || (row.topicId !== now.id && row.offset === 0n)) out.record.push({ topic, partition, id: now.id });
    else if (row.topicId !== now.id) out.recreated.push({ topic, partition, stored: row.offset, was: row.topicId, now: now.id });
  }
  const assigned = new Set(tps.map((t) => t.topic));
  const gone = new Map<string, { partition: number; offset: bigint }[]>();
  for (const r of rows) {
    const now = current.get(r.topic);
    if (!now || !assigned.has(r.topic) || r.partition < now.partitions || r.offset === 0n) continue;
    const list = gone.get(r.topic) ?? [];
    list.push({ partition: r.partition, offset: r.offset });
    gone.set(r.topic, list);
  }
  for (const [topic, stored] of gone) out.vanished.push({ topic, partitions: current.get(topic)!.partitions, stored: stored.sort((a, b) => a.partition - b.partition) });
  return out;
}

/** What to do about offsets stored in a topic that is not there any more (offset-gaps.ts says it for a stored offset past the end too). */
export function recreatedRemedy(topic: string, partition: number | null, source?: string): string {
  const which = partition === null ? '' : ` --partition ${partition}`;
  return (
    `if the topic was created again, with the sink stopped run \`shardbridge replay --sink-config sink.yaml --topic ${topic}${which} --to-offset 0\` ` +
    `(and resnapshot the table${source ? ` ${source}` : ''} if changes were lost with the old topic); to start the migration over, ` +
    '`shardbridge cleanup --drop-control-tables` as docs/migration-runbook.md describes'
  );
}

/** The stall of a partition whose stored offset is a position in the topic's former self. Pure. */
export function recreatedStall(
  at: { topic: string; partition: number; stored: bigint; was: string; now: string; start: bigint; end: bigint },
  tables: GapTables,
): StallInfo {
  const holds = at.end > at.start ? `holds offsets ${at.start}..${at.end - 1n}` : `is empty (end offset ${at.end})`;
  return {
    topic: at.topic,
    partition: at.partition,
    offset: String(at.stored),
    reason: 'past-end',
    table: tables.dest,
    message:
      `${at.topic}[${at.partition}] was deleted and created again under the sink's stored offset ${at.stored} (topic id ${at.was} when stored, ${at.now} now); ` +
      `the new partition ${holds}: applied on from ${at.stored}, its records before that would be skipped as already applied`,
    remedy: recreatedRemedy(at.topic, at.partition, tables.source),
  };
}

/** The error line of stored offsets in partitions a topic no longer has. Pure. */
export function vanishedMessage(v: TopicCheck['vanished'][number]): { msg: string; remedy: string } {
  const list = v.stored.map((s) => `[${s.partition}] at ${s.offset}`).join(', ');
  return {
    msg:
      `${v.topic} has ${v.partitions} partition${v.partitions === 1 ? '' : 's'} now, but the sink stored offsets in partitions it no longer has: ${list}. ` +
      'Kafka cannot remove partitions: the topic was deleted and created again with fewer, and what the sink applied of the old one is not in it',
    remedy: `${recreatedRemedy(v.topic, null)}; the offsets of the partitions that are gone stay stored, unused, until then`,
  };
}
