/**
 * The pure core of `shardbridge cleanup`: from what was read (the slot, unconsumed changes
 * in it, topic end offsets versus the sink's applied offsets, sink sessions and foreign keys
 * not yet created on the destination) decide what blocks the cleanup, what `--force`
 * overrides, and which drops to do in which order; then render what was done. Foreign keys
 * `schema copy` kept aside are never dropped before cutover has created them, not even forced.
 */
import type { PartitionFacts } from './status.ts';
import { formatCount, renderTable } from './format.ts';

const DEFERRED_FK_TABLE = 'shardbridge.deferred_foreign_keys';
/**
 * The sink's tables in schema shardbridge (sink-connector/offsets.ts, truncate-barrier.ts), in
 * drop order. One missing here was left behind by --drop-control-tables, and the schema with it.
 */
export const CONTROL_TABLES = [
  'sink_offsets', 'sink_mappings', 'snapshot_status', 'sequence_sync', 'stalls', 'sink_truncate_arrivals', 'sink_truncates', 'deferred_foreign_keys',
];
/** The sink's tables keyed by topic. */
const PER_TOPIC_TABLES = ['sink_offsets', 'sink_mappings', 'snapshot_status', 'stalls', 'sink_truncate_arrivals', 'sink_truncates'].map((t) => `shardbridge.${t}`);

export interface CleanupOptions {
  force: boolean;
  dropControlTables: boolean;
  dropTopics: boolean;
}

export interface CleanupFacts {
  slotName: string;
  publicationName: string;
  slot: { active: boolean; activePid: number | null; walStatus: string | null; confirmedLsn: string | null; currentLsn: string } | null;
  publicationExists: boolean;
  /**
   * Row changes (insert/update/delete/truncate) in the slot after its confirmed position, read by
   * peeking it (pg_logical_slot_peek_binary_changes: heartbeats and empty transactions do not
   * count). null with `error` when they could not be read (active slot, missing publication…).
   */
  pending: { changes: number | null; error?: string } | null;
  /** Table-topic partitions with the sink's applied offsets; null when Kafka could not be read. */
  partitions: PartitionFacts[] | null;
  kafkaError?: string;
  /** Whether shardbridge.sink_offsets exists (null: the destination could not be read). */
  sinkOffsetsExist: boolean | null;
  destinationError?: string;
  /** Sessions of a sink connector on the destination (application_name shardbridge-sink-*). */
  sinkSessions: number;
  /** Rows of shardbridge.deferred_foreign_keys whose constraint does not exist yet. */
  pendingForeignKeys: string[];
  /** Existing `shardbridge.*` tables and sink schemas, in drop order. */
  controlObjects: { kind: 'table' | 'schema'; name: string }[];
  /** Existing topics of this migration: table topics, control topics, dead-letter topic. */
  topics: string[];
}

export interface Blocker {
  object: string;
  message: string;
  remedy: string;
  /** `--force` can override it. */
  forceable: boolean;
}

export type CleanupAction =
  | { kind: 'terminate walsender'; object: string; pid: number }
  | { kind: 'drop replication slot'; object: string }
  | { kind: 'drop publication'; object: string }
  | { kind: 'drop table'; object: string }
  | { kind: 'drop schema'; object: string }
  | { kind: 'delete topics'; object: string; topics: string[] }
  | { kind: 'forget stored positions'; object: string; tables: string[]; topics: string[] };

export interface CleanupPlan {
  proceed: boolean;
  blockers: Blocker[];
  /** Blockers `--force` overrode. */
  overridden: Blocker[];
  actions: CleanupAction[];
  notes: string[];
}

