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
 * A truncate delivered again (the source replays after a crash) is a second round: arrival
 * k of partition p (counted by distinct Kafka offsets) belongs to round k, and round k
 * truncates once every partition arrived k times.
 */
import type pg from 'pg';
import { parseTruncateKey } from '../source-connector/truncate-fanout.ts';

export { parseTruncateKey };

export interface TruncateMark {
  id: string;
  partitions: number;
}

export type BarrierVerdict = 'truncate' | 'pass' | 'wait';

/**
 * Pure: what partition `partition` does with its copy at `offset`, given every recorded
 * arrival (partition → Kafka offsets, this one included) and the rounds already truncated.
 */
export function judgeBarrier(arrivals: ReadonlyMap<number, readonly bigint[]>, partitions: number, partition: number, offset: bigint, roundsDone: number): { verdict: BarrierVerdict; round: number } {
  const mine = [...(arrivals.get(partition) ?? [])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const at = mine.indexOf(offset);
  const round = (at < 0 ? mine.length : at) + 1;
  if (round <= roundsDone) return { verdict: 'pass', round };
  for (let p = 0; p < partitions; p++) {
    if ((arrivals.get(p)?.length ?? 0) < round) return { verdict: 'wait', round };
  }
  return { verdict: 'truncate', round };
}

/** The barrier's tables: made with the sink's own tables at start (offsets.ts ensureSinkTables), in each destination. */
export const BARRIER_TABLES_SQL = `
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncate_arrivals (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
  arrived_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, truncate_id, kafka_partition, kafka_offset));
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncates (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, rounds int NOT NULL,
  truncated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, truncate_id));`;

/**
 * Inside the batch transaction: record this partition's arrival and judge it. A verdict of
 * 'truncate' is recorded as done here; the caller runs the TRUNCATE in the same transaction.
 */
export async function arriveAtBarrier(
  client: pg.ClientBase,
  at: { groupId: string; topic: string; partition: number; offset: bigint },
  mark: TruncateMark,
): Promise<{ verdict: BarrierVerdict; round: number; arrived: number }> {
  const args = [at.groupId, at.topic, mark.id];
  // One judge at a time per truncate: the partition completing the set must see every arrival.
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))`, args);
  await client.query(
    `INSERT INTO shardbridge.sink_truncate_arrivals (group_id, topic, truncate_id, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
    [...args, at.partition, at.offset.toString()],
  );
  const { rows } = await client.query(
    `SELECT kafka_partition AS p, kafka_offset::text AS o FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`,
    args,
  );
  const arrivals = new Map<number, bigint[]>();
  for (const r of rows) {
    let list = arrivals.get(r.p);
    if (!list) arrivals.set(r.p, (list = []));
    list.push(BigInt(r.o));
  }
  const done = await client.query(`SELECT rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`, args);
  const roundsDone = done.rows.length > 0 ? Number(done.rows[0].rounds) : 0;
  const { verdict, round } = judgeBarrier(arrivals, mark.partitions, at.partition, at.offset, roundsDone);
  if (verdict === 'truncate') {
    await client.query(
      `INSERT INTO shardbridge.sink_truncates (group_id, topic, truncate_id, rounds) VALUES ($1, $2, $3, $4)
       ON CONFLICT (group_id, topic, truncate_id) DO UPDATE SET rounds = EXCLUDED.rounds, truncated_at = now()`,
      [...args, round],
    );
  }
  let arrived = 0;
  for (let p = 0; p < mark.partitions; p++) if ((arrivals.get(p)?.length ?? 0) >= round) arrived++;
  return { verdict, round, arrived };
}

export interface RecordedArrival {
  truncateId: string;
  partition: number;
  offset: bigint;
}

export interface BarrierRewind {
  /** A rewound partition would re-apply rows before a truncate that a partition left alone has passed. */
  refused: RecordedArrival | null;
  /** Arrivals at or after the new positions: those copies will be applied again. */
  forget: RecordedArrival[];
  /** Per affected truncate: the rounds still complete after forgetting (0: none). */
  rounds: Map<string, number>;
}

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
  const rounds = new Map<string, number>();
  for (const id of affected) {
    // Arrival k of a partition (by offset) is its round k; what a rewind forgets is a suffix.
    const perPartition = new Map<number, RecordedArrival[]>();
    for (const a of arrivals) {
      if (a.truncateId !== id) continue;
      let list = perPartition.get(a.partition);
      if (!list) perPartition.set(a.partition, (list = []));
      list.push(a);
    }
    const keptBy = new Map<number, number>();
    for (const [p, list] of perPartition) {
      list.sort((x, y) => (x.offset < y.offset ? -1 : x.offset > y.offset ? 1 : 0));
      keptBy.set(p, list.filter((a) => !crossed(a)).length);
    }
    const kept = (p: number) => keptBy.get(p) ?? 0;
    // A round one partition forgets must be forgotten by every partition that reached it.
    const lowestForgotten = Math.min(...[...perPartition].filter(([p, list]) => kept(p) < list.length).map(([p]) => kept(p) + 1));
    for (const [p, list] of perPartition) {
      if (!refused && kept(p) >= lowestForgotten) refused = list[lowestForgotten - 1];
    }
    let complete = Infinity;
    for (let p = 0; p < partitionCount; p++) complete = Math.min(complete, kept(p));
    rounds.set(id, complete === Infinity ? 0 : complete);
  }
  return { refused, forget, rounds };
}

/** The barrier's recorded arrivals of a topic for a group (empty when the tables do not exist yet). */
export async function readArrivals(client: pg.ClientBase, groupId: string, topic: string): Promise<RecordedArrival[]> {
  const exists = await client.query(`SELECT to_regclass('shardbridge.sink_truncate_arrivals') IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return [];
  const { rows } = await client.query(
    `SELECT truncate_id, kafka_partition AS p, kafka_offset::text AS o FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2`,
    [groupId, topic],
  );
  return rows.map((r) => ({ truncateId: r.truncate_id, partition: r.p, offset: BigInt(r.o) }));
}

/** Applies a planned rewind inside the caller's transaction (with the stored offsets). */
export async function applyBarrierRewind(client: pg.ClientBase, groupId: string, topic: string, plan: BarrierRewind): Promise<void> {
  for (const a of plan.forget) {
    await client.query(
      `DELETE FROM shardbridge.sink_truncate_arrivals WHERE group_id = $1 AND topic = $2 AND truncate_id = $3 AND kafka_partition = $4 AND kafka_offset = $5`,
      [groupId, topic, a.truncateId, a.partition, a.offset.toString()],
    );
  }
  for (const [id, rounds] of plan.rounds) {
    if (rounds === 0) await client.query(`DELETE FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`, [groupId, topic, id]);
    else await client.query(`UPDATE shardbridge.sink_truncates SET rounds = LEAST(rounds, $4) WHERE group_id = $1 AND topic = $2 AND truncate_id = $3`, [groupId, topic, id, rounds]);
  }
}
