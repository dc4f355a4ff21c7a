/**
 * The pure core of `shardbridge cutover`: the wait judgements (source confirmed the recorded
 * position, sink applied the end offsets of that moment), the sequence targets (source value
 * plus margin, never lower), the verification summary, and the go / no-go report with its
 * rendering. shared/cli/commands/cutover.ts does the I/O in the order of the steps.
 */
import type { VerifyReport } from '../verify/index.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { formatBytes, formatCount, renderTable } from './format.ts';
import { sequenceBound } from './sequence-value.ts';

export type StepName = 'confirm' | 'source caught up' | 'sink caught up' | 'sequences' | 'verify' | 'writes stopped' | 'foreign keys';

export interface StepResult {
  step: StepName;
  status: 'ok' | 'failed' | 'skipped';
  detail: string;
  ms: number;
}

/** Whether the slot's confirmed position has reached the recorded one. Pure. */
export function sourceCaughtUp(target: string, confirmed: string | null): { done: boolean; behindBytes: number | null } {
  if (confirmed === null) return { done: false, behindBytes: null };
  const diff = parseLsn(target) - parseLsn(confirmed);
  return { done: diff <= 0n, behindBytes: diff > 0n ? Number(diff) : 0 };
}

export interface PartitionTarget {
  topic: string;
  partition: number;
  /** End offset when the source had confirmed the recorded position. */
  target: number;
  applied: number | null;
}

/** Partitions the sink has not applied up to their targets, and the records left. Pure. */
export function sinkRemaining(parts: readonly PartitionTarget[]): { behind: PartitionTarget[]; records: number } {
  const behind = parts.filter((p) => p.target > 0 && (p.applied ?? 0) < p.target);
  return { behind, records: behind.reduce((n, p) => n + p.target - (p.applied ?? 0), 0) };
}

export interface EndOffset {
  topic: string;
  partition: number;
  end: number;
}

/**
 * Records that reached the table topics after the end offsets the sink was waited for: changes
 * written to the source after the cut-over position (its writers did not stop). Pure.
 */
export function writesAfter(atWait: readonly EndOffset[], now: readonly EndOffset[]): { records: number; partitions: string[] } {
  const before = new Map(atWait.map((e) => [`${e.topic}[${e.partition}]`, e.end]));
  let records = 0;
  const partitions: string[] = [];
  for (const e of now) {
    const key = `${e.topic}[${e.partition}]`;
    const grown = e.end - (before.get(key) ?? 0);
    if (grown > 0) {
      records += grown;
      partitions.push(key);
    }
  }
  return { records, partitions };
}

/**
 * `topic[p]` keys as one list per topic, at most `max` topics named (`t.a[0, 1, 2], t.b[1] and 4
 * more topic(s)`): a writer left running reaches every partition, and the no-go named each of
 * them (23 for 8 tables in a walkthrough). Pure.
 */
export function partitionList(keys: readonly string[], max = 5): string {
  const byTopic = new Map<string, string[]>();
  for (const k of keys) {
    const m = /^(.*)\[(\d+)\]$/.exec(k);
    const [topic, p] = m ? [m[1], m[2]] : [k, ''];
    byTopic.set(topic, [...(byTopic.get(topic) ?? []), ...(p ? [p] : [])]);
  }
  const named = [...byTopic].slice(0, max).map(([t, ps]) => (ps.length ? `${t}[${ps.join(', ')}]` : t));
  const rest = byTopic.size - named.length;
  return `${named.join(', ')}${rest > 0 ? ` and ${rest} more topic(s)` : ''}`;
}

/**
 * The value a destination sequence must reach: the margin past the source value in the
 * direction the sequence counts (source − margin for a negative increment); null when the
 * source never used it. Pure.
 */
export function sequenceTarget(sourceValue: string | null, margin: number, increment: bigint = 1n): string | null {
  if (sourceValue === null) return null;
  return (BigInt(sourceValue) + (increment < 0n ? -BigInt(margin) : BigInt(margin))).toString();
}

