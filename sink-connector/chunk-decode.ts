/**
 * A chunk's records as items (chunk-items.ts): control records parsed; change records planned
 * as fast rows (fast-rows.ts) where they can skip the general decode, the rest decoded, an
 * undecodable one ending the chunk there (or set aside, in dead-letter mode). Synchronous: the
 * registry was asked beforehand (RecordDecoder.prepare).
 */
import type { Logger } from '../shared/logger.ts';
import { DecodeError } from '../shared/errors.ts';
import type { Item } from './chunk-items.ts';
import { parseControlRecord, type ControlKind } from './control.ts';
import type { RawRecord, RecordDecoder } from './decode.ts';
import { FastRowPlanner, type BinaryLayout, type RecordSchemas } from './fast-rows.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import type { TableStates } from './table-state.ts';

export interface DecodedChunk {
  items: Item[];
  /** The first record that does not decode (not in `items`), when not dead-lettering. */
  bad?: { index: number; error: DecodeError };
}

/** Control records as items: a record that is no valid action is skipped, with a warning. */
export function controlItems(kind: ControlKind, raws: readonly RawRecord[], log: Logger): Item[] {
  return raws.map((raw) => {
    const parsed = parseControlRecord(kind, raw.value);
    if (parsed && 'invalid' in parsed) {
      log.warn({ offset: raw.offset, reason: parsed.invalid }, 'control record skipped');
      return { raw, decoded: null, control: null };
    }
    return { raw, decoded: null, control: parsed };
  });
}

export interface ChunkDecoderDeps {
  decoder: RecordDecoder;
  states: TableStates;
  /** Whole-row inserts and replacements go straight from their bytes to COPY text (fast-rows.ts). */
  transcode?: boolean;
  /** ...and to COPY BINARY where every column's destination type has a binary writer (copy-binary.ts). */
  binaryCopy?: boolean;
  /** Dead-letter mode: an undecodable record is set aside instead of ending the chunk. */
  deadLetters: boolean;
}

/** One per batch processor: the fast-row planner and the binary layouts are reused across chunks. */
export class ChunkDecoder {
  private readonly planner = new FastRowPlanner();
  /** Per record schemas: the binary transcoder for the catalog it was made for (null: none for it). */
  private readonly layouts = new WeakMap<RecordSchemas, { table: ApplyTable; transcoder: BinaryLayout['transcoder'] | null }>();

  constructor(private readonly deps: ChunkDecoderDeps) {}

  /** The records of a table topic as items, once their schemas are prepared. */
  decode(raws: readonly RawRecord[]): DecodedChunk {
    const items: Item[] = [];
    const decoder = this.deps.decoder;
    const fast = this.deps.transcode
      ? this.planner.plan(
          raws,
          (r) => decoder.describe(r),
          (s) => this.binaryLayout(s),
        )
      : null;
    for (let i = 0; i < raws.length; i++) {
      const raw = raws[i];
      const f = fast?.[i];
      if (f) {
        items.push(f);
        continue;
      }
      try {
        items.push({ raw, decoded: decoder.decode(raw), control: null });
      } catch (err) {
        const error =
          err instanceof DecodeError
            ? err
            : new DecodeError(`record cannot be decoded: ${(err as Error).message}`, { context: { topic: raw.topic, partition: raw.partition, offset: raw.offset }, cause: err });
        if (!this.deps.deadLetters) return { items, bad: { index: i, error } };
        items.push({ raw, decoded: null, control: null, deadLetter: error });
      }
    }
    return { items };
  }

  /**
   * Rows of these schemas go to COPY BINARY when their table's catalog is known from an earlier
   * batch and every column has a binary writer for its destination type. Only with session
   * staging (PostgreSQL): a shared staging table (Citus) keeps the column types it was made with.
   */
  private binaryLayout(s: RecordSchemas): BinaryLayout | null {
    if (!this.deps.binaryCopy) return null;
    const table = this.deps.states.peek(s.table, s.keyColumns);
    if (!table || table.staging !== 'session') return null;
    let hit = this.layouts.get(s);
    if (!hit || hit.table !== table) {
      const typeOf = tableShape(table).typeOf;
      const types = s.table.columns.map((c) => typeOf.get(c.name));
      hit = { table, transcoder: types.every((t) => t !== undefined) ? s.binaryFor(types as string[]) : null };
      this.layouts.set(s, hit);
    }
    return hit.transcoder === null ? null : { table, transcoder: hit.transcoder };
  }
}
