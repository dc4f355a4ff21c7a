/**
 * A chunk's records as the batch processor holds them (a fast row, or a decoded change, a
 * control action, a record set aside for the dead-letter topic) and the Chunk that one
 * transaction applies from a run of them (apply.ts). Pure.
 */
import type { DecodeError } from '../shared/errors.ts';
import type { Chunk } from './apply.ts';
import type { ControlAction } from './control.ts';
import type { DecodedRecord, RawRecord } from './decode.ts';
import type { FastRow } from './fast-rows.ts';
import { parseTruncateKey, type TruncateMark } from './truncate-barrier.ts';
import { keySpan, newSpan, valueSpan } from './record-bytes.ts';

/** A record that is not a fast row: its decoded change, its control action, or neither (tombstone, skipped, or set aside when dead-lettering). */
export type SlowItem = { raw: RawRecord; decoded: DecodedRecord | null; control: ControlAction | null; deadLetter?: DecodeError };

/** A record of the chunk: a fast row as the plan made it (most records: no wrapper each), or a slow item. */
export type Item = FastRow | SlowItem;

export const isFast = (it: Item): it is FastRow => 'lines' in it;

/** Whether applying the item changes anything (bisecting stalls on such an item, not on a tombstone before it). */
export const hasWork = (it: Item): boolean => isFast(it) || it.decoded !== null || it.control !== null;

/** Offsets of the `t` records that are one copy of a truncate sent to several partitions. */
export function truncateMarks(items: readonly { raw: RawRecord; decoded?: DecodedRecord | null }[]): Map<string, TruncateMark> {
  const out = new Map<string, TruncateMark>();
  for (const { raw, decoded } of items) {
    if (decoded?.change.op !== 't') continue;
    const k = parseTruncateKey(raw.key);
    if (k && k.partitions > 1) out.set(raw.offset, { id: k.id, partitions: k.partitions, delivery: k.delivery });
  }
  return out;
}

/**
 * The chunk of a run of items (offset order, non-empty), and its control actions by offset.
 * A run with a truncate sent to several partitions is cut by offset among decoded records
 * (the barrier), so its fast rows are decoded too (`redecode`).
 */
export function chunkOf(
  topic: string,
  partition: number,
  run: readonly Item[],
  redecode: (row: FastRow) => DecodedRecord,
): { chunk: Chunk; actions: { offset: bigint; action: ControlAction }[] } {
  const truncates = truncateMarks(run);
  const items = truncates.size > 0 ? run.map((it) => (isFast(it) ? { raw: it.raw, decoded: redecode(it), control: null } : it)) : run;
  const records: DecodedRecord[] = [];
  const fast: FastRow[] = [];
  const actions: { offset: bigint; action: ControlAction }[] = [];
  for (const it of items) {
    if (isFast(it)) fast.push(it);
    else if (it.decoded !== null) records.push(it.decoded);
    else if (it.control !== null) actions.push({ offset: BigInt(it.raw.offset), action: it.control });
  }
  const chunk: Chunk = {
    topic,
    partition,
    firstOffset: BigInt(run[0].raw.offset),
    nextOffset: BigInt(run[run.length - 1].raw.offset) + 1n,
    records,
  };
  if (fast.length > 0) chunk.fast = fast;
  if (truncates.size > 0) chunk.truncates = truncates;
  return { chunk, actions };
}

const lastKey = newSpan();
const nextKey = newSpan();
const nextValue = newSpan();

/**
 * Where the chunk of `records` that starts at `from` with `rows` records ends: one record
 * further when the next is a tombstone of its last record's key, as the source sends one right
 * after each delete. With its delete the tombstone adds nothing (collapse.ts); in a chunk of its
 * own it is a delete by the source key alone, which Citus cannot prune to one shard when the
 * distribution column is not in that key.
 */
export function chunkEnd(records: readonly RawRecord[], from: number, rows: number): number {
  const end = Math.min(from + rows, records.length);
  if (end >= records.length || end <= from) return end;
  const next = records[end];
  if (valueSpan(next, nextValue) || !keySpan(next, nextKey) || !keySpan(records[end - 1], lastKey)) return end;
  const n = nextKey.end - nextKey.start;
  const same = n === lastKey.end - lastKey.start && nextKey.buf.compare(lastKey.buf, lastKey.start, lastKey.end, nextKey.start, nextKey.end) === 0;
  return same ? end + 1 : end;
}