/** What blocks, what is overridden, what to drop. Pure. */
export function planCleanup(f: CleanupFacts, o: CleanupOptions): CleanupPlan {
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const slotObj = `slot ${f.slotName}`;
  if (f.slot?.active) {
    blockers.push({
      object: slotObj,
      message: `the source connector still streams from the slot (walsender pid ${f.slot.activePid})`,
      remedy: 'stop the source connector first (with --force the walsender is terminated; a running connector then stops with a lost-slot error)',
      forceable: true,
    });
  } else if (f.slot && f.slot.walStatus === 'lost') {
    notes.push(`slot ${f.slotName} was already invalidated (wal_status = lost): the changes it held are gone anyway`);
  } else if (f.slot && f.pending) {
    if (f.pending.changes === null) {
      blockers.push({ object: slotObj, message: `cannot tell whether the slot holds changes the source connector has not published: ${f.pending.error ?? 'unknown'}`, remedy: 'run the source connector until it has caught up, or use --force', forceable: true });
    } else if (f.pending.changes > 0) {
      blockers.push({
        object: slotObj,
        message: `the slot holds ${formatCount(f.pending.changes)} row change(s) after its confirmed position ${f.slot.confirmedLsn ?? '?'} that the source connector has not published`,
        remedy: 'start the source connector until it has caught up (shardbridge status), then run cleanup again',
        forceable: true,
      });
    }
  }

  if (f.partitions === null) {
    blockers.push({ object: 'kafka', message: `cannot read the topic end offsets: ${f.kafkaError ?? 'unreachable'}`, remedy: 'check kafka.brokers, or use --force', forceable: true });
  } else {
    const withRecords = f.partitions.filter((p) => p.kind === 'table' && p.end > 0);
    if (withRecords.length > 0 && f.sinkOffsetsExist === null) {
      blockers.push({ object: 'destination', message: `cannot read the sink's applied offsets: ${f.destinationError ?? 'unreachable'}`, remedy: 'check the destination settings, or use --force', forceable: true });
    } else if (withRecords.length > 0 && f.sinkOffsetsExist === false) {
      blockers.push({ object: 'sink', message: 'the sink has applied nothing (no shardbridge.sink_offsets on the destination) but the topics hold records', remedy: 'run the sink connector until it has applied every topic, or use --force', forceable: true });
    } else {
      const behind = withRecords.filter((p) => (p.applied ?? 0) < p.end);
      if (behind.length > 0) {
        const records = behind.reduce((n, p) => n + p.end - (p.applied ?? 0), 0);
        blockers.push({
          object: 'sink',
          message: `the sink has not applied ${formatCount(records)} record(s) on ${behind.map((p) => `${p.topic}[${p.partition}]`).join(', ')}`,
          remedy: 'let the sink connector catch up (shardbridge status shows stalls and the time to go), then run cleanup again',
          forceable: true,
        });
      }
    }
  }

  if ((o.dropControlTables || o.dropTopics) && f.sinkSessions > 0) {
    const what = o.dropControlTables ? 'its tables are in use' : 'it reads the topics';
    blockers.push({ object: 'destination', message: `a sink connector is connected to the destination (${f.sinkSessions} session(s)): ${what}`, remedy: 'stop the sink connector first', forceable: true });
  }

  const proceed = blockers.every((b) => b.forceable) && (blockers.length === 0 || o.force);
  const actions: CleanupAction[] = [];
  if (f.slot?.active && f.slot.activePid !== null) actions.push({ kind: 'terminate walsender', object: slotObj, pid: f.slot.activePid });
  actions.push({ kind: 'drop replication slot', object: f.slotName });
  actions.push({ kind: 'drop publication', object: f.publicationName });
  if (o.dropControlTables) {
    for (const c of f.controlObjects) {
      // schema copy's list of foreign keys outlives a cleanup (even forced) until cutover has created them.
      if (c.name === DEFERRED_FK_TABLE && f.pendingForeignKeys.length > 0) {
        notes.push(`kept ${DEFERRED_FK_TABLE}: ${f.pendingForeignKeys.length} foreign key(s) kept aside by schema copy are not created yet (${f.pendingForeignKeys.join(', ')}); shardbridge cutover creates them`);
        continue;
      }
      actions.push({ kind: c.kind === 'table' ? 'drop table' : 'drop schema', object: c.name });
    }
  }
  if (o.dropTopics && f.topics.length > 0) {
    actions.push({ kind: 'delete topics', object: `${f.topics.length} topic(s)`, topics: f.topics });
    // A topic created again under the same name starts at offset 0: a sink would skip its
    // records up to the positions stored for the deleted one. So they go with the topics.
    const tables = o.dropControlTables ? [] : f.controlObjects.filter((c) => c.kind === 'table' && PER_TOPIC_TABLES.includes(c.name)).map((c) => c.name);
    if (tables.length > 0) actions.push({ kind: 'forget stored positions', object: tables.join(', '), tables, topics: f.topics });
  }
  return { proceed, blockers: proceed ? [] : blockers, overridden: proceed ? blockers : [], actions, notes };
}

export interface ActionResult {
  action: CleanupAction['kind'];
  object: string;
  status: 'done' | 'absent' | 'kept' | 'failed';
  detail?: string;
}

export interface CleanupReport {
  ok: boolean;
  refused: boolean;
  blockers: Blocker[];
  overridden: Blocker[];
  notes: string[];
  results: ActionResult[];
}

export function cleanupReport(plan: CleanupPlan, results: ActionResult[]): CleanupReport {
  return {
    ok: plan.proceed && results.every((r) => r.status !== 'failed'),
    refused: !plan.proceed,
    blockers: plan.blockers,
    overridden: plan.overridden,
    notes: plan.notes,
    results,
  };
}

const PAST: Record<CleanupAction['kind'], string> = {
  'terminate walsender': 'terminated the walsender of',
  'drop replication slot': 'dropped replication slot',
  'drop publication': 'dropped publication',
  'drop table': 'dropped table',
  'drop schema': 'dropped schema',
  'delete topics': 'deleted',
  'forget stored positions': 'deleted the deleted topics\' rows from',
};

export function renderCleanup(r: CleanupReport): string {
  const out: string[] = [];
  if (r.refused) {
    out.push('cleanup refused: nothing was dropped');
    for (const b of r.blockers) out.push(`  BLOCKED  ${b.object}: ${b.message}`, `           remedy: ${b.remedy}`);
    out.push('  (--force drops anyway)');
    return out.join('\n') + '\n';
  }
  for (const b of r.overridden) out.push(`  forced   ${b.object}: ${b.message}`);
  for (const n of r.notes) out.push(`  note     ${n}`);
  out.push(
    renderTable(
      ['what', 'result'],
      r.results.map((x) => [
        x.status === 'done' ? `${PAST[x.action]} ${x.object}` : `${x.action} ${x.object}`,
        x.status === 'done' ? (x.detail ?? 'done') : x.status === 'absent' ? 'already absent' : x.status === 'kept' ? `kept: ${x.detail ?? ''}` : `FAILED: ${x.detail ?? ''}`,
      ]),
    ),
  );
  out.push(r.ok ? 'cleanup done.' : 'cleanup incomplete: see FAILED above.');
  return out.join('\n') + '\n';
}
