/**
 * `shardbridge check`'s Kafka and schema registry findings: each one the connectors are
 * configured with answers (the source's, and the sink's when they differ), and both connectors
 * agree on the topic prefix. Reaching them is the thin edge; the verdicts are pure.
 */
import type { SinkConfig } from '../../sink-connector/config.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import type { Finding } from '../../source-connector/checks.ts';
import type { KafkaConfig } from '../config/common.ts';
import type { SchemaRegistryConfig } from '../config/registry.ts';
import { kafkaRemedy, type Admin } from '../kafka/client.ts';
import { brokerReplicationFactor, createdTopicsProblem, readDurabilityProblems, refusedError } from '../kafka/topic-durability.ts';
import type { Logger } from '../logger.ts';
import { commandKafka } from '../migration/gather.ts';
import { redactUrl } from '../redact.ts';
import { withTimeout } from '../retry.ts';
import { RegistryClient } from '../registry/registry-client.ts';

const TIMEOUT_MS = 10_000;

/** Pure: the sink reads the topics the source writes only under the same prefix. */
export function prefixFindings(sourcePrefix: string, sinkPrefix: string | undefined): Finding[] {
  if (sinkPrefix === undefined) return [];
  return sinkPrefix === sourcePrefix
    ? [{ level: 'PASS', check: 'topic prefix', object: 'source and sink', message: `both use ${sourcePrefix}` }]
    : [{
        level: 'FAIL',
        check: 'topic prefix',
        object: 'source and sink',
        message: `the source writes topics under "${sourcePrefix}." but the sink reads "${sinkPrefix}.": it would apply nothing`,
        remedy: 'set the same topicPrefix in both configurations',
      }];
}

type Configured = { who: 'source' | 'sink'; config: SourceConfig | SinkConfig };

export async function checkServices(source: SourceConfig, sink: SinkConfig | undefined, log: Logger): Promise<Finding[]> {
  const both: Configured[] = [{ who: 'source', config: source }, ...(sink ? [{ who: 'sink' as const, config: sink }] : [])];
  const kafkaKey = (k: KafkaConfig) => JSON.stringify([k.brokers, k.ssl, k.sasl?.mechanism, k.sasl?.username]);
  const registryKey = (r: SchemaRegistryConfig) => JSON.stringify([r.url, r.username]);
  const findings = await Promise.all([
    ...distinct(both, (c) => kafkaKey(c.config.kafka)).map((c) => kafkaFinding(c, log)),
    ...distinct(both, (c) => registryKey(c.config.schemaRegistry)).map(async (c) => [await registryFinding(c.who, c.config.schemaRegistry, log)]),
  ]);
  return [...findings.flat(), ...prefixFindings(source.topicPrefix, sink?.topicPrefix)];
}

/** The source's, and the sink's only when it points elsewhere. */
const distinct = (items: Configured[], keyOf: (c: Configured) => string): Configured[] =>
  items.filter((c, i) => items.findIndex((d) => keyOf(d) === keyOf(c)) === i);

async function kafkaFinding({ who, config }: Configured, log: Logger): Promise<Finding[]> {
  const object = `kafka ${config.kafka.brokers.join(',')}`;
  const admin = commandKafka(config, log, 'shardbridge-check').admin();
  try {
    const cluster = await withTimeout(admin.describeCluster(), TIMEOUT_MS, `no answer in ${TIMEOUT_MS / 1000} s`);
    const reachable: Finding = { level: 'PASS', check: 'reachable', object, message: `${cluster.brokers.length} broker(s) (${who} configuration)` };
    return who === 'source' ? [reachable, ...(await durabilityFindings(admin, config as SourceConfig, object, cluster.brokers.map((b) => String(b.nodeId)), log))] : [reachable];
  } catch (e) {
    return [{
      level: 'FAIL',
      check: 'reachable',
      object,
      message: redactUrl(`cannot reach Kafka (${who} configuration): ${(e as Error).message}`),
      remedy: kafkaRemedy(e, "check kafka.brokers, the network path, the listeners Kafka advertises (advertised.listeners must resolve from here) and the ssl / sasl settings"),
    }];
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Whether Kafka can keep what the source sends (topic-durability.ts): the replicas of the topics
 * it would create against the brokers' min.insync.replicas, and its existing topics. Nothing when
 * the settings cannot be read (a principal without DescribeConfigs).
 */
async function durabilityFindings(admin: Admin, source: SourceConfig, object: string, brokerIds: string[], log: Logger): Promise<Finding[]> {
  try {
    const minInsync = [...(await admin.configValues('broker', brokerIds, 'min.insync.replicas')).values()].map(Number).filter((n) => Number.isInteger(n));
    const replicas = source.topics.replicationFactor ?? (await brokerReplicationFactor(admin, log));
    const created = createdTopicsProblem(replicas, minInsync.length > 0 ? Math.max(...minInsync) : null);
    const ours = (await admin.listTopics()).filter((t) => t.startsWith(`${source.topicPrefix}.`));
    const existing = await readDurabilityProblems(admin, ours, brokerIds.length);
    const out: Finding[] = [];
    if (created) out.push({ level: 'FAIL', check: 'topic replicas', object, ...created });
    if (existing.refused.length > 0) {
      const err = refusedError(existing.refused);
      out.push({ level: 'FAIL', check: 'topic replicas', object, message: err.message, remedy: err.remedy });
    }
    if (existing.single.length > 0) {
      out.push({ level: 'WARN', check: 'topic replicas', object, message: `${existing.single.length} topic(s) under ${source.topicPrefix}. have one replica on a cluster of ${brokerIds.length} brokers: their records are lost with that broker`, remedy: 'give them more replicas (kafka-reassign-partitions.sh)' });
    }
    if (out.length === 0) out.push({ level: 'PASS', check: 'topic replicas', object, message: `topics the source creates get ${replicas ?? 'the brokers\' default'} replica(s)${ours.length > 0 ? `; its ${ours.length} existing topic(s) can be written` : ''}` });
    return out;
  } catch (e) {
    log.debug({ err: e }, 'topic replication settings not read: not checked');
    return [];
  }
}

async function registryFinding(who: string, r: SchemaRegistryConfig, log: Logger): Promise<Finding> {
  const object = `registry ${redactUrl(r.url)}`;
  const client = new RegistryClient({ url: r.url, username: r.username, password: r.password, passwordFile: r.passwordFile, requestTimeoutMs: r.requestTimeoutMs, logger: log });
  try {
    const subjects = await client.subjects();
    return { level: 'PASS', check: 'reachable', object, message: `${subjects.length} subject(s) (${who} configuration)` };
  } catch (e) {
    return {
      level: 'FAIL',
      check: 'reachable',
      object,
      message: redactUrl(`cannot use the schema registry (${who} configuration): ${(e as Error).message}`),
      remedy: 'check schemaRegistry.url, the network path and schemaRegistry.username / password',
    };
  }
}

