/**
 * A file's own servers for tests of secured Kafka (SASL listener, TLS or ACLs): a broker started
 * with `secure`, the registry, a source cluster; their stops pushed to `releases`.
 */
import { startKafka, type KafkaBroker, type SecureListener } from '../../shared/devstack/kafka.ts';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { testLogger } from './kafka.ts';
import { startTestSource } from './postgres.ts';
import { getTestRegistry } from './produce-changes.ts';

export async function startSecureStack(secure: SecureListener, releases: (() => Promise<void>)[]): Promise<{ broker: KafkaBroker; cluster: PgCluster; registryUrl: string }> {
  const [broker, registry, cluster] = await Promise.all([startKafka({ heapMb: 256, logger: testLogger(), secure }), getTestRegistry(), startTestSource()]);
  releases.push(() => broker.stop(), registry.release, () => cluster.destroy());
  return { broker, cluster, registryUrl: registry.url };
}
