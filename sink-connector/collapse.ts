/**
 * Collapses one destination table's changes (in offset order) into an apply plan: one
 * final state per source key, upserts grouped by column set, deletes by key. Pure.
 *
 * Why the plan is safe to run in any statement order within a segment: every source key
 * ends in exactly one state (upsert or delete), the destination key contains the source
 * key, and the extra deletes for moved rows never match the row's final destination key.
 * So each statement touches rows of its own source keys only, and never the final row.
 * The exception is a recreated key (KeyState.recreated): its delete runs before its row is
 * created, the order the writer uses (deletes, then upserts).
 *
 * Keys are told apart by the record key's text, which the source makes canonical where
 * PostgreSQL's equality is not the text's (shared/type-mapping/key-text.ts): `1.0` and `1.00`
 * are one key here, as at the destination.
 */
import { DecodeError, SchemaError } from '../shared/errors.ts';
import { tableShape, type ApplyTable, type SinkChange, type TableShape } from './sink-change.ts';

type Row = Record<string, string | null>;
type Value = string | null;

/** Rows of key values, aligned with `columns`. */
export interface KeySet {
  columns: string[];
  rows: Value[][];
}

export interface UpsertGroup {
  /** Destination columns in table order: one statement per distinct set. */
  columns: string[];
  /** Row-major values aligned with `columns`; at most one row per source key. The fresh rows come first. */
  rows: Value[][];
  /**
   * How many leading rows are fresh: their key's first event in the segment is an insert
   * (`c` or `r`), so the row is expected absent at the destination and the writer may try a
   * plain COPY into the table (direct-copy.ts). The rest may exist: they need the upsert.
   */
  fresh: number;
  /**
   * The rows lack unchanged-TOAST columns whose values no event gave: they update the row in
   * place and never insert one (an insert would put NULL there, or fail a NOT NULL column
   * before ON CONFLICT is even considered). Their leading `fresh` rows are keys a primary-key
   * change created (delete + create) without those values: no row to update, so they are
   * upserted without them (update-in-place.ts).
   */
  inPlace?: true;
  /** With inPlace: the unchanged-TOAST columns the rows lack (other missing columns are destination-only ones). */
  unchangedToast?: string[];
}

export interface ApplySegment {
  kind: 'apply';
  upserts: UpsertGroup[];
  /** Delete every row with these source keys (where it sits is unknown). Columns: sourceKey. */
  deletes: KeySet;
  /**
   * Delete exactly these destination keys: deleted rows whose place the before-image gave
   * (prunable on Citus), and the old place of moved rows. Columns: destKey.
   */
  exactDeletes: KeySet;
  /**
   * Rows that may have moved to an unknown place (no before-image): delete rows with this
   * source key whose destination-only key columns differ. Columns: sourceKey, then destOnly.
   */
  sparingDeletes: KeySet;
}

export interface TruncateStep {
  kind: 'truncate';
}

export type ApplyStep = ApplySegment | TruncateStep;
/** Steps in order. Changes before a truncate are wiped by it, so at most: truncate, apply. */
export type ApplyPlan = ApplyStep[];

/**
 * Where a row for the key may sit at the destination before this batch, as values of the
 * destination-only key columns: known, 'unknown', or null when there is none (first event
 * an insert). Only the key's first event in the segment tells: later before-images describe
 * states the collapse never writes.
 */
type Origin = Value[] | 'unknown' | null;

interface KeyState {
  key: string[];
  /** Merged row when the last event is an upsert; null when it is a delete. */
  row: Row | null;
  /** The key's first event in the segment is an insert, and no delete followed. */
  fresh: boolean;
  origin: Origin;
  /** Unchanged-TOAST columns of the row whose values are unknown (see UpsertGroup.inPlace). */
  unknown: string[] | null;
  /**
   * Deleted, then created again without its unchanged-TOAST values (a primary-key change onto
   * a key deleted earlier in the segment), or under another spelling of the key (`1.0` then
   * `1.00`: one key, as the source's canonical key text makes it): the delete runs, then the row
   * is created, instead of the deleted row being updated where it still is (without those
   * values, or keeping the old spelling: ON CONFLICT never sets key columns).
   */
  recreated?: true;
  /** The last event's image of the row (a delete's before-image): its key columns spell the key as the source stored it. */
  spelled: Row | null;
}

