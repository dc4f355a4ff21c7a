import { test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import { isRetriable } from '../../shared/errors.ts';
import { explainUnanswered, isUnanswered } from '../../shared/kafka/unanswered.ts';

const brokers = ['k1:9092', 'k2:9092'];

test("kafkajs's 'Broker not connected' (a broker that accepted TCP and never answered) becomes a retriable error naming the brokers", () => {
  const bare = new Error('Broker not connected');
  assert.equal(isRetriable(bare), false, 'the bare error stopped the connectors');
  const e = explainUnanswered(bare, brokers) as Error;
  assert.equal(isRetriable(e), true);
  assert.match(e.message, /^Kafka at k1:9092,k2:9092 accepted the connection but did not answer: /);
});

test('under SASL the ApiVersions timeout, alone or as the cause of exhausted retries, is explained the same way', () => {
  const timeout = new kafkajs.KafkaJSRequestTimeoutError('Request ApiVersions(key: 18, version: 2) timed out', {} as never);
  const exhausted = new kafkajs.KafkaJSNumberOfRetriesExceeded(timeout, { retryCount: 2, retryTime: 800 });
  for (const err of [timeout, exhausted]) {
    assert.equal(isUnanswered(err), true, err.name);
    assert.match((explainUnanswered(err, brokers) as Error).message, /did not answer/);
  }
});

test('other errors pass unchanged: a refused port, another request timing out, an Error with another message', () => {
  const others = [
    new kafkajs.KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { broker: 'k1:9092', code: 'ECONNREFUSED' }),
    new kafkajs.KafkaJSRequestTimeoutError('Request Metadata(key: 3, version: 6) timed out', {} as never),
    new Error('Broker not connected yet'),
  ];
  for (const err of others) assert.equal(explainUnanswered(err, brokers), err);
});
