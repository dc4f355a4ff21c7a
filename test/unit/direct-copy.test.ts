import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirectCopyPolicy } from '../../sink-connector/direct-copy.ts';

test('direct COPY policy: tries until a conflict, then skips 1, 2, 4 … eligible batches up to the cap; a success forgives', () => {
  const p = new DirectCopyPolicy({ initialSkip: 1, maxSkip: 4 });
  assert.equal(p.shouldTry('a'), true);
  assert.equal(p.shouldTry('a'), true);
  const tries = (n: number) => Array.from({ length: n }, () => p.shouldTry('a'));
  assert.equal(p.conflicted('a'), 1);
  assert.deepEqual(tries(2), [false, true]);
  assert.equal(p.conflicted('a'), 2);
  assert.deepEqual(tries(3), [false, false, true]);
  assert.equal(p.conflicted('a'), 4);
  assert.equal(p.conflicted('a'), 4, 'capped');
  assert.deepEqual(tries(5), [false, false, false, false, true]);
  p.succeeded('a');
  assert.equal(p.conflicted('a'), 1, 'a success starts the doubling again');
});

test('direct COPY policy: tables are independent', () => {
  const p = new DirectCopyPolicy();
  p.conflicted('a');
  assert.equal(p.shouldTry('b'), true);
  assert.equal(p.shouldTry('a'), false);
  assert.equal(p.shouldTry('a'), true);
});
