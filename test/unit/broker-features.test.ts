/**
 * The start-time check of what the connectors need of the broker (shared/kafka/broker-features.ts),
 * on the API versions real brokers announce.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../shared/errors.ts';
import { BROKER_NEEDS, brokersTooOld, brokerTooOld, checkBrokerApis, missingBrokerApis, type ApiVersionRange } from '../../shared/kafka/broker-features.ts';

/** Metadata (3), InitProducerId (22), DescribeConfigs (32) as Kafka 2.7 announces them: Metadata v0–v9, no topic ids. */
const KAFKA_2_7 = new Map<number, ApiVersionRange>([
  [3, { minVersion: 0, maxVersion: 9 }],
  [22, { minVersion: 0, maxVersion: 4 }],
  [32, { minVersion: 0, maxVersion: 3 }],
]);
/** The same as Kafka 3.3 announces them (Metadata v0–v12). */
const KAFKA_3_3 = new Map<number, ApiVersionRange>([
  [3, { minVersion: 0, maxVersion: 12 }],
  [22, { minVersion: 0, maxVersion: 4 }],
  [32, { minVersion: 0, maxVersion: 4 }],
]);

test('a broker older than 2.8 stops the sink at start, naming Metadata v10, topic ids and the release to upgrade to; the source needs no topic ids', () => {
  const err = brokerTooOld('kafka-1:9092', KAFKA_2_7, BROKER_NEEDS.sink);
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /kafka-1:9092 is older than Kafka 2\.8/);
  assert.match(err.message, /Metadata v10\+ for topic ids \(KIP-516\).*it speaks Metadata up to v9/);
  assert.match(err.remedy ?? '', /Apache Kafka 2\.8 or newer/);
  assert.equal(brokerTooOld('kafka-1:9092', KAFKA_2_7, BROKER_NEEDS.source), null);
});

test('a 3.3 broker meets every need; an API the broker does not announce at all is missing', () => {
  assert.deepEqual(missingBrokerApis(KAFKA_3_3, BROKER_NEEDS.sink), []);
  assert.deepEqual(missingBrokerApis(KAFKA_3_3, BROKER_NEEDS.source), []);
  const noIdempotence = new Map(KAFKA_3_3);
  noIdempotence.delete(22);
  const missing = missingBrokerApis(noIdempotence, BROKER_NEEDS.source);
  assert.deepEqual(missing.map((n) => n.api), ['InitProducerId']);
  assert.match(brokerTooOld('b:9092', noIdempotence, BROKER_NEEDS.source)?.message ?? '', /older than Kafka 0\.11.*InitProducerId v0\+.*it speaks InitProducerId not at all/);
});

test('every broker is judged: in a cluster upgraded broker by broker, the one old broker is named (one of three), whichever answered first; all new pass', async () => {
  const where = 'k1:9092,k2:9092';
  const cluster = [
    { broker: 'k1:9092', versions: KAFKA_3_3 },
    { broker: 'k2:9092', versions: KAFKA_2_7 },
    { broker: 'k3:9092', versions: KAFKA_3_3 },
  ];
  const err = brokersTooOld(where, cluster, BROKER_NEEDS.sink);
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /^the Kafka broker at k2:9092 \(one of 3\) is older than Kafka 2\.8: it lacks Metadata v10\+ for topic ids .*it speaks Metadata up to v9\)$/);
  assert.deepEqual(err.context, { kafka: where, brokers: 'k2:9092', missing: 'Metadata v10' });
  assert.match(err.remedy ?? '', /Apache Kafka 2\.8 or newer .*broker by broker: start the connector once every broker runs it/);
  assert.equal(brokersTooOld(where, cluster, BROKER_NEEDS.source), null, 'the source needs no topic ids');
  assert.equal(brokersTooOld(where, cluster.map((b) => ({ ...b, versions: KAFKA_3_3 })), BROKER_NEEDS.sink), null);
  // checkBrokerApis asks the admin for every broker, not the one it reached first.
  await assert.rejects(checkBrokerApis({ brokerApiVersions: async () => cluster }, where, BROKER_NEEDS.sink), /k2:9092 \(one of 3\)/);
  await checkBrokerApis({ brokerApiVersions: async () => [cluster[0], cluster[2]] }, where, BROKER_NEEDS.sink);
});

test('several old brokers are each named with what each lacks; a broker whose versions are unknown (down) is not judged', () => {
  const noIdempotence = new Map(KAFKA_3_3);
  noIdempotence.delete(22);
  const err = brokersTooOld('k:1', [
    { broker: 'k1:9092', versions: KAFKA_2_7 },
    { broker: 'k2:9092' },
    { broker: 'k3:9092', versions: noIdempotence },
    { broker: 'k4:9092', versions: KAFKA_3_3 },
  ], BROKER_NEEDS.sink);
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /^2 of the 3 Kafka brokers are older than Kafka 2\.8: k1:9092 lacks Metadata v10\+ .*up to v9\); k3:9092 lacks InitProducerId v0\+ .*it speaks InitProducerId not at all\)$/);
  assert.equal(err.context.brokers, 'k1:9092, k3:9092');
  assert.equal(err.context.missing, 'Metadata v10, InitProducerId v0');
  // Every broker old: no "broker by broker" hint.
  const all = brokersTooOld('k:1', [{ broker: 'k1:9092', versions: KAFKA_2_7 }, { broker: 'k2:9092', versions: KAFKA_2_7 }], BROKER_NEEDS.sink);
  assert.match(all?.message ?? '', /^2 of the 2 Kafka brokers are older than Kafka 2\.8: k1:9092 lacks .*; k2:9092 lacks /);
  assert.doesNotMatch(all?.remedy ?? '', /broker by broker/);
  // Unknown alone: nothing to judge; an old broker among unknown ones is still named.
  assert.equal(brokersTooOld('k:1', [{ broker: 'k1:9092', versions: KAFKA_3_3 }, { broker: 'k2:9092' }], BROKER_NEEDS.sink), null);
  assert.match(brokersTooOld('k:1', [{ broker: 'k1:9092' }, { broker: 'k2:9092', versions: KAFKA_2_7 }], BROKER_NEEDS.sink)?.message ?? '', /^the Kafka broker at k2:9092 is older than Kafka 2\.8/);
});
