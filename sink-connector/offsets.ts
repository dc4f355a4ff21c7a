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
import { RetriableError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { STAGING_SCHEMA } from './upsert-batch.ts';
import { BARRIER_TABLES_SQL } from './truncate-barrier.ts';
import { createOwnSchemasSql, quoteLiteral } from '../shared/sql.ts';

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
      await client.query(CREATE_SINK_TABLES_SQL + BARRIER_TABLES_SQL);
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // 23505 on pg_type / pg_namespace, 42P07 / 42P06: a concurrent creator won.
      if (attempt >= 5 || !(code === '23505' || code === '42P07' || code === '42P06')) throw err;
    }
  }
}

/** Stored next offsets of the given topic-partitions (absent: nothing applied yet). */
export async function readStoredOffsets(
  client: pg.ClientBase,
  groupId: string,
  tps: readonly { topic: string; partition: number }[],
): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  if (tps.length === 0) return out;
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    `SELECT o.topic, o.partition, o.next_offset FROM shardbridge.sink_offsets o
       JOIN unnest($2::text[], $3::int[]) AS a(topic, partition) USING (topic, partition)
      WHERE o.group_id = $1`,
    [groupId, tps.map((t) => t.topic), tps.map((t) => t.partition)],
  );
  for (const r of rows) out.set(tpKey(r.topic, r.partition), BigInt(r.next_offset));
  return out;
}

/**
 * BEGIN, then lock the partition's offsets row for this transaction and return the stored next
 * offset. ON CONFLICT DO UPDATE both creates a missing row (at 0) and, after waiting for a
 * concurrent holder, returns the latest committed value (what a plain SELECT's snapshot would
 * miss). One round trip for both: a batch pays one per statement, and each waits longer while
 * the sink decodes another partition. The simple protocol takes several statements but no
 * parameters, so the values are inlined as literals. `wait.ms` bounds the wait for the row
 * (lock_timeout, this statement only); past it the error says who holds the row (offsetRowHeld).
 */
export async function beginAndLockOffset(
  client: pg.ClientBase,
  groupId: string,
  topic: string,
  partition: number,
  wait?: { ms: number; logger: Logger },
): Promise<bigint> {
  const lockWaitMs = wait?.ms;
  const bounded = lockWaitMs !== undefined && lockWaitMs > 0;
  const sql =
    (bounded ? `BEGIN; SET LOCAL lock_timeout = ${Math.trunc(lockWaitMs)}; ` : 'BEGIN; ') +
    'INSERT INTO shardbridge.sink_offsets AS o (group_id, topic, partition, next_offset) ' +
    `VALUES (${quoteLiteral(groupId)}, ${quoteLiteral(topic)}, ${partitionLiteral(partition)}, 0) ` +
    'ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = o.next_offset RETURNING next_offset' +
    (bounded ? '; SET LOCAL lock_timeout TO DEFAULT' : '');
  let results: pg.QueryResult<{ next_offset: string }>[];
  try {
    results = (await client.query(sql)) as unknown as pg.QueryResult<{ next_offset: string }>[];
  } catch (err) {
    if (wait && bounded && (err as { code?: string }).code === '55P03') throw await offsetRowHeld(client, { groupId, logger: wait.logger, waitedMs: wait.ms }, topic, partition, err);
    throw err;
  }
  return BigInt(results[bounded ? 2 : 1].rows[0].next_offset);
}

/** The session that held a partition's offsets row past the wait, as pg_stat_activity shows it. */
export interface OffsetHolder {
  pid: number;
  applicationName: string;
  state: string;
  waitEvent: string | null;
  transactionSeconds: number;
  /** Ended by us: a session of a sink. */
  ended: boolean;
}

/**
 * After beginAndLockOffset's wait ran out (its transaction is rolled back here): who holds
 * the row. The partition is this member's by the group's assignment, so a sink session holding
 * it belongs to a member that lost it and has not moved for the whole wait: frozen (SIGSTOP, a
 * paused VM) or cut off, possibly in the middle of a COPY, where the destination's idle
 * timeouts do not apply. It is ended (same role: no privilege needed); its batch rolls back,
 * and a thawed member finds this one's offset and drops the batch. Anyone else's session is
 * only reported. Null when the holder is gone already, or inserted the row and has not committed.
 */
