/**
 * The destination is the source of truth for the sink's position: `shardbridge.sink_offsets`
 * holds the next offset per (group, topic, partition) and is written in the same
 * transaction as the rows. Kafka group offsets are committed afterwards for monitoring only.
 *
 * Every batch transaction starts by locking its partition's offsets row (`beginAndLockOffset`):
 * a second sink that still applies a partition it has lost waits for the lock and then
 * sees the new owner's position, so it cannot apply a batch twice.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { heldPastWait, HOLDER_COLUMNS, isLockTimeout, withLockTimeout, type HeldLock } from './lock-holder.ts';
import { STAGING_SCHEMA } from './staging-sql.ts';
import { BARRIER_TABLES_SQL } from './truncate-barrier.ts';
import { CREATE_MAPPINGS_SQL } from './applied-mappings.ts';
import { createOwnSchemasSql, quoteLiteral } from '../shared/sql.ts';
import type { StallInfo } from './stall.ts';

// The sink's own tables: plain tables on the coordinator, never distributed nor Citus-managed
// (citus issue 6729), also where citus.use_citus_managed_tables is on (for this transaction).
export const CREATE_SINK_TABLES_SQL = `
SELECT set_config('citus.use_citus_managed_tables', 'off', true) WHERE current_setting('citus.use_citus_managed_tables', true) IS NOT NULL;
${createOwnSchemasSql('shardbridge', STAGING_SCHEMA)};
CREATE TABLE IF NOT EXISTS shardbridge.sink_offsets (
  group_id text NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, partition)
);
-- The topic's id (KIP-516) the offset is a position in (topic-identity.ts); added to older tables,
-- only when missing (an ALTER would queue behind running batches' row locks, and them behind it).
DO $sb$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'shardbridge.sink_offsets'::regclass AND attname = 'topic_id' AND NOT attisdropped) THEN
    ALTER TABLE shardbridge.sink_offsets ADD COLUMN IF NOT EXISTS topic_id text;
  END IF;
END $sb$;
CREATE TABLE IF NOT EXISTS shardbridge.snapshot_status (
  topic text PRIMARY KEY,
  table_name text NOT NULL,
  state text NOT NULL,
  rows_expected bigint,
  end_offsets jsonb,
  completed_at timestamptz
);
CREATE TABLE IF NOT EXISTS shardbridge.sequence_sync (
  sequence_name text PRIMARY KEY,
  source_value bigint,
  applied_value bigint,
  applied_at timestamptz
);
CREATE TABLE IF NOT EXISTS shardbridge.stalls (
  group_id text NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL,
  next_offset bigint NOT NULL,
  table_name text,
  sqlstate text,
  error text NOT NULL,
  attempts int NOT NULL DEFAULT 1,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, partition)
);
`;

export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

/** Create the sink's own tables. Two sinks starting together may race on CREATE … IF NOT EXISTS: retry. */
export async function ensureSinkTables(client: pg.ClientBase): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query(CREATE_SINK_TABLES_SQL + BARRIER_TABLES_SQL + CREATE_MAPPINGS_SQL);
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // 23505 on pg_type / pg_namespace, 42P07 / 42P06: a concurrent creator won.
      if (attempt >= 5 || !(code === '23505' || code === '42P07' || code === '42P06')) throw err;
    }
  }
}

/**
 * BEGIN, then lock the partition's offsets row for this transaction and return the stored next
 * offset. ON CONFLICT DO UPDATE both creates a missing row (at 0) and, after waiting for a
 * concurrent holder, returns the latest committed value (what a plain SELECT's snapshot would
 * miss). One round trip for both: a batch pays one per statement, and each waits longer while
 * the sink decodes another partition. The simple protocol takes several statements but no
 * parameters, so the values are inlined as literals. `wait.ms` bounds the wait for the row
 * (lock_timeout, this statement only); past it the error says who holds the row (lock-holder.ts).
 */
export async function beginAndLockOffset(
  client: pg.ClientBase,
  groupId: string,
  topic: string,
  partition: number,
  wait?: { ms: number; logger: Logger },
): Promise<bigint> {
  const bounded = wait !== undefined && wait.ms > 0;
  const lock =
    'INSERT INTO shardbridge.sink_offsets AS o (group_id, topic, partition, next_offset) ' +
    `VALUES (${quoteLiteral(groupId)}, ${quoteLiteral(topic)}, ${partitionLiteral(partition)}, 0) ` +
    'ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = o.next_offset RETURNING next_offset';
  let results: pg.QueryResult<{ next_offset: string }>[];
  try {
    results = (await client.query(`BEGIN; ${withLockTimeout(lock, wait?.ms)}`)) as unknown as pg.QueryResult<{ next_offset: string }>[];
  } catch (err) {
    if (bounded && isLockTimeout(err)) throw await heldPastWait(client, offsetRow(groupId, topic, partition), { logger: wait.logger, waitedMs: wait.ms }, err);
    throw err;
  }
  return BigInt(results[bounded ? 2 : 1].rows[0].next_offset);
}

/**
 * The partition's offsets row as a held lock. Its xmax is the locking transaction while that
 * runs. (A row not committed yet has no version to read: its first batch's transaction, unnamed.)
 */
function offsetRow(groupId: string, topic: string, partition: number): HeldLock {
  return {
    what: `the offsets row of ${topic}[${partition}]`,
    where: { topic, partition },
    holderSql: `SELECT ${HOLDER_COLUMNS}
       FROM shardbridge.sink_offsets o JOIN pg_stat_activity a ON a.backend_xid = o.xmax
      WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = $3 AND a.pid <> pg_backend_pid()`,
    params: [groupId, topic, partition],
  };
}

