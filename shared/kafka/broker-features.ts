/**
 * What the connectors need of the Kafka brokers, checked at start against the API versions the
 * broker announced (ApiVersions, which kafkajs asks on connect). kafkajs negotiates each
 * request's version and works down to very old brokers, but some of our features then go
 * quiet instead of failing: without topic ids (Metadata v10, Kafka 2.8) the sink cannot tell
 * a topic deleted and created again under its stored offsets, and would resume the new topic
 * at the old one's offsets, skipping its first records. A broker lacking one stops the
 * connector at start, naming the API, the feature and the release that brought it.
 */
import { ConfigError } from '../errors.ts';
import { TOPIC_ID_VERSIONS } from './topic-ids.ts';

/** An API key's version range as a broker announces it. */
export interface ApiVersionRange {
  minVersion: number;
  maxVersion: number;
}

export interface BrokerNeed {
  apiKey: number;
  api: string;
  minVersion: number;
  /** What of ours needs it. */
  feature: string;
  /** The first Apache Kafka release that speaks it. */
  since: string;
}

/** The oldest Apache Kafka release both connectors run against: the sink needs topic ids. */
export const MIN_KAFKA = '2.8';

const TOPIC_IDS: BrokerNeed = {
  apiKey: 3,
  api: 'Metadata',
  minVersion: TOPIC_ID_VERSIONS.min,
  feature: 'topic ids (KIP-516), by which the sink notices a topic deleted and created again under its stored offsets',
  since: '2.8',
};
const IDEMPOTENT: BrokerNeed = { apiKey: 22, api: 'InitProducerId', minVersion: 0, feature: 'the idempotent producer (no duplicate records on retries)', since: '0.11' };
const DESCRIBE_CONFIGS: BrokerNeed = { apiKey: 32, api: 'DescribeConfigs', minVersion: 0, feature: "reading topics' and brokers' settings (max.message.bytes, retention, replication)", since: '0.11' };

/** What each process needs of the broker. */
export const BROKER_NEEDS = {
  source: [IDEMPOTENT, DESCRIBE_CONFIGS],
  // The sink's dead-letter producer is idempotent too.
  sink: [TOPIC_IDS, IDEMPOTENT, DESCRIBE_CONFIGS],
} satisfies Record<string, BrokerNeed[]>;

/** The needs the broker's announced versions do not meet. Pure. */
export function missingBrokerApis(versions: ReadonlyMap<number, ApiVersionRange>, needs: readonly BrokerNeed[]): BrokerNeed[] {
  return needs.filter((n) => {
    const v = versions.get(n.apiKey);
    return v === undefined || v.maxVersion < n.minVersion;
  });
}

/** The ConfigError for what is missing, or null. Pure. */
export function brokerTooOld(
  where: string,
  versions: ReadonlyMap<number, ApiVersionRange>,
  needs: readonly BrokerNeed[],
): ConfigError | null {
  const missing = missingBrokerApis(versions, needs);
  if (missing.length === 0) return null;
  const newest = missing.reduce((a, b) => (compareRelease(a.since, b.since) >= 0 ? a : b)).since;
  const has = (n: BrokerNeed) => {
    const v = versions.get(n.apiKey);
    return v === undefined ? 'not at all' : `up to v${v.maxVersion}`;
  };
  const list = missing.map((n) => `${n.api} v${n.minVersion}+ for ${n.feature} (Kafka ${n.since}+; it speaks ${n.api} ${has(n)})`).join('; ');
  return new ConfigError(`the Kafka broker at ${where} is older than Kafka ${newest}: it lacks ${list}`, {
    context: { kafka: where, missing: missing.map((n) => `${n.api} v${n.minVersion}`).join(', ') },
    remedy: `upgrade the brokers to Apache Kafka ${newest} or newer (Confluent Platform 6.2+ for 2.8); ShardBridge is tested with Kafka 3.3, 3.9 and 4.4 (docs/configuration.md, "Kafka versions")`,
  });
}

function compareRelease(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** Throws brokerTooOld's error when the broker (as the admin reaches it) lacks one of `needs`. */
export async function checkBrokerApis(
  admin: { apiVersions(): Promise<ReadonlyMap<number, ApiVersionRange>> },
  where: string,
  needs: readonly BrokerNeed[],
): Promise<void> {
  const err = brokerTooOld(where, await admin.apiVersions(), needs);
  if (err) throw err;
}
