/**
 * What a benchmark run measured (BenchResults: raw times and counts), the figures derived
 * from it (rates, ratios, aims), and the two outputs: a printed table and the JSON file.
 * Pure; test/unit/bench-report.test.ts.
 */
import type { PhaseCpu } from './cpu.ts';
import { perSecond, ratio, round, type LatencySummary, type WorkloadSize } from './stats.ts';

export interface Timed {
  /** Measured time of the main figure (ms); null when the phase did not finish. */
  ms: number | null;
  count: number;
}

export interface OursTimed extends Timed {
  /** From spawning the connector processes (node start, start-up checks, group join included). */
  msInclStartup: number | null;
  /** Until Kafka held every record (the source's part). */
  kafkaMs: number | null;
  /** The destination equalled the source afterwards (counts and checksums); null: not checked. */
  verified: boolean | null;
}

/** The sink alone re-applying the backlog's records, rewound to their first offsets (docs/benchmark.md). */
export interface SinkOnlyTimed extends Timed {
  /** From spawning the sink process. */
  msInclStartup: number | null;
  verified: boolean | null;
}

export interface BenchResults {
  mode: 'full' | 'source-only';
  workload: WorkloadSize & { backlogTxnRows: number };
  machine: Machine;
  startedAt: string;
  totalMs: number;
  ours: {
    snapshot?: OursTimed;
    catchup?: OursTimed;
    sinkReplay?: SinkOnlyTimed;
    latency?: { targetRate: number; achievedRate: number; seconds: number; summary: LatencySummary; lost: number };
    sourcePeakRssMb: number | null;
    sinkPeakRssMb: number | null;
    /** Peak RSS per connector process run (snapshot, catch-up, sink replay + latency). */
    rssByPhase: Record<string, { source: number | null; sink: number | null }>;
  };
  peers: {
    pgDump?: Timed;
    nativeSync?: Timed & { verified: boolean | null };
    nativeCatchup?: Timed & { verified: boolean | null };
    recvlogical?: Timed;
    bareRead?: Timed & { peakRssMb: number | null };
  };
  /** --max-old-space-size (MB) the connector processes ran with; 0: node's default. Absent in older results. */
  connectorHeapMb?: number;
  /** What the connector processes ran: the compiled build (dist/) or the sources through tsx. */
  connectorRuntime?: 'compiled' | 'sources';
  /** The untimed Kafka JIT warm-up before the first phase (warmup.ts); null: skipped (--no-warmup). */
  warmup?: { ms: number; records: number; kafkaCpuS: number | null } | null;
  /** CPU seconds per component, per phase. */
  cpu: PhaseCpu[];
  /** After the latency load: destination = source. */
  finalVerified: boolean | null;
  profiles?: { dir: string; files: string[] };
  failures: string[];
}

