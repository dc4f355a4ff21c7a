/**
 * Debezium-shaped change events from decoded changes: envelope values, key-change
 * splitting (delete + tombstone + create, as Debezium does on a primary key update),
 * delete tombstones, unchanged-TOAST listing. Pure: no I/O, no clock.
 */
import { SourceError } from '../shared/errors.ts';
import type { TextTuple } from '../shared/pg-types.ts';
import type { SourceInfo, TableRecordSchemas } from './record-schema.ts';
import { truncateKeys } from './truncate-fanout.ts';

export type Op = 'c' | 'u' | 'd' | 'r' | 't';

/** The Avro value of `<ns>.Envelope` (field order as in the schema). */
export interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: SourceInfo;
  op: Op;
  ts_ms: bigint | number | null;
  transaction: null;
  /** Columns not sent (unchanged TOAST) in the row image: `after` for c/u/r, `before` for d. */
  unchanged_toast: string[];
}

export function buildEnvelope(args: {
  op: Op;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  unchangedToast: string[];
  source: SourceInfo;
  tsMs: bigint | number;
}): Envelope {
  return {
    before: args.before,
    after: args.after,
    source: args.source,
    op: args.op,
    ts_ms: args.tsMs,
    transaction: null,
    unchanged_toast: args.unchangedToast,
  };
}

/**
 * A decoded row change of one table. Shaped like the pgoutput messages: `key` is the old
 * key tuple ('K': full width, non-key columns null) sent when the key changed under
 * default/index identity, `old` the full old row ('O') under REPLICA IDENTITY FULL.
 * `read` is a snapshot row.
 */
export type DecodedChange =
  | { kind: 'insert' | 'read'; new: TextTuple }
  | { kind: 'update'; key?: TextTuple; old?: TextTuple; new: TextTuple }
  | { kind: 'delete'; key?: TextTuple; old?: TextTuple }
  | { kind: 'truncate' };

export interface ChangeContext {
  /** Converters of the table version the change belongs to. */
  schemas: Pick<TableRecordSchemas, 'keyFromTuple' | 'rowFromTuple' | 'keyFields'>;
  source: SourceInfo;
  /** Envelope ts_ms: when the connector processed the event. */
  tsMs: bigint | number;
  /** Emit a tombstone (null value) after every delete, for log compaction. */
  tombstones: boolean;
}

/** One Kafka record to send: `value: null` is a tombstone. `key: null` for keyless tables. */
export interface ChangeEvent {
  key: Record<string, unknown> | null;
  value: Envelope | null;
}

/**
 * New tuple with unchanged-TOAST gaps filled from the full old row, when we have one. Never
 * from a NULL: an unchanged TOASTed value is not NULL, so a NULL there means the old row lacks
 * it (a partition left at DEFAULT under a FULL parent logs only its key, yet pgoutput flags the
 * row as full): the gap stays, and is listed as unchanged.
 */
function fillFromOld(tuple: TextTuple, old: TextTuple | undefined): TextTuple {
  if (!old || !tuple.includes(undefined)) return tuple;
  const out = tuple.slice();
  for (let i = 0; i < out.length; i++) if (out[i] === undefined && old[i] !== null) out[i] = old[i];
  return out;
}

/** Key columns not sent in the new tuple (a TOASTed key that did not change) from the old one. */
function fillKeys(tuple: TextTuple, old: TextTuple, keyFields: { index: number }[]): TextTuple {
  let out = tuple;
  for (const { index } of keyFields) {
    if (out[index] === undefined) {
      if (out === tuple) out = tuple.slice();
      out[index] = old[index];
    }
  }
  return out;
}

/**
 * A module-level function, not a closure made per call: under tsx (esbuild keepNames) every
 * closure created at run time goes through `__name()` (Object.defineProperty), which showed
 * as ~5 % of the source's main thread in the benchmark's profiles (once per row).
 */
function envelopeOf(ctx: ChangeContext, op: Op, before: Record<string, unknown> | null, after: Record<string, unknown> | null, unchangedToast: string[]): Envelope {
  return buildEnvelope({ op, before, after, unchangedToast, source: ctx.source, tsMs: ctx.tsMs });
}

export function changeToEvents(change: DecodedChange, ctx: ChangeContext): ChangeEvent[] {
  const { schemas } = ctx;

  switch (change.kind) {
    case 'insert':
    case 'read': {
      const { row, unchangedToast } = schemas.rowFromTuple(change.new);
      return [{ key: schemas.keyFromTuple(change.new), value: envelopeOf(ctx, change.kind === 'insert' ? 'c' : 'r', null, row, unchangedToast) }];
    }
    case 'delete': {
      const oldTuple = change.old ?? change.key;
      if (!oldTuple) {
        throw new SourceError('delete without old key: the table has REPLICA IDENTITY NOTHING', {
          remedy: 'give the table a primary key or REPLICA IDENTITY FULL',
        });
      }
      const key = schemas.keyFromTuple(oldTuple);
      const { row, unchangedToast } = schemas.rowFromTuple(oldTuple);
      const del = { key, value: envelopeOf(ctx, 'd', row, null, unchangedToast) };
      return ctx.tombstones && key !== null ? [del, { key, value: null }] : [del];
    }
    case 'update': {
      const oldTuple = change.old ?? change.key;
      const newTuple = oldTuple ? fillKeys(fillFromOld(change.new, change.old), oldTuple, schemas.keyFields) : change.new;
      const newKey = schemas.keyFromTuple(newTuple);
      const { row: after, unchangedToast } = schemas.rowFromTuple(newTuple);
      if (oldTuple && newKey !== null && keyChanged(schemas.keyFields, oldTuple, newTuple)) {
        const oldKey = schemas.keyFromTuple(oldTuple);
        const before = schemas.rowFromTuple(oldTuple);
        const events: ChangeEvent[] = [{ key: oldKey, value: envelopeOf(ctx, 'd', before.row, null, before.unchangedToast) }];
        if (ctx.tombstones) events.push({ key: oldKey, value: null });
        events.push({ key: newKey, value: envelopeOf(ctx, 'c', null, after, unchangedToast) });
        return events;
      }
      // Debezium: `before` only under REPLICA IDENTITY FULL.
      const before = change.old ? schemas.rowFromTuple(change.old).row : null;
      return [{ key: newKey, value: envelopeOf(ctx, 'u', before, after, unchangedToast) }];
    }
    case 'truncate':
      return [{ key: null, value: envelopeOf(ctx, 't', null, null, []) }];
  }
}

/** Where a table's truncate goes: the truncate key schema's id and the topic's partition count; the session's delivery. */
export interface TruncateFanout {
  keySchemaId: number;
  partitions: number;
  /** Grows from one session of the source to the next (truncate-fanout.ts). */
  delivery: number;
}

/**
 * A table's truncate as its topic gets it: one envelope, sent once per partition with that
 * partition's key (truncate-fanout.ts). `id` names the truncate, the same on every copy and on a
 * replay; a replay by a later session has a later `fanout.delivery`.
 */
export function truncateRecords(ctx: ChangeContext, fanout: TruncateFanout, id: string): { value: Envelope; keys: Buffer[] } {
  return { value: envelopeOf(ctx, 't', null, null, []), keys: truncateKeys(fanout.keySchemaId, id, fanout.partitions, fanout.delivery) };
}

function keyChanged(keyFields: { index: number }[], oldTuple: TextTuple, newTuple: TextTuple): boolean {
  for (const f of keyFields) if (oldTuple[f.index] !== newTuple[f.index]) return true;
  return false;
}
