import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heapFlags, MANY_TABLES, sourceHeapGrowingPercent } from '../../shared/heap.ts';

test('heapGrowingPercent becomes V8\'s --heap-growing-percent; 0 leaves V8\'s own heuristics', () => {
  assert.deepEqual(heapFlags(100), ['--heap-growing-percent=100']);
  assert.deepEqual(heapFlags(35), ['--heap-growing-percent=35']);
  assert.deepEqual(heapFlags(0), []);
});

test("the source's factor: as configured; unset, V8's own below MANY_TABLES selected tables and 100 from there", () => {
  assert.equal(sourceHeapGrowingPercent(undefined, 1), 0);
  assert.equal(sourceHeapGrowingPercent(undefined, MANY_TABLES - 1), 0);
  assert.equal(sourceHeapGrowingPercent(undefined, MANY_TABLES), 100);
  assert.equal(sourceHeapGrowingPercent(0, 2_000), 0, 'an explicit 0 keeps V8 own');
  assert.equal(sourceHeapGrowingPercent(50, 1), 50);
});
