import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuPerUnit, figures, formatCpu, formatReport, fmtRate, fmtRatio, renderTable, toJson, verificationFailures, type BenchResults } from '../../shared/bench/report.ts';
import { summarize, workloadSize } from '../../shared/bench/stats.ts';

function results(over: Partial<BenchResults> = {}): BenchResults {
  return {
    mode: 'full',
    workload: { ...workloadSize(0.1), backlogTxnRows: 100 },
    machine: {
      cores: 2,
      cpu: 'AMD EPYC',
      memoryGb: 23.5,
      node: 'v20.20.2',
      postgres: '15.18',
      kafka: '4.4.0',
      platform: 'linux',
      loadAverageStart: [1, 1, 1],
      loadAverageEnd: [2, 2, 2],
    },
    startedAt: '2026-01-01T00:00:00.000Z',
    totalMs: 60_000,
    ours: {
      // 100,000 rows in 2 s; 42,000 changes in 0.5 s
      snapshot: { ms: 2_000, msInclStartup: 4_000, kafkaMs: 1_000, count: 100_000, verified: true },
      catchup: { ms: 500, msInclStartup: 2_500, kafkaMs: 400, count: 42_000, verified: true },
      // the sink alone re-applying the same 42,000 changes in 1.5 s (3.5 s from process start)
      sinkReplay: { ms: 1_500, msInclStartup: 3_500, count: 42_000, verified: true },
      latency: { targetRate: 500, achievedRate: 498, seconds: 20, summary: summarize([10, 20, 30, 400]), lost: 0 },
      sourcePeakRssMb: 120.4,
      sinkPeakRssMb: 310.2,
      rssByPhase: { snapshot: { source: 120.4, sink: 310.2 } },
    },
    peers: {
      pgDump: { ms: 500, count: 100_000 },
      nativeSync: { ms: 400, count: 100_000, verified: true },
      nativeCatchup: { ms: 1_000, count: 42_000, verified: true },
      recvlogical: { ms: 250, count: 42_000 },
      bareRead: { ms: 200, count: 42_000, peakRssMb: 80 },
    },
    finalVerified: true,
    cpu: [
      { phase: 'native sync', wallMs: 400, units: 100_000, seconds: { 'source PG': 0.2, 'destination PG': 0.3 } },
      { phase: 'ShardBridge snapshot', wallMs: 2_000, units: 100_000, seconds: { 'source PG': 0.3, 'destination PG': 0.5, 'source connector': 1.2, Kafka: null }, startup: { 'source connector': 1.5 } },
    ],
    failures: [],
    ...over,
  };
}

test('figures: rates from counts and times, ratios ours/peer', () => {
  const f = figures(results());
  assert.equal(f.snapshot_rows_per_s, 50_000);
  assert.equal(f.snapshot_rows_per_s_incl_startup, 25_000);
  assert.equal(f.source_snapshot_to_kafka_rows_per_s, 100_000);
  assert.equal(f.native_sync_rows_per_s, 250_000);
  assert.equal(f.pg_dump_rows_per_s, 200_000);
  assert.equal(f.catchup_changes_per_s, 84_000);
  assert.equal(f.native_catchup_changes_per_s, 42_000);
  assert.equal(f.recvlogical_changes_per_s, 168_000);
  assert.equal(f.bare_read_changes_per_s, 210_000);
  assert.equal(f.source_stream_to_kafka_changes_per_s, 105_000);
  assert.equal(f.ratios.snapshot_vs_native_sync, 0.2);
  assert.equal(f.ratios.catchup_vs_native, 2);
  assert.equal(f.ratios.stream_to_kafka_vs_bare_read, 0.5);
  assert.equal(f.latency_p99_ms, 400);
  assert.equal(f.latency_p50_ms, 20);
});