export interface SequenceBounds {
  min: bigint;
  max: bigint;
}

/**
 * sequenceTarget held within the destination sequence's bound in the direction it counts
 * (MAXVALUE, or MINVALUE for a negative increment), which setval cannot pass. Held there, the
 * destination is exhausted (its next nextval fails): a warning with the ALTER SEQUENCE that
 * widens it. A source value itself beyond the bound is an error naming both sequences' bounds:
 * the destination cannot take the values the source handed out. `name`: the destination
 * sequence as SQL. Pure.
 */
export function planSequence(
  sourceValue: string | null,
  margin: number,
  increment: bigint,
  destination: SequenceBounds & { name: string },
  source: SequenceBounds,
): { target: string | null; warning?: string; error?: string } {
  const target = sequenceTarget(sourceValue, margin, increment);
  if (sourceValue === null || target === null) return { target };
  const down = increment < 0n;
  const { bound, at, beyond, widen } = sequenceBound({ increment, ...destination }, destination.name);
  if (beyond(BigInt(sourceValue))) {
    return {
      target: null,
      error: `the source handed out ${sourceValue}, beyond the destination's ${bound} ${at} (the source's ${bound} is ${down ? source.min : source.max}): the destination cannot take its values; widen it on the destination (${widen}), then run cutover again`,
    };
  }
  if (!beyond(BigInt(target))) return { target };
  return {
    target: at.toString(),
    warning: `the source value ${sourceValue} ${down ? '−' : '+'} the margin ${margin} is beyond the destination's ${bound} ${at}: set to ${at}, where the destination sequence is exhausted (its next nextval fails); widen it before the application writes (${widen}), then run cutover again to move it the full margin`,
  };
}

export interface SequenceResult {
  /** Source sequence, format('%I.%I'): a part that needs quotes is quoted (`public."odd.seq"`). */
  sequence: string;
  /** Source `schema.table` and column that own or call it; null for a sequence no table uses (the application calls it). */
  table: string | null;
  column: string | null;
  /** The destination sequence (regclass text), null when there is none. */
  destination: string | null;
  sourceValue: string | null;
  target: string | null;
  /** Destination value before and after (null: never used). */
  before: string | null;
  after: string | null;
  /**
   * `not on destination`: a sequence no table uses is missing on the destination. Not a no-go
   * (it may be left over), but said, with the statement to create it past the source.
   * `not readable on source`: the source role may neither SELECT nor USE it, so its value is
   * unknown (pg_sequences shows NULL, as for a sequence never used): a no-go.
   * `out of range`: the source value lies beyond the destination sequence's bound: a no-go.
   */
  status: 'moved' | 'already above' | 'unused on source' | 'no destination sequence' | 'not on destination' | 'not readable on source' | 'out of range' | 'failed';
  error?: string;
  /** Said without stopping the cut-over: the target was held at the destination's bound. */
  warning?: string;
}

const SEQUENCE_OK: ReadonlySet<SequenceResult['status']> = new Set(['moved', 'already above', 'unused on source', 'not on destination']);

/** A sequence result is fine when it moved, needed no move, or (no table using it) is absent on the destination. Pure. */
export const sequenceOk = (s: SequenceResult): boolean => SEQUENCE_OK.has(s.status);

export interface ForeignKeyResult {
  table: string;
  constraint: string;
  definition: string;
  status: 'created' | 'already there' | 'failed' | 'skipped';
  error?: string;
}

export interface RangeDifference {
  range: string;
  from: string | null;
  to: string | null;
  sourceRows: number;
  destinationRows: number;
  sampleKeys: { key: Record<string, string | null>; difference: string }[];
}

export interface TableVerdict {
  table: string;
  destination: string;
  sourceRows: number | null;
  destinationRows: number | null;
  match: boolean;
  error?: string;
  differences: RangeDifference[];
}

