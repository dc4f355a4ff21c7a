/**
 * The pure core of `shardbridge status`: what was read (slot, snapshot markers and states,
 * topic end offsets, applied offsets, stalls, sequence syncs, the sink's metrics) becomes one
 * report with its problems (status-render.ts makes it a screen). Nothing here does I/O;
 * shared/migration/gather.ts reads the facts, shared/cli/commands/status.ts drives it.
 */
import { firstLine, formatCount } from './format.ts';
import { slotProblems, slotProgressProblems } from './slot-problems.ts';

export type Level = 'FAIL' | 'WARN';

export interface Problem {
  level: Level;
  /** What it is about: `slot shardbridge_slot`, `topic t[0]`, `destination`. */
  object: string;
  message: string;
  remedy?: string;
}

export interface SlotFacts {
  name: string;
  plugin: string | null;
  active: boolean;
  activePid: number | null;
  confirmedLsn: string | null;
  restartLsn: string | null;
  currentLsn: string;
  /** current − confirmed_flush_lsn. */
  lagBytes: number | null;
  /** The walsender's sent_lsn (pg_stat_replication), null when no walsender streams from the slot. */
  sentLsn: string | null;
  /** current − sent_lsn: WAL the walsender has not read and sent yet. */
  unsentBytes: number | null;
  /** current − restart_lsn: WAL kept on the source's disk for the slot. */
  walRetainedBytes: number | null;
  walStatus: string | null;
  /** pg_replication_slots.invalidation_reason (PostgreSQL 17+). */
  invalidationReason?: string | null;
  /** pg_replication_slots.safe_wal_size: WAL that can still be written before the slot is lost (null: unlimited). */
  safeWalSizeBytes: number | null;
}

/** One topic-partition: the log end and what the sink has applied (its stored next offset). */
export interface PartitionFacts {
  topic: string;
  partition: number;
  kind: 'table' | 'control';
  /** High watermark: the offset the next record will get. */
  end: number;
  /** shardbridge.sink_offsets.next_offset; null when nothing was applied yet. */
  applied: number | null;
}

/** Latest `__snapshot` marker of a table (source-connector/control-topics.ts). */
export interface SnapshotMarker {
  kind: 'started' | 'completed';
  /** A `started` marker written by `shardbridge resnapshot`: the source connector takes the snapshot at its next start. */
  requested?: boolean;
  topic: string;
  rows?: number;
  estimatedRows?: number;
  endOffsets?: { partition: number; offset: string }[];
  at?: string;
}

export interface TableFacts {
  /** Source `schema.table`. */
  table: string;
  topic: string;
  /** Destination `schema.table`. */
  destination: string;
  /** From the `__snapshot` topic; undefined when the topic was not read. */
  marker?: SnapshotMarker | null;
  /** shardbridge.snapshot_status.state (snapshotting / applying / complete); null without a row. */
  sinkState: string | null;
  rowsExpected?: number | null;
}

export interface StallFacts {
  topic: string;
  partition: number;
  /** The first record not applied. */
  offset: number | null;
  table: string | null;
  sqlstate: string | null;
  reason: string;
  message: string;
  remedy: string | null;
  attempts: number | null;
  since: string | null;
  /** Where it was seen: the destination's `shardbridge.stalls`, the sink's metrics, or both. */
  seenIn: ('table' | 'metrics')[];
}

export interface SequenceSyncFacts {
  sequence: string;
  sourceValue: string | null;
  appliedValue: string | null;
  at: string | null;
}

/** Sum of table-topic offsets at one moment: two of them give rates. */
export interface OffsetSample {
  atMs: number;
  end: number;
  applied: number;
  /** The slot's positions at that moment, when the source was read. */
  slot?: Pick<SlotFacts, 'active' | 'activePid' | 'confirmedLsn' | 'sentLsn' | 'unsentBytes'> | null;
}

export interface Reachability {
  target: string;
  ok: boolean;
  error?: string;
}

export interface StatusFacts {
  atMs: number;
  source: Reachability;
  destination: Reachability;
  kafka: Reachability;
  slotName: string;
  /** null: no slot of that name (or the source was not reachable: see `source`). */
  slot: SlotFacts | null;
  /** The source's warning threshold for retained WAL (walRetentionWarnBytes). */
  walRetentionWarnBytes: number;
  tables: TableFacts[];
  partitions: PartitionFacts[];
  stalls: StallFacts[];
  sequences: SequenceSyncFacts[];
  /** Whether shardbridge.sink_offsets exists (the sink has run against this destination). */
  sinkTables: boolean;
  /** The sink's /metrics, when asked for: reachable or not (`explicit`: the operator gave the URL). */
  sinkMetrics: { url: string; ok: boolean; explicit: boolean; error?: string } | null;
  /** Whether the `__snapshot` topic says a slot was created (the migration has begun); null: the topic could not be read. */
  slotCreatedMarker: boolean | null;
  /** Whether shardbridge.sink_offsets holds offsets of this group: the sink applied something (read without Kafka). */
  sinkApplied?: boolean;
  groupId: string;
}

