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

export const BARRIER_SETUP_SQL = `
CREATE SCHEMA IF NOT EXISTS shardbridge;
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncate_arrivals (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
  arrived_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, truncate_id, kafka_partition, kafka_offset));
CREATE TABLE IF NOT EXISTS shardbridge.sink_truncates (
  group_id text NOT NULL, topic text NOT NULL, truncate_id text NOT NULL, rounds int NOT NULL,
  truncated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, truncate_id));`;

let setUp: Promise<void> | undefined;

/** Creates the barrier's tables once per process (outside the batch transaction). */
export function ensureBarrierTables(client: pg.ClientBase): Promise<void> {
  setUp ??= client.query(BARRIER_SETUP_SQL).then(
    () => undefined,
    (err: unknown) => {
      setUp = undefined;
      throw err;
    },
  );
  return setUp;
}

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
