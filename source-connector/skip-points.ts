/**
 * Changes the replication stream leaves out, by the commit position of their transaction.
 *
 * - A table snapshotted on its own (slot-decision.ts: added to the selection, or back in it, while
 *   the slot is kept) is read at a later point than the slot's position, so its snapshot holds
 *   every change committed before that point. Replayed after the snapshot, such changes could
 *   undo what it holds: a delete made before the table left the publication, of a row inserted
 *   again while it was out, would delete that row for good.
 * - Tables taken out of the selection: the slot's WAL still holds their changes committed while
 *   the publication listed them, which pgoutput sends. Before `unselectedBefore` (read once the
 *   publication lists the selection), such a change is left out; so is one of a transaction
 *   open then (pgoutput decodes its earlier changes with the catalog they were made under, which
 *   still listed the table), whenever it commits. Any other change of a table that is not
 *   selected is an error as before (the publication was altered by hand).
 *
 * Commit positions only grow along the stream: a point once passed is dropped, and with every
 * point passed the filter is off the hot path.
 */
import type { Logger } from '../shared/logger.ts';
import { formatLsn } from './pgoutput-decoder.ts';

export interface SkipPoints {
  /** Per table (`schema.name`): its changes committed before this position are in its own snapshot. */
  tables: ReadonlyMap<string, bigint>;
  /** Changes of tables that are not selected committed before this position are left out. */
  unselectedBefore: bigint | null;
  /**
   * Top-level xids (32 bits, as pgoutput's Begin gives them) of the transactions running when
   * `unselectedBefore` was read: their changes of tables that are not selected are left out too.
   * Asked only for such a change (an error otherwise), so it never weighs on the hot path.
   */
  runningAtAlignment?: ReadonlySet<number>;
  /**
   * The partitions of selected tables, by name, with their root's. Never left out as not
   * selected: a change sent under a partition's own name (before the publication was set to
   * publish via the root, or while the table was not yet a partition) belongs to its root, so
   * it is left out only before the root's own snapshot point, which holds it.
   */
  partitions?: ReadonlyMap<string, string>;
  /**
   * Tables whose own snapshot is being copied while the stream runs: their changes at or past
   * their point wait until `done` (the snapshot's records must come first in their topics);
   * every other table streams meanwhile.
   */
  copying?: { tables: ReadonlySet<string>; done: Promise<void> };
}

export class SkipFilter {
  private readonly tables: Map<string, bigint>;
  private unselectedBefore: bigint | null;
  private readonly partitions: ReadonlyMap<string, string>;
  private readonly running: ReadonlySet<number>;
  /** Tables whose changes from a transaction open at the alignment were left out after `unselectedBefore` passed: said once each. */
  private readonly lateSaid = new Set<string>();
  private readonly ownSnapshot = new Map<string, number>();
  private readonly unselected = new Map<string, number>();
  /** False once every point is passed (or there was none). */
  active: boolean;
  /** An own-snapshot point is still ahead: a selected table's changes are to be asked about (else only a relation without a version's). */
  ownPending: boolean;
  /** A table's own snapshot is still being copied: ask waitsForCopy. */
  copyPending: boolean;
  /** Settles when the copy does (resolved at once without one). */
  readonly copied: Promise<void>;
  private readonly copying: ReadonlySet<string>;

  constructor(points: SkipPoints, private readonly log: Logger) {
    this.tables = new Map(points.tables);
    this.unselectedBefore = points.unselectedBefore;
    this.partitions = points.partitions ?? new Map();
    this.running = points.runningAtAlignment ?? new Set();
    this.ownPending = this.tables.size > 0;
    this.active = this.ownPending || this.unselectedBefore !== null;
    this.copying = points.copying?.tables ?? new Set();
    this.copyPending = this.copying.size > 0;
    this.copied = points.copying?.done ?? Promise.resolve();
    // Failures reach the stream through the changes that wait, and the connector (connector.ts).
    this.copied.then(() => (this.copyPending = false), () => (this.copyPending = false));
  }

