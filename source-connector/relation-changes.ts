/**
 * How a Relation message's table differs from the version before it, and the stops and
 * warnings that follow. Pure: table-versions.ts decides when they apply (a change committed
 * after the start-up catalog read is one made while the connector ran).
 */
import { SchemaError } from '../shared/errors.ts';
import type { TableInfo } from '../shared/pg-types.ts';
import { pgTypeName } from '../shared/type-mapping/index.ts';
import { quoteIdent, quoteQualified } from './catalog.ts';
import { describeTypeChanges, type TypeChange } from './record-schema.ts';

export interface ColumnRename {
  from: string;
  to: string;
  /** Full type name incl. typmod (the same before and after). */
  type: string;
}

export interface RelationChange {
  /** Its schema or name changed. */
  renamedTable: boolean;
  /** Columns of both versions (by name) whose type changed. */
  typeChanges: TypeChange[];
  renamedColumns: ColumnRename[];
  /** By name, renamed columns left out. */
  added: string[];
  dropped: string[];
  /** The key columns (as a set) differ: each row's records would get another key, hence partition. */
  keyChanged: boolean;
}

export function describeChange(prev: TableInfo, next: TableInfo): RelationChange {
  const renamedColumns = describeColumnRenames(prev, next);
  const before = new Set(prev.columns.map((c) => c.name));
  const after = new Set(next.columns.map((c) => c.name));
  const from = new Set(renamedColumns.map((r) => r.from));
  const to = new Set(renamedColumns.map((r) => r.to));
  const keyAfter = new Set(next.keyColumns);
  return {
    renamedTable: prev.schema !== next.schema || prev.name !== next.name,
    typeChanges: describeTypeChanges(prev, next),
    renamedColumns,
    added: [...after].filter((c) => !before.has(c) && !to.has(c)),
    dropped: [...before].filter((c) => !after.has(c) && !from.has(c)),
    keyChanged: prev.keyColumns.length !== next.keyColumns.length || prev.keyColumns.some((k) => !keyAfter.has(k)),
  };
}

/**
 * Columns renamed between two versions. pgoutput names columns, it does not number them; a
 * rename keeps a column's position (added columns come last), so a column gone by name whose
 * position now holds a new name of the same type was renamed. Only when every column gone by
 * name pairs up that way: otherwise a drop shifted the positions, and it is drops and adds.
 * A drop of the last column plus an add of one of its type in one step looks the same (the
 * stop's message says so).
 */
export function describeColumnRenames(prev: TableInfo, next: TableInfo): ColumnRename[] {
  if (next.columns.length < prev.columns.length) return [];
  const before = new Set(prev.columns.map((c) => c.name));
  const after = new Set(next.columns.map((c) => c.name));
  const out: ColumnRename[] = [];
  for (let i = 0; i < prev.columns.length; i++) {
    const p = prev.columns[i];
    if (after.has(p.name)) continue;
    const n = next.columns[i];
    const type = pgTypeName(p.type, p.typmod);
    if (before.has(n.name) || pgTypeName(n.type, n.typmod) !== type) return [];
    out.push({ from: p.name, to: n.name, type });
  }
  return out;
}

export const TYPE_CHANGE_REMEDY =
  'an invasive schema change needs replication stopped: stop the source and sink connectors, change the column type on the source and on the destination, then start both again';

export function typeChangeError(table: string, changed: TypeChange[]): SchemaError {
  const c = changed[0];
  const all = changed.map((x) => `${x.column} ${x.oldType} -> ${x.newType}`).join(', ');
  return new SchemaError(`column ${c.column} of table ${table} changed type from ${c.oldType} to ${c.newType}: the connector stops (${all})`, {
    context: { table, column: c.column, oldType: c.oldType, newType: c.newType },
    remedy: TYPE_CHANGE_REMEDY,
  });
}

/** A table renamed while streaming would need a topic (and a destination mapping) nobody made: stop and say so. */
export function tableRenameError(prev: TableInfo, next: TableInfo): SchemaError {
  const was = `${prev.schema}.${prev.name}`;
  const now = `${next.schema}.${next.name}`;
  return new SchemaError(`table ${was} was renamed to ${now} while streaming: the connector stops`, {
    context: { table: was, renamedTo: now },
    remedy:
      `rename it back; or stop both connectors, map ${now} in the sink's tables to the destination table ${was} went to, ` +
      `and start them again (the source then makes the topic of ${now})`,
  });
}

/**
 * Matched by name, a renamed column would be a dropped one plus an added one: the sink (with
 * autoEvolve) would add an empty column and leave the values in the old one. Stop instead.
 */
