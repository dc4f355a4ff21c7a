import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, isRetriable } from '../../shared/errors.ts';
import { aclCommand, asAclError, authorizationRefusal, sharedPrefix } from '../../shared/kafka/authorization.ts';

const refusal = (type: string) => Object.assign(new Error('Not authorized'), { type, retriable: false });

test('authorizationRefusal finds the refusal in causes and aggregates, and nothing else', () => {
  assert.equal(authorizationRefusal(new Error('x', { cause: refusal('GROUP_AUTHORIZATION_FAILED') })), 'GROUP_AUTHORIZATION_FAILED');
  assert.equal(authorizationRefusal(Object.assign(new Error('agg'), { errors: [refusal('TOPIC_AUTHORIZATION_FAILED')] })), 'TOPIC_AUTHORIZATION_FAILED');
  assert.equal(authorizationRefusal(refusal('LEADER_NOT_AVAILABLE')), null);
  assert.equal(authorizationRefusal(undefined), null);
});

test('asAclError names principal, operation and resource of the refused type, with the grant; not retriable', () => {
  const brokers = ['k1:9092'];
  const err = asAclError(
    refusal('TOPIC_AUTHORIZATION_FAILED'),
    { principal: 'User:app', brokers, operation: 'Read', resourceType: 'group', names: ['g1'], doing: 'consuming' },
    { principal: 'User:app', brokers, operation: 'Read', resourceType: 'topic', names: ['shop.a'], doing: 'consuming' },
  );
  assert.ok(err instanceof ConfigError);
  assert.equal(err.message, 'Kafka refused User:app Read on topic shop.a while consuming (TOPIC_AUTHORIZATION_FAILED)');
  assert.equal(err.remedy, "grant it, then start again (a refusal is not retried): kafka-acls.sh --bootstrap-server k1:9092 --command-config <admin.properties> --add --allow-principal 'User:app' --operation Read --topic 'shop.a'");
  assert.equal(isRetriable(err), false);
  const plain = new Error('other');
  assert.equal(asAclError(plain, { brokers, operation: 'Read', resourceType: 'topic', names: ['t'], doing: 'x' }), plain);
});

test('many topics: one prefixed grant; a cluster grant; an unknown principal', () => {
  assert.equal(sharedPrefix(['shop.public.a', 'shop.__snapshot', 'shop.x']), 'shop.');
  assert.equal(sharedPrefix(['a', 'b']), undefined);
  const err = asAclError(refusal('TOPIC_AUTHORIZATION_FAILED'), { brokers: [], operation: 'Create', resourceType: 'topic', names: ['shop.a', 'shop.b', 'shop.c'], doing: 'creating' }) as ConfigError;
  assert.match(err.message, /^Kafka refused the connector's principal Create on one or more of the topics shop\.a, shop\.b, shop\.c/);
  assert.match(err.remedy!, /--operation Create --topic 'shop\.' --resource-pattern-type prefixed; or one such command per topic named/);
  assert.equal(aclCommand({ principal: 'User:u', operation: 'IdempotentWrite', resourceType: 'cluster', brokers: ['b:1'] }), "kafka-acls.sh --bootstrap-server b:1 --command-config <admin.properties> --add --allow-principal 'User:u' --operation IdempotentWrite --cluster");
});
