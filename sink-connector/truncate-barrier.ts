/**
 * A source TRUNCATE arrives as one `t` record on every partition of the table's topic
 * (source-connector/truncate-fanout.ts). Partitions are applied independently, so truncating
 * when one partition reaches its copy would either miss rows another partition has not
 * applied yet (they come back) or wipe rows another partition applied after its own copy
 * (lost). The barrier: a partition that reaches its copy applies everything before it,
 * records its arrival and waits (stored offset = the `t` record, partition paused); the
 * partition whose arrival completes the set truncates the table, in the same transaction.
 * At that moment every partition has applied exactly its pre-truncate rows and none of its
 * later ones, which is the source's order. Waiting partitions then pass their copy.
 *
 * Each copy carries its delivery: the session of the source that sent it. A source that
 * crashed part-way through the fan-out left copies on some partitions only; its next session
 * replays the truncate, with a later delivery, after the replayed rows. So a round is a
 * delivery (and within it, for sources that send the same delivery again — older ones, all
 * delivery 0 — arrival k of a partition, by Kafka offset, belongs to round k). Each
 * partition's log holds the deliveries in order, so a partition that reached a later delivery
 * will never reach an earlier one: an incomplete round is abandoned as soon as any partition
 * arrives at a later delivery, and its copies are passed without truncating (their rows come
 * again in the replay, before the later delivery's copy).
 */
import type pg from 'pg';
import { parseTruncateKey } from '../source-connector/truncate-fanout.ts';
import type { Logger } from '../shared/logger.ts';
import { quoteLiteral } from '../shared/sql.ts';
import { withTimeout } from '../shared/retry.ts';
import { heldPastWait, HOLDER_COLUMNS, isLockTimeout, withLockTimeout, type HeldLock } from './lock-holder.ts';

export { parseTruncateKey };

export interface TruncateMark {
  id: string;
  partitions: number;
  /** The source session that sent this copy (0: an older source). */
  delivery: number;
}

/** `abandoned`: pass without truncating, a later delivery of the truncate is under way. */
export type BarrierVerdict = 'truncate' | 'pass' | 'abandoned' | 'wait';

export interface Arrival {
  partition: number;
  delivery: number;
  offset: bigint;
}

const byOffset = (a: { offset: bigint }, b: { offset: bigint }) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0);

/** How many arrivals of `delivery` each partition has. */
function countsOf(arrivals: readonly Arrival[], delivery: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const a of arrivals) if (a.delivery === delivery) out.set(a.partition, (out.get(a.partition) ?? 0) + 1);
  return out;
}

/**
 * Pure: what partition `me.partition` does with its copy, given every recorded arrival of the
 * truncate (this one included) and, per delivery, the rounds already truncated.
 */
export function judgeBarrier(
  arrivals: readonly Arrival[],
  partitions: number,
  me: Arrival,
  roundsDone: ReadonlyMap<number, number>,
): { verdict: BarrierVerdict; round: number; arrived: number } {
  const mine = arrivals.filter((a) => a.partition === me.partition && a.delivery === me.delivery).sort(byOffset);
  const at = mine.findIndex((a) => a.offset === me.offset);
  const round = (at < 0 ? mine.length : at) + 1;
  const counts = countsOf(arrivals, me.delivery);
  let arrived = 0;
  for (let p = 0; p < partitions; p++) if ((counts.get(p) ?? 0) >= round) arrived++;
  if (round <= (roundsDone.get(me.delivery) ?? 0)) return { verdict: 'pass', round, arrived };
  if (arrivals.some((a) => a.delivery > me.delivery)) return { verdict: 'abandoned', round, arrived };
  return { verdict: arrived === partitions ? 'truncate' : 'wait', round, arrived };
}

