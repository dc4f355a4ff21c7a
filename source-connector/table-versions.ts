/**
 * Table versions: per relation id, the current record schemas and the registry ids of its key
 * and value schemas. The catalog gives the first version of every table (used by the
 * snapshot); pgoutput's Relation messages give later ones. Schemas are registered once per
 * version under `<topic>-key` / `<topic>-value`; the hot path only does a Map lookup.
 *
 * A column whose type changes stops the connector (SchemaError): the migration guide's
 * "invasive schema change" needs both sides changed while replication is stopped. Added or
 * dropped columns are a compatible evolution (every value field is nullable, default null).
 *
 * The first Relation of a relation in a stream session may be older than the catalog: after a
 * restart the stream may replay WAL written before a type change that the catalog already
 * shows; it is taken as it is. When the stream then reaches the change itself and the new shape
 * is the one the catalog showed at start-up, the operator made that change while the connector
 * was stopped (the runbook): it continues with the new type instead of stopping a second time.
 * A first Relation whose types differ from the version before it and equal the catalog's now is
 * a change made while the connector ran (to a table idle until then): that stops it too. A
 * table renamed while streaming stops it the same way (its new name has no topic).
 */
import type { Logger } from '../shared/logger.ts';
import { SchemaError, SourceError } from '../shared/errors.ts';
import type { ColumnInfo, PgTypeInfo, TableInfo } from '../shared/pg-types.ts';
import { sameDefinition, type TableNow } from './catalog.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';
import { buildRecordSchemas, describeTypeChanges, type TableRecordSchemas } from './record-schema.ts';

export interface TableVersion {
  relid: number;
  table: TableInfo;
  /** `schema.table`, for logs and metric labels. */
  qualified: string;
  topic: string;
  schemas: TableRecordSchemas;
  keySchemaId: number | null;
  valueSchemaId: number;
}

/** What a new Relation may need from the source catalog (rare: unknown type oids). */
export interface CatalogAccess {
  loadTypes(oids: number[]): Promise<Map<number, PgTypeInfo>>;
  /** Primary key columns in key order ([] if none). */
  primaryKey(relid: number): Promise<string[]>;
  /** The relation as the catalog shows it now: its name and columns (type oid and typmod by name); null when it is gone. */
  currentTable(relid: number): Promise<TableNow | null>;
}

export interface SchemaRegistrar {
  register(subject: string, schema: object): Promise<number>;
}

export interface TableVersionsOptions {
  registry: SchemaRegistrar;
  topicPrefix: string;
  /** Goes into `source.version` of every record. */
  connectorVersion: string;
  catalog: CatalogAccess;
  log: Logger;
}

export const TYPE_CHANGE_REMEDY =
  'an invasive schema change needs replication stopped: stop the source and sink connectors, change the column type on the source and on the destination, then start both again';

/** Kafka topic names allow [a-zA-Z0-9._-]: anything else becomes '_'. */
export function topicFor(prefix: string, schema: string, table: string): string {
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9._-]/g, '_');
  return `${prefix}.${clean(schema)}.${clean(table)}`;
}

/** Kafka's longest topic name. */
const MAX_TOPIC_LENGTH = 249;

/**
 * Pure: selected tables whose topic cannot be theirs alone. Kafka refuses names over 249
 * characters, and topics that differ only in '.' against '_' (their metric names collide); the
 * character replacement of topicFor can also give two tables one name outright.
 */
export function topicNameProblems(prefix: string, tables: readonly { schema: string; name: string }[]): { table: string; message: string; remedy: string }[] {
  const out: { table: string; message: string; remedy: string }[] = [];
  const byKey = new Map<string, string>();
  for (const t of tables) {
    const table = `${t.schema}.${t.name}`;
    const topic = topicFor(prefix, t.schema, t.name);
    if (topic.length > MAX_TOPIC_LENGTH) {
      out.push({ table, message: `the topic of ${table}, ${topic.slice(0, 60)}…, has ${topic.length} characters (Kafka allows ${MAX_TOPIC_LENGTH})`, remedy: 'use a shorter topicPrefix, or exclude the table (tables.exclude)' });
      continue;
    }
    const key = topic.replace(/\./g, '_');
    const other = byKey.get(key);
    if (other !== undefined) {
      out.push({ table, message: `tables ${other} and ${table} would share the topic ${topic} (or topics Kafka treats as one: '.' and '_' collide)`, remedy: 'rename one of them, or exclude one (tables.exclude)' });
    } else byKey.set(key, table);
  }
  return out;
}

