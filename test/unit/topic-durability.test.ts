import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createdTopicsProblem, durabilityProblems, refusedError } from '../../shared/kafka/topic-durability.ts';

test('topic durability: min.insync.replicas above the replicas refuses every send; one replica on several brokers is warned; unknown settings pass', () => {
  const replicas = new Map([
    ['p.a', 1],
    ['p.b', 3],
    ['p.c', 1],
    ['p.d', 2],
  ]);
  const minInsync = new Map([
    ['p.a', '2'],
    ['p.b', '2'],
    ['p.d', '2'],
  ]);
  assert.deepEqual(durabilityProblems(replicas, minInsync, 3), { refused: [{ topic: 'p.a', replicas: 1, minInsync: 2 }], single: ['p.c'] });
  assert.deepEqual(durabilityProblems(new Map([['p.c', 1]]), new Map([['p.c', '1']]), 1), { refused: [], single: [] }, 'one broker: one replica is all there is');
});

test('topic durability: the refusal names each topic with its replicas and setting, and the kafka-configs command', () => {
  const err = refusedError([{ topic: 'p.public.orders', replicas: 1, minInsync: 2 }]);
  assert.equal(err.retriable, false);
  assert.match(err.message, /Kafka refuses every send to p\.public\.orders \(1 replica, min\.insync\.replicas 2\)/);
  assert.match(err.remedy!, /--entity-name p\.public\.orders --add-config min\.insync\.replicas=1/);
  assert.match(err.remedy!, /topics\.replicationFactor to at least 2/);
});

test('topics the source would create: fewer replicas than the brokers\' min.insync.replicas is a refusal foretold; unknown settings pass', () => {
  assert.match(createdTopicsProblem(1, 2)!.message, /get 1 replica, but the brokers ask min\.insync\.replicas 2: Kafka would refuse every send/);
  assert.match(createdTopicsProblem(1, 2)!.remedy, /topics\.replicationFactor to at least 2/);
  assert.equal(createdTopicsProblem(3, 2), null);
  assert.equal(createdTopicsProblem(null, 2), null);
  assert.equal(createdTopicsProblem(1, null), null);
});
