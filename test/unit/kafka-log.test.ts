import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { consumerCrashLine, isConnectionFailure, isKafkaUnreachable, pinoLogEntry } from '../../shared/kafka/kafka-log.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

test('Kafka unreachable: one warning naming the brokers, without a stack; the repeats at debug until the quiet time is over, then one saying since when', () => {
  const { log, lines } = capture();
  let t = 0;
  const emit = pinoLogEntry(log, undefined, { brokers: ['k1:9092', 'k2:9092'], unreachableEveryMs: 60_000, now: () => t });
  const refused = { message: 'Connection error: connect ECONNREFUSED 127.0.0.1:9092', broker: 'k1:9092', stack: 'Error: connect ECONNREFUSED\n    at TCPConnectWrap' };
  const seed = { message: 'Failed to connect to seed broker, trying another broker from the list: Connection error: connect ECONNREFUSED 127.0.0.1:9092', retryCount: 0 };
  for (let i = 0; i < 5; i++) {
    emit({ namespace: 'Connection', level: 1, log: refused });
    emit({ namespace: 'BrokerPool', level: 1, log: { ...seed, retryCount: i } });
    t += 5_000;
  }
  t = 61_000;
  emit({ namespace: 'Connection', level: 1, log: { message: 'Connection timeout', broker: 'k2:9092' } });

  assert.equal(lines.filter((l) => l.level === 50).length, 0, 'no ERROR lines');
  const warnings = lines.filter((l) => l.level === 40);
  assert.deepEqual(warnings.map((w) => w.msg), [
    'cannot reach Kafka at k1:9092,k2:9092: Connection error: connect ECONNREFUSED 127.0.0.1:9092; retrying',
    'cannot reach Kafka at k1:9092,k2:9092 since 1970-01-01T00:00:00.000Z (61 s): Connection timeout; retrying',
  ]);
  assert.equal(lines.length, 11);
  assert.ok(lines.every((l) => l.stack === undefined), 'no stacks');
});

test('other kafkajs errors keep their level', () => {
  const { log, lines } = capture();
  const emit = pinoLogEntry(log, undefined, { brokers: ['k:1'] });
  emit({ namespace: 'Runner', level: 1, log: { message: 'Error when calling eachBatch', stack: 'x' } });
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [[50, 'Error when calling eachBatch']]);
});

test("a consumer's crash and restart (a broker restarted under the sink) are one warning, the owner's, with group, member and message, without a stack: kafkajs's own lines (ERROR, before it decides to restart) go to debug", () => {
  const { log, lines } = capture();
  const emit = pinoLogEntry(log, undefined, { brokers: ['k:1'] });
  // As kafkajs logged them in the chaos run, once per broker restart and sink, next to the sink's own line.
  // (A crash for Kafka being unreachable joins the 'cannot reach Kafka' warning: below.)
  emit({ namespace: 'Consumer', level: 1, log: { message: "Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests", groupId: 'g', retryCount: 5, stack: 'KafkaJSNonRetriableError\n  Caused by: …' } });
  const error = Object.assign(new Error("The coordinator is loading and hence can't process requests"), { name: 'KafkaJSProtocolError' });
  const line = consumerCrashLine({ error, restart: true, groupId: 'g', memberId: 'sink-1-abc' }, false);
  if (line) log[line.level](line.fields, line.msg);
  emit({ namespace: 'Consumer', level: 1, log: { message: 'Restarting the consumer in 1000ms', groupId: 'g', retryCount: 5, retryTime: 1000 } });
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [
    [20, "Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests"],
    [40, "consumer crashed; kafkajs restarts it: KafkaJSProtocolError: The coordinator is loading and hence can't process requests"],
    [20, 'Restarting the consumer in 1000ms'],
  ]);
  assert.ok(lines.every((l) => l.stack === undefined && l.err === undefined && l.groupId === 'g'));
  assert.equal(lines[1].memberId, 'sink-1-abc');
  assert.equal(lines[1].error, "KafkaJSProtocolError: The coordinator is loading and hence can't process requests");
});

test("consumerCrashLine: at debug while Kafka is unreachable (the client's warning says so) or once the owner stopped the consumer; none when kafkajs gives up (the owner's failure)", () => {
  const refused = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { name: 'KafkaJSNumberOfRetriesExceeded' });
  const other = new Error('Request Fetch timed out');
  assert.equal(consumerCrashLine({ error: refused, restart: true, groupId: 'g' }, false)?.level, 'debug');
  assert.equal(consumerCrashLine({ error: other, restart: true, groupId: 'g' }, true)?.level, 'debug');
  assert.equal(consumerCrashLine({ error: other, restart: true, groupId: 'g' }, false)?.level, 'warn');
  assert.equal(consumerCrashLine({ error: other, restart: false, groupId: 'g' }, false), null);
});