export class TableVersions {
  private readonly current = new Map<number, TableVersion>();
  private readonly types = new Map<number, PgTypeInfo>();
  /** Relations that had a Relation message in the current stream session. */
  private readonly seen = new Set<number>();
  /** Each table as the catalog showed it at start-up. */
  private readonly startup = new Map<number, TableInfo>();
  private readonly log: Logger;

  constructor(private readonly opts: TableVersionsOptions) {
    this.log = opts.log.child({ component: 'table-versions' });
  }

  /** Versions from the catalog: the snapshot's, and the baseline for the stream. Registers their schemas. */
  async init(tables: TableInfo[]): Promise<void> {
    for (const t of tables) for (const c of t.columns) this.rememberType(c.type);
    const versions = await Promise.all(tables.map((t) => this.register(t)));
    for (const v of versions) this.current.set(v.relid, v);
    for (const t of tables) this.startup.set(t.relid, t);
  }

  /** Hot path: the version changes of `relid` are decoded with. */
  get(relid: number): TableVersion | undefined {
    return this.current.get(relid);
  }

  all(): TableVersion[] {
    return [...this.current.values()];
  }

  /** A new stream session begins: the next Relation of each relation is its first again. */
  newSession(): void {
    this.seen.clear();
  }

  /** A Relation message: the version to decode the relation's next changes with. */
  async onRelation(msg: RelationMessage): Promise<TableVersion> {
    const missing = [...new Set(msg.columns.map((c) => c.typeOid))].filter((oid) => !this.types.has(oid));
    if (missing.length > 0) {
      const loaded = await this.opts.catalog.loadTypes(missing);
      for (const t of loaded.values()) this.rememberType(t);
    }
    const prev = this.current.get(msg.relid);
    const table = await this.relationToTable(msg, prev?.table);
    const first = !this.seen.has(msg.relid);
    this.seen.add(msg.relid);
    if (prev && sameShape(prev.table, table)) {
      if (prev.table.replicaIdentity === table.replicaIdentity) return prev;
      const v = { ...prev, table };
      this.current.set(msg.relid, v);
      return v;
    }
    const renamed = prev !== undefined && (prev.table.schema !== table.schema || prev.table.name !== table.name);
    if (prev && first && (renamed || describeTypeChanges(prev.table, table).length > 0) && sameDefinition(table, await this.opts.catalog.currentTable(table.relid))) {
      // The session's first Relation is older than the catalog when the stream replays WAL
      // written before a change made while the connector was stopped; if it is what the catalog
      // shows now, the table (idle until now) was changed while the connector ran.
      throw renamed ? renameError(prev, table) : typeChangeError(prev, table);
    }
    if (prev && !first && renamed) {
      const known = this.startup.get(msg.relid);
      // Renamed while stopped (the start-up catalog has the new name, and its topic was made then): go on.
      if (!known || known.schema !== table.schema || known.name !== table.name) throw renameError(prev, table);
    }
    if (prev && !first) {
      const changed = describeTypeChanges(prev.table, table);
      const known = this.startup.get(msg.relid);
      if (changed.length > 0 && known && sameShape(known, table)) {
        this.log.info(
          { table: prev.qualified, changes: changed.map((x) => `${x.column} ${x.oldType} -> ${x.newType}`) },
          'column type change made while the connector was stopped (the start-up catalog has it): continuing with the new type',
        );
      } else if (changed.length > 0) {
        throw typeChangeError(prev, table);
      }
    }
    const v = await this.register(table);
    this.current.set(msg.relid, v);
    const before = new Set(prev?.table.columns.map((c) => c.name) ?? []);
    const after = new Set(table.columns.map((c) => c.name));
    this.log.info(
      {
        table: v.qualified,
        topic: v.topic,
        added: [...after].filter((c) => !before.has(c)),
        dropped: [...before].filter((c) => !after.has(c)),
        valueSchemaId: v.valueSchemaId,
      },
      prev ? 'new table version' : 'table version from Relation message',
    );
    return v;
  }

