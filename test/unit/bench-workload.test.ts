import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workloadSize } from '../../shared/bench/stats.ts';
import { backlogPlan, deleteSql, insertSql, loadMix, stepRows, stepSql, transactionSql, updateSql } from '../../shared/bench/workload.ts';

test('backlogPlan: every change exactly once, transactions of at most txnRows, last one an insert', () => {
  const w = workloadSize(0.01); // 10,000 rows; 3,000 inserts, 1,000 updates, 200 deletes
  const plan = backlogPlan(w, 100);
  const sum = (kind: string) => plan.filter((s) => s.kind === kind).reduce((a, s) => a + stepRows(s), 0);
  assert.equal(sum('insert'), w.inserts);
  assert.equal(sum('update'), w.updates);
  assert.equal(sum('delete'), w.deletes);
  assert.ok(plan.every((s) => stepRows(s) >= 1 && stepRows(s) <= 100));
  assert.equal(plan[plan.length - 1].kind, 'insert');
  const updated = plan.flatMap((s) => (s.kind === 'update' ? s.ids : []));
  const deleted = plan.flatMap((s) => (s.kind === 'delete' ? s.ids : []));
  assert.equal(new Set(updated).size, updated.length, 'no row updated twice');
  assert.ok(updated.every((id) => id % 10 === 1 && id <= w.rows));
  assert.ok(deleted.every((id) => id % 10 === 5 && id <= w.rows), 'deleted ids never collide with updated ones');
  const inserted = plan.flatMap((s) => (s.kind === 'insert' ? [s.from, s.to] : []));
  assert.equal(Math.min(...inserted), w.rows + 1);
  assert.equal(Math.max(...inserted), w.rows + w.inserts);
});

test('backlogPlan: the kinds are interleaved, not one block after another', () => {
  const plan = backlogPlan(workloadSize(0.01), 100);
  const firstHalf = plan.slice(0, plan.length / 2);
  for (const kind of ['insert', 'update', 'delete']) assert.ok(firstHalf.some((s) => s.kind === kind), `${kind} in the first half`);
});

test('backlogPlan: refuses more updates or deletes than the seeded ids allow', () => {
  assert.throws(() => backlogPlan({ rows: 100, inserts: 0, updates: 11, deletes: 0 }), RangeError);
  assert.throws(() => backlogPlan({ rows: 100, inserts: 0, updates: 0, deletes: 3 }), RangeError);
});

test('SQL text: one transaction per step, ids inlined as integers only', () => {
  assert.equal(transactionSql(['SELECT 1', 'SELECT 2']), 'BEGIN;\nSELECT 1;\nSELECT 2;\nCOMMIT;');
  assert.match(insertSql(11, 20), /FROM generate_series\(11::bigint, 20::bigint\) AS g$/);
  assert.match(insertSql(1, 2, { clockTimestamp: true, returning: true }), /clock_timestamp\(\).* RETURNING id$/);
  assert.match(updateSql([1, 11]), /WHERE id = ANY\('\{1,11\}'::bigint\[\]\)$/);
  assert.match(deleteSql([5]), /^DELETE FROM public\.orders WHERE id = ANY\('\{5\}'::bigint\[\]\)$/);
  assert.throws(() => updateSql([1.5]), RangeError);
  assert.match(stepSql({ kind: 'delete', ids: [5, 55] }), /^BEGIN;\nDELETE .*;\nCOMMIT;$/);
});

test('loadMix: 70/25/5 with at least one insert (the probe)', () => {
  assert.deepEqual(loadMix(100), { inserts: 70, updates: 25, deletes: 5 });
  assert.deepEqual(loadMix(1), { inserts: 1, updates: 0, deletes: 0 });
  assert.deepEqual(loadMix(5), { inserts: 4, updates: 1, deletes: 0 });
  for (let n = 1; n < 200; n++) {
    const m = loadMix(n);
    assert.equal(m.inserts + m.updates + m.deletes, n);
    assert.ok(m.inserts >= 1 && m.updates >= 0 && m.deletes >= 0);
  }
});
