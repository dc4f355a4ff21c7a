/**
 * How a Relation message's table differs from the version before it, and the stops and
 * warnings that follow. Pure: table-versions.ts decides when they apply (a change committed
 * after the start-up catalog read is one made while the connector ran).
 */
import { SchemaError } from '../shared/errors.ts';
import type { TableInfo } from '../shared/pg-types.ts';
import { describeTypeChanges, type TypeChange } from './record-schema.ts';

export interface RelationChange {
  /** Its schema or name changed. */
  renamedTable: boolean;
  /** Columns of both versions (by name) whose type changed. */
  typeChanges: TypeChange[];
  /** By name. */
  added: string[];
  dropped: string[];
  /** The key columns (as a set) differ: each row's records would get another key, hence partition. */
  keyChanged: boolean;
}

export function describeChange(prev: TableInfo, next: TableInfo): RelationChange {
  const before = new Set(prev.columns.map((c) => c.name));
  const after = new Set(next.columns.map((c) => c.name));
  const keyAfter = new Set(next.keyColumns);
  return {
    renamedTable: prev.schema !== next.schema || prev.name !== next.name,
    typeChanges: describeTypeChanges(prev, next),
    added: [...after].filter((c) => !before.has(c)),
    dropped: [...before].filter((c) => !after.has(c)),
    keyChanged: prev.keyColumns.length !== next.keyColumns.length || prev.keyColumns.some((k) => !keyAfter.has(k)),
  };
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

/** For logs: each type change as `column old -> new`. */
export function typeChangeList(changes: TypeChange[]): string[] {
  return changes.map((x) => `${x.column} ${x.oldType} -> ${x.newType}`);
}