  private async register(table: TableInfo): Promise<TableVersion> {
    const qualified = `${table.schema}.${table.name}`;
    const topic = topicFor(this.opts.topicPrefix, table.schema, table.name);
    const schemas = buildRecordSchemas(table, topic, this.opts.connectorVersion);
    const [keySchemaId, valueSchemaId] = await Promise.all([
      schemas.keySchema ? this.opts.registry.register(`${topic}-key`, schemas.keySchema) : Promise.resolve(null),
      this.opts.registry.register(`${topic}-value`, schemas.envelopeSchema),
    ]);
    return { relid: table.relid, table, qualified, topic, schemas, keySchemaId, valueSchemaId };
  }

  private rememberType(t: PgTypeInfo | undefined): void {
    while (t && !this.types.has(t.oid)) {
      this.types.set(t.oid, t);
      this.rememberType(t.elem);
      this.rememberType(t.subtype);
      t = t.base;
    }
  }

  /**
   * The Relation as TableInfo. Key columns keep the catalog's key order (the key schema's
   * field order, hence the key bytes and partition, must not depend on column order);
   * under REPLICA IDENTITY FULL pgoutput flags every column, so the primary key is used.
   */
  private async relationToTable(msg: RelationMessage, prev: TableInfo | undefined): Promise<TableInfo> {
    const qualified = `${msg.namespace}.${msg.name}`;
    const columns: ColumnInfo[] = msg.columns.map((c) => {
      const type = this.types.get(c.typeOid);
      if (!type) {
        throw new SourceError(`type oid ${c.typeOid} of column ${c.name} is not in the source catalog`, { context: { table: qualified, column: c.name } });
      }
      return { name: c.name, type, typmod: c.typmod, isKey: c.isKey };
    });
    const names = new Set(columns.map((c) => c.name));
    let keyColumns: string[];
    if (msg.replicaIdentity === 'full' || msg.replicaIdentity === 'nothing') {
      keyColumns = prev ? prev.keyColumns : await this.opts.catalog.primaryKey(msg.relid);
    } else {
      const flagged = columns.filter((c) => c.isKey).map((c) => c.name);
      const prevKey = prev?.keyColumns ?? [];
      const same = prevKey.length === flagged.length && prevKey.every((k) => flagged.includes(k));
      keyColumns = same ? prevKey : flagged;
    }
    keyColumns = keyColumns.filter((k) => names.has(k));
    const keySet = new Set(keyColumns);
    for (const c of columns) c.isKey = keySet.has(c.name);
    return { relid: msg.relid, schema: msg.namespace, name: msg.name, columns, keyColumns, replicaIdentity: msg.replicaIdentity };
  }
}

function typeChangeError(prev: TableVersion, table: TableInfo): SchemaError {
  const changed = describeTypeChanges(prev.table, table);
  const c = changed[0];
  const all = changed.map((x) => `${x.column} ${x.oldType} -> ${x.newType}`).join(', ');
  return new SchemaError(`column ${c.column} of table ${prev.qualified} changed type from ${c.oldType} to ${c.newType}: the connector stops (${all})`, {
    context: { table: prev.qualified, column: c.column, oldType: c.oldType, newType: c.newType },
    remedy: TYPE_CHANGE_REMEDY,
  });
}

/** A table renamed while streaming would need a topic (and a destination mapping) nobody made: stop and say so. */
function renameError(prev: TableVersion, table: TableInfo): SchemaError {
  const now = `${table.schema}.${table.name}`;
  return new SchemaError(`table ${prev.qualified} was renamed to ${now} while streaming: the connector stops`, {
    context: { table: prev.qualified, renamedTo: now },
    remedy:
      `rename it back; or stop both connectors, map ${now} in the sink's tables to the destination table ${prev.qualified} went to, ` +
      `and start them again (the source then makes the topic of ${now})`,
  });
}

/** Same columns (names, types, typmods, order) and key: the same schemas. */
function sameShape(a: TableInfo, b: TableInfo): boolean {
  if (a.schema !== b.schema || a.name !== b.name || a.columns.length !== b.columns.length) return false;
  if (a.keyColumns.length !== b.keyColumns.length || a.keyColumns.some((k, i) => b.keyColumns[i] !== k)) return false;
  return a.columns.every((c, i) => {
    const d = b.columns[i];
    return c.name === d.name && c.type.oid === d.type.oid && c.typmod === d.typmod;
  });
}