export function verifySummary(r: VerifyReport): TableVerdict[] {
  return r.tables.map((t) => ({
    table: t.source,
    destination: t.destination,
    sourceRows: t.sourceRows,
    destinationRows: t.destRows,
    match: t.match,
    ...(t.error ? { error: t.error } : {}),
    differences: t.differingRanges.map((d) => ({ range: d.range, from: d.from, to: d.to, sourceRows: d.sourceRows, destinationRows: d.destRows, sampleKeys: d.sampleKeys })),
  }));
}

/** One line per difference: table, key range, counts and sample keys. Pure. */
export function describeDifferences(t: TableVerdict): string[] {
  if (t.error) return [`${t.table}: could not be compared: ${t.error}`];
  return t.differences.map((d) => {
    const keys = d.sampleKeys.map((k) => `${keyText(k.key)} ${k.difference}`).join(', ');
    return `${t.table}: ${d.range}: ${formatCount(d.sourceRows)} source rows, ${formatCount(d.destinationRows)} destination rows${keys ? `; keys ${keys}` : ''}`;
  });
}

const keyText = (k: Record<string, string | null>) => `(${Object.entries(k).map(([c, v]) => `${c}=${v ?? 'NULL'}`).join(', ')})`;

export interface CutoverReport {
  go: boolean;
  verifyOnly: boolean;
  /** pg_current_wal_lsn() when writes were declared stopped. */
  recordedLsn: string | null;
  margin: number;
  steps: StepResult[];
  sequences: SequenceResult[];
  tables: TableVerdict[];
  foreignKeys: ForeignKeyResult[];
  /** Why not go, one line each (empty on go). */
  problems: string[];
  /** What to act on that does not stop the cut-over, one line each. */
  warnings: string[];
}

/**
 * What logical replication left behind on the destination, said at cut-over without stopping
 * it (docs/migration-runbook.md, step 5): materialized views over the migrated tables hold what
 * they held when last refreshed, and large objects are not carried at all. Pure.
 */
export function leftBehindReminders(f: { materializedViews: readonly string[]; largeObjects: { source: number; destination: number } | null; verifyOnly?: boolean }): string[] {
  const out = f.materializedViews.map(
    (v) => `materialized view ${v} reads migrated tables and holds what it held at its last refresh (or nothing): REFRESH MATERIALIZED VIEW ${v}; before the application reads it`,
  );
  const lo = f.largeObjects;
  if (lo && lo.source > lo.destination) {
    out.push(
      `the source has ${lo.source} large object(s), the destination ${lo.destination}: logical replication does not carry them; ${
        // --verify-only runs at any time: the source may still be creating and changing them.
        f.verifyOnly ? 'copy them at cut-over, after the source\'s last write' : 'copy them now (the source\'s writes have stopped)'
      }, their OIDs kept: pg_dump --data-only --blobs --exclude-schema='*' <source> | psql <destination>`,
    );
  }
  return out;
}

/** Go only when every step that ran is ok, no sequence failed, every table matches and every FK exists. Pure. */
export function judgeCutover(input: Omit<CutoverReport, 'go' | 'problems' | 'warnings'> & { reminders?: readonly string[] }): CutoverReport {
  const { reminders = [], ...r } = input;
  const problems: string[] = [];
  const named = (s: SequenceResult) => `sequence ${s.sequence}${s.table ? ` (${s.table}.${s.column})` : ''}`;
  const warnings = [...r.sequences.filter((s) => s.warning).map((s) => `${named(s)}: ${s.warning}`), ...reminders];
  const tableLines = r.tables.some((t) => !t.match);
  const sequenceLines = r.sequences.some((s) => !sequenceOk(s));
  const keyLines = r.foreignKeys.some((f) => f.status === 'failed');
  // A failed verify, sequences or foreign keys step is said table by table, sequence by sequence, or key by key, below.
  for (const s of r.steps) {
    if (s.status === 'failed' && !(s.step === 'verify' && tableLines) && !(s.step === 'sequences' && sequenceLines) && !(s.step === 'foreign keys' && keyLines)) problems.push(`${s.step}: ${s.detail}`);
  }
  for (const s of r.sequences) {
    if (!sequenceOk(s)) problems.push(`${named(s)}: ${s.status}${s.error ? `: ${s.error}` : ''}`);
  }
  for (const t of r.tables) if (!t.match) problems.push(...describeDifferences(t));
  for (const f of r.foreignKeys) if (f.status === 'failed') problems.push(`foreign key ${f.constraint} on ${f.table}: ${f.error ?? 'failed'}`);
  const ranRequired = r.verifyOnly ? r.steps.some((s) => s.step === 'verify' && s.status === 'ok') : r.steps.length > 0 && r.steps.every((s) => s.status === 'ok');
  if (!ranRequired && problems.length === 0) problems.push('not every step ran');
  return { ...r, go: problems.length === 0, problems, warnings };
}

