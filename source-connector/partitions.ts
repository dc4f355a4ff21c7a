/**
 * The partitions of the selected partitioned tables, as start-up and the slot monitor check
 * them. Published via the root, a partition's changes go out under its root, but two things are
 * the partition's own:
 *  - its replica identity decides what its WAL holds of an old row. `ALTER TABLE root REPLICA
 *    IDENTITY FULL` does not pass on to partitions (nor to ones created later), yet pgoutput
 *    flags the old row as full by the root's setting: a DEFAULT partition's non-key columns then
 *    come as NULL;
 *  - rows a table held before `ATTACH PARTITION` appear in the root without any WAL: neither
 *    streamed nor, once the snapshot is taken, snapshotted.
 * An ATTACHed partition is told apart from one made by `CREATE TABLE … PARTITION OF` by the
 * transaction that wrote its pg_inherits row: PARTITION OF writes it with the table itself (its
 * system columns' pg_attribute rows, which nothing changes later, have the same xmin), ATTACH
 * later. A table created, filled and attached in one transaction cannot be told apart.
 * A partition created UNLOGGED streams nothing at all (start-up refuses one: checks.ts).
 */
import type pg from 'pg';
import { SourceError } from '../shared/errors.ts';
import { quoteIdent } from '../shared/sql.ts';

export interface PartitionInfo {
  /** The selected partitioned table (the tree's root). */
  root: number;
  rootName: string;
  /** The root has REPLICA IDENTITY FULL. */
  rootFull: boolean;
  relid: number;
  /** `schema.name`, and quoted for a statement. */
  name: string;
  sql: string;
  /** A leaf that stores rows (not a partitioned or foreign table). */
  storesRows: boolean;
  full: boolean;
  /** The xid that attached it when that is not the one that created it (ATTACH PARTITION); null for PARTITION OF. */
  attachedBy: string | null;
  /** UNLOGGED: what it holds is not in the WAL. */
  unlogged: boolean;
}

// Every partition at every level (an attached sub-partitioned table brings its own leaves);
// the root's own row has no parent and drops out of the join.
const PARTITIONS_SQL = `
SELECT r.root::int AS root, rn.nspname || '.' || rc.relname AS root_name, rc.relreplident = 'f' AS root_full,
       t.relid::int AS relid, n.nspname AS schema, c.relname AS relname, n.nspname || '.' || c.relname AS name,
       t.isleaf AND c.relkind = 'r' AS stores_rows, c.relreplident = 'f' AS full, c.relpersistence = 'u' AS unlogged,
       i.xmin::text AS inherited_by, a.xmin::text AS created_by
  FROM unnest($1::oid[]) AS r(root)
  JOIN pg_class rc ON rc.oid = r.root
  JOIN pg_namespace rn ON rn.oid = rc.relnamespace
  CROSS JOIN LATERAL pg_partition_tree(r.root) t
  JOIN pg_inherits i ON i.inhrelid = t.relid AND i.inhparent = t.parentrelid
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = -1
 ORDER BY 2, 5`;

/** Every partition under the given partitioned tables, as the catalog shows them now. */
export async function readPartitions(client: pg.ClientBase, roots: number[]): Promise<PartitionInfo[]> {
  if (roots.length === 0) return [];
  const { rows } = await client.query(PARTITIONS_SQL, [roots]);
  return rows.map((r) => ({
    root: r.root,
    rootName: r.root_name,
    rootFull: r.root_full,
    relid: r.relid,
    name: r.name,
    sql: `${quoteIdent(r.schema)}.${quoteIdent(r.relname)}`,
    storesRows: r.stores_rows,
    full: r.full,
    attachedBy: r.inherited_by === r.created_by ? null : r.inherited_by,
    unlogged: r.unlogged,
  }));
}

/** An attached partition as the `__snapshot` markers and the monitor remember it: `<relid>@<xid>` (attached again: another xid). Pure. */
export function attachedToken(p: Pick<PartitionInfo, 'relid' | 'attachedBy'>): string {
  return `${p.relid}@${p.attachedBy}`;
}