async function endOffsetHolder(client: pg.ClientBase, groupId: string, topic: string, partition: number): Promise<OffsetHolder | null> {
  await client.query('ROLLBACK');
  // The row's xmax is the locking transaction while it runs.
  // (A row not committed yet has no version to read: its first batch's transaction, unnamed.)
  const { rows } = await client.query(
    `SELECT a.pid, coalesce(a.application_name, '') AS app, coalesce(a.state, '') AS state, a.wait_event,
            coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8 AS secs
       FROM shardbridge.sink_offsets o JOIN pg_stat_activity a ON a.backend_xid = o.xmax
      WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = $3 AND a.pid <> pg_backend_pid()`,
    [groupId, topic, partition],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  const holder: OffsetHolder = { pid: r.pid, applicationName: r.app, state: r.state, waitEvent: r.wait_event, transactionSeconds: Math.round(r.secs), ended: false };
  if (holder.applicationName.startsWith('shardbridge-sink')) {
    holder.ended = (await client.query('SELECT pg_terminate_backend($1) AS ok', [holder.pid])).rows[0].ok === true;
  }
  return holder;
}

/** A retriable error saying who held the partition's offsets row past the wait, and whether it was ended. */
async function offsetRowHeld(
  client: pg.ClientBase,
  ctx: { groupId: string; logger: Logger; waitedMs: number },
  topic: string,
  partition: number,
  err: unknown,
): Promise<Error> {
  const where = { topic, partition };
  const holder = await endOffsetHolder(client, ctx.groupId, topic, partition).catch((e: unknown) => {
    ctx.logger.warn({ ...where, err: (e as Error).message }, "cannot tell who holds the partition's offsets row");
    return null;
  });
  const waited = `waited ${ctx.waitedMs} ms for the offsets row of ${topic}[${partition}]`;
  if (!holder) return new RetriableError(`${waited}; its holder is gone, or is the transaction that inserts the row`, { cause: err, context: where });
  const fields = { ...where, pid: holder.pid, applicationName: holder.applicationName, state: holder.state, waitEvent: holder.waitEvent, transactionSeconds: holder.transactionSeconds };
  if (holder.ended) {
    ctx.logger.warn(fields, 'ended the destination session of a sink member that held this partition without moving (frozen or cut off inside a batch): its batch rolls back, and this member applies on');
    return new RetriableError(`${waited}; ended the sink session (pid ${holder.pid}) holding it`, { cause: err, context: where });
  }
  const remedy = `end that session if it is stuck: SELECT pg_terminate_backend(${holder.pid})`;
  ctx.logger.warn({ ...fields, remedy }, "a session that is not a sink's holds this partition's offsets row: waiting for it");
  return new RetriableError(`${waited}: held by pid ${holder.pid} (${holder.applicationName || 'no application_name'}, ${holder.state}, in a transaction for ${holder.transactionSeconds} s); waiting for it`, {
    cause: err,
    context: where,
    remedy,
  });
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
 * partition, in the caller's transaction.
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
     ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
    [groupId, topic, offsets.map((o) => o.partition), offsets.map((o) => o.offset.toString())],
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

  get(topic: string, partition: number): bigint | undefined {
    return this.next.get(tpKey(topic, partition));
  }

  set(topic: string, partition: number, next: bigint): void {
    this.next.set(tpKey(topic, partition), next);
  }

  /** Replace everything with the positions read at a group join. */
  reset(entries: Iterable<[string, bigint]>): void {
    this.next.clear();
    this.gapSeeked.clear();
    for (const [k, v] of entries) this.next.set(k, v);
  }

  /**
   * A batch started above the stored offset. The first time for that stored offset the
   * caller seeks back to it; if Kafka still cannot serve it (retention removed the records)
   * the second time accepts the gap.
   */
  acceptGap(topic: string, partition: number, stored: bigint): boolean {
    const k = tpKey(topic, partition);
    if (this.gapSeeked.get(k) === stored) return true;
    this.gapSeeked.set(k, stored);
    return false;
  }
}
