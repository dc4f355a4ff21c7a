import { test } from 'node:test';
import assert from 'node:assert/strict';
import { policyMismatches } from '../../source-connector/topic-settings.ts';

test("pre-created topics whose cleanup.policy differs from the one the connector would set are named; the order of a policy list does not count", () => {
  const wanted = new Map([['p.__snapshot', 'compact'], ['p.public.a', 'compact,delete'], ['p.public.b', 'delete'], ['p.public.c', 'delete']]);
  const actual = new Map([['p.__snapshot', 'delete'], ['p.public.a', 'delete,compact'], ['p.public.b', 'compact']]);
  assert.deepEqual(policyMismatches(wanted, actual), [
    { topic: 'p.__snapshot', wanted: 'compact', actual: 'delete' },
    { topic: 'p.public.b', wanted: 'delete', actual: 'compact' },
  ]);
});