const NONE: ReadonlySet<string> = new Set();

/** `omit`: columns the changes may carry that are not written (the source dropped them since, source-drops.ts). */
export function collapse(changes: readonly SinkChange[], table: ApplyTable, omit: ReadonlySet<string> = NONE): ApplyPlan {
  const shape = tableShape(table);
  let truncated = false;
  let states = new Map<string, KeyState>();
  for (const ch of changes) {
    if (ch.op === 't') {
      truncated = true;
      states = new Map();
    } else if (ch.op === 'd') {
      const key = keyValues(ch.key, shape, ch);
      // The tombstone after a delete of the key in the segment adds nothing (and keeps that delete's place and spelling).
      if (ch.tombstone && states.get(keyId(key))?.row === null) continue;
      onDelete(states, shape, key, ch.before);
    } else {
      onUpsert(states, shape, ch);
    }
  }
  const plan: ApplyPlan = truncated ? [{ kind: 'truncate' }] : [];
  if (states.size > 0) plan.push(segmentOf(states, shape, omit));
  return plan;
}

function onDelete(states: Map<string, KeyState>, shape: TableShape, key: string[], before: Row | null): void {
  const id = keyId(key);
  const st = states.get(id);
  if (st) {
    st.row = null;
    st.fresh = false;
    st.unknown = null;
    st.spelled = before;
    delete st.recreated;
  } else {
    states.set(id, { key, row: null, fresh: false, origin: originOf(shape, before), unknown: null, spelled: before });
  }
}

function onUpsert(states: Map<string, KeyState>, shape: TableShape, ch: SinkChange): void {
  const key = keyValues(ch.key, shape, ch);
  const before = ch.before;
  // An update whose before-image names another source key changed the primary key:
  // the old key is deleted, the new key starts here as an insert.
  const keyMoved = ch.op === 'u' && before !== null && keyChanged(before, ch.after, key, shape);
  if (keyMoved) onDelete(states, shape, shape.table.sourceKey.map((c) => before![c] as string), before);
  const row = rowOf(ch, before, key, shape);
  const id = keyId(key);
  const st = states.get(id);
  if (!st) {
    const origin = ch.op === 'u' && !keyMoved ? originOf(shape, before) : null;
    states.set(id, { key, row, fresh: ch.op === 'c' || ch.op === 'r', origin, unknown: unknownIn(row, ch.unchangedToast, shape), spelled: row });
  } else if (st.row === null) {
    // After a delete in the same segment: the row may still be there until that delete runs.
    const respelled = st.spelled !== null && keyChanged(st.spelled, row, key, shape);
    st.row = row;
    st.spelled = row;
    st.unknown = unknownIn(row, ch.unchangedToast, shape);
    if ((st.unknown !== null || respelled) && (ch.op === 'c' || ch.op === 'r')) {
      st.fresh = true;
      st.recreated = true;
    }
  } else {
    // Each upsert sets only the columns it carries (ON CONFLICT DO UPDATE), so applying
    // them one after another equals one upsert of the merged row. This is also what fills
    // unchanged-TOAST columns from an earlier event of the batch.
    const merged = { ...st.row, ...row };
    st.row = merged;
    if (st.unknown !== null || ch.unchangedToast.length > 0) st.unknown = unknownIn(merged, [...(st.unknown ?? []), ...ch.unchangedToast], shape);
  }
}

