/** A chunk grouped for applying (table-runs.ts): segments cut at multi-partition truncates, per-table runs, fast rows joining them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachFast, segmentsOf, tableRuns } from '../../sink-connector/table-runs.ts';
import type { Chunk } from '../../sink-connector/apply.ts';
import type { FastRow } from '../../sink-connector/fast-rows.ts';
import type { DecodedRecord } from '../../sink-connector/decode.ts';
import type { TableVersion } from '../../sink-connector/schema-compile.ts';

function rec(table: string, op: DecodedRecord['change']['op'], key: readonly string[] | null, offset: number): DecodedRecord {
  const version = { destId: table, dest: { schema: 's', name: table } } as TableVersion;
  return {
    change: { op, topic: 't', partition: 0, offset: String(offset), key: {}, after: null, before: null, unchangedToast: [] },
    table: version,
    keyColumns: key,
  };
}

test('tableRuns: per table in offset order, a truncate joins the run, a key change starts a new one, ignored truncates vanish', () => {
  const k1 = ['id'];
  const k2 = ['id', 'region'];
  const records = [rec('a', 'c', k1, 0), rec('b', 'c', k1, 1), rec('a', 't', null, 2), rec('a', 'c', k1, 3), rec('a', 'u', k2, 4), rec('c', 't', null, 5)];
  const runs = tableRuns(records, 'apply');
  assert.deepEqual(
    runs.map((r) => [r.version.destId, r.key, r.records.map((x) => x.change.offset)]),
    [
      ['a', k1, ['0', '2', '3']],
      ['b', k1, ['1']],
      ['a', k2, ['4']],
      ['c', null, ['5']],
    ],
  );
  const ignored = tableRuns(records, 'ignore');
  assert.deepEqual(ignored.map((r) => r.records.map((x) => x.change.offset)), [['0', '3'], ['1'], ['4']]);
});

test('attachFast: one table\'s fast rows join its run as they are; rows of several tables each join their own run, in order', () => {
  const k = ['id'];
  const fastRow = (destId: string, offset: string) => ({ table: { destId }, keyColumns: k, op: 'c', raw: { offset } }) as unknown as FastRow;
  const one = [fastRow('a', '1'), fastRow('a', '3')];
  const runs = tableRuns([rec('a', 'd', k, 2)], 'apply');
  attachFast(runs, one);
  assert.equal(runs.length, 1);
  assert.equal(runs[0].fast, one, 'the chunk\'s own array, not a copy');
  const fresh = tableRuns([], 'apply');
  attachFast(fresh, one);
  assert.deepEqual(fresh.map((r) => [r.version.destId, r.fast]), [['a', one]]);
  const mixed = [fastRow('a', '1'), fastRow('b', '2'), fastRow('a', '4')];
  const two = tableRuns([rec('b', 'd', k, 3)], 'apply');
  attachFast(two, mixed);
  assert.deepEqual(
    two.map((r) => [r.version.destId, r.records.length, r.fast.map((f) => f.raw.offset)]),
    [
      ['b', 1, ['2']],
      ['a', 0, ['1', '4']],
    ],
  );
});

test('segmentsOf: cut after each multi-partition truncate (its barrier), one-partition truncates stay in the runs; fast rows join the last segment', () => {
  const k = ['id'];
  const records = [rec('a', 'c', k, 0), rec('a', 't', null, 1), rec('b', 'c', k, 2), rec('a', 't', null, 3), rec('b', 'u', k, 4)];
  const mark = { id: 'x', partitions: 3, delivery: 1 };
  const chunk = { topic: 't', partition: 0, firstOffset: 0n, nextOffset: 5n, records, truncates: new Map([['1', mark]]) } as Chunk;
  const segs = segmentsOf(chunk, 'apply');
  assert.deepEqual(
    segs.map((s) => [s.runs.map((r) => [r.version.destId, r.records.map((x) => x.change.offset)]), s.barrier?.record.change.offset, s.barrier?.mark]),
    [
      [[['a', ['0']]], '1', mark],
      [[['b', ['2', '4']], ['a', ['3']]], undefined, undefined],
    ],
  );
  // Ignored truncates cut nothing and vanish.
  const ignored = segmentsOf(chunk, 'ignore');
  assert.deepEqual(ignored.map((s) => s.runs.map((r) => r.records.map((x) => x.change.offset))), [[['0'], ['2', '4']]]);
  const fastRow = { table: { destId: 'c' }, keyColumns: k, op: 'c', raw: { offset: '5' } } as unknown as FastRow;
  const plain = segmentsOf({ ...chunk, truncates: undefined, fast: [fastRow] }, 'apply');
  assert.deepEqual(plain.map((s) => s.runs.map((r) => [r.version.destId, r.fast.length])), [[['a', 0], ['b', 0], ['c', 1]]]);
  assert.throws(() => segmentsOf({ ...chunk, fast: [fastRow] }, 'apply'), RangeError, 'fast rows never share a chunk with a barrier');
});
