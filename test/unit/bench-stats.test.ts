import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  appliedToEnd,
  expectedBacklogRecords,
  lsnDiff,
  lsnToBigInt,
  percentile,
  perSecond,
  ratio,
  round,
  sumOffsets,
  summarize,
  workloadSize,
} from '../../shared/bench/stats.ts';
import { parseVmHwm } from '../../shared/bench/children.ts';
import { cpuDelta, parseStat, treeSeconds } from '../../shared/bench/cpu.ts';

test('percentile: nearest rank, unsorted input, edges', () => {
  const v = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(percentile(v, 50), 5);
  assert.equal(percentile(v, 90), 9);
  assert.equal(percentile(v, 99), 10);
  assert.equal(percentile(v, 100), 10);
  assert.equal(percentile(v, 0), 1);
  assert.equal(percentile([42], 99), 42);
  assert.equal(percentile([], 50), null);
  assert.throws(() => percentile(v, 101), RangeError);
  assert.deepEqual(v, [5, 1, 4, 2, 3, 10, 9, 8, 7, 6], 'input left unsorted');
});

test('percentile: p99 of 1000 values is the 990th smallest', () => {
  const v = Array.from({ length: 1000 }, (_, i) => 1000 - i);
  assert.equal(percentile(v, 99), 990);
  assert.equal(percentile(v, 50), 500);
});

test('summarize: samples, percentiles, max, mean; empty', () => {
  const s = summarize([10, 20, 30, 40]);
  assert.deepEqual(s, { samples: 4, p50: 20, p90: 40, p99: 40, max: 40, mean: 25 });
  assert.deepEqual(summarize([]), { samples: 0, p50: null, p90: null, p99: null, max: null, mean: null });
});

test('perSecond and ratio: nulls for missing or zero times, no division by zero', () => {
  assert.equal(perSecond(1000, 500), 2000);
  assert.equal(perSecond(1000, 0), null);
  assert.equal(perSecond(1000, null), null);
  assert.equal(perSecond(1000, undefined), null);
  assert.equal(ratio(50, 100), 0.5);
  assert.equal(ratio(50, 0), null);
  assert.equal(ratio(null, 100), null);
  assert.equal(ratio(100, null), null);
  assert.equal(round(1.23456, 2), 1.23);
  assert.equal(round(null), null);
  assert.equal(round(Infinity), null);
});

test('workloadSize: the README workload at scale 1 and scaled down', () => {
  const full = workloadSize(1);
  assert.deepEqual(
    { rows: full.rows, inserts: full.inserts, updates: full.updates, deletes: full.deletes, changes: full.changes, latencyRate: full.latencyRate },
    { rows: 1_000_000, inserts: 300_000, updates: 100_000, deletes: 20_000, changes: 420_000, latencyRate: 5000 },
  );
  const tenth = workloadSize(0.1);
  assert.deepEqual([tenth.rows, tenth.inserts, tenth.updates, tenth.deletes, tenth.changes], [100_000, 30_000, 10_000, 2_000, 42_000]);
  assert.equal(tenth.latencyRate, 500, 'the rate has a floor');
  assert.equal(workloadSize(0.5).latencyRate, 2500);
  assert.throws(() => workloadSize(0), RangeError);
  assert.throws(() => workloadSize(-1), RangeError);
});

test('workloadSize: updates and deletes stay inside the seeded ids at any scale', () => {
  for (const scale of [0.0001, 0.001, 0.02, 0.1, 1, 2]) {
    const w = workloadSize(scale);
    assert.ok(w.updates === 0 || 10 * (w.updates - 1) + 1 <= w.rows, `scale ${scale}`);
    assert.ok(w.deletes === 0 || 50 * (w.deletes - 1) + 5 <= w.rows, `scale ${scale}`);
    assert.equal(w.changes, w.inserts + w.updates + w.deletes);
  }
});

test('expectedBacklogRecords: deletes count twice with tombstones', () => {
  assert.equal(expectedBacklogRecords({ inserts: 300, updates: 100, deletes: 20 }, true), 440);
  assert.equal(expectedBacklogRecords({ inserts: 300, updates: 100, deletes: 20 }, false), 420);
});

test('LSNs: parse and difference', () => {
  assert.equal(lsnToBigInt('0/16B3748'), 0x16b3748n);
  assert.equal(lsnToBigInt('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  assert.equal(lsnDiff('0/100', '0/300'), 0x200);
  assert.throws(() => lsnToBigInt('nope'));
});

test('Kafka progress: sum of end offsets, applied to the end of every non-empty partition', () => {
  const ends = [
    { partition: 0, offset: '10' },
    { partition: 1, offset: '0' },
    { partition: 2, offset: '5' },
  ];
  assert.equal(sumOffsets(ends), 15);
  assert.equal(appliedToEnd(ends, new Map([[0, 10n], [2, 5n]])), true);
  assert.equal(appliedToEnd(ends, new Map([[0, 10n], [2, 4n]])), false);
  assert.equal(appliedToEnd(ends, new Map([[0, 10n]])), false, 'a partition without a stored offset is not applied');
  assert.equal(appliedToEnd([{ partition: 0, offset: '0' }], new Map()), true);
});

test('parseVmHwm: the peak resident set from /proc/<pid>/status', () => {
  const status = 'Name:\tnode\nVmPeak:\t 1234567 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  100000 kB\n';
  assert.equal(parseVmHwm(status), 204800);
  assert.equal(parseVmHwm('Name:\tnode\n'), null);
});

test('parseStat: CPU seconds from /proc/<pid>/stat, a command with spaces and parentheses', () => {
  const fields = ['S', '42', ...Array(9).fill('0'), '250', '50', '1000', '500', ...Array(30).fill('0')];
  const s = parseStat(`1234 (node (a) b) ${fields.join(' ')}`);
  assert.deepEqual(s, { self: 3, children: 15, ppid: 42 });
  assert.equal(parseStat('garbage'), null);
});

test('cpuDelta: per meter, processes started during the phase count from 0, unreadable ones stay null', () => {
  assert.deepEqual(cpuDelta({ a: 1, b: 2, c: null }, { a: 1.5, b: 2, c: 3, d: 4 }), { a: 0.5, b: 0, c: null, d: 4 });
});

test('treeSeconds: root with reaped children plus live descendants', () => {
  const stats = new Map([
    [1, { self: 1, children: 10, ppid: 0 }],
    [2, { self: 2, children: 0, ppid: 1 }],
    [3, { self: 3, children: 0, ppid: 2 }],
    [4, { self: 100, children: 0, ppid: 9 }],
  ]);
  assert.equal(treeSeconds(1, stats), 16);
  assert.equal(treeSeconds(5, stats), null);
});