test('figures: the sink-only apply rate against native catch-up, its aim and its JSON key', () => {
  const f = figures(results());
  assert.equal(f.sink_apply_changes_per_s, 28_000);
  assert.equal(f.sink_apply_changes_per_s_incl_startup, 12_000);
  assert.equal(f.ratios.sink_apply_vs_native, 28_000 / 42_000);
  assert.deepEqual(f.aims.sink_apply_vs_native, { aim: '>= 1x', met: false });
  const fast = results();
  fast.ours.sinkReplay!.ms = 1_000;
  assert.equal(figures(fast).aims.sink_apply_vs_native.met, true, 'exactly the native rate meets the aim');
  const j = toJson(results());
  assert.equal(j.sink_apply_changes_per_s, 28_000);
  assert.equal((j.ratios as Record<string, number>).sink_apply_vs_native, 0.667);
  const missing = results();
  delete missing.ours.sinkReplay;
  const m = figures(missing);
  assert.equal(m.sink_apply_changes_per_s, null);
  assert.equal(m.aims.sink_apply_vs_native.met, null);
  assert.equal(toJson(missing).sink_apply_changes_per_s, null);
  assert.match(formatReport(missing), /sink apply \(replay of the backlog\), changes\/s\s+-\s+native catch-up\s+42,000\s+-\s+>= 1x$/m);
  assert.equal('sink_apply_changes_per_s' in figures(results({ mode: 'source-only' })).aims, false);
});

test('figures: aims met and missed; unknown when not measured', () => {
  const f = figures(results());
  assert.equal(f.aims.catchup_vs_native.met, true);
  assert.equal(f.aims.snapshot_vs_native_sync.met, false);
  assert.equal(f.aims.latency_p99_ms.met, true);
  assert.equal(f.aims.source_peak_rss_mb.met, true);
  assert.equal(f.aims.sink_peak_rss_mb.met, false);
  const failed = figures(results({ ours: { sourcePeakRssMb: null, sinkPeakRssMb: null, rssByPhase: {} }, peers: {} }));
  assert.equal(failed.snapshot_rows_per_s, null);
  assert.equal(failed.ratios.catchup_vs_native, null);
  assert.equal(failed.aims.catchup_vs_native.met, null);
});

test('figures: --source-only has its own aims (stream vs bare read, snapshot into Kafka)', () => {
  const r = results({ mode: 'source-only' });
  r.ours.snapshot!.ms = null;
  r.ours.catchup!.ms = null;
  const f = figures(r);
  assert.deepEqual(Object.keys(f.aims).sort(), ['snapshot_to_kafka_rows_per_s', 'source_peak_rss_mb', 'stream_to_kafka_vs_bare_read']);
  assert.equal(f.aims.stream_to_kafka_vs_bare_read.met, true);
  assert.equal(f.aims.snapshot_to_kafka_rows_per_s.met, false);
  assert.equal(f.snapshot_rows_per_s, null);
});

test('toJson: the keys issue 5 asks for, rounded, with scale, workload and machine', () => {
  const j = toJson(results());
  for (const k of [
    'snapshot_rows_per_s',
    'native_sync_rows_per_s',
    'catchup_changes_per_s',
    'native_catchup_changes_per_s',
    'sink_apply_changes_per_s',
    'latency_p99_ms',
    'latency_p50_ms',
    'source_peak_rss_mb',
    'sink_peak_rss_mb',
    'pg_dump_rows_per_s',
    'recvlogical_changes_per_s',
    'ratios',
    'scale',
    'machine',
  ]) {
    assert.ok(k in j, `missing ${k}`);
  }
  assert.equal(j.scale, 0.1);
  assert.equal(j.source_peak_rss_mb, 120.4);
  assert.equal((j.ratios as Record<string, number>).catchup_vs_native, 2);
  assert.equal((j.machine as Record<string, unknown>).cores, 2);
  assert.equal((j.workload as { backlog: { changes: number } }).backlog.changes, 42_000);
  assert.deepEqual(j.verified, { snapshot: true, catchup: true, sink_replay: true, native_sync: true, native_catchup: true, final: true });
  assert.doesNotThrow(() => JSON.stringify(j));
});

