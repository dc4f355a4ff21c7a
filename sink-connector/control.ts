/**
 * The source's control topics, as the sink uses them (shapes: source-connector/control-topics.ts):
 *  - `__snapshot`: a completion marker carries the end offset of every partition of the
 *    table's topic. The snapshot is complete in the destination only once the sink's stored
 *    offsets reach them; `shardbridge.snapshot_status` and a metric show it.
 *  - `__sequences`: each mapped destination sequence is moved to at least the source's
 *    value, never lowered, and recorded in `shardbridge.sequence_sync` (an older value, as a
 *    replay brings again, leaves the row: it keeps the newest).
 *  - `__transactions`: not needed for applying; consumed so its position is kept.
 * Parsing is tolerant (unknown kinds and malformed JSON are skipped with a warning), and
 * the statements run inside the batch transaction of the control record's partition.
 */
import type pg from 'pg';
import { beyondBound, DESTINATION_SEQUENCE_SQL, isPast, recordSequenceSync, sequenceState } from '../shared/migration/sequence-value.ts';
import type { Logger } from '../shared/logger.ts';
import type { TargetFor } from './schema-compile.ts';
import { qualifiedName } from './upsert-batch.ts';

export type ControlKind = 'snapshot' | 'sequences' | 'transactions';

export function controlTopicKind(topic: string, prefix: string): ControlKind | null {
  switch (topic) {
    case `${prefix}.__snapshot`:
      return 'snapshot';
    case `${prefix}.__sequences`:
      return 'sequences';
    case `${prefix}.__transactions`:
      return 'transactions';
    default:
      return null;
  }
}

/** Data topics `<prefix>.<schema>.<table>` and the control topics the sink reads; never the dead-letter topic. */
export function isSinkTopic(topic: string, prefix: string, deadLetterTopic: string): boolean {
  if (!topic.startsWith(prefix + '.') || topic === deadLetterTopic) return false;
  if (controlTopicKind(topic, prefix)) return true;
  const rest = topic.slice(prefix.length + 1);
  return !rest.startsWith('__') && rest.includes('.');
}

/**
 * Loose views of source-connector/control-topics.ts's SnapshotStartedMarker /
 * SnapshotCompletedMarker and SequenceValueRecord: every field may be missing or
 * mistyped in a record we did not write, so each is checked before use.
 */
interface SnapshotMarkerView {
  kind?: string;
  table?: unknown;
  tableSchema?: unknown;
  tableName?: unknown;
  topic?: unknown;
  estimatedRows?: unknown;
  rows?: unknown;
  endOffsets?: unknown;
}

interface SequenceRecordView {
  sequence?: unknown;
  table?: unknown;
  sequenceSchema?: unknown;
  sequenceName?: unknown;
  tableSchema?: unknown;
  tableName?: unknown;
  column?: unknown;
  value?: unknown;
}

/** A source table by its names, never re-parsed from `schema.table` text. */
export interface SourceName {
  schema: string;
  table: string;
}

export type ControlAction =
  | { kind: 'snapshot-started'; topic: string; sourceTable: SourceName; estimatedRows: number | null }
  | { kind: 'snapshot-completed'; topic: string; sourceTable: SourceName; rows: number | null; endOffsets: { partition: number; offset: string }[] }
  | { kind: 'sequence'; sequence: string; sequenceId: { schema: string; name: string }; sourceTable: SourceName | null; column: string | null; value: string };

/** One control record → what to do (null: nothing for the sink). Pure and tolerant. */
export function parseControlRecord(kind: ControlKind, value: Buffer | null): ControlAction | null | { invalid: string } {
  if (value === null || kind === 'transactions') return null;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    return { invalid: `not JSON: ${(err as Error).message}` };
  }
  if (v === null || typeof v !== 'object') return { invalid: 'not a JSON object' };
  if (kind === 'snapshot') {
    const m = v as SnapshotMarkerView;
    if (m.kind !== 'started' && m.kind !== 'completed') return null; // slot-created and future kinds
    if (typeof m.table !== 'string' || typeof m.topic !== 'string') return { invalid: `snapshot marker without table/topic` };
    const sourceTable = names(m.tableSchema, m.tableName, m.table);
    if (m.kind === 'started') {
      return { kind: 'snapshot-started', topic: m.topic, sourceTable, estimatedRows: numberOrNull(m.estimatedRows) };
    }
    const endOffsets = normaliseOffsets(m.endOffsets);
    if (!endOffsets) return { invalid: 'completion marker without endOffsets' };
    return { kind: 'snapshot-completed', topic: m.topic, sourceTable, rows: numberOrNull(m.rows), endOffsets };
  }
  const s = v as SequenceRecordView;
  if (typeof s.sequence !== 'string') return { invalid: 'sequence record without "sequence"' };
  const value_ = s.value === null || s.value === undefined ? null : String(s.value);
  if (value_ === null) return null; // never used at the source: nothing to move
  if (!/^-?\d+$/.test(value_)) return { invalid: `sequence value ${value_} is not an integer` };
  return {
    kind: 'sequence',
    sequence: s.sequence,
    sequenceId: sequenceId(s.sequenceSchema, s.sequenceName, s.sequence),
    sourceTable: typeof s.table === 'string' ? names(s.tableSchema, s.tableName, s.table) : null,
    column: typeof s.column === 'string' ? s.column : null,
    value: value_,
  };
}

function numberOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** `[{partition, offset}]` or `{ "0": "12" }` → `[{partition, offset}]`. */
function normaliseOffsets(v: unknown): { partition: number; offset: string }[] | null {
  if (Array.isArray(v)) {
    const out = v.map((e: { partition?: unknown; offset?: unknown }) => ({ partition: Number(e?.partition), offset: String(e?.offset) }));
    return out.every((e) => Number.isInteger(e.partition) && /^\d+$/.test(e.offset)) ? out : null;
  }
  if (v && typeof v === 'object') {
    const out = Object.entries(v as Record<string, unknown>).map(([p, o]) => ({ partition: Number(p), offset: String(o) }));
    return out.every((e) => Number.isInteger(e.partition) && /^\d+$/.test(e.offset)) ? out : null;
  }
  return null;
}

/**
 * The names a record carries, else (a record of an older source) its `schema.name` text split
 * at the first dot: ambiguous when a schema name holds a dot, which only the names resolve.
 */
function names(schema: unknown, name: unknown, text: string): SourceName {
  return typeof schema === 'string' && typeof name === 'string' ? { schema, table: name } : splitTable(text);
}

function sequenceId(schema: unknown, name: unknown, text: string): { schema: string; name: string } {
  const n = names(schema, name, text);
  return { schema: n.schema, name: n.table };
}

