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
 * (stream.ts, waitForCopy): an update leaving an unchanged-TOAST column out (the sink merges it
 * with the row it holds, which the snapshot may not have sent yet), a truncate (the snapshot's
 * rows would outlive it), and more noted keys than `limit` (memory).
 *
 * Keys are compared without their wire header (schema id): the same key columns give the same
 * Avro bytes in the snapshot's and the stream's records.
 */
import { WIRE_HEADER_LENGTH } from '../shared/registry/wire-format.ts';

/** About 100 bytes a key: 500,000 keys keep under 50 MB. */
export const COPY_GUARD_KEY_LIMIT = 500_000;

export class CopyGuard {
  private readonly touched = new Map<string, Set<string>>();
  private readonly leftOut = new Map<string, number>();
  private size = 0;

  constructor(topics: Iterable<string>, readonly limit = COPY_GUARD_KEY_LIMIT) {
    for (const t of topics) this.touched.set(t, new Set());
  }

  /** Whether the stream may still send a guarded table's change rather than wait. */
  get room(): boolean {
    return this.size < this.limit;
  }

  /** A stream record of `topic` with this key was queued. */
  touch(topic: string, key: Buffer): void {
    const keys = this.touched.get(topic);
    if (!keys) return;
    const k = key.toString('latin1', WIRE_HEADER_LENGTH);
    if (keys.has(k)) return;
    keys.add(k);
    this.size++;
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
