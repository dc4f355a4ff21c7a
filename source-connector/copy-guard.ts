/**
 * While a table's own snapshot is copied beside the stream (snapshot-run.ts), the stream sends
 * that table's changes committed after the snapshot's point as they come, instead of holding
 * every table back until the copy is done. Each key such a change carries is noted here; a
 * snapshot row of a noted key is then left out: the stream has already sent a later state of
 * that row (an insert, a whole new row, or its delete), and the snapshot's older one would
 * undo it. A snapshot row sent before the stream's change of its key comes first in the key's
 * partition, as it should. One publisher queue serves both, so what is queued first is first
 * in its partition.
 *
 * What this cannot do stays with the stream, which waits for the copy as before
 * (stream-messages.ts, waitForCopy): an update leaving an unchanged-TOAST column out (the sink merges it
 * with the row it holds, which the snapshot may not have sent yet), a truncate (the snapshot's
 * rows would outlive it), and more noted keys than `limit`, or more of their bytes than
 * `byteLimit` (memory).
 *
 * Keys are compared without their wire header (schema id): the same key columns give the same
 * Avro bytes in the snapshot's and the stream's records.
 */
import { WIRE_HEADER_LENGTH } from '../shared/registry/wire-format.ts';

/** Distinct keys noted at most. */
export const COPY_GUARD_KEY_LIMIT = 500_000;
/**
 * Heap noted keys take at most. A key costs its Avro bytes plus about 37 (measured: 500,000
 * keys of 8 bytes took 23 MB, of 200 bytes 119 MB, of 1,000 bytes 519 MB), so the count alone
 * would let long keys (text of a few hundred bytes, composites of them) take ten times the
 * 50 MB it was meant to keep under.
 */
export const COPY_GUARD_BYTE_LIMIT = 50_000_000;
/** A noted key's heap beyond its bytes (string header, Set entry), rounded up from the measure above. */
const KEY_OVERHEAD = 40;

export class CopyGuard {
  private readonly touched = new Map<string, Set<string>>();
  private readonly leftOut = new Map<string, number>();
  private size = 0;
  private bytes = 0;

  constructor(topics: Iterable<string>, readonly limit = COPY_GUARD_KEY_LIMIT, readonly byteLimit = COPY_GUARD_BYTE_LIMIT) {
    for (const t of topics) this.touched.set(t, new Set());
  }

  /** Whether the stream may still send a guarded table's change rather than wait. */
  get room(): boolean {
    return this.size < this.limit && this.bytes < this.byteLimit;
  }

  /** A stream record of `topic` with this key was queued. */
  touch(topic: string, key: Buffer): void {
    const keys = this.touched.get(topic);
    if (!keys) return;
    const k = key.toString('latin1', WIRE_HEADER_LENGTH);
    if (keys.has(k)) return;
    keys.add(k);
    this.size++;
    this.bytes += k.length + KEY_OVERHEAD;
  }

  /** Whether a snapshot row of `topic` with this key is sent (false: the stream sent a later state of it). */
  admits(topic: string, key: Buffer): boolean {
    const keys = this.touched.get(topic);
    if (!keys || keys.size === 0 || !keys.has(key.toString('latin1', WIRE_HEADER_LENGTH))) return true;
    this.leftOut.set(topic, (this.leftOut.get(topic) ?? 0) + 1);
    return false;
  }

  /** Snapshot rows left out, per topic. */
  get skipped(): ReadonlyMap<string, number> {
    return this.leftOut;
  }
}