/** Store the partition's next offset and COMMIT, in one round trip (see beginAndLockOffset). */
export function storeOffsetAndCommitSql(groupId: string, topic: string, partition: number, next: bigint): string {
  return (
    'INSERT INTO shardbridge.sink_offsets (group_id, topic, partition, next_offset, updated_at) ' +
    `VALUES (${quoteLiteral(groupId)}, ${quoteLiteral(topic)}, ${partitionLiteral(partition)}, ${next.toString()}, now()) ` +
    'ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at; COMMIT'
  );
}

function partitionLiteral(partition: number): string {
  if (!Number.isInteger(partition) || partition < 0) throw new RangeError(`invalid partition ${partition}`);
  return String(partition);
}

/**
 * Offsets of one topic as `shardbridge replay` sets them: upsert of `next_offset` per
 * partition, in the caller's transaction. The topic id is forgotten: the operator moved the
 * offset to a position in the topic as it is now, whose id the next join records.
 */
export async function setStoredOffsets(
  client: pg.ClientBase,
  groupId: string,
  topic: string,
  offsets: readonly { partition: number; offset: bigint }[],
): Promise<void> {
  if (offsets.length === 0) return;
  await client.query(
    `INSERT INTO shardbridge.sink_offsets (group_id, topic, partition, next_offset)
     SELECT $1, $2, u.partition, u.next_offset FROM unnest($3::int[], $4::bigint[]) AS u(partition, next_offset)
     ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, topic_id = NULL, updated_at = now()`,
    [groupId, topic, offsets.map((o) => o.partition), offsets.map((o) => o.offset.toString())],
  );
}

/** Forget the stored offsets of partitions a topic no longer has (replay of a topic created again with fewer), in the caller's transaction. */
export async function forgetPartitions(client: pg.ClientBase, groupId: string, topic: string, partitions: readonly number[]): Promise<void> {
  if (partitions.length === 0) return;
  await client.query('DELETE FROM shardbridge.sink_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])', [groupId, topic, partitions]);
}

/**
 * Forget the recorded stalls of partitions `shardbridge replay` moved, in the caller's transaction:
 * a stall names the position the partition stood at (status showed it until the sink next applied
 * there, after a replay that was its remedy too); one that persists is recorded again when reached.
 */
export async function forgetStalls(client: pg.ClientBase, groupId: string, topic: string, partitions: readonly number[]): Promise<void> {
  if (partitions.length === 0) return;
  await client.query(
    `DELETE FROM shardbridge.stalls WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])`,
    [groupId, topic, partitions],
  );
}

/** Stored offsets of every partition of one topic (replay, status). */
export async function readTopicOffsets(client: pg.ClientBase, groupId: string, topic: string): Promise<Map<number, bigint>> {
  const { rows } = await client.query<{ partition: number; next_offset: string }>(
    'SELECT partition, next_offset FROM shardbridge.sink_offsets WHERE group_id = $1 AND topic = $2',
    [groupId, topic],
  );
  return new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}

/**
 * In-memory view of the stored positions of the partitions this member owns: what it has
 * committed itself, or read at the last group join. Records below it are dropped before
 * any work; the lock in each transaction remains the authority.
 */
export class PositionTracker {
  private readonly next = new Map<string, bigint>();
  /** Partitions whose gap (stored offset below the fetched records) was seeked once already. */
  private readonly gapSeeked = new Map<string, bigint>();
  /**
   * Partitions found with their stored offset past the partition's end (offset-gaps.ts), at that
   * offset: they stay stalled while it is stored, also once the topic made again grows past it.
   */
  private readonly pastEnd = new Map<string, { stored: bigint; info?: StallInfo }>();

  get(topic: string, partition: number): bigint | undefined {
    return this.next.get(tpKey(topic, partition));
  }

  set(topic: string, partition: number, next: bigint): void {
    this.next.set(tpKey(topic, partition), next);
  }

  /** Replace everything with the positions read at a group join, and the partitions recorded past their end. */
  reset(entries: Iterable<[string, bigint]>, pastEnd: Iterable<[string, { stored: bigint; info?: StallInfo }]> = []): void {
    this.next.clear();
    this.gapSeeked.clear();
    this.pastEnd.clear();
    for (const [k, v] of entries) this.next.set(k, v);
    for (const [k, v] of pastEnd) if (this.next.get(k) === v.stored) this.pastEnd.set(k, v);
  }

  /**
   * A batch started above the stored offset. The first time for that stored offset the caller
   * seeks back to it; if Kafka still cannot serve it, the second time the caller looks at
   * Kafka's log start (offset-gaps.ts).
   */
  gapSeekedBefore(topic: string, partition: number, stored: bigint): boolean {
    const k = tpKey(topic, partition);
    if (this.gapSeeked.get(k) === stored) return true;
    this.gapSeeked.set(k, stored);
    return false;
  }

  markPastEnd(topic: string, partition: number, stored: bigint, info: StallInfo): void {
    this.pastEnd.set(tpKey(topic, partition), { stored, info });
  }

  /** Whether the partition was found past its end at the offset it still stores (its stall, when known). */
  pastEndOf(topic: string, partition: number): { info?: StallInfo } | undefined {
    if (this.pastEnd.size === 0) return undefined; // asked per batch: no key built while none is
    const k = tpKey(topic, partition);
    const e = this.pastEnd.get(k);
    return e !== undefined && e.stored === this.next.get(k) ? e : undefined;
  }
}