test('formatReport: one row per measure with ours, the peer, the ratio and the aim verdict', () => {
  const text = formatReport(results());
  assert.match(text, /scale 0\.1: 100,000 rows, backlog 30,000 inserts \+ 10,000 updates \+ 2,000 deletes/);
  assert.match(text, /snapshot, rows\/s\s+50,000\s+native initial sync\s+250,000\s+0\.20x\s+>= 0\.5x\s+MISSED/);
  assert.match(text, /catch-up, changes\/s\s+84,000\s+native catch-up\s+42,000\s+2\.00x\s+>= 1x\s+met/);
  assert.match(text, /^sink apply \(replay of the backlog\), changes\/s\s+28,000\s+native catch-up\s+42,000\s+0\.67x\s+>= 1x\s+MISSED$/m);
  assert.match(text, /sink replay 1\.5 s \(3\.5 s with process start-up, 12,000 changes\/s\)/);
  assert.match(text, /latency p50 \/ p99, ms .*20 \/ 400/);
  assert.match(text, /peak RSS sink, MB\s+310\s.*MISSED/);
  assert.match(text, /destination = source \(counts and checksums\): snapshot yes, catch-up yes, sink replay yes/);
  assert.doesNotMatch(text, /FAILED/);
  assert.match(formatReport(results({ failures: ['timed out'] })), /FAILED: timed out/);
});

test('a phase that ended with destination != source is a failure (the bench exits 1); unmeasured phases are not', () => {
  assert.deepEqual(verificationFailures(results()), []);
  const r = results({ finalVerified: null });
  r.ours.sinkReplay!.verified = false;
  r.peers.nativeSync!.verified = null;
  assert.deepEqual(verificationFailures(r), ['sink replay: the destination does not equal the source (row counts and checksums)']);
  assert.match(formatReport({ ...r, failures: verificationFailures(r) }), /FAILED: sink replay: the destination does not equal the source/);
});

test('renderTable: columns padded to the widest cell, numbers right-aligned', () => {
  const t = renderTable([
    ['a', 'value'],
    ['long name', '1,000'],
    ['b', '5'],
  ]);
  assert.deepEqual(t.split('\n'), ['a          value', 'long name  1,000', 'b              5']);
  assert.equal(fmtRate(1234.6), '1,235');
  assert.equal(fmtRate(null), '-');
  assert.equal(fmtRatio(0.456), '0.46x');
});

test('CPU per phase: seconds per component, total and µs per unit; missing readings shown as -', () => {
  const r = results();
  assert.equal(cpuPerUnit(r.cpu[0]), 5);
  assert.equal(cpuPerUnit(r.cpu[1]), 20);
  assert.equal(cpuPerUnit({ phase: 'x', wallMs: 1, units: 0, seconds: { a: 1 } }), null);
  const lines = formatCpu(r.cpu).split('\n');
  assert.match(lines[0], /^CPU seconds\s+wall s\s+source PG\s+destination PG\s+source connector\s+Kafka\s+total\s+µs\/unit\s+start-up$/);
  assert.match(lines[1], /^native sync\s+0\.40\s+0\.20\s+0\.30\s+-\s+-\s+0\.50\s+5\.0$/);
  assert.match(lines[2], /^ShardBridge snapshot\s+2\.00\s+0\.30\s+0\.50\s+1\.20\s+-\s+2\.00\s+20\.0\s+1\.50$/);
  const j = toJson(r) as { cpu_by_phase: { phase: string; cpu_us_per_unit: number }[] };
  assert.deepEqual(j.cpu_by_phase.map((p) => [p.phase, p.cpu_us_per_unit]), [['native sync', 5], ['ShardBridge snapshot', 20]]);
  assert.match(formatReport(r), /CPU seconds\s+wall s/);
});
