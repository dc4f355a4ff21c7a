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
import { isLockTimeout } from './lock-holder.ts';
import { tpKey } from './offsets.ts';
import { recreatedStall, type StoredRow, type TopicCheck } from './topic-identity.ts';
import type { StallInfo } from './stall.ts';

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

/**
 * The stored offsets of `tps`, every stored row of their topics (topic-identity.ts) and the
 * partitions recorded as stalled for the group; destination errors classified (retriable or not).
 */
export function readStored(pool: pg.Pool, groupId: string, tps: readonly TopicPartition[]): Promise<{ stored: Map<string, bigint>; rows: StoredRow[]; stalled: StalledRow[] }> {
  return withPooledClient(pool, async (client) => {
    try {
      const { rows: found } = await client.query<{ topic: string; partition: number; next_offset: string; topic_id: string | null }>(
        'SELECT topic, partition, next_offset, topic_id FROM shardbridge.sink_offsets WHERE group_id = $1 AND topic = ANY($2::text[])',
        [groupId, [...new Set(tps.map((t) => t.topic))]],
      );
      const rows = found.map((r) => ({ topic: r.topic, partition: r.partition, offset: BigInt(r.next_offset), topicId: r.topic_id }));
      const assigned = new Set(tps.map((t) => tpKey(t.topic, t.partition)));
      const stored = new Map(rows.map((r) => [tpKey(r.topic, r.partition), r.offset] as const).filter(([k]) => assigned.has(k)));
      const { rows: stalls } = await client.query<{ topic: string; partition: number; next_offset: string; sqlstate: string | null }>(
        'SELECT topic, partition, next_offset, sqlstate FROM shardbridge.stalls WHERE group_id = $1',
        [groupId],
      );
      return { stored, rows, stalled: stalls.map((r) => ({ topic: r.topic, partition: r.partition, offset: BigInt(r.next_offset), reason: r.sqlstate })) };
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

/**
 * Record the topic id of assigned partitions (topic-identity.ts `record`): a row at offset 0 for
 * a partition with none, so that its first batch's offset is stored under the id. A row a batch
 * holds (a frozen member's, or a session inside a COPY) is left for a later join: waiting on it
 * here would hold up the join, and with it what ends such a holder (lock-holder.ts).
 */
export function recordTopicIds(pool: pg.Pool, groupId: string, record: readonly { topic: string; partition: number; id: string }[], log?: Logger): Promise<void> {
  if (record.length === 0) return Promise.resolve();
  return withPooledClient(pool, async (client) => {
    try {
      // A row another session is inserting makes the insert wait for it: bounded.
      await client.query(`BEGIN; SET LOCAL lock_timeout = ${RECORD_LOCK_WAIT_MS}`);
      await client.query(
        `WITH u AS (SELECT * FROM unnest($2::text[], $3::int[], $4::text[]) AS u(topic, partition, id)),
         free AS (SELECT o.topic, o.partition FROM shardbridge.sink_offsets o JOIN u USING (topic, partition)
                   WHERE o.group_id = $1 AND (o.topic_id IS NULL OR o.next_offset = 0) FOR UPDATE OF o SKIP LOCKED),
         adopted AS (UPDATE shardbridge.sink_offsets o SET topic_id = u.id FROM u JOIN free USING (topic, partition)
                  WHERE o.group_id = $1 AND o.topic = u.topic AND o.partition = u.partition)
         INSERT INTO shardbridge.sink_offsets (group_id, topic, partition, next_offset, topic_id)
         SELECT $1, u.topic, u.partition, 0, u.id FROM u
          WHERE NOT EXISTS (SELECT FROM shardbridge.sink_offsets o WHERE o.group_id = $1 AND o.topic = u.topic AND o.partition = u.partition)
         ON CONFLICT DO NOTHING`,
        [groupId, record.map((r) => r.topic), record.map((r) => r.partition), record.map((r) => r.id)],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (isLockTimeout(err)) {
        log?.debug({ err }, 'topic ids not recorded: an offsets row is being created by another session (recorded at a later join)');
        return;
      }
      throw classify(err, {});
    }
  });
}

/** How long recording topic ids waits for a row another session is creating. */
const RECORD_LOCK_WAIT_MS = 2_000;

/** The stalls of partitions whose topic was created again (topic-identity.ts): the new partitions' offsets, the tables as recorded when applied (applied-mappings.ts). */
export async function recreatedStalls(admin: Admin, pool: pg.Pool, groupId: string, recreated: TopicCheck['recreated']): Promise<StallInfo[]> {
  const out: StallInfo[] = [];
  for (const topic of new Set(recreated.map((r) => r.topic))) {
    const ranges = await admin.offsetRanges(topic).catch(() => []);
    const mapped = await withPooledClient(pool, (c) =>
      c.query<{ source: string; dest: string }>("SELECT source_table AS source, dest_schema || '.' || dest_table AS dest FROM shardbridge.sink_mappings WHERE group_id = $1 AND topic = $2", [groupId, topic]),
    ).then((r) => r.rows[0] ?? {}, () => ({}));
    for (const r of recreated.filter((x) => x.topic === topic)) {
      const range = ranges.find((x) => x.partition === r.partition);
      out.push(recreatedStall({ ...r, start: BigInt(range?.start ?? 0), end: BigInt(range?.end ?? 0) }, mapped));
    }
  }
  return out;
}
