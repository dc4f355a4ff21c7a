/** What an applied chunk counts per destination table: events per op, rows per upsert path. Pure. */
import type { DecodedRecord } from './decode.ts';

/** By destination table: events per op, or rows per upsert path. */
export type Counts = Map<string, Map<string, number>>;

/** Tombstones apart from deletes, as the source counts them (`changes_published_total{op="tombstone"}`). */
export const opOf = (r: DecodedRecord): string => (r.change.tombstone ? 'tombstone' : r.change.op);

export function count<T>(counts: Counts, table: string, events: readonly T[], opOf: (e: T) => string): void {
  if (events.length === 0) return;
  const m = countsOf(counts, table);
  for (const e of events) {
    const op = opOf(e);
    m.set(op, (m.get(op) ?? 0) + 1);
  }
}

function countsOf(counts: Counts, table: string): Map<string, number> {
  let m = counts.get(table);
  if (!m) counts.set(table, (m = new Map()));
  return m;
}

/** `n` more under `key` (a path, a COPY format) for `table` (apply-fast.ts, TablePaths). */
export function add(counts: Counts, table: string, key: string, n: number): void {
  const m = countsOf(counts, table);
  m.set(key, (m.get(key) ?? 0) + n);
}
