/**
 * The kafkajs consumer the sink runs in its group (consumer-runs.ts subscribes and runs it): its
 * fetch settings, the group offsets it commits for monitoring only (group-commits.ts), and the
 * control through which a batch's handling seeks, pauses and commits (partition-batch.ts).
 */
import type { Consumer, KafkaClient } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import type { ApplyLanes } from './apply-lanes.ts';
import type { SinkConfig } from './config.ts';
import { GroupCommits } from './group-commits.ts';
import { tpKey } from './offsets.ts';
import type { ConsumerControl } from './partition-batch.ts';

export function groupConsumer(
  kafka: KafkaClient,
  config: SinkConfig,
  timing: { sessionTimeoutMs?: number; heartbeatIntervalMs?: number },
  lanes: ApplyLanes,
  log: Logger,
  /** Aborted when this consumer stops. */
  signal: AbortSignal,
): { consumer: Consumer; commits: GroupCommits; control: ConsumerControl } {
  const consumer = kafka.consumer({
    groupId: config.groupId,
    sessionTimeoutMs: timing.sessionTimeoutMs ?? 10_000,
    heartbeatIntervalMs: timing.heartbeatIntervalMs ?? 3_000,
    maxWaitTimeMs: Math.max(10, config.batch.maxWaitMs),
    idleMaxWaitTimeMs: Math.max(10, config.consumer.idleMaxWaitMs),
    // With the apply lanes' bound these bound the records the sink holds (config.ts, apply-lanes.ts).
    maxBytesPerPartition: config.consumer.maxBytesPerPartition,
    maxBytes: config.consumer.maxBytes,
    minBytes: config.consumer.minBytes,
  });
  const commits = new GroupCommits((offsets) =>
    consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.next.toString() }))).catch((err: unknown) =>
      log.debug({ err: (err as Error).message, partitions: offsets.length }, 'group offset commit failed (monitoring only)'),
    ),
  );
  const control: ConsumerControl = {
    seek: (topic, partition, offset) => {
      lanes.invalidate(tpKey(topic, partition));
      consumer.seek({ topic, partition, offset: offset.toString() });
    },
    pause: (topic, partition) => consumer.pause([{ topic, partitions: [partition] }]),
    commit: (topic, partition, next) => commits.offer(topic, partition, next),
    signal,
  };
  return { consumer, commits, control };
}