/** The barrier's tables: made with the sink's own tables at start (offsets.ts ensureSinkTables), in each destination. */
export const BARRIER_TABLES_SQL = `
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncate_arrivals (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
  arrived_at timestamptz NOT NULL DEFAULT now(), delivery bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (group_id, topic, truncate_id, kafka_partition, kafka_offset));
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncates (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, rounds int NOT NULL,
  truncated_at timestamptz NOT NULL DEFAULT now(), delivery bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (group_id, topic, truncate_id, delivery));
DO $$BEGIN
  -- Tables made before deliveries: what they hold is delivery 0. Checked first, so that a start takes no lock when done.
  -- By the key, not the column: a rollback to such a version puts its key back, the column left (docs/migration-runbook.md).
  IF NOT EXISTS (SELECT FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                 WHERE c.conrelid = 'shardbridge.sink_truncates'::regclass AND c.contype = 'p' AND a.attname = 'delivery') THEN
    ALTER TABLE shardbridge.sink_truncate_arrivals ADD COLUMN IF NOT EXISTS delivery bigint NOT NULL DEFAULT 0;
    ALTER TABLE shardbridge.sink_truncates ADD COLUMN IF NOT EXISTS delivery bigint NOT NULL DEFAULT 0,
      DROP CONSTRAINT IF EXISTS sink_truncates_pkey, ADD CONSTRAINT sink_truncates_pkey PRIMARY KEY (group_id, topic, truncate_id, delivery);
  END IF;
END$$;`;

/** What pruning needs: the first offset Kafka still has of each partition of the topic. */
export interface BarrierPrune {
  logStarts: () => Promise<ReadonlyMap<number, bigint>>;
  logger: Logger;
}

/**
 * Inside the batch transaction: record this partition's arrival and judge it. A verdict of
 * 'truncate' is recorded as done here; the caller runs the TRUNCATE in the same transaction,
 * and the topic's truncates that nothing can read again are forgotten (`prune`).
 */
