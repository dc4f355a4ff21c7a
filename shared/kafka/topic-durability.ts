/**
 * Whether Kafka can keep what the source sends. The producer sends with acks=all, so a topic
 * whose `min.insync.replicas` exceeds its replication factor refuses every send
 * (NOT_ENOUGH_REPLICAS, which kafkajs retries as if a broker were down): the source would
 * retry for ever, confirming nothing. Common on production clusters, whose brokers set
 * `min.insync.replicas=2`, for topics made with one replica. Said at start instead, naming the
 * topics. A topic with one replica on a cluster of several brokers is lost with that broker:
 * warned. Created topics take the brokers' `default.replication.factor` unless
 * `topics.replicationFactor` says otherwise.
 */
import { ConfigError } from '../errors.ts';
import type { Admin } from './ports.ts';
import type { Logger } from '../logger.ts';

export interface DurabilityProblems {
  /** Topics every send to which Kafka refuses. */
  refused: { topic: string; replicas: number; minInsync: number }[];
  /** Topics with one replica on a cluster of several brokers. */
  single: string[];
}

/** Pure: `replicas` the fewest replicas of any partition of each topic, `minInsync` each topic's setting (absent: unknown). */
export function durabilityProblems(replicas: ReadonlyMap<string, number>, minInsync: ReadonlyMap<string, string>, brokers: number): DurabilityProblems {
  const out: DurabilityProblems = { refused: [], single: [] };
  for (const [topic, n] of replicas) {
    const min = Number(minInsync.get(topic));
    if (Number.isInteger(min) && min > n) out.refused.push({ topic, replicas: n, minInsync: min });
    else if (n === 1 && brokers > 1) out.single.push(topic);
  }
  return out;
}

/** Pure: the error for topics Kafka refuses every send to. */
export function refusedError(refused: DurabilityProblems['refused']): ConfigError {
  const list = refused.map((r) => `${r.topic} (${r.replicas} replica${r.replicas === 1 ? '' : 's'}, min.insync.replicas ${r.minInsync})`).join(', ');
  const first = refused[0];
  return new ConfigError(`Kafka refuses every send to ${list}: an acks=all send needs min.insync.replicas replicas in sync, more than the topic has`, {
    context: { topics: refused.map((r) => r.topic).join(', ') },
    remedy:
      `lower the topic's setting to what it has, e.g. kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${first.topic} --add-config min.insync.replicas=${first.replicas}, ` +
      `or give it more replicas (kafka-reassign-partitions.sh); for topics the connector creates, set topics.replicationFactor to at least ${first.minInsync}`,
  });
}

/**
 * Pure: whether the topics the source would create can be written. `replicas` is what they get
 * (`topics.replicationFactor`, else the brokers' default), `minInsync` the brokers'
 * `min.insync.replicas`, each null when unknown.
 */
export function createdTopicsProblem(replicas: number | null, minInsync: number | null): { message: string; remedy: string } | null {
  if (replicas === null || minInsync === null || minInsync <= replicas) return null;
  return {
    message: `topics the source creates get ${replicas} replica${replicas === 1 ? '' : 's'}, but the brokers ask min.insync.replicas ${minInsync}: Kafka would refuse every send to them`,
    remedy: `set topics.replicationFactor to at least ${minInsync} in the source configuration`,
  };
}

/** The brokers' `default.replication.factor` (a topic made without one gets it), null when it cannot be read. */
export async function brokerReplicationFactor(admin: Admin, log: Logger): Promise<number | null> {
  try {
    const { brokers } = await admin.describeCluster();
    const values = await admin.configValues('broker', brokers.map((b) => String(b.nodeId)), 'default.replication.factor');
    const factors = [...values.values()].map(Number).filter((n) => Number.isInteger(n) && n > 0);
    return factors.length > 0 ? Math.min(...factors, brokers.length) : null;
  } catch (err) {
    log.debug({ err }, "the brokers' default.replication.factor could not be read");
    return null;
  }
}

/** The topics' replicas and `min.insync.replicas` judged (one metadata and one configs request); throws what Kafka refused. */
export async function readDurabilityProblems(admin: Admin, topics: string[], brokers: number): Promise<DurabilityProblems> {
  if (topics.length === 0) return { refused: [], single: [] };
  const [replicas, minInsync] = await Promise.all([admin.replicationFactors(topics), admin.configValues('topic', topics, 'min.insync.replicas')]);
  return durabilityProblems(replicas, minInsync, brokers);
}

/** Throws (ConfigError) for topics Kafka refuses every send to; warns about single-replica topics on a cluster of several brokers. */
export async function checkTopicDurability(admin: Admin, topics: string[], log: Logger): Promise<void> {
  let problems: DurabilityProblems;
  try {
    problems = await readDurabilityProblems(admin, topics, (await admin.describeCluster()).brokers.length);
  } catch (err) {
    log.debug({ err }, "the topics' replicas and min.insync.replicas could not be read: not checked");
    return;
  }
  if (problems.refused.length > 0) throw refusedError(problems.refused);
  if (problems.single.length > 0) {
    log.warn(
      { topics: problems.single, remedy: 'give the topics more replicas (kafka-reassign-partitions.sh); topics the connector creates take topics.replicationFactor, or the brokers\' default.replication.factor' },
      `${problems.single.length} topic(s) have one replica on a cluster of several brokers: the records of a topic are lost with its broker`,
    );
  }
}
