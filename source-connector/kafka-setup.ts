/**
 * What the source's first session sets up on the Kafka side, once per process: the tables'
 * and control topics, the truncate key schema, each topic's partition count and record
 * limits, and the producer's metadata for every topic. Each is one request for all tables
 * (one per table was a round trip each: docs/source-connector.md, "How it works", step 2).
 */
import type { Logger } from '../shared/logger.ts';
import { kafkaRemedy, type Admin, type KafkaClient, type Producer } from '../shared/kafka/client.ts';
import type { RegistryClient } from '../shared/registry/registry-client.ts';
import { atServer, isRetriable } from '../shared/errors.ts';
import type { SourceConfig } from './config.ts';
import { controlTopicNames, controlTopicSpecs, readControlTopic, reduceSnapshotTopic, topicPartitions, type SnapshotState } from './control-topics.ts';
import { planPartitionPins } from './partition-pins.ts';
import { warnTopicPolicies } from './topic-settings.ts';
import { brokerReplicationFactor, checkTopicDurability } from '../shared/kafka/topic-durability.ts';
import { BROKER_NEEDS, checkBrokerApis } from '../shared/kafka/broker-features.ts';
import { readRecordLimits, type RecordLimits } from './record-limits.ts';
import { TRUNCATE_KEY_SCHEMA } from './truncate-fanout.ts';

export interface KafkaSetup {
  truncateKeySchemaId: number;
  /** The count each table topic's keys go by (partition-pins.ts): an existing topic keeps its own, whatever topics.partitions says now. */
  partitionCounts: Map<string, number>;
  recordLimits: Map<string, RecordLimits>;
  /** `__snapshot` as read here, after the pins were recorded: the first session's state. */
  snapshotState: SnapshotState;
  /** Topics this start created: they held no record before it (earlier-snapshots.ts). */
  created: string[];
}

export async function setUpKafka(
  cfg: SourceConfig,
  /** Schemas registered, after the producer connected: the tables' topics, and whether each must have one partition. */
  tables: () => Promise<{ topic: string; singlePartition: boolean }[]>,
  k: { kafka: KafkaClient; admin: Admin; producer: Producer; registry: RegistryClient; log: Logger },
): Promise<KafkaSetup> {
  await k.producer.connect().catch((err: unknown) => {
    // A refusal (credentials, an untrusted certificate) named with its server; what passes is retried as it is.
    throw isRetriable(err) ? err : atServer(err, `cannot use Kafka at ${cfg.kafka.brokers.join(',')}`, kafkaRemedy(err));
  });
  // A broker too old for a feature we rely on stops the start, naming it (broker-features.ts).
  await checkBrokerApis(k.admin, cfg.kafka.brokers.join(','), BROKER_NEEDS.source);
  const wanted = await tables();
  const tableTopics = wanted.map((w) => w.topic);
  const t = cfg.topics;
  const configs: Record<string, string> = { 'cleanup.policy': t.cleanupPolicy };
  if (t.retentionMs !== undefined) configs['retention.ms'] = String(t.retentionMs);
  if (t.maxMessageBytes !== undefined) configs['max.message.bytes'] = String(t.maxMessageBytes);
  // kafkajs cannot ask for the brokers' default (-1 needs CreateTopics v4): read it.
  const replicationFactor = t.replicationFactor ?? (await brokerReplicationFactor(k.admin, k.log)) ?? 1;
  const specs = [
    ...wanted.map((w) => ({ topic: w.topic, partitions: w.singlePartition ? 1 : t.partitions, replicationFactor, configs })),
    ...controlTopicSpecs(cfg.topicPrefix, { ...t, replicationFactor }),
  ];
  const created = await k.admin.ensureTopics(specs);
  if (created.length > 0) k.log.info({ topics: created, replicationFactor }, 'topics created');
  await checkTopicDurability(k.admin, specs.map((s) => s.topic), k.log);
  const made = new Set(created);
  const existed = specs.filter((s) => !made.has(s.topic));
  if (existed.length > 0) await warnTopicPolicies(k.admin, new Map(existed.map((s) => [s.topic, s.configs?.['cleanup.policy'] ?? t.cleanupPolicy])), k.log);
  const truncateKeySchemaId = await k.registry.register(`${cfg.topicPrefix}.__truncate-key`, TRUNCATE_KEY_SCHEMA);
  const { partitionCounts, snapshotState } = await pinPartitions(cfg, tableTopics, made, k);
  const spread = wanted.filter((w) => w.singlePartition && (partitionCounts.get(w.topic) ?? 1) > 1).map((w) => w.topic);
  if (spread.length > 0) {
    k.log.warn(
      { topics: spread, remedy: 'delete the topic and start again from a new snapshot, or create it with one partition before the first start' },
      'topics of tables whose keys have equal values spelled apart (check: key equality) have several partitions: a key change between two spellings can be applied out of order',
    );
  }
  // The producer learns every topic at once, not one metadata refresh per table's first send.
  await k.producer.prepare([...tableTopics, ...Object.values(controlTopicNames(cfg.topicPrefix))]);
  const recordLimits = await readRecordLimits(k.admin, tableTopics, k.log);
  return { truncateKeySchemaId, partitionCounts, recordLimits, snapshotState, created };
}

/** Each table topic's count, as recorded in `__snapshot` or recorded now, given to the producer. */
async function pinPartitions(
  cfg: SourceConfig,
  tableTopics: string[],
  created: ReadonlySet<string>,
  k: { kafka: KafkaClient; admin: Admin; producer: Producer; log: Logger },
): Promise<{ partitionCounts: Map<string, number>; snapshotState: SnapshotState }> {
  const snapshotTopic = controlTopicNames(cfg.topicPrefix).snapshot;
  const live = await k.admin.partitionCounts(tableTopics);
  const snapshotState = reduceSnapshotTopic(await readControlTopic(k.kafka, snapshotTopic, k.log));
  const plan = planPartitionPins(live, snapshotState.partitions, created);
  for (const g of plan.grown) {
    k.log.warn(
      { topic: g.topic, partitions: g.partitions, keyedPartitions: g.pinned, remedy: 'docs/source-connector.md, "Partitions added to a topic"' },
      `topic ${g.topic} has ${g.partitions} partitions; its keys go to the first ${g.pinned} as before: a key sent to another partition than its earlier changes could be applied before them. Partitions ${g.pinned}..${g.partitions - 1} stay empty`,
    );
  }
  for (const s of plan.shrunk) {
    k.log.warn(
      { topic: s.topic, partitions: s.partitions, recordedPartitions: s.recorded },
      `topic ${s.topic} has ${s.partitions} partitions, fewer than the ${s.recorded} its keys went to: it was made again outside the connector; keys go by ${s.partitions} from now on`,
    );
  }
  if (plan.record.size > 0) {
    await k.producer.sendBatch([...plan.record].map(([topic, n]) => ({ topic: snapshotTopic, ...topicPartitions(topic, n) })));
    for (const [topic, n] of plan.record) snapshotState.partitions.set(topic, n);
  }
  k.producer.pin(plan.pins);
  return { partitionCounts: plan.pins, snapshotState };
}