export interface Machine {
  cores: number;
  cpu: string;
  memoryGb: number;
  node: string;
  postgres: string;
  kafka: string;
  platform: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

/** Each phase's verification that ran: [phase, destination = source]. */
function verifications(r: BenchResults): [string, boolean][] {
  const o = r.ours;
  const all: [string, boolean | null | undefined][] = [
    ['snapshot', o.snapshot?.verified],
    ['catch-up', o.catchup?.verified],
    ['sink replay', o.sinkReplay?.verified],
    ['native sync', r.peers.nativeSync?.verified],
    ['native catch-up', r.peers.nativeCatchup?.verified],
    ['final', r.finalVerified],
  ];
  return all.filter((c): c is [string, boolean] => typeof c[1] === 'boolean');
}

/** A phase that ended with the destination not equal to the source is a failure: its rate measured nothing. */
export function verificationFailures(r: BenchResults): string[] {
  return verifications(r)
    .filter(([, same]) => !same)
    .map(([phase]) => `${phase}: the destination does not equal the source (row counts and checksums)`);
}

/** The aims of issue 5 (a benchmark's targets, not a test's assertions). */
export const AIMS = {
  catchupVsNative: 1.0,
  sinkApplyVsNative: 1.0,
  snapshotVsNativeSync: 0.5,
  latencyP99Ms: 1000,
  rssMb: 300,
  streamVsBareRead: 0.5,
  snapshotToKafkaRowsPerS: 150_000,
} as const;

export interface Figures {
  snapshot_rows_per_s: number | null;
  snapshot_rows_per_s_incl_startup: number | null;
  source_snapshot_to_kafka_rows_per_s: number | null;
  catchup_changes_per_s: number | null;
  catchup_changes_per_s_incl_startup: number | null;
  source_stream_to_kafka_changes_per_s: number | null;
  sink_apply_changes_per_s: number | null;
  sink_apply_changes_per_s_incl_startup: number | null;
  pg_dump_rows_per_s: number | null;
  native_sync_rows_per_s: number | null;
  native_catchup_changes_per_s: number | null;
  recvlogical_changes_per_s: number | null;
  bare_read_changes_per_s: number | null;
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
  latency_max_ms: number | null;
  source_peak_rss_mb: number | null;
  sink_peak_rss_mb: number | null;
  bare_read_peak_rss_mb: number | null;
  ratios: {
    snapshot_vs_native_sync: number | null;
    snapshot_vs_pg_dump: number | null;
    catchup_vs_native: number | null;
    catchup_vs_recvlogical: number | null;
    sink_apply_vs_native: number | null;
    stream_to_kafka_vs_bare_read: number | null;
    stream_to_kafka_vs_recvlogical: number | null;
  };
  aims: Record<string, { aim: string; met: boolean | null }>;
}

export function figures(r: BenchResults): Figures {
  const o = r.ours;
  const p = r.peers;
  const rate = (t: Timed | undefined, ms: number | null | undefined = t?.ms) => (t ? perSecond(t.count, ms) : null);
  const f = {
    snapshot_rows_per_s: rate(o.snapshot),
    snapshot_rows_per_s_incl_startup: rate(o.snapshot, o.snapshot?.msInclStartup),
    source_snapshot_to_kafka_rows_per_s: rate(o.snapshot, o.snapshot?.kafkaMs),
    catchup_changes_per_s: rate(o.catchup),
    catchup_changes_per_s_incl_startup: rate(o.catchup, o.catchup?.msInclStartup),
    source_stream_to_kafka_changes_per_s: rate(o.catchup, o.catchup?.kafkaMs),
    sink_apply_changes_per_s: rate(o.sinkReplay),
    sink_apply_changes_per_s_incl_startup: rate(o.sinkReplay, o.sinkReplay?.msInclStartup),
    pg_dump_rows_per_s: rate(p.pgDump),
    native_sync_rows_per_s: rate(p.nativeSync),
    native_catchup_changes_per_s: rate(p.nativeCatchup),
    recvlogical_changes_per_s: rate(p.recvlogical),
    bare_read_changes_per_s: rate(p.bareRead),
    latency_p50_ms: o.latency?.summary.p50 ?? null,
    latency_p99_ms: o.latency?.summary.p99 ?? null,
    latency_max_ms: o.latency?.summary.max ?? null,
    source_peak_rss_mb: o.sourcePeakRssMb,
    sink_peak_rss_mb: o.sinkPeakRssMb,
    bare_read_peak_rss_mb: p.bareRead?.peakRssMb ?? null,
  };
  const ratios = {
    snapshot_vs_native_sync: ratio(f.snapshot_rows_per_s, f.native_sync_rows_per_s),
    snapshot_vs_pg_dump: ratio(f.snapshot_rows_per_s, f.pg_dump_rows_per_s),
    catchup_vs_native: ratio(f.catchup_changes_per_s, f.native_catchup_changes_per_s),
    catchup_vs_recvlogical: ratio(f.catchup_changes_per_s, f.recvlogical_changes_per_s),
    sink_apply_vs_native: ratio(f.sink_apply_changes_per_s, f.native_catchup_changes_per_s),
    stream_to_kafka_vs_bare_read: ratio(f.source_stream_to_kafka_changes_per_s, f.bare_read_changes_per_s),
    stream_to_kafka_vs_recvlogical: ratio(f.source_stream_to_kafka_changes_per_s, f.recvlogical_changes_per_s),
  };
  const atLeast = (v: number | null, min: number) => (v === null ? null : v >= min);
  const below = (v: number | null, max: number) => (v === null ? null : v < max);
  const aims: Figures['aims'] =
    r.mode === 'source-only'
      ? {
          stream_to_kafka_vs_bare_read: { aim: `>= ${AIMS.streamVsBareRead}x`, met: atLeast(ratios.stream_to_kafka_vs_bare_read, AIMS.streamVsBareRead) },
          snapshot_to_kafka_rows_per_s: { aim: `>= ${AIMS.snapshotToKafkaRowsPerS}`, met: atLeast(f.source_snapshot_to_kafka_rows_per_s, AIMS.snapshotToKafkaRowsPerS) },
          source_peak_rss_mb: { aim: `< ${AIMS.rssMb}`, met: below(f.source_peak_rss_mb, AIMS.rssMb) },
        }
      : {
          catchup_vs_native: { aim: `>= ${AIMS.catchupVsNative}x`, met: atLeast(ratios.catchup_vs_native, AIMS.catchupVsNative) },
          sink_apply_vs_native: { aim: `>= ${AIMS.sinkApplyVsNative}x`, met: atLeast(ratios.sink_apply_vs_native, AIMS.sinkApplyVsNative) },
          snapshot_vs_native_sync: { aim: `>= ${AIMS.snapshotVsNativeSync}x`, met: atLeast(ratios.snapshot_vs_native_sync, AIMS.snapshotVsNativeSync) },
          latency_p99_ms: { aim: `< ${AIMS.latencyP99Ms}`, met: below(f.latency_p99_ms, AIMS.latencyP99Ms) },
          source_peak_rss_mb: { aim: `< ${AIMS.rssMb}`, met: below(f.source_peak_rss_mb, AIMS.rssMb) },
          sink_peak_rss_mb: { aim: `< ${AIMS.rssMb}`, met: below(f.sink_peak_rss_mb, AIMS.rssMb) },
        };
  return { ...f, ratios, aims };
}

/** The JSON file: the figures (rates rounded to whole units, ratios to 3 decimals), then the raw measurements. */
export function toJson(r: BenchResults): Record<string, unknown> {
  const f = figures(r);
  const { ratios, aims, ...rates } = f;
  const rounded = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, round(v, k.endsWith('_ms') || k.endsWith('_mb') ? 1 : 0)]));
  return {
    mode: r.mode,
    scale: r.workload.scale,
    ...rounded,
    ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, round(v, 3)])),
    aims,
    verified: {
      snapshot: r.ours.snapshot?.verified ?? null,
      catchup: r.ours.catchup?.verified ?? null,
      sink_replay: r.ours.sinkReplay?.verified ?? null,
      native_sync: r.peers.nativeSync?.verified ?? null,
      native_catchup: r.peers.nativeCatchup?.verified ?? null,
      final: r.finalVerified,
    },
    workload: {
      table: 'orders(id bigserial primary key, customer_id int, amount numeric(12,2), status text, created_at timestamptz, payload jsonb)',
      rows: r.workload.rows,
      backlog: { inserts: r.workload.inserts, updates: r.workload.updates, deletes: r.workload.deletes, changes: r.workload.changes, rows_per_transaction: r.workload.backlogTxnRows },
      latency_load_changes_per_s: r.workload.latencyRate,
    },
    latency: r.ours.latency
      ? {
          target_changes_per_s: r.ours.latency.targetRate,
          achieved_changes_per_s: round(r.ours.latency.achievedRate),
          seconds: r.ours.latency.seconds,
          samples: r.ours.latency.summary.samples,
          p50_ms: round(r.ours.latency.summary.p50, 1),
          p90_ms: round(r.ours.latency.summary.p90, 1),
          p99_ms: round(r.ours.latency.summary.p99, 1),
          max_ms: round(r.ours.latency.summary.max, 1),
          mean_ms: round(r.ours.latency.summary.mean, 1),
          never_seen: r.ours.latency.lost,
        }
      : null,
    measurements: { ours: r.ours, peers: r.peers },
    machine: {
      cores: r.machine.cores,
      cpu: r.machine.cpu,
      memory_gb: r.machine.memoryGb,
      node: r.machine.node,
      postgres: r.machine.postgres,
      kafka: r.machine.kafka,
      platform: r.machine.platform,
      load_average_start: r.machine.loadAverageStart,
      load_average_end: r.machine.loadAverageEnd,
    },
    connector_heap_mb: r.connectorHeapMb ?? null,
    connector_runtime: r.connectorRuntime ?? null,
    warmup: r.warmup ? { records: r.warmup.records, s: round(r.warmup.ms / 1000, 1), kafka_cpu_s: r.warmup.kafkaCpuS } : null,
    started_at: r.startedAt,
    total_s: round(r.totalMs / 1000, 1),
    cpu_by_phase: r.cpu.map((p) => ({ phase: p.phase, wall_s: round(p.wallMs / 1000, 2), units: p.units, cpu_s: p.seconds, startup_cpu_s: p.startup ?? null, cpu_us_per_unit: round(cpuPerUnit(p), 1) })),
    profiles: r.profiles ?? null,
    failures: r.failures,
  };
}