  /** Whether a change of `table` committing at `commitLsn` waits for the table's own snapshot to be copied (its point passed: not left out). */
  waitsForCopy(table: string, commitLsn: bigint): boolean {
    if (!this.copyPending) return false;
    const root = this.under(table, this.copying);
    if (root === undefined) return false;
    const point = this.tables.get(root);
    return point === undefined || commitLsn >= point;
  }

  /** A transaction committing at `commitLsn` begins: the points at or before it are passed. */
  pass(commitLsn: bigint): void {
    for (const [table, point] of this.tables) {
      if (point > commitLsn) continue;
      this.tables.delete(table);
      const n = this.ownSnapshot.get(table) ?? 0;
      if (n > 0) this.log.info({ table, leftOut: n, snapshotPoint: formatLsn(point) }, `${n} change(s) of ${table} committed before its own snapshot were left out of the stream: the snapshot holds them`);
    }
    if (this.unselectedBefore !== null && this.unselectedBefore <= commitLsn) {
      this.unselectedBefore = null;
      for (const [table, n] of this.unselected) {
        this.log.warn({ table, leftOut: n }, `${n} change(s) of ${table}, no longer selected, were left out of the stream: committed while the publication still listed it`);
      }
    }
    this.ownPending = this.tables.size > 0;
    this.active = this.ownPending || this.unselectedBefore !== null;
  }

  /**
   * Whether a change of `table` (undefined: a relation the stream never named) in transaction
   * `xid` committing at `commitLsn` is left out. `selected`: the relation is a selected table's (a
   * table dropped and created again is not, under its old relid, but is still named by its own point).
   */
  leavesOut(table: string | undefined, selected: boolean, commitLsn: bigint, xid?: number): boolean {
    if (table === undefined) return false;
    const snapshotted = this.snapshotted(table);
    if (snapshotted !== undefined) {
      if (commitLsn >= this.tables.get(snapshotted)!) return false;
      this.ownSnapshot.set(snapshotted, (this.ownSnapshot.get(snapshotted) ?? 0) + 1);
      return true;
    }
    if (selected || this.partitions.has(table)) return false;
    if (this.unselectedBefore !== null && commitLsn < this.unselectedBefore) {
      this.unselected.set(table, (this.unselected.get(table) ?? 0) + 1);
      return true;
    }
    if (xid === undefined || !this.running.has(xid)) return false;
    if (!this.lateSaid.has(table)) {
      this.lateSaid.add(table);
      this.log.warn({ table, xid, commitLsn: formatLsn(commitLsn) }, `changes of ${table}, no longer selected, in transaction ${xid} (open when the publication was aligned) are left out of the stream: made while the publication still listed it`);
    }
    return true;
  }

  /**
   * Whether `table`'s changes committing at `commitLsn` are in its own snapshot (nothing counted).
   * Its Relation messages there are passed over: the snapshot was read with the table's current
   * version, which holds up to its point; an older shape taken from them would make the next
   * one look like a change made while the connector runs.
   */
  heldBySnapshot(table: string, commitLsn: bigint): boolean {
    const snapshotted = this.snapshotted(table);
    return snapshotted !== undefined && commitLsn < this.tables.get(snapshotted)!;
  }

  /** The table whose own-snapshot point judges `table`'s changes: itself, or a partition's root. */
  private snapshotted(table: string): string | undefined {
    return this.under(table, this.tables);
  }

  /** `table` itself when `among` has it, else its root (a partition's) when `among` has that. */
  private under(table: string, among: { has(name: string): boolean }): string | undefined {
    if (among.has(table)) return table;
    const root = this.partitions.get(table);
    return root !== undefined && among.has(root) ? root : undefined;
  }
}

/**
 * Pure: the own-snapshot points still ahead of a stream resuming at `from` (the slot's confirmed
 * position): each table's completed snapshot from this slot read at a later position than that.
 * A table of the slot's first snapshot was read at the slot's consistent point, never ahead.
 */
export function ownSnapshotPoints(completed: Iterable<{ table: string; consistentPoint: bigint }>, from: bigint | null): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const c of completed) if (from === null || c.consistentPoint > from) out.set(c.table, c.consistentPoint);
  return out;
}
