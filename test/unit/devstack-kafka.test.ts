/**
 * The dev stack's broker settings that its tests and demos depend on (shared/devstack/kafka.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaAtLeast, renderServerProperties } from '../../shared/devstack/kafka.ts';
import { devstackKafkaVersion, KAFKA_VERSION } from '../../shared/devstack/kafka-jars.ts';
import { devstackZooKeeperMode } from '../../shared/devstack/kafka-zookeeper.ts';
import { ConfigError } from '../../shared/errors.ts';

const props = (text: string) => new Map(text.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));

test('the fetch purgatory is purged every 100 completed fetches, not 1000: an idle sink over 2,000 partitions otherwise fills the 512 MB heap', () => {
  // Measured (jmap -histo:live): each expired idle fetch kept a FetchPartitionStatus per partition
  // it named until a purge; 175 fetches over 2,003 partitions held 349,000 of them, and the broker
  // ran out of heap within 4 minutes at 512 MB (13 at 1 GB). At 100 the count stayed under ~200,000.
  const p = props(renderServerProperties({ port: 9092, controllerPort: 9093, logDir: '/tmp/x' }));
  assert.equal(p.get('fetch.purgatory.purge.interval.requests'), '100');
});

test('SHARDBRIDGE_KAFKA_VERSION picks the release the dev stack runs: 4.4.0 without it, a 3.x KRaft release with it, a clear error below 3.3 or for a non-release', () => {
  assert.equal(devstackKafkaVersion({}), KAFKA_VERSION);
  assert.equal(devstackKafkaVersion({ SHARDBRIDGE_KAFKA_VERSION: ' 3.9.2 ' }), '3.9.2');
  assert.equal(devstackKafkaVersion({ SHARDBRIDGE_KAFKA_VERSION: '3.3.2' }), '3.3.2');
  assert.throws(() => devstackKafkaVersion({ SHARDBRIDGE_KAFKA_VERSION: '3.2.3' }), (e: ConfigError) => e instanceof ConfigError && /KRaft/.test(e.message) && /3\.3/.test(e.remedy ?? ''));
  assert.throws(() => devstackKafkaVersion({ SHARDBRIDGE_KAFKA_VERSION: 'latest' }), (e: ConfigError) => e instanceof ConfigError && /not a Kafka release/.test(e.message));
});

test('a 3.x broker gets no share-group settings (4.x only: a 3.x broker warns about them); 4.x keeps them', () => {
  const v3 = props(renderServerProperties({ port: 9092, controllerPort: 9093, logDir: '/tmp/x', version: '3.9.2' }));
  const v4 = props(renderServerProperties({ port: 9092, controllerPort: 9093, logDir: '/tmp/x' }));
  assert.equal(v3.has('share.coordinator.state.topic.replication.factor'), false);
  assert.equal(v4.get('share.coordinator.state.topic.replication.factor'), '1');
  // The static quorum both lines understand (3.3–3.x have no controller.quorum.bootstrap.servers).
  assert.equal(v3.get('controller.quorum.voters'), '1@127.0.0.1:9093');
  assert.equal(kafkaAtLeast('3.9.2', [3, 5, 0]), true);
  assert.equal(kafkaAtLeast('3.3.2', [3, 5, 0]), false);
});

test('ZooKeeper mode (SHARDBRIDGE_KAFKA_MODE=zookeeper, 3.x only): the broker registers with its ZooKeeper on controllerPort, without any KRaft setting', () => {
  const p = props(renderServerProperties({ port: 9092, controllerPort: 2181, logDir: '/tmp/x', version: '3.9.2', zookeeper: true }));
  assert.equal(p.get('zookeeper.connect'), '127.0.0.1:2181');
  assert.equal(p.get('broker.id'), '1');
  assert.equal(p.get('listeners'), 'PLAINTEXT://127.0.0.1:9092');
  assert.equal(p.get('listener.security.protocol.map'), 'PLAINTEXT:PLAINTEXT');
  assert.deepEqual([...p.keys()].filter((k) => /^(process\.roles|node\.id|controller\.|broker\.(heartbeat|session))/.test(k)), []);
  assert.equal(p.get('fetch.purgatory.purge.interval.requests'), '100', 'the shared settings stay');
  assert.equal(devstackZooKeeperMode('3.9.2', {}), false);
  assert.equal(devstackZooKeeperMode('3.9.2', { SHARDBRIDGE_KAFKA_MODE: 'zookeeper' }), true);
  assert.throws(() => devstackZooKeeperMode('4.4.0', { SHARDBRIDGE_KAFKA_MODE: 'zookeeper' }), /has no ZooKeeper mode/);
  assert.throws(() => devstackZooKeeperMode('3.9.2', { SHARDBRIDGE_KAFKA_MODE: 'zk' }), /neither kraft nor zookeeper/);
});