// ---------- the printed table ----------

export function fmtRate(v: number | null): string {
  return v === null ? '-' : Math.round(v).toLocaleString('en-US');
}

export function fmtRatio(v: number | null): string {
  return v === null ? '-' : `${v.toFixed(2)}x`;
}

function fmtMs(v: number | null): string {
  return v === null ? '-' : v < 10 ? v.toFixed(1) : String(Math.round(v));
}

function fmtSecs(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;
}

function verdict(a: { met: boolean | null } | undefined): string {
  return !a || a.met === null ? '' : a.met ? 'met' : 'MISSED';
}

/** Left-aligned text columns (numbers right-aligned), two spaces apart. */
export function renderTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const numeric = (c: string) => /^[-\d.,]+( ?[a-z%x]+)?$/i.test(c) && /\d/.test(c);
  return rows
    .map((row) => row.map((c, i) => (numeric(c) && i > 0 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd())
    .join('\n');
}

export function formatReport(r: BenchResults): string {
  const f = figures(r);
  const w = r.workload;
  const m = r.machine;
  const lines: string[] = [];
  lines.push(
    `ShardBridge benchmark${r.mode === 'source-only' ? ' (--source-only: source -> Kafka)' : ''}, scale ${w.scale}: ` +
      `${w.rows.toLocaleString('en-US')} rows, backlog ${w.inserts.toLocaleString('en-US')} inserts + ${w.updates.toLocaleString('en-US')} updates + ` +
      `${w.deletes.toLocaleString('en-US')} deletes (${w.backlogTxnRows} rows per transaction)`,
  );
  const setup = setupLine(r);
  if (setup) lines.push(setup);
  lines.push(`machine: ${m.cores} cores (${m.cpu}), ${m.memoryGb} GB, node ${m.node}, PostgreSQL ${m.postgres} (fsync off), Kafka ${m.kafka}; load average ${m.loadAverageStart.join(' ')} at start, ${m.loadAverageEnd.join(' ')} at end`);
  lines.push('');
  const rows: string[][] = [['measure', 'ShardBridge', 'peer', 'peer rate', 'ours/peer', 'aim', '']];
  const o = r.ours;
  if (r.mode === 'full') {
    rows.push(['snapshot, rows/s', fmtRate(f.snapshot_rows_per_s), 'native initial sync', fmtRate(f.native_sync_rows_per_s), fmtRatio(f.ratios.snapshot_vs_native_sync), f.aims.snapshot_vs_native_sync.aim, verdict(f.aims.snapshot_vs_native_sync)]);
    rows.push(['', '', 'pg_dump -a | psql', fmtRate(f.pg_dump_rows_per_s), fmtRatio(f.ratios.snapshot_vs_pg_dump), '', '']);
    rows.push(['catch-up, changes/s', fmtRate(f.catchup_changes_per_s), 'native catch-up', fmtRate(f.native_catchup_changes_per_s), fmtRatio(f.ratios.catchup_vs_native), f.aims.catchup_vs_native.aim, verdict(f.aims.catchup_vs_native)]);
    rows.push(['', '', 'pg_recvlogical > /dev/null', fmtRate(f.recvlogical_changes_per_s), fmtRatio(f.ratios.catchup_vs_recvlogical), 'ceiling', '']);
    rows.push(['', '', 'pg-logical-replication read', fmtRate(f.bare_read_changes_per_s), fmtRatio(ratio(f.catchup_changes_per_s, f.bare_read_changes_per_s)), 'ceiling', '']);
    rows.push([
      'sink apply (replay of the backlog), changes/s',
      fmtRate(f.sink_apply_changes_per_s),
      'native catch-up',
      fmtRate(f.native_catchup_changes_per_s),
      fmtRatio(f.ratios.sink_apply_vs_native),
      f.aims.sink_apply_vs_native.aim,
      verdict(f.aims.sink_apply_vs_native),
    ]);
  }
  rows.push(['source -> Kafka snapshot, rows/s', fmtRate(f.source_snapshot_to_kafka_rows_per_s), '', '', '', r.mode === 'source-only' ? f.aims.snapshot_to_kafka_rows_per_s.aim : '', r.mode === 'source-only' ? verdict(f.aims.snapshot_to_kafka_rows_per_s) : '']);
  rows.push(['source -> Kafka stream, changes/s', fmtRate(f.source_stream_to_kafka_changes_per_s), 'pg-logical-replication read', fmtRate(f.bare_read_changes_per_s), fmtRatio(f.ratios.stream_to_kafka_vs_bare_read), r.mode === 'source-only' ? f.aims.stream_to_kafka_vs_bare_read.aim : '', r.mode === 'source-only' ? verdict(f.aims.stream_to_kafka_vs_bare_read) : '']);
  rows.push(['', '', 'pg_recvlogical > /dev/null', fmtRate(f.recvlogical_changes_per_s), fmtRatio(f.ratios.stream_to_kafka_vs_recvlogical), '', '']);
  if (o.latency) {
    const l = o.latency;
    rows.push([`latency p50 / p99, ms (${fmtRate(l.achievedRate)} changes/s)`, `${fmtMs(f.latency_p50_ms)} / ${fmtMs(f.latency_p99_ms)}`, '', '', '', f.aims.latency_p99_ms.aim + ' (p99)', verdict(f.aims.latency_p99_ms)]);
  }
  rows.push(['peak RSS source, MB', fmtMs(f.source_peak_rss_mb), 'pg-logical-replication read', fmtMs(f.bare_read_peak_rss_mb), '', f.aims.source_peak_rss_mb.aim, verdict(f.aims.source_peak_rss_mb)]);
  if (r.mode === 'full') rows.push(['peak RSS sink, MB', fmtMs(f.sink_peak_rss_mb), '', '', '', f.aims.sink_peak_rss_mb.aim, verdict(f.aims.sink_peak_rss_mb)]);
  lines.push(renderTable(rows));
  lines.push('');
  const t: string[] = [];
  const timed = (what: string, x: OursTimed, rateInclStartup: number | null, unit: string) =>
    x.ms === null
      ? `${what} into Kafka ${fmtSecs(x.kafkaMs)} (${fmtSecs(x.msInclStartup)} with process start-up)`
      : `${what} ${fmtSecs(x.ms)}, into Kafka ${fmtSecs(x.kafkaMs)} (${fmtSecs(x.msInclStartup)} with process start-up, ${fmtRate(rateInclStartup)} ${unit}/s)`;
  if (o.snapshot) t.push(timed('snapshot', o.snapshot, f.snapshot_rows_per_s_incl_startup, 'rows'));
  if (o.catchup) t.push(timed('catch-up', o.catchup, f.catchup_changes_per_s_incl_startup, 'changes'));
  if (o.sinkReplay) t.push(`sink replay ${fmtSecs(o.sinkReplay.ms)} (${fmtSecs(o.sinkReplay.msInclStartup)} with process start-up, ${fmtRate(f.sink_apply_changes_per_s_incl_startup)} changes/s)`);
  if (r.peers.nativeSync) t.push(`native sync ${fmtSecs(r.peers.nativeSync.ms)}`);
  if (r.peers.nativeCatchup) t.push(`native catch-up ${fmtSecs(r.peers.nativeCatchup.ms)}`);
  if (t.length) lines.push(`times: ${t.join('; ')}`);
  if (o.latency) {
    const s = o.latency.summary;
    lines.push(`latency: ${s.samples} samples over ${o.latency.seconds} s at ${fmtRate(o.latency.achievedRate)} changes/s (target ${fmtRate(o.latency.targetRate)}): p50 ${fmtMs(s.p50)}, p90 ${fmtMs(s.p90)}, p99 ${fmtMs(s.p99)}, max ${fmtMs(s.max)} ms${o.latency.lost ? `; ${o.latency.lost} never seen` : ''}`);
  }
  const checks = verifications(r);
  if (checks.length) lines.push(`destination = source (counts and checksums): ${checks.map(([k, v]) => `${k} ${v ? 'yes' : 'NO'}`).join(', ')}`);
  if (r.cpu.length) {
    lines.push('');
    lines.push(formatCpu(r.cpu));
  }
  if (r.profiles) lines.push(`CPU profiles: ${r.profiles.dir} (${r.profiles.files.length} files)`);
  for (const fl of r.failures) lines.push(`FAILED: ${fl}`);
  return lines.join('\n') + '\n';
}

/** How the run was set up: the connectors' heap cap and the broker warm-up; null for results that do not say. */
export function setupLine(r: Pick<BenchResults, 'connectorHeapMb' | 'warmup' | 'connectorRuntime'>): string | null {
  if (r.connectorHeapMb === undefined && r.warmup === undefined) return null;
  const parts: string[] = [];
  if (r.connectorRuntime === 'compiled') parts.push('connectors run compiled (npm run build, as the image runs them)');
  else if (r.connectorRuntime === 'sources') parts.push('connectors run from the TypeScript sources through tsx (--from-sources)');
  if (r.connectorHeapMb !== undefined) parts.push(r.connectorHeapMb > 0 ? `connectors run with NODE_OPTIONS=--max-old-space-size=${r.connectorHeapMb}` : "connectors run with node's default heap limit");
  if (r.warmup) parts.push(`Kafka broker warmed up first (${r.warmup.records.toLocaleString('en-US')} records, ${fmtSecs(r.warmup.ms)}, not timed)`);
  else if (r.warmup === null) parts.push('Kafka broker not warmed up (--no-warmup)');
  return `setup: ${parts.join('; ')}`;
}

/** Total CPU µs per row or change of a phase; null without units or readings. */
export function cpuPerUnit(p: PhaseCpu): number | null {
  const total = Object.values(p.seconds).reduce<number>((a, v) => a + (v ?? 0), 0);
  return p.units > 0 ? (total * 1e6) / p.units : null;
}

/** CPU seconds per component and phase: what each side costs, whatever the neighbours' load. */
export function formatCpu(phases: readonly PhaseCpu[]): string {
  const keys: string[] = [];
  for (const p of phases) for (const k of Object.keys(p.seconds)) if (!keys.includes(k)) keys.push(k);
  const rows: string[][] = [['CPU seconds', 'wall s', ...keys, 'total', 'µs/unit', 'start-up']];
  for (const p of phases) {
    const total = Object.values(p.seconds).reduce<number>((a, v) => a + (v ?? 0), 0);
    const per = cpuPerUnit(p);
    const startup = p.startup ? Object.values(p.startup).reduce<number>((a, v) => a + (v ?? 0), 0) : null;
    rows.push([
      p.phase,
      (p.wallMs / 1000).toFixed(2),
      ...keys.map((k) => (p.seconds[k] === undefined || p.seconds[k] === null ? '-' : p.seconds[k]!.toFixed(2))),
      total.toFixed(2),
      per === null ? '-' : per.toFixed(1),
      startup === null ? '' : startup.toFixed(2),
    ]);
  }
  return renderTable(rows);
}
