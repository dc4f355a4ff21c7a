/**
 * The sink-only figure (issue 4): the sink's apply rate on the backlog's records with the
 * source idle. After the ShardBridge catch-up has converged the sink is stopped, rewound to
 * the backlog's first offsets the way `shardbridge replay` does it (the group's committed
 * offsets first — Kafka refuses while the group has members —, then the destination's
 * stored offsets, which are what the sink resumes from), and started alone. It is timed
 * from its group join (its first milestone) until every partition is applied to its end
 * again, and the caller's verification checks the rows (after its CPU meter has stopped,
 * as for every phase).
 *
 * Before that (untimed, unmetered) the destination table is put back to its pre-backlog
 * state, the seeded rows, so the sink does what native catch-up did: inserts of new rows,
 * updates and deletes of existing ones. Re-applying onto the caught-up table would also
 * converge, but as upserts that hit existing rows and deletes that find nothing: other work.
 */
import type { ConnectorChild } from './children.ts';
import { GROUP_ID, TOPIC, waitForProgress, type BenchEnv } from './env.ts';
import type { SinkOnlyTimed } from './report.ts';
import { withClient } from '../demo/session.ts';
import { insertSql } from './workload.ts';
import { planReplay } from '../cli/commands/replay.ts';
import { readTopicOffsets, setStoredOffsets } from '../../sink-connector/offsets.ts';

/** The data topic's end offsets per partition: taken before the catch-up, the backlog's first offsets. */
export async function topicEnds(env: BenchEnv): Promise<Map<number, bigint>> {
  return new Map((await env.admin.endOffsets(TOPIC)).map((e) => [e.partition, BigInt(e.offset)]));
}

/** Rewind the (stopped) sink's group and stored offsets to `to`; returns how many records are to be re-applied. */
export async function rewindSink(env: BenchEnv, to: Map<number, bigint>): Promise<bigint> {
  const ends = await topicEnds(env);
  return withClient(env.dst.ours, async (c) => {
    const stored = await readTopicOffsets(c, GROUP_ID, TOPIC);
    const moves = planReplay([...ends.keys()], to, ends, stored).flatMap((p) => (p.next === null ? [] : [{ partition: p.partition, offset: p.next }]));
    const records = moves.reduce((sum, m) => sum + (ends.get(m.partition)! - m.offset), 0n);
    if (records === 0n) throw new Error('sink replay: nothing to rewind (the sink is not past the backlog start)');
    await env.admin.setGroupOffsets(GROUP_ID, TOPIC, moves.map((m) => ({ partition: m.partition, offset: m.offset.toString() })));
    await c.query('BEGIN');
    try {
      await setStoredOffsets(c, GROUP_ID, TOPIC, moves);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    }
    return records;
  });
}

export interface SinkReplayOptions {
  env: BenchEnv;
  /** The backlog's first offsets (topicEnds before the catch-up). */
  from: Map<number, bigint>;
  /** Backlog changes (the unit of the rate, as for native catch-up). */
  changes: number;
  /** Records the topic holds in all (it already does: the source is idle). */
  records: number;
  /** Starts the sink process (registered for CPU metering and clean-up by the caller). */
  spawnSink(): ConnectorChild;
  /** Other connector processes still running (the idle source): the phase fails if one dies. */
  others: ConnectorChild[];
  deadlineMs: number;
  signal: AbortSignal;
}

/** The destination's orders back to the seeded rows 1..rows (the source's state before the backlog). */
export async function restorePreBacklog(env: BenchEnv, rows: number): Promise<void> {
  await withClient(env.dst.ours, async (c) => {
    await c.query('TRUNCATE public.orders RESTART IDENTITY');
    await c.query(insertSql(1, rows));
    await c.query('VACUUM ANALYZE public.orders');
  });
}

/** Rewind, start the sink alone, time it to the end of every partition (not verified yet). The sink is left running. */
export async function measureSinkReplay(o: SinkReplayOptions): Promise<{ timed: SinkOnlyTimed; sink: ConnectorChild; records: bigint }> {
  const records = await rewindSink(o.env, o.from);
  const sink = o.spawnSink();
  const joinedAt = (await sink.waitForLog('group joined: reading stored positions', 120_000)).time;
  const p = await waitForProgress(o.env, { records: o.records, children: [sink, ...o.others], sink: true, deadlineMs: o.deadlineMs, signal: o.signal });
  const end = p.appliedAt!;
  const timed: SinkOnlyTimed = { ms: end - joinedAt, msInclStartup: end - sink.spawnedAt, count: o.changes, verified: null };
  return { timed, sink, records };
}
