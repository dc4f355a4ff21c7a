/**
 * Where each partition of a new assignment starts: its stored offset in the destination,
 * the only position the sink trusts (offsets.ts), 0 when nothing was applied.
 *
 * The consumer fetches from the group's committed offsets as soon as it has joined, while
 * the stored offsets are still being read, and a seek discards what that fetch brings. So
 * the group's committed offsets are read beside the stored ones, and a partition is sought
 * only where the two differ: after a clean stop they are equal and the first fetch is used.
 */
import type pg from 'pg';
import type { Admin } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import { classify, withPooledClient } from './destination-errors.ts';
import { readStoredOffsets, tpKey } from './offsets.ts';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface StartPlan {
  /** tpKey → next offset, for every assigned partition. */
  positions: [string, bigint][];
  /** The partitions the consumer would fetch from elsewhere. */
  seeks: (TopicPartition & { offset: bigint })[];
  /**
   * Partitions whose group offset is set and differs from the stored one (an operator's
   * `kafka-consumer-groups --reset-offsets`, or commits a crash left behind): the sink goes
   * by the stored one, and says so.
   */
  overridden: (TopicPartition & { group: bigint; stored: bigint })[];
}

/** Pure: the start of every partition, and which need a seek given the group's committed offsets (null: unknown, seek all). */
export function planStart(tps: readonly TopicPartition[], stored: ReadonlyMap<string, bigint>, committed: ReadonlyMap<string, bigint> | null): StartPlan {
  const positions: [string, bigint][] = [];
  const seeks: StartPlan['seeks'] = [];
  const overridden: StartPlan['overridden'] = [];
  for (const { topic, partition } of tps) {
    const k = tpKey(topic, partition);
    const next = stored.get(k) ?? 0n;
    positions.push([k, next]);
    const group = committed?.get(k);
    if (group !== next) seeks.push({ topic, partition, offset: next });
    if (group !== undefined && group !== next) overridden.push({ topic, partition, group, stored: next });
  }
  return { positions, seeks, overridden };
}

/** A partition recorded as stalled; `reason` is the row's sqlstate column (a stall's reason when it has no SQLSTATE, stall.ts). */
export interface StalledRow extends TopicPartition {
  offset: bigint;
  reason: string | null;
}

/**
 * Partitions recorded as stalled past their end (offset-gaps.ts), by tpKey: they stay stalled
 * while the offset they stalled at is stored, whatever the topic made again holds by now. Pure.
 */
export function pastEndStalls(stalled: readonly StalledRow[]): [string, { stored: bigint }][] {
  return stalled.filter((s) => s.reason === 'past-end').map((s) => [tpKey(s.topic, s.partition), { stored: s.offset }]);
}

/** The stored offsets of `tps` and the partitions recorded as stalled for the group; destination errors classified (retriable or not). */
export function readStored(pool: pg.Pool, groupId: string, tps: readonly TopicPartition[]): Promise<{ stored: Map<string, bigint>; stalled: StalledRow[] }> {
  return withPooledClient(pool, async (client) => {
    try {
      const stored = await readStoredOffsets(client, groupId, tps);
      const { rows } = await client.query<{ topic: string; partition: number; next_offset: string; sqlstate: string | null }>(
        'SELECT topic, partition, next_offset, sqlstate FROM shardbridge.stalls WHERE group_id = $1',
        [groupId],
      );
      return { stored, stalled: rows.map((r) => ({ topic: r.topic, partition: r.partition, offset: BigInt(r.next_offset), reason: r.sqlstate })) };
    } catch (err) {
      throw classify(err, {});
    }
  });
}

/** The group's committed offsets of `tps` by tpKey (none for a partition without one); null when they cannot be read. */
export async function readCommitted(admin: Admin, groupId: string, tps: readonly TopicPartition[], log: Logger): Promise<Map<string, bigint> | null> {
  try {
    const out = new Map<string, bigint>();
    for (const t of await admin.fetchGroupOffsets(groupId, [...new Set(tps.map((tp) => tp.topic))])) {
      for (const p of t.partitions) {
        const offset = BigInt(p.offset);
        if (offset >= 0n) out.set(tpKey(t.topic, p.partition), offset);
      }
    }
    return out;
  } catch (err) {
    log.debug({ err: (err as Error).message }, 'group offsets not read: every partition is sought to its stored position');
    return null;
  }
}