export function renderCutover(r: CutoverReport): string {
  const out: string[] = [];
  out.push(r.verifyOnly ? 'Cut-over verification' : `Cut-over${r.recordedLsn ? ` (source position ${r.recordedLsn})` : ''}`);
  out.push(renderTable(['step', 'result', 'time', 'detail'], r.steps.map((s) => [s.step, s.status, `${(s.ms / 1000).toFixed(1)} s`, s.detail])));
  if (r.sequences.length > 0) {
    out.push('', `Sequences (margin ${formatCount(r.margin)} past the source value, never moved back)`);
    out.push(renderTable(['sequence', 'destination', 'source', 'target', 'before', 'after', 'result'], r.sequences.map((s) => [s.sequence, s.destination, s.sourceValue, s.target, s.before, s.after, s.error ? `${s.status}: ${s.error}` : s.warning ? `${s.status}, held at the bound (see WARNINGS)` : s.status])));
  }
  if (r.tables.length > 0) {
    out.push('', 'Tables (row counts and checksums per key range)');
    out.push(renderTable(['table', 'destination', 'source rows', 'destination rows', 'result'], r.tables.map((t) => [t.table, t.destination, t.sourceRows, t.destinationRows, t.error ? 'ERROR' : t.match ? 'equal' : `${t.differences.length} range(s) differ`])));
    for (const t of r.tables) for (const line of describeDifferences(t)) out.push(`  ${line}`);
  }
  if (r.foreignKeys.length > 0) {
    out.push('', 'Foreign keys kept aside by schema copy');
    // A failure's text (a lock_timeout's runs to several sentences) is said once, among the problems.
    out.push(renderTable(['table', 'constraint', 'result'], r.foreignKeys.map((f) => [f.table, f.constraint, f.error ? `${f.status} (see NO-GO)` : f.status])));
  }
  out.push('');
  if (r.warnings.length > 0) {
    out.push('WARNINGS:');
    for (const w of r.warnings) out.push(`  - ${w}`);
  }
  if (r.go) {
    out.push(r.verifyOnly ? 'GO: every table is equal on both sides.' : 'GO: the destination has every change, sequences are ahead of the source, every table is equal. Point the application at the destination.');
  } else {
    out.push('NO-GO:');
    for (const p of r.problems) out.push(`  - ${p}`);
  }
  return out.join('\n') + '\n';
}

/** A progress line for the waits. Pure. */
export function waitProgressLine(kind: 'source' | 'sink', v: { behindBytes?: number | null; records?: number; partitions?: number; stalled?: string[] }): string {
  if (kind === 'source') return `waiting for the source connector to confirm the recorded position: ${v.behindBytes === null || v.behindBytes === undefined ? 'slot has no confirmed position yet' : `${formatBytes(v.behindBytes)} behind`}`;
  const stalled = v.stalled?.length ? `; STALLED: ${v.stalled.join('; ')}` : '';
  return `waiting for the sink: ${formatCount(v.records ?? 0)} records on ${v.partitions ?? 0} partition(s) to apply${stalled}`;
}