/** `schema.table` (the source's own qualified form) → parts; a name without a dot is in public. */
export function splitTable(name: string): { schema: string; table: string } {
  const dot = name.indexOf('.');
  return dot < 0 ? { schema: 'public', table: name } : { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}

export interface ControlResult {
  snapshotMarkers: number;
  sequencesMoved: string[];
}

/** Runs a partition's control actions inside the caller's transaction. */
export async function applyControl(
  client: pg.ClientBase,
  actions: readonly ControlAction[],
  targetFor: TargetFor,
  log: Logger,
): Promise<ControlResult> {
  const result: ControlResult = { snapshotMarkers: 0, sequencesMoved: [] };
  for (const a of actions) {
    if (a.kind === 'sequence') {
      if (await syncSequence(client, a, targetFor, log)) result.sequencesMoved.push(a.sequence);
      continue;
    }
    const t = targetFor(a.sourceTable.schema, a.sourceTable.table);
    const tableName = `${t.schema}.${t.table}`;
    if (a.kind === 'snapshot-started') {
      await client.query(
        `INSERT INTO shardbridge.snapshot_status (topic, table_name, state, rows_expected, end_offsets, completed_at)
         VALUES ($1, $2, 'snapshotting', $3, NULL, NULL)
         ON CONFLICT (topic) DO UPDATE SET table_name = EXCLUDED.table_name, state = EXCLUDED.state,
           rows_expected = EXCLUDED.rows_expected, end_offsets = NULL, completed_at = NULL`,
        [a.topic, tableName, a.estimatedRows],
      );
    } else {
      await client.query(
        `INSERT INTO shardbridge.snapshot_status (topic, table_name, state, rows_expected, end_offsets, completed_at)
         VALUES ($1, $2, 'applying', $3, $4::jsonb, NULL)
         ON CONFLICT (topic) DO UPDATE SET table_name = EXCLUDED.table_name, state = EXCLUDED.state,
           rows_expected = EXCLUDED.rows_expected, end_offsets = EXCLUDED.end_offsets, completed_at = NULL`,
        [a.topic, tableName, a.rows, JSON.stringify(a.endOffsets)],
      );
    }
    result.snapshotMarkers++;
  }
  return result;
}

/**
 * setval(seq, source value) when the source is ahead of the destination in the sequence's
 * direction (below it for a descending one), never back.
 * The destination sequence is the one owned by the mapped table's mapped column, else the
 * source's sequence name. Returns whether the sequence moved.
 */
async function syncSequence(client: pg.ClientBase, a: Extract<ControlAction, { kind: 'sequence' }>, targetFor: TargetFor, log: Logger): Promise<boolean> {
  let destTable: string | null = null;
  let destColumn: string | null = null;
  if (a.sourceTable && a.column) {
    const t = targetFor(a.sourceTable.schema, a.sourceTable.table);
    destTable = qualifiedName({ schema: t.schema, name: t.table });
    destColumn = t.columns[a.column] ?? a.column;
  }
  const { rows } = await client.query<{ seq: string | null }>(DESTINATION_SEQUENCE_SQL, [destTable, destColumn, qualifiedName(a.sequenceId)]);
  const seq = rows[0]?.seq ?? null;
  if (seq === null) {
    log.warn({ sequence: a.sequence, table: destTable, column: destColumn }, 'no destination sequence for this source sequence: not moved');
    await recordSequenceSync(client, a.sequence, a.value, null);
    return false;
  }
  const state = await sequenceState(client, seq);
  const current = String(state.last);
  const refused = beyondBound(BigInt(a.value), state, seq);
  if (refused !== null) {
    // setval would fail, and stall every sequence behind it on the one __sequences partition; cutover refuses it too.
    log.warn({ sequence: seq, source: a.value }, `destination sequence ${seq} not moved: ${refused}`);
    await recordSequenceSync(client, seq, a.value, current, state.increment);
    return false;
  }
  let setTo: string | null = null;
  if (isPast(BigInt(a.value), state)) {
    const { rows: moved } = await client.query<{ set_to: string }>(`SELECT setval($1::regclass, $2::bigint, true)::text AS set_to`, [seq, a.value]);
    setTo = moved[0].set_to;
  }
  await recordSequenceSync(client, seq, a.value, setTo ?? current, state.increment);
  if (setTo !== null) log.info({ sequence: seq, from: current, to: setTo }, 'destination sequence moved to the source value');
  return setTo !== null;
}


/**
 * Marks snapshots complete whose topic the sink has applied up to the marker's end offsets
 * (any member may do it: the offsets are in the destination). Returns the newly completed.
 */
export async function completeSnapshots(client: pg.ClientBase, groupId: string): Promise<{ topic: string; table: string }[]> {
  const { rows } = await client.query<{ topic: string; table_name: string }>(
    `UPDATE shardbridge.snapshot_status s SET state = 'complete', completed_at = now()
      WHERE s.state = 'applying'
        AND NOT EXISTS (
          SELECT 1 FROM jsonb_to_recordset(s.end_offsets) AS e(partition int, "offset" text)
           WHERE e."offset"::bigint > COALESCE((SELECT o.next_offset FROM shardbridge.sink_offsets o
                                                 WHERE o.group_id = $1 AND o.topic = s.topic AND o.partition = e.partition), 0))
      RETURNING s.topic, s.table_name`,
    [groupId],
  );
  return rows.map((r) => ({ topic: r.topic, table: r.table_name }));
}

/**
 * A replay rewound `topic` below the end offsets of its snapshot's completion marker: the
 * snapshot is being applied again, and complete only once it is (completeSnapshots).
 */
export async function reopenSnapshot(client: pg.ClientBase, topic: string, rewound: readonly { partition: number; offset: bigint }[]): Promise<boolean> {
  const { rowCount } = await client.query(
    `UPDATE shardbridge.snapshot_status s SET state = 'applying', completed_at = NULL
      WHERE s.topic = $1 AND s.state = 'complete'
        AND EXISTS (
          SELECT 1 FROM jsonb_to_recordset(s.end_offsets) AS e(partition int, "offset" text)
            JOIN unnest($2::int[], $3::bigint[]) AS r(partition, next) ON r.partition = e.partition
           WHERE e."offset"::bigint > r.next)`,
    [topic, rewound.map((r) => r.partition), rewound.map((r) => r.offset.toString())],
  );
  return (rowCount ?? 0) > 0;
}

export async function snapshotStatuses(client: pg.ClientBase): Promise<{ topic: string; table: string; state: string }[]> {
  const { rows } = await client.query<{ topic: string; table_name: string; state: string }>(
    'SELECT topic, table_name, state FROM shardbridge.snapshot_status ORDER BY topic',
  );
  return rows.map((r) => ({ topic: r.topic, table: r.table_name, state: r.state }));
}