/** The unchanged-TOAST columns (of the destination) that `row` still has no value for; null when none. */
function unknownIn(row: Row, toast: readonly string[], shape: TableShape): string[] | null {
  if (toast.length === 0) return null;
  // A Set, not indexOf per column: a wide row can lack hundreds of them (O(columns²) per row).
  const out: string[] = [];
  for (const c of new Set(toast)) if (row[c] === undefined && shape.index.has(c)) out.push(c);
  return out.length > 0 ? out : null;
}

/**
 * Whether `before` spells another key than `after` (the record key where `after` lacks a key
 * column). Both images carry the source's exact text, whereas the record key may carry the
 * canonical one (`1.5` for a row stored as `1.50`: shared/type-mapping/key-text.ts).
 */
function keyChanged(before: Row, after: Row | null, key: string[], shape: TableShape): boolean {
  const sk = shape.table.sourceKey;
  for (let i = 0; i < sk.length; i++) {
    const v = before[sk[i]];
    if (v === undefined || v === null) return false; // no usable old key in the before-image
    if (v !== (after?.[sk[i]] ?? key[i])) return true;
  }
  return false;
}

/** The after-image minus unchanged-TOAST columns (filled from the before-image when it has them), with key columns ensured. */
function rowOf(ch: SinkChange, before: Row | null, key: string[], shape: TableShape): Row {
  const after = ch.after;
  if (!after) throw new DecodeError(`'${ch.op}' change without an after-image`, { context: ctx(ch, shape) });
  let row = after;
  if (ch.unchangedToast.length > 0) {
    row = { ...after };
    for (const c of ch.unchangedToast) {
      // Unchanged means equal to the old value: REPLICA IDENTITY FULL gives it to us.
      const old = before?.[c];
      if (old !== undefined) row[c] = old;
      else delete row[c];
    }
  }
  const sk = shape.table.sourceKey;
  for (let i = 0; i < sk.length; i++) {
    if (row[sk[i]] === undefined) {
      if (row === after) row = { ...after };
      row[sk[i]] = key[i];
    }
  }
  return row;
}

function originOf(shape: TableShape, before: Row | null): Origin {
  const destOnly = shape.destOnly;
  if (destOnly.length === 0) return null;
  if (!before) return 'unknown';
  const out: Value[] = new Array(destOnly.length);
  for (let i = 0; i < destOnly.length; i++) {
    const v = before[destOnly[i]];
    if (v === undefined) return 'unknown';
    out[i] = v;
  }
  return out;
}

function keyValues(key: Record<string, string>, shape: TableShape, ch: SinkChange): string[] {
  const sk = shape.table.sourceKey;
  const out: string[] = new Array(sk.length);
  for (let i = 0; i < sk.length; i++) {
    const v = key[sk[i]];
    if (v === undefined || v === null) {
      throw new DecodeError(`record key lacks source key column ${sk[i]}`, { context: { ...ctx(ch, shape), column: sk[i] } });
    }
    out[i] = v;
  }
  return out;
}

// PostgreSQL text cannot contain NUL, so it separates composite key values unambiguously.
function keyId(key: string[]): string {
  return key.length === 1 ? key[0] : key.join('\u0000');
}