export type SnapshotState = 'not started' | 'requested' | 'snapshotting' | 'applying' | 'complete';

export interface TableStatus {
  table: string;
  destination: string;
  topic: string;
  state: SnapshotState;
  rows: number | null;
  /** Snapshot records applied / written, while applying. */
  applied: number | null;
  of: number | null;
}

export type CatchUpState = 'caught up' | 'keeping up' | 'catching up' | 'falling behind' | 'not applying' | 'unknown';

export interface CatchUp {
  state: CatchUpState;
  /** Records in table topics not applied yet; null when Kafka or the destination could not be read. */
  lagRecords: number | null;
  appliedPerSecond: number | null;
  producedPerSecond: number | null;
  etaSeconds: number | null;
  /** The interval the rates come from. */
  sampleSeconds: number | null;
  /** Why the state is unknown when an input was missing, e.g. `Kafka could not be read`. */
  unknownBecause?: string;
}

export interface PartitionStatus extends PartitionFacts {
  /** null when the destination (the applied offsets) could not be read. */
  lag: number | null;
  stalled: boolean;
}

export interface StatusReport {
  ok: boolean;
  at: string;
  source: Reachability;
  destination: Reachability;
  kafka: Reachability;
  slot: (SlotFacts & { exists: true }) | { name: string; exists: false };
  tables: TableStatus[];
  partitions: PartitionStatus[];
  /** Of the table topics; null where Kafka (end) or the destination (applied) could not be read. */
  totals: { end: number | null; applied: number | null; lag: number | null };
  stalls: StallFacts[];
  sequences: { lastSync: string | null; entries: SequenceSyncFacts[] };
  catchUp: CatchUp;
  sinkMetrics: StatusFacts['sinkMetrics'];
  problems: Problem[];
}

/**
 * Whether the `__snapshot` markers must be read: the sink's rows settle every table only when
 * each says complete and the sink has applied the marker topic to its end (a marker it has not
 * read yet, such as a table's own snapshot started again, is newer than its rows). Pure.
 */
export function markersNeeded(tables: readonly TableFacts[], partitions: readonly PartitionFacts[], snapshotTopic: string): boolean {
  if (tables.length === 0 || tables.some((t) => t.sinkState !== 'complete')) return true;
  return partitions.some((p) => p.topic === snapshotTopic && (p.applied === null || p.applied < p.end));
}

/** The snapshot state of one table from the marker and the sink's row. Pure. */
export function tableStatus(t: TableFacts, partitions: readonly PartitionFacts[]): TableStatus {
  const base = { table: t.table, destination: t.destination, topic: t.topic, rows: t.marker?.rows ?? t.rowsExpected ?? t.marker?.estimatedRows ?? null, applied: null, of: null };
  const applied = (p: number) => partitions.find((x) => x.topic === t.topic && x.partition === p)?.applied ?? 0;
  // The latest marker, when read, is newer than the sink's row or as new: a snapshot started or
  // completed since the sink marked the table complete (a table's own snapshot taken again, the
  // sink stopped or behind) makes the table snapshotting, or applying until its end offsets.
  if (t.marker?.kind === 'started') return { ...base, state: t.marker.requested ? 'requested' : 'snapshotting' };
  const ends = t.marker?.kind === 'completed' ? t.marker.endOffsets ?? [] : null;
  if (!ends && t.sinkState === 'complete') return { ...base, state: 'complete' };
  if (ends) {
    const of = ends.reduce((n, e) => n + Number(e.offset), 0);
    const done = ends.reduce((n, e) => n + Math.min(applied(e.partition), Number(e.offset)), 0);
    return { ...base, state: done >= of ? 'complete' : 'applying', applied: done, of };
  }
  if (t.sinkState === 'applying') return { ...base, state: 'applying' };
  if (t.sinkState === 'snapshotting') return { ...base, state: 'snapshotting' };
  return { ...base, state: 'not started' };
}

/**
 * A lag the sink applies within this many seconds is the records in flight of a source that
 * keeps writing, not a backlog: under a steady writer the lag never reaches 0, and the two
 * rates over a 2 s sample differ by noise either way (equal rates read as falling behind).
 */
export const KEEPING_UP_SECONDS = 2;

/**
 * Catch-up estimate from two samples of the table topics' end and applied offsets. The lag
 * shrinks at (applied rate − produced rate); a non-positive net rate never catches up, unless
 * the lag is what the sink applies in KEEPING_UP_SECONDS (keeping up). Pure.
 */