export async function arriveAtBarrier(
  client: pg.ClientBase,
  at: { groupId: string; topic: string; partition: number; offset: bigint },
  mark: TruncateMark,
  wait?: { ms: number; logger: Logger },
  prune?: BarrierPrune,
): Promise<{ verdict: BarrierVerdict; round: number; arrived: number }> {
  const args = [at.groupId, at.topic, mark.id];
  // One judge at a time per truncate, every delivery: the partition completing a round, or
  // arriving at a later delivery, must see every arrival. The lock is held to the end of the
  // batch, so a member frozen later in that batch would hold every other partition here: the
  // wait is bounded as the offsets row's is (offsets.ts).
  const lockKey = `${at.groupId}/${at.topic}/${mark.id}`;
  await client.query(withLockTimeout(`SELECT pg_advisory_xact_lock(hashtextextended(${quoteLiteral(lockKey)}, 0))`, wait?.ms)).catch(async (err: unknown) => {
    if (wait && wait.ms > 0 && isLockTimeout(err)) throw await heldPastWait(client, barrierLock(lockKey, at, mark), { logger: wait.logger, waitedMs: wait.ms }, err);
    throw err;
  });
  await client.query(
    `INSERT INTO shardbridge.sink_truncate_arrivals (group_id, topic, truncate_id, kafka_partition, kafka_offset, delivery) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
    [...args, at.partition, at.offset.toString(), mark.delivery],
  );
  const { rows } = await client.query(
    `SELECT kafka_partition AS p, kafka_offset::text AS o, delivery::text AS d FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`,
    args,
  );
  const arrivals: Arrival[] = rows.map((r) => ({ partition: r.p, offset: BigInt(r.o), delivery: Number(r.d) }));
  const done = await client.query(`SELECT delivery::text AS d, rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`, args);
  const roundsDone = new Map<number, number>(done.rows.map((r) => [Number(r.d), Number(r.rounds)]));
  const judged = judgeBarrier(arrivals, mark.partitions, { partition: at.partition, offset: at.offset, delivery: mark.delivery }, roundsDone);
  if (judged.verdict === 'truncate') {
    await client.query(
      `INSERT INTO shardbridge.sink_truncates (group_id, topic, truncate_id, delivery, rounds) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (group_id, topic, truncate_id, delivery) DO UPDATE SET rounds = EXCLUDED.rounds, truncated_at = now()`,
      [...args, mark.delivery, judged.round],
    );
    if (prune) await pruneTruncates(client, at.groupId, at.topic, mark.id, prune);
  }
  return judged;
}

export interface RecordedRounds {
  truncateId: string;
  delivery: number;
  rounds: number;
}

/**
 * Pure: the truncates of a topic (other than `current`) whose barrier rows nothing can read
 * again. Their copies are judged again only when a partition reads one again: after a stop
 * while it waited at it (its stored offset is the copy's), or after a replay to before it,
 * which needs every copy's offset to refuse one that would cross it on some partitions only
 * (planBarrierRewind). A replay starts at Kafka's first offset at the earliest
 * (shared/cli/commands/replay.ts), so a truncate whose every recorded copy lies below its
 * partition's first offset (retention or deleteRecords removed it) can never be read again,
 * provided each of its rounds is complete or abandoned (no partition still has to arrive).
 * On a compacted topic copies stay (a key each): its truncates are kept.
 */
export function prunableTruncates(arrivals: readonly RecordedArrival[], done: readonly RecordedRounds[], logStarts: ReadonlyMap<number, bigint>, current: string): string[] {
  const byId = new Map<string, RecordedArrival[]>();
  for (const a of arrivals) {
    if (a.truncateId === current) continue;
    let list = byId.get(a.truncateId);
    if (!list) byId.set(a.truncateId, (list = []));
    list.push(a);
  }
  const out: string[] = [];
  for (const [id, list] of byId) {
    if (!list.every((a) => a.offset < (logStarts.get(a.partition) ?? -1n))) continue;
    const latest = Math.max(...list.map((a) => a.delivery));
    const rounds = (delivery: number) => done.find((d) => d.truncateId === id && d.delivery === delivery)?.rounds ?? 0;
    // Earlier deliveries were abandoned for the latest (judgeBarrier); its rounds must all be done.
    const most = Math.max(...countsOf(list, latest).values());
    if (rounds(latest) >= most) out.push(id);
  }
  return out.sort();
}

/**
 * Forgets the topic's truncates that nothing can read again (prunableTruncates), so that the
 * barrier's tables do not grow with every truncate. Kafka is asked only when a truncate of the
 * topic other than `current` is recorded; when it does not answer, nothing is pruned (the next
 * completed truncate tries again).
 */
async function pruneTruncates(client: pg.ClientBase, groupId: string, topic: string, current: string, prune: BarrierPrune): Promise<void> {
  const others = await client.query(`SELECT 1 FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id <> $3 LIMIT 1`, [groupId, topic, current]);
  if (others.rows.length === 0) return;
  let logStarts: ReadonlyMap<number, bigint>;
  try {
    logStarts = await withTimeout(prune.logStarts(), PRUNE_KAFKA_MS, `no answer within ${PRUNE_KAFKA_MS} ms`);
  } catch (err) {
    prune.logger.debug({ err, topic }, "truncates not pruned: Kafka's first offsets of the topic not read");
    return;
  }
  const arrivals = await readArrivals(client, groupId, topic);
  const { rows } = await client.query(`SELECT truncate_id, delivery::text AS d, rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2`, [groupId, topic]);
  const done = rows.map((r) => ({ truncateId: r.truncate_id as string, delivery: Number(r.d), rounds: Number(r.rounds) }));
  const ids = prunableTruncates(arrivals, done, logStarts, current);
  if (ids.length === 0) return;
  const args = [groupId, topic, ids];
  await client.query(`DELETE FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id = ANY($3)`, args);
  await client.query(`DELETE FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 AND truncate_id = ANY($3)`, args);
  prune.logger.info({ topic, truncates: ids }, 'truncates forgotten by the barrier: Kafka no longer has their copies, so no partition reads them again');
}

/** How long the barrier's transaction waits for Kafka's first offsets before it prunes nothing. */
const PRUNE_KAFKA_MS = 5_000;

/** The barrier's advisory lock (`pg_advisory_xact_lock(bigint)`: classid the key's high half, objid its low half, objsubid 1). */
function barrierLock(lockKey: string, at: { topic: string; partition: number }, mark: TruncateMark): HeldLock {
  return {
    what: `the barrier of truncate ${mark.id} of ${at.topic}`,
    where: { topic: at.topic, partition: at.partition, truncate: mark.id },
    holderSql: `WITH k AS (SELECT hashtextextended($1, 0) AS key)
      SELECT ${HOLDER_COLUMNS}
        FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid::int8 = (k.key >> 32) & 4294967295 AND l.objid::int8 = k.key & 4294967295 AND a.pid <> pg_backend_pid()`,
    params: [lockKey],
  };
}

export interface RecordedArrival extends Arrival {
  truncateId: string;
}

export interface BarrierRewind {
  /** A rewound partition would re-apply rows before a truncate that a partition left alone has passed. */
  refused: RecordedArrival | null;
  /** Arrivals at or after the new positions: those copies will be applied again. */
  forget: RecordedArrival[];
  /** Per affected truncate, per delivery: the rounds still complete after forgetting (0: none). */
  rounds: Map<string, Map<number, number>>;
}

/** Rounds in the order a partition's log holds them: by delivery, then by number within it. */
const roundOrder = (a: { delivery: number; k: number }, b: { delivery: number; k: number }) => a.delivery - b.delivery || a.k - b.k;

/**
 * Pure: what rewinding partitions to `moves` (partition → next offset) does to the barrier.
 * Copies at or after a new position are forgotten, so the re-applied copies truncate again
 * once every partition reached them. A truncate crossed by some partitions but not by others
 * that reached it cannot be redone (it would wipe what those applied after it, or let the
 * rewound partition's older rows come back): refused, naming the copy a partition would
 * have to be rewound to as well.
 */
export function planBarrierRewind(arrivals: readonly RecordedArrival[], moves: ReadonlyMap<number, bigint>, partitionCount: number): BarrierRewind {
  const crossed = (a: RecordedArrival) => moves.has(a.partition) && a.offset >= moves.get(a.partition)!;
  const forget = arrivals.filter(crossed);
  const affected = new Set(forget.map((a) => a.truncateId));
  let refused: RecordedArrival | null = null;
  const rounds = new Map<string, Map<number, number>>();
  for (const id of affected) {
    // A partition's arrivals by offset are its rounds in order; what a rewind forgets is a suffix.
    const perPartition = new Map<number, { a: RecordedArrival; delivery: number; k: number }[]>();
    for (const a of [...arrivals].filter((x) => x.truncateId === id).sort(byOffset)) {
      let list = perPartition.get(a.partition);
      if (!list) perPartition.set(a.partition, (list = []));
      list.push({ a, delivery: a.delivery, k: list.filter((x) => x.delivery === a.delivery).length + 1 });
    }
    // A round one partition forgets must be forgotten by every partition that reached it (or a later one).
    let lowest: { delivery: number; k: number } | null = null;
    for (const list of perPartition.values()) {
      const first = list.find((x) => crossed(x.a));
      if (first && (!lowest || roundOrder(first, lowest) < 0)) lowest = first;
    }
    for (const list of perPartition.values()) {
      const kept = list.find((x) => !crossed(x.a) && lowest && roundOrder(x, lowest) >= 0);
      if (!refused && kept) refused = kept.a;
    }
    const complete = new Map<number, number>();
    for (const delivery of new Set(arrivals.filter((x) => x.truncateId === id).map((x) => x.delivery))) {
      let n = Infinity;
      for (let p = 0; p < partitionCount; p++) n = Math.min(n, (perPartition.get(p) ?? []).filter((x) => x.delivery === delivery && !crossed(x.a)).length);
      complete.set(delivery, n === Infinity ? 0 : n);
    }
    rounds.set(id, complete);
  }
  return { refused, forget, rounds };
}

/** The barrier's recorded arrivals of a topic for a group (empty when the tables do not exist yet). */
export async function readArrivals(client: pg.ClientBase, groupId: string, topic: string): Promise<RecordedArrival[]> {
  const exists = await client.query(`SELECT to_regclass('shardbridge.sink_truncate_arrivals') IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return [];
  const { rows } = await client.query(
    `SELECT truncate_id, kafka_partition AS p, kafka_offset::text AS o, delivery::text AS d FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2`,
    [groupId, topic],
  );
  return rows.map((r) => ({ truncateId: r.truncate_id, partition: r.p, offset: BigInt(r.o), delivery: Number(r.d) }));
}

/** Applies a planned rewind inside the caller's transaction (with the stored offsets). */
export async function applyBarrierRewind(client: pg.ClientBase, groupId: string, topic: string, plan: BarrierRewind): Promise<void> {
  for (const a of plan.forget) {
    await client.query(
      `DELETE FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id = $3 AND kafka_partition = $4 AND kafka_offset = $5`,
      [groupId, topic, a.truncateId, a.partition, a.offset.toString()],
    );
  }
  for (const [id, deliveries] of plan.rounds) {
    for (const [delivery, rounds] of deliveries) {
      const args = [groupId, topic, id, delivery];
      if (rounds === 0) await client.query(`DELETE FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 AND truncate_id = $3 AND delivery = $4`, args);
      else await client.query(`UPDATE shardbridge.sink_truncates SET rounds = LEAST(rounds, $5) WHERE group_id = $1 AND topic = $2 AND truncate_id = $3 AND delivery = $4`, [...args, rounds]);
    }
  }
}
