/**
 * The dead-letter topic made ready at start, as Kafka Connect users expect of a DLQ: its
 * replicas follow the brokers' `default.replication.factor` (as the source's topics), and its
 * `max.message.bytes` takes the largest record the sink reads with our headers added (a table
 * topic may allow more than the broker's 1 MiB: `topics.maxMessageBytes`), so that a large
 * undecodable record can be set aside instead of stalling its partition for good.
 */
import type { Admin, Producer } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import { suggestedLimit } from '../shared/kafka/producer.ts';
import { brokerReplicationFactor, checkTopicDurability } from '../shared/kafka/topic-durability.ts';

/** Room for our headers on top of the largest record a topic takes (error message, remedy, origin: ~1 KiB in practice). */
export const DEAD_LETTER_HEADER_ROOM = 16 * 1024;

/** The dead-letter topic's `max.message.bytes` for the `max.message.bytes` of the topics read; null when none is known. Pure. */
export function deadLetterLimit(limits: Iterable<string>): number | null {
  const known = [...limits].map(Number).filter((n) => Number.isInteger(n) && n > 0);
  return known.length > 0 ? Math.max(...known) + DEAD_LETTER_HEADER_ROOM : null;
}

/**
 * Create the dead-letter topic if missing (one partition), warn when an existing one takes
 * less than the topics read, refuse one Kafka refuses every acks=all send to; then connect the producer.
 */
export async function openDeadLetterTopic(admin: Admin, producer: Producer, o: { topic: string; reads: string[]; log: Logger }): Promise<void> {
  const { topic, log } = o;
  const limit = deadLetterLimit((await admin.configValues('topic', o.reads, 'max.message.bytes')).values());
  const replicas = (await brokerReplicationFactor(admin, log)) ?? Math.min(3, Math.max(1, (await admin.describeCluster()).brokers.length));
  const created = await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: replicas, ...(limit !== null && { configs: { 'max.message.bytes': String(limit) } }) }]);
  if (created.length === 0 && limit !== null) {
    const has = Number((await admin.configValues('topic', [topic], 'max.message.bytes')).get(topic));
    if (has < limit) {
      log.warn(
        {
          deadLetterTopic: topic,
          maxMessageBytes: has,
          needed: limit,
          remedy: `kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${topic} --add-config max.message.bytes=${suggestedLimit(limit)}`,
        },
        `the dead-letter topic ${topic} takes records of ${has} bytes at most, less than the topics the sink reads: a larger undecodable record would stall its partition`,
      );
    }
  }
  await checkTopicDurability(admin, [topic], log);
  await producer.connect();
}