export function estimateCatchUp(first: OffsetSample | null, last: OffsetSample): CatchUp {
  const lag = Math.max(0, last.end - last.applied);
  if (lag === 0) return { state: 'caught up', lagRecords: 0, appliedPerSecond: rate(first, last, 'applied'), producedPerSecond: rate(first, last, 'end'), etaSeconds: 0, sampleSeconds: span(first, last) };
  const applied = rate(first, last, 'applied');
  const produced = rate(first, last, 'end');
  const out: CatchUp = { state: 'unknown', lagRecords: lag, appliedPerSecond: applied, producedPerSecond: produced, etaSeconds: null, sampleSeconds: span(first, last) };
  if (applied === null || produced === null) return { ...out, unknownBecause: 'one sample only: the rates need a second one (the next refresh, or --sample-seconds above 0)' };
  if (applied === 0) return { ...out, state: 'not applying' };
  const net = applied - produced;
  if (net <= 0 && lag <= applied * KEEPING_UP_SECONDS) return { ...out, state: 'keeping up', etaSeconds: lag / applied };
  if (net <= 0) return { ...out, state: 'falling behind' };
  return { ...out, state: 'catching up', etaSeconds: lag / net };
}

const span = (a: OffsetSample | null, b: OffsetSample): number | null => (a && b.atMs > a.atMs ? (b.atMs - a.atMs) / 1000 : null);

function rate(a: OffsetSample | null, b: OffsetSample, k: 'end' | 'applied'): number | null {
  const s = span(a, b);
  return a && s ? Math.max(0, b[k] - a[k]) / s : null;
}

/** The table topics' totals at one moment. Pure. */
export function sampleOf(partitions: readonly PartitionFacts[], atMs: number, slot?: SlotFacts | null): OffsetSample {
  const tables = partitions.filter((p) => p.kind === 'table');
  const out: OffsetSample = {
    atMs,
    end: tables.reduce((n, p) => n + p.end, 0),
    applied: tables.reduce((n, p) => n + Math.min(p.applied ?? 0, p.end), 0),
  };
  if (slot !== undefined) out.slot = slot && { active: slot.active, activePid: slot.activePid, confirmedLsn: slot.confirmedLsn, sentLsn: slot.sentLsn, unsentBytes: slot.unsentBytes };
  return out;
}

/** Facts → report with problems. `previous` is an earlier sample (for rates), if any. Pure. */
export function buildStatus(f: StatusFacts, previous: OffsetSample | null): StatusReport {
  const problems: Problem[] = [];
  for (const [side, r] of [['source', f.source], ['destination', f.destination], ['kafka', f.kafka]] as const) {
    if (!r.ok) problems.push({ level: 'FAIL', object: `${side} ${r.target}`, message: `cannot read the ${side}: ${r.error ?? 'unreachable'}`, remedy: 'check the address, the network path and the credentials in the config' });
  }
  const stalledKeys = new Set(f.stalls.map((s) => `${s.topic}\u0000${s.partition}`));
  const applied = f.destination.ok;
  const partitions: PartitionStatus[] = f.partitions.map((p) => ({ ...p, lag: applied ? Math.max(0, p.end - (p.applied ?? 0)) : null, stalled: stalledKeys.has(`${p.topic}\u0000${p.partition}`) }));
  const tables = f.tables.map((t) => tableStatus(t, f.partitions));
  const sample = sampleOf(f.partitions, f.atMs, f.slot);
  // Without Kafka there are no end offsets, without the destination no applied ones: an empty or
  // zero lag would read as caught up.
  const unread = unreadInputs(f);
  const catchUp: CatchUp = unread
    ? { state: 'unknown', lagRecords: null, appliedPerSecond: null, producedPerSecond: null, etaSeconds: null, sampleSeconds: null, unknownBecause: `${unread} could not be read` }
    : estimateCatchUp(previous, sample);

  if (f.source.ok) problems.push(...slotProblems(f), ...slotProgressProblems(f, previous, sample));
  for (const s of f.stalls) {
    problems.push({
      level: 'FAIL',
      object: `topic ${s.topic}[${s.partition}]`,
      message: `stalled${s.offset !== null ? ` at offset ${s.offset}` : ''}${s.table ? ` (table ${s.table})` : ''}: ${firstLine(s.message)}${s.sqlstate ? ` [${s.sqlstate}]` : ''}`,
      remedy: s.remedy ?? 'see the sink connector log; the sink retries by itself once the destination is fixed',
    });
  }
  if (f.destination.ok && f.kafka.ok && !f.sinkTables && partitions.some((p) => p.kind === 'table' && p.end > 0)) {
    problems.push({ level: 'WARN', object: 'sink', message: 'the sink has applied nothing yet (no shardbridge.sink_offsets on the destination)', remedy: 'start the sink connector' });
  }
  const pending = tables.filter((t) => t.state !== 'complete');
  if (pending.length > 0 && f.slot) {
    problems.push({ level: 'WARN', object: 'snapshot', message: `snapshot not complete for ${pending.length} of ${tables.length} tables: ${pending.map((t) => `${t.table} (${t.state})`).join(', ')}` });
  }
  // With a partition stalled its records pile up whatever the sink's speed: the stall (a FAIL
  // above, with its remedy) is the cause, not the sink's capacity.
  if ((catchUp.state === 'falling behind' || catchUp.state === 'not applying') && f.stalls.length === 0) {
    problems.push({
      level: 'WARN',
      object: 'sink',
      message: catchUp.state === 'falling behind' ? `the sink is falling behind: ${formatCount(catchUp.lagRecords ?? 0)} records to apply and the lag is not shrinking` : `the sink applied nothing during the sample while ${formatCount(catchUp.lagRecords ?? 0)} records wait`,
      remedy: catchUp.state === 'not applying' ? 'check that the sink connector is running (its log, /healthz)' : 'give the sink more partitions or members, or a faster destination',
    });
  }
  const lastSync = f.sequences.reduce<string | null>((m, s) => (s.at && (!m || s.at > m) ? s.at : m), null);
  if (f.sinkMetrics && !f.sinkMetrics.ok && f.sinkMetrics.explicit) {
    problems.push({ level: 'WARN', object: 'sink metrics', message: `${f.sinkMetrics.url} not reachable (${f.sinkMetrics.error ?? 'no answer'}): stalls come from shardbridge.stalls only` });
  }
  const slot: StatusReport['slot'] = f.slot ? { ...f.slot, exists: true } : { name: f.slotName, exists: false };
  return {
    ok: !problems.some((p) => p.level === 'FAIL'),
    at: new Date(f.atMs).toISOString(),
    source: f.source,
    destination: f.destination,
    kafka: f.kafka,
    slot,
    tables,
    partitions,
    totals: {
      end: f.kafka.ok ? sample.end : null,
      applied: f.kafka.ok && applied ? sample.applied : null,
      lag: unread ? null : Math.max(0, sample.end - sample.applied),
    },
    stalls: f.stalls,
    sequences: { lastSync, entries: f.sequences },
    catchUp,
    sinkMetrics: f.sinkMetrics,
    problems,
  };
}