/** Per root (by name), the tokens of its ATTACHed partitions. Pure. */
export function attachedByRoot(parts: PartitionInfo[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const p of parts) if (p.attachedBy !== null) out.set(p.rootName, [...(out.get(p.rootName) ?? []), attachedToken(p)]);
  return out;
}

/** ATTACHed partitions whose token is not in `known`. Pure. */
export function newlyAttached(parts: PartitionInfo[], known: ReadonlySet<string>): PartitionInfo[] {
  return parts.filter((p) => p.attachedBy !== null && !known.has(attachedToken(p)));
}

/**
 * Pure: per root with REPLICA IDENTITY FULL, its row-storing partitions that lack it. Their old
 * rows hold only the key: a key-changing update could not supply their unchanged TOASTed
 * values, and their updates' and deletes' `before` would show NULLs.
 */
export function identityMismatches(parts: PartitionInfo[]): { table: string; message: string; remedy: string }[] {
  const byRoot = new Map<string, PartitionInfo[]>();
  for (const p of parts) if (p.rootFull && p.storesRows && !p.full) byRoot.set(p.rootName, [...(byRoot.get(p.rootName) ?? []), p]);
  return [...byRoot].map(([table, bad]) => ({
    table,
    message:
      `partitioned table ${table} has REPLICA IDENTITY FULL, but its partition(s) ${bad.map((p) => p.name).join(', ')} do not (the setting does not pass on to partitions, ` +
      `nor to partitions created later): their old rows hold only the key, so a key change cannot carry their unchanged TOASTed values and their before images show NULLs`,
    remedy: `${bad.map((p) => `ALTER TABLE ${p.sql} REPLICA IDENTITY FULL;`).join(' ')}  (and on every partition created later, in the transaction that creates it)`,
  }));
}

/** The stop for partitions ATTACHed while the connector ran (their rows were never streamed). Pure. */
export function attachedError(attached: PartitionInfo[]): SourceError {
  const tables = [...new Set(attached.map((p) => p.rootName))];
  return new SourceError(
    `partition(s) ${attached.map((p) => `${p.name} of ${p.rootName}`).join(', ')} were attached while the connector ran (ALTER TABLE … ATTACH PARTITION): the rows they held were never streamed`,
    {
      context: { table: tables.join(', '), partitions: attached.map((p) => p.name).join(', ') },
      remedy:
        `start the source connector again: it takes the snapshot again of ${tables.join(', ')} alone, after a truncate into its topic, which copies the new rows (the other tables keep theirs; the slot is kept) ` +
        `(with snapshot.mode never, copy the partition's rows to the destination yourself); to add a partition without this, create it with CREATE TABLE … PARTITION OF and fill it afterwards`,
    },
  );
}

/** The stop for FULL roots with partitions that are not. Pure. */
export function identityError(problems: { table: string; message: string; remedy: string }[]): SourceError {
  return new SourceError(problems.map((p) => p.message).join('; '), {
    context: { table: problems.map((p) => p.table).join(', ') },
    remedy: `${problems.map((p) => p.remedy).join(' ')}; then start the source connector again`,
  });
}

/** The stop for UNLOGGED partitions made while the connector ran: what was written to them is not in the WAL. Pure. */
export function unloggedError(unlogged: PartitionInfo[]): SourceError {
  const tables = [...new Set(unlogged.map((p) => p.rootName))];
  return new SourceError(
    `partition(s) ${unlogged.map((p) => `${p.name} of ${p.rootName}`).join(', ')} are UNLOGGED: their rows are not written to the WAL, so none of them was streamed`,
    {
      context: { table: tables.join(', '), partitions: unlogged.map((p) => p.name).join(', ') },
      remedy:
        `${unlogged.map((p) => `ALTER TABLE ${p.sql} SET LOGGED;`).join(' ')}  Then, if rows were written to them, take the snapshot again: stop the source connector, ` +
        `detach each such partition and attach it again in a transaction of its own, and start the connector (docs/migration-runbook.md, partitions)`,
    },
  );
}