export function columnRenameError(table: TableInfo, renames: ColumnRename[]): SchemaError {
  const q = `${table.schema}.${table.name}`;
  const r = renames[0];
  const all = renames.map((x) => `${x.from} -> ${x.to}`).join(', ');
  const sql = renames.map((x) => `ALTER TABLE ${quoteQualified(table)} RENAME COLUMN ${quoteIdent(x.from)} TO ${quoteIdent(x.to)};`).join(' ');
  return new SchemaError(
    `column ${r.from} of table ${q} was renamed to ${r.to} while streaming: the connector stops (${all}; ` +
      'or the column was dropped and one of the same type added in its place)',
    {
      context: { table: q, column: r.from, renamedTo: r.to },
      remedy:
        `let the sink apply everything up to here (status: lag 0) and stop it, rename the column on the destination too (${sql}), ` +
        'then start both connectors: the source goes on from the transaction that met the rename, under the new name ' +
        '(if it was a drop and an add instead, add the new column on the destination and start them)',
    },
  );
}

/** A key that changes while streaming moves each row's later records to another partition, where they may overtake its earlier ones. */
export function keyChangeError(prev: TableInfo, next: TableInfo): SchemaError {
  const q = `${next.schema}.${next.name}`;
  const was = `(${prev.keyColumns.join(', ')})`;
  const now = next.keyColumns.length > 0 ? `(${next.keyColumns.join(', ')})` : 'none';
  return new SchemaError(`the key columns of table ${q} changed from ${was} to ${now} while streaming: the connector stops`, {
    context: { table: q, oldKey: prev.keyColumns.join(','), newKey: next.keyColumns.join(',') },
    remedy:
      "a primary key change needs replication stopped (each row's records get another key, and partition): let the sink apply " +
      'everything up to here (status: lag 0) and stop it, change the primary key on the destination the same way, then start both connectors',
  });
}

/** A start-up check finding (catalog.ts, replicaIdentityProblem) met in the stream. */
export function replicaIdentityError(problem: { table: string; message: string; remedy: string }): SchemaError {
  return new SchemaError(`${problem.message}; set while streaming: the connector stops`, {
    context: { table: problem.table },
    remedy: `${problem.remedy}; then start the connector again (the changes made meanwhile are keyed by the index's columns: once the sink applied them, compare the table with shardbridge cutover --verify-only)`,
  });
}

/** Records for a topic Kafka does not have would be retried by the producer forever, silently: stop. */
export function missingTopicError(table: TableInfo, topic: string, prevTopic: string | undefined): SchemaError {
  const q = `${table.schema}.${table.name}`;
  return new SchemaError(`the changes of table ${q} would go to topic ${topic}, which does not exist (topics are made at start-up): the connector stops`, {
    context: { table: q, topic },
    remedy:
      `create the topic${prevTopic ? ` (with the partition count and settings of ${prevTopic})` : ''}, map ${q} in the sink's tables to its ` +
      'destination table, and start the connector again',
  });
}

/** An added column the catalog shows with a default (or identity): the value existing rows got on the source. */
export interface AddedDefault {
  column: string;
  /** Full type name incl. typmod. */
  type: string;
  /** The default expression, or `GENERATED … AS IDENTITY`. */
  default: string;
  notNull: boolean;
  /**
   * Whether the same statement gives the destination's rows the source's values: no volatile or
   * stable function in the default (nextval, now(), random()), no identity. Absent: assumed so.
   */
  reproducible?: boolean;
}

/**
 * The sink adds a missing column nullable and without a default: the destination's existing
 * rows get NULL where the source's have the default, and no record says otherwise.
 */
export function addedDefaultWarning(table: TableInfo, d: AddedDefault): { message: string; remedy: string } {
  const q = `${table.schema}.${table.name}`;
  const def = d.default.startsWith('GENERATED ') ? d.default : `DEFAULT ${d.default}`;
  return {
    message:
      `column ${d.column} was added to table ${q} with ${def}: the source's existing rows have that value, but no change record carries it, ` +
      'and the sink (autoEvolve) adds the column without it, so the destination rows would keep NULL',
    remedy:
      d.reproducible === false
        ? `${def} gives each side its own values (a sequence, the time, randomness): add the column on the destination without it ` +
          `(ALTER TABLE <destination table> ADD COLUMN ${quoteIdent(d.column)} ${d.type}), or let the sink add it, then bring the source's values ` +
          `for the rows that existed before it across (on the source, in batches: UPDATE ${q} SET ${quoteIdent(d.column)} = ${quoteIdent(d.column)} WHERE …, ` +
          'which streams them); shardbridge cutover --verify-only shows what still differs'
        : `before the sink applies the new version, add the column on the destination the same way: ALTER TABLE <destination table> ADD COLUMN ` +
          `${quoteIdent(d.column)} ${d.type}${d.notNull ? ' NOT NULL' : ''} ${def}; if the sink already added it, set the rows that existed before it ` +
          'to the source values',
  };
}

/** For logs: each type change as `column old -> new`. */
export function typeChangeList(changes: TypeChange[]): string[] {
  return changes.map((x) => `${x.column} ${x.oldType} -> ${x.newType}`);
}
