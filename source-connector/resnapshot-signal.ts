/**
 * `shardbridge resnapshot` while the source connector streams: the command writes a
 * transactional logical message (`pg_logical_emit_message(true, 'shardbridge-resnapshot', …)`)
 * into the source's WAL, naming the connector's slot and the tables. The stream meets it in
 * commit order; the connector marks those tables `requested` in `__snapshot` within the
 * message's transaction (confirmed only once Kafka has the markers), and once that transaction
 * is read whole the session restarts: its start takes each such table's own snapshot (a
 * truncate, then a copy beside the stream), as after a restart by hand. A message for another
 * slot (another connector on the same database) is passed over. Pure but for the error class.
 */
import { RetriableError } from '../shared/errors.ts';
import { snapshotStarted, type ControlRecord } from './control-topics.ts';
import type { TableVersion } from './table-versions.ts';

export const RESNAPSHOT_PREFIX = 'shardbridge-resnapshot';

export interface ResnapshotSignal {
  slot: string;
  tables: string[];
}

export function signalContent(s: ResnapshotSignal): string {
  return JSON.stringify(s);
}

/** The tables a message asks for, for this slot; null when it is not for it or not readable. */
export function parseSignal(content: Buffer, slot: string): string[] | null {
  let v: Partial<ResnapshotSignal>;
  try {
    v = JSON.parse(content.toString('utf8')) as Partial<ResnapshotSignal>;
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || v.slot !== slot || !Array.isArray(v.tables)) return null;
  return v.tables.filter((t): t is string => typeof t === 'string');
}

/** A table's `requested` marker: its snapshot is to be taken again (by the command with the connector stopped, or by the connector reading a request). */
export function requestedMarker(t: { schema: string; name: string }, topic: string, slot: string, point: bigint, estimatedRows = 0): ControlRecord {
  return snapshotStarted({ table: `${t.schema}.${t.name}`, tableSchema: t.schema, tableName: t.name, topic, slot, consistentPoint: point, estimatedRows, requested: true });
}

/** The `requested` markers for the tables asked for among the selected ones (`selected`: their current versions), and the names not selected. */
export function requestedMarkers(asked: readonly string[], selected: readonly TableVersion[], slot: string, commitLsn: bigint): { markers: ControlRecord[]; tables: string[]; unknown: string[] } {
  const versions = selected.filter((v) => asked.includes(v.qualified));
  const markers = versions.map((v) => requestedMarker(v.table, v.topic, slot, commitLsn));
  return { markers, tables: versions.map((v) => v.qualified), unknown: asked.filter((name) => !versions.some((v) => v.qualified === name)) };
}

/** Ends a session on purpose: the next one starts at once (no backoff), said at info level. */
export class SessionRestart extends RetriableError {}
