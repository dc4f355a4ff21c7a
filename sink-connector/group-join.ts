/**
 * What the sink does on every group join (consumer-runs.ts calls it from kafkajs' group-join hook):
 * the stored offsets of the assigned partitions read from the destination once the batches
 * handed over before the rebalance are applied, beside the group's committed offsets and the
 * topics' ids; topic ids recorded, a topic deleted and made again under the stored offsets
 * stalled, one gone named; then the seeks, the position tracker and the stalls reset, and the
 * partitions paused or resumed (join-positions.ts plans; this does it). Batches wait for the
 * promise it returns.
 */
import type pg from 'pg';
import type { Admin, Consumer } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import type { ApplyLanes } from './apply-lanes.ts';
import type { UntilDone } from './destination-start.ts';
import { pastEndStalls, planStart, readCommitted, readStored, recordTopicIds, recreatedStalls } from './join-positions.ts';
import { tpKey, type PositionTracker } from './offsets.ts';
import { lagAtJoin, type SinkMetrics } from './sink-metrics.ts';
import type { StallInfo, Stalls } from './stall.ts';
import { checkTopicIds, vanishedMessage } from './topic-identity.ts';

export interface GroupJoin {
  groupId: string;
  consumer: Consumer;
  admin: Admin;
  pool: pg.Pool;
  lanes: ApplyLanes;
  tracker: PositionTracker;
  stalls: Stalls;
  metrics: SinkMetrics;
  log: Logger;
  untilDone: UntilDone;
  /** This join's generation (counted by the connector), for the log. */
  generation: number;
  /** No later join came. */
  latest(): boolean;
  /** No later join came and the consumer is the one that joined. */
  current(): boolean;
}

/** Read the stored positions of the new assignment and seek where needed (join-positions.ts); batches wait for it. */
export function onGroupJoin(j: GroupJoin, assignment: Record<string, number[]>): Promise<void> {
  const { consumer, groupId, log } = j;
  j.lanes.invalidateAll();
  const tps = Object.entries(assignment).flatMap(([topic, parts]) => parts.map((partition) => ({ topic, partition })));
  log.info({ partitions: tps.length, generation: j.generation }, 'group joined: reading stored positions');
  const committed = readCommitted(j.admin, groupId, tps, log);
  // Batches handed over before the rebalance end first, so the stored positions read are theirs.
  const stored = j.lanes.drain().then(() => j.untilDone('read stored positions', () => readStored(j.pool, groupId, tps)));
  const ids = j.admin.topicIds([...new Set(tps.map((t) => t.topic))]).catch((err: unknown) => {
    log.warn({ err: (err as Error).message }, 'topic ids not read: a topic deleted and created again under the stored offsets is not noticed at this join');
    return null;
  });
  return Promise.all([stored, committed, ids]).then(async ([{ stored, rows, stalled }, committed, ids]) => {
    if (!j.current()) return;
    const check = checkTopicIds(tps, rows, ids);
    await j.untilDone('record topic ids', () => recordTopicIds(j.pool, groupId, check.record, log));
    const recreated = await recreatedStalls(j.admin, j.pool, groupId, check.recreated);
    for (const v of check.vanished) {
      const { msg, remedy } = vanishedMessage(v);
      log.error({ topic: v.topic, partitions: v.partitions, stored: v.stored.map((s) => ({ partition: s.partition, offset: String(s.offset) })), remedy }, `${msg} — remedy: ${remedy}`);
    }
    if (!j.current()) return;
    const { positions, seeks, overridden } = planStart(tps, stored, committed);
    if (overridden.length > 0) {
      log.info(
        { partitions: overridden.length, first: overridden.slice(0, 10).map((o) => ({ topic: o.topic, partition: o.partition, groupOffset: o.group.toString(), storedOffset: o.stored.toString() })) },
        "the consumer group's committed offsets differ from the offsets stored in the destination: the sink resumes from the stored ones " +
          '(offsets set with kafka-consumer-groups --reset-offsets are not used; shardbridge replay moves both, with the sink stopped)',
      );
    }
    for (const { topic, partition, offset } of seeks) {
      try {
        consumer.seek({ topic, partition, offset: offset.toString() });
      } catch (err) {
        log.debug({ err, topic, partition }, 'seek failed (consumer stopping)');
      }
    }
    j.tracker.reset(positions, [...pastEndStalls(stalled), ...recreated.map((r) => [tpKey(r.topic, r.partition), { stored: BigInt(r.offset), info: r }] as [string, { stored: bigint; info: StallInfo }])]);
    j.stalls.retain(new Set(positions.map(([k]) => k)), stalled);
    // Stalled at once, records or not: the partition may be idle at the stored offset.
    for (const info of recreated) {
      try {
        consumer.pause([{ topic: info.topic, partitions: [info.partition] }]);
      } catch (err) {
        log.debug({ err }, 'pause failed (consumer stopping)');
      }
      j.stalls.report(info);
    }
    // kafkajs keeps a partition paused across rebalances: one this member stalled, lost and
    // got back (its stall and retry timer dropped above) would never be fetched again.
    const resume = tps.filter(({ topic, partition }) => !j.stalls.stalledHere(topic, partition));
    try {
      consumer.resume(resume.map(({ topic, partition }) => ({ topic, partitions: [partition] })));
    } catch (err) {
      log.debug({ err }, 'resume after the join failed (consumer stopping)');
    }
    j.metrics.lag.reset();
    void lagAtJoin({ lag: j.metrics.lag, tracker: j.tracker, admin: j.admin, log }, tps, j.latest);
  });
}
