import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heapFlags } from '../../shared/heap.ts';

test('heapGrowingPercent becomes V8\'s --heap-growing-percent; 0 leaves V8\'s own heuristics', () => {
  assert.deepEqual(heapFlags(100), ['--heap-growing-percent=100']);
  assert.deepEqual(heapFlags(35), ['--heap-growing-percent=35']);
  assert.deepEqual(heapFlags(0), []);
});