/** `Kafka`, `the destination`, both joined by `and`, or null when both were read. */
function unreadInputs(f: StatusFacts): string | null {
  const unread = [!f.kafka.ok && 'Kafka', !f.destination.ok && 'the destination'].filter((x): x is string => Boolean(x));
  return unread.length > 0 ? unread.join(' and ') : null;
}

/**
 * `shardbridge.stalls.error` as the sink writes it: the database's message, then optional
 * `detail: …`, `column: …` lines and a final `remedy: …` line. Pure.
 */
export function splitStallError(error: string): { message: string; remedy: string | null } {
  const lines = error.split('\n');
  const r = lines.findIndex((l) => l.startsWith('remedy: '));
  if (r < 0) return { message: error, remedy: null };
  return { message: lines.slice(0, r).join('\n'), remedy: [lines[r].slice('remedy: '.length), ...lines.slice(r + 1)].join('\n') };
}

/** Series of `shardbridge_sink_stalled_partitions` with value > 0 in Prometheus text. Pure. */
export function parseStalledMetric(text: string): { topic: string; partition: number; reason: string }[] {
  const out: { topic: string; partition: number; reason: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^shardbridge_sink_stalled_partitions\{(.*)\}\s+([0-9.eE+-]+)\s*$/.exec(line);
    if (!m || !(Number(m[2]) > 0)) continue;
    const labels = parseLabels(m[1]);
    if (labels.topic === undefined || labels.partition === undefined) continue;
    out.push({ topic: labels.topic, partition: Number(labels.partition), reason: labels.reason ?? 'apply' });
  }
  return out;
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) out[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

/** Stalls from the destination's table merged with those only the metrics show. Pure. */
export function mergeStalls(fromTable: StallFacts[], fromMetrics: { topic: string; partition: number; reason: string }[]): StallFacts[] {
  const out = fromTable.map((s) => ({ ...s, seenIn: [...s.seenIn] }));
  for (const m of fromMetrics) {
    const s = out.find((x) => x.topic === m.topic && x.partition === m.partition);
    if (s) {
      if (!s.seenIn.includes('metrics')) s.seenIn.push('metrics');
      continue;
    }
    out.push({ topic: m.topic, partition: m.partition, offset: null, table: null, sqlstate: null, reason: m.reason, message: `stalled (${m.reason}); the sink has not recorded it in shardbridge.stalls yet`, remedy: null, attempts: null, since: null, seenIn: ['metrics'] });
  }
  return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}
