/**
 * What the connectors need of the Kafka brokers, checked at start against the API versions the
 * brokers announced (ApiVersions: kafkajs asks the first broker it reaches only, and gives the
 * others its answer, so each broker the cluster's metadata names is asked here; in a cluster
 * upgraded broker by broker one old broker can answer while another is new). kafkajs negotiates each
 * request's version and works down to very old brokers, but some of our features then go
 * quiet instead of failing: without topic ids (Metadata v10, Kafka 2.8) the sink cannot tell
 * a topic deleted and created again under its stored offsets, and would resume the new topic
 * at the old one's offsets, skipping its first records. A broker lacking one stops the
 * connector at start, naming the broker(s), the API, the feature and the release that brought it.
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

/** One broker's announced versions; undefined when it could not be asked (down, unreachable): not judged. */
export interface BrokerVersions {
  broker: string;
  versions?: ReadonlyMap<number, ApiVersionRange>;
}

/** The ConfigError for what one broker lacks, or null. Pure. */
export function brokerTooOld(where: string, versions: ReadonlyMap<number, ApiVersionRange>, needs: readonly BrokerNeed[]): ConfigError | null {
  return brokersTooOld(where, [{ broker: where, versions }], needs);
}

/**
 * The ConfigError naming every broker that lacks one of `needs` and what each lacks, or null.
 * `where`: the bootstrap list (the error's context). A broker whose versions are unknown is not
 * judged: one down for its upgrade must not stop a start. Pure.
 */
export function brokersTooOld(where: string, brokers: readonly BrokerVersions[], needs: readonly BrokerNeed[]): ConfigError | null {
  const old = brokers.flatMap(({ broker, versions }) => {
    const missing = versions ? missingBrokerApis(versions, needs) : [];
    return missing.length > 0 ? [{ broker, versions: versions!, missing }] : [];
  });
  if (old.length === 0) return null;
  const missingAll = [...new Set(old.flatMap((o) => o.missing))];
  const newest = missingAll.reduce((a, b) => (compareRelease(a.since, b.since) >= 0 ? a : b)).since;
  const lacks = (o: (typeof old)[number]) =>
    o.missing.map((n) => {
      const v = o.versions.get(n.apiKey);
      return `${n.api} v${n.minVersion}+ for ${n.feature} (Kafka ${n.since}+; it speaks ${n.api} ${v === undefined ? 'not at all' : `up to v${v.maxVersion}`})`;
    }).join('; ');
  const known = brokers.filter((b) => b.versions).length;
  const message =
    old.length === 1
      ? `the Kafka broker at ${old[0].broker}${known > 1 ? ` (one of ${known})` : ''} is older than Kafka ${newest}: it lacks ${lacks(old[0])}`
      : `${old.length} of the ${known} Kafka brokers are older than Kafka ${newest}: ${old.map((o) => `${o.broker} lacks ${lacks(o)}`).join('; ')}`;
  const partial = old.length < known ? '; a cluster upgraded broker by broker: start the connector once every broker runs it' : '';
  return new ConfigError(message, {
    context: { kafka: where, brokers: old.map((o) => o.broker).join(', '), missing: missingAll.map((n) => `${n.api} v${n.minVersion}`).join(', ') },
    remedy: `upgrade the brokers to Apache Kafka ${newest} or newer (Confluent Platform 6.2+ for 2.8)${partial}; ShardBridge is tested with Kafka 3.3, 3.9 and 4.4 (docs/configuration.md, "Kafka versions")`,
  });
}

function compareRelease(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** Throws brokersTooOld's error when a broker of the cluster (each the admin can reach) lacks one of `needs`. */
export async function checkBrokerApis(
  admin: { brokerApiVersions(): Promise<BrokerVersions[]> },
  where: string,
  needs: readonly BrokerNeed[],
): Promise<void> {
  const err = brokersTooOld(where, await admin.brokerApiVersions(), needs);
  if (err) throw err;
}
