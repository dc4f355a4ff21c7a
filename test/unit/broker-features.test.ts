/**
 * The start-time check of what the connectors need of the broker (shared/kafka/broker-features.ts),
 * on the API versions real brokers announce.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../shared/errors.ts';
import { BROKER_NEEDS, brokerTooOld, missingBrokerApis, type ApiVersionRange } from '../../shared/kafka/broker-features.ts';

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