function segmentOf(states: Map<string, KeyState>, shape: TableShape, omit: ReadonlySet<string>): ApplySegment {
  const { table, destOnly } = shape;
  const deletes: KeySet = { columns: [...table.sourceKey], rows: [] };
  const exactDeletes: KeySet = { columns: [...table.destKey], rows: [] };
  const sparingDeletes: KeySet = { columns: [...table.sourceKey, ...destOnly], rows: [] };
  const groups = new Map<string, GroupBuilder>();
  for (const st of states.values()) {
    // A recreated key's old row is deleted like a deleted key's, before its row is created.
    if (st.row === null || st.recreated) {
      if (Array.isArray(st.origin)) exactDeletes.rows.push(destKeyRow(shape, st.key, st.origin));
      else deletes.rows.push(st.key);
    }
    if (st.row === null) continue;
    addToGroup(groups, shape, st, omit);
    if (st.recreated || destOnly.length === 0 || st.origin === null) continue;
    const now = destOnly.map((c) => st.row![c]);
    if (st.origin === 'unknown') {
      sparingDeletes.rows.push([...st.key, ...(now as Value[])]);
    } else if (!sameValues(st.origin, now)) {
      exactDeletes.rows.push(destKeyRow(shape, st.key, st.origin));
    }
  }
  const upserts: UpsertGroup[] = [];
  for (const { columns, fresh, other, inPlace, unchangedToast } of groups.values()) {
    const rows = other.length === 0 ? fresh : fresh.length === 0 ? other : fresh.concat(other);
    upserts.push({ columns, rows, fresh: fresh.length, ...(inPlace && { inPlace, unchangedToast }) });
  }
  return { kind: 'apply', upserts, deletes, exactDeletes, sparingDeletes };
}

interface GroupBuilder {
  columns: string[];
  fresh: Value[][];
  other: Value[][];
  inPlace?: true;
  unchangedToast?: string[];
}

function addToGroup(groups: Map<string, GroupBuilder>, shape: TableShape, st: KeyState, omit: ReadonlySet<string>): void {
  const row = st.row!;
  const cols = shape.table.columns;
  let present = 0;
  let sig = '';
  for (let i = 0; i < cols.length; i++) {
    if (row[cols[i].name] !== undefined) present++;
  }
  let carried = 0;
  for (const c in row) if (row[c] !== undefined) carried++;
  // Omitted columns are never destination columns: the group's columns (the table's) leave them out.
  if (carried !== present && omit.size > 0) for (const c of omit) if (row[c] !== undefined) carried--;
  if (carried !== present) {
    const unknown = Object.keys(row).find((c) => row[c] !== undefined && !shape.index.has(c) && !omit.has(c));
    throw new SchemaError(`change carries column ${unknown} that destination ${shape.table.schema}.${shape.table.name} lacks`, {
      context: { table: `${shape.table.schema}.${shape.table.name}`, column: unknown },
      remedy: 'add the column to the destination table (or map it to one it has under tables.<source table>.columns in the sink configuration) and restart the sink',
    });
  }
  for (const c of shape.table.destKey) {
    if (row[c] === undefined || row[c] === null) {
      throw new SchemaError(`change lacks a value for destination key column ${c}`, {
        context: { table: `${shape.table.schema}.${shape.table.name}`, column: c, key: st.key.join(',') },
      });
    }
  }
  if (present !== cols.length) {
    for (let i = 0; i < cols.length; i++) if (row[cols[i].name] !== undefined) sig += `${i},`;
  }
  const inPlace = st.unknown !== null;
  if (inPlace) sig = `in place:${sig}`;
  let g = groups.get(sig);
  if (!g) {
    const columns = present === cols.length ? cols.map((c) => c.name) : cols.filter((c) => row[c.name] !== undefined).map((c) => c.name);
    // A group's rows lack the same columns, so their unchanged-TOAST ones are the same too.
    g = { columns, fresh: [], other: [], ...(inPlace && { inPlace, unchangedToast: st.unknown! }) };
    groups.set(sig, g);
  }
  const values: Value[] = new Array(g.columns.length);
  for (let i = 0; i < g.columns.length; i++) values[i] = row[g.columns[i]];
  (st.fresh ? g.fresh : g.other).push(values);
}

function destKeyRow(shape: TableShape, key: string[], destOnlyValues: Value[]): Value[] {
  const carried = [...key, ...destOnlyValues];
  return shape.destKeyFrom.map((i) => carried[i]);
}

function sameValues(a: Value[], b: (Value | undefined)[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function ctx(ch: SinkChange, shape: TableShape) {
  return { table: `${shape.table.schema}.${shape.table.name}`, topic: ch.topic, partition: ch.partition, offset: ch.offset };
}