test('isConnectionFailure: connection errors and the broker pool retries, nothing else', () => {
  assert.equal(isConnectionFailure('Connection', 'Connection error: connect ECONNREFUSED 127.0.0.1:1'), true);
  assert.equal(isConnectionFailure('Connection', 'Connection timeout'), true);
  assert.equal(isConnectionFailure('BrokerPool', 'Failed to connect to broker, reconnecting'), true);
  // A broker that accepted TCP and never answered: kafkajs logged it at ERROR on every attempt.
  assert.equal(isConnectionFailure('BrokerPool', 'Request ApiVersions(key: 18, version: 2) timed out'), true);
  assert.equal(isConnectionFailure('BrokerPool', 'Request Metadata(key: 3, version: 6) timed out'), false);
  assert.equal(isConnectionFailure('Connection', 'Response Metadata(key: 3, version: 6)'), false);
  assert.equal(isConnectionFailure('Consumer', 'Connection error: x'), false);
});

test('a send kafkajs retries itself (a new topic whose leader it does not know yet) is a warning; the one it gives up on stays an error', () => {
  const { log, lines } = capture();
  const emit = pinoLogEntry(log, undefined, { brokers: ['k:1'] });
  emit({ namespace: 'Producer', level: 1, log: { message: 'Failed to send messages: This server is not the leader for that topic-partition', retryCount: 0, retryTime: 300 } });
  emit({ namespace: 'Producer', level: 1, log: { message: 'The request included a message larger than the max message size the server will accept', retryCount: 0, retryTime: 300 } });
  assert.deepEqual(lines.map((l) => l.level), [40, 50]);
});

test('a failure after a quiet spell longer than two warning periods is a new outage: its since starts again', () => {
  const { log, lines } = capture();
  let t = 0;
  const emit = pinoLogEntry(log, undefined, { brokers: ['k1:9092'], unreachableEveryMs: 60_000, now: () => t });
  const refused = { namespace: 'Connection', level: 1, log: { message: 'Connection timeout' } };
  emit(refused);
  t = 500_000;
  emit(refused);
  t = 570_000;
  emit(refused);
  assert.deepEqual(lines.filter((l) => l.level === 40).map((l) => l.msg), [
    'cannot reach Kafka at k1:9092: Connection timeout; retrying',
    'cannot reach Kafka at k1:9092: Connection timeout; retrying',
    'cannot reach Kafka at k1:9092 since 1970-01-01T00:08:20.000Z (70 s): Connection timeout; retrying',
  ]);
});

test("a consumer crashing and restarting while Kafka is unreachable: its 'Crash' and 'Restarting' lines join the one warning; kafkajs's line of a crash of another cause is at debug", () => {
  const { log, lines } = capture();
  let t = 0;
  const emit = pinoLogEntry(log, undefined, { brokers: ['k:1'], now: () => t });
  // One cycle every ~5 s with kafkajs's waits capped at 1 s (measured: 12 a minute).
  for (let i = 0; i < 12; i++) {
    emit({ namespace: 'Connection', level: 1, log: { message: 'Connection error: connect ECONNREFUSED 127.0.0.1:1', stack: 's' } });
    emit({ namespace: 'Consumer', level: 1, log: { message: 'Crash: KafkaJSNumberOfRetriesExceeded: Connection error: connect ECONNREFUSED 127.0.0.1:1', groupId: 'g', stack: 's' } });
    emit({ namespace: 'Consumer', level: 1, log: { message: 'Restarting the consumer in 1000ms', retryTime: 1000, groupId: 'g' } });
    t += 5_000;
  }
  assert.deepEqual(lines.filter((l) => (l.level as number) >= 40).map((l) => l.msg), ['cannot reach Kafka at k:1: Connection error: connect ECONNREFUSED 127.0.0.1:1; retrying']);
  // A crash of another cause: at debug here, its owner's warning says it (above).
  emit({ namespace: 'Consumer', level: 1, log: { message: 'Crash: KafkaJSNumberOfRetriesExceeded: Request Fetch timed out', groupId: 'g' } });
  // Our stopped client's gate (its broker list emptied): no error after a stop.
  emit({ namespace: 'Consumer', level: 1, log: { message: 'Crash: KafkaJSNonRetriableError: Failed to connect: brokers array is empty', groupId: 'g' } });
  assert.deepEqual(lines.filter((l) => (l.level as number) >= 40).map((l) => l.msg).slice(1), []);
  assert.equal(lines.at(-2)?.msg, 'Crash: KafkaJSNumberOfRetriesExceeded: Request Fetch timed out');
});

test('isKafkaUnreachable: connection failures however kafkajs wraps them, and our stopped client; nothing else', () => {
  const refused = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { name: 'KafkaJSConnectionError' });
  assert.equal(isKafkaUnreachable(refused), true);
  assert.equal(isKafkaUnreachable(Object.assign(new Error('retries exceeded'), { cause: refused })), true);
  assert.equal(isKafkaUnreachable(new Error('Connection timeout')), true);
  assert.equal(isKafkaUnreachable(new Error('Failed to connect: brokers array is empty')), true);
  assert.equal(isKafkaUnreachable(new Error('The group is rebalancing, so a rejoin is needed')), false);
  assert.equal(isKafkaUnreachable(new Error('Not authorized to access group: g')), false);
  assert.equal(isKafkaUnreachable(undefined), false);
});
