/**
 * Table versions: per relation id, the current record schemas and the registry ids of its key
 * and value schemas. The catalog gives the first version of every table (used by the
 * snapshot); pgoutput's Relation messages give later ones. Schemas are registered once per
 * version under `<topic>-key` / `<topic>-value`; the hot path only does a Map lookup.
 *
 * Added or dropped columns are a compatible evolution (every value field is nullable, default
 * null). A changed column type, a renamed table or column, and a changed key stop the
 * connector (SchemaError) when made while it runs: the migration guide's "invasive schema
 * change" needs both sides changed while replication is stopped.
 *
 * What was made while it ran is told by WAL position: pgoutput describes a table as it was at
 * the change, so after a restart the stream may replay WAL written before a change the
 * operator made while the connector was stopped, and then reach the change itself. A Relation
 * in a transaction that committed before the start-up catalog was read is such a change, and
 * the catalog has it: the connector goes on (the start is the operator's word that the
 * destination was changed too). One that committed later is a change made while it ran,
 * whatever else changed on the table before the connector saw it.
 */
import type { Logger } from '../shared/logger.ts';
import { SourceError } from '../shared/errors.ts';
import { inParallel } from '../shared/in-parallel.ts';
import type { ColumnInfo, PgTypeInfo, TableInfo } from '../shared/pg-types.ts';
import { replicaIdentityProblem } from './catalog.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';
import { buildRecordSchemas, type TableRecordSchemas } from './record-schema.ts';
import {
  addedDefaultWarning, columnRenameError, describeChange, keyChangeError, missingTopicError, replicaIdentityError, tableRenameError, typeChangeError, typeChangeList,
  type AddedDefault, type RelationChange,
} from './relation-changes.ts';

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

/** What a new Relation may need from the source catalog (rare: unknown type oids, a changed key, added columns). */
export interface CatalogAccess {
  loadTypes(oids: number[]): Promise<Map<number, PgTypeInfo>>;
  /** Primary key columns in key order ([] if none). */
  primaryKey(relid: number): Promise<string[]>;
  /** Of these columns, those with a default (or identity) as the catalog shows them now. */
  columnDefaults(relid: number, columns: string[]): Promise<AddedDefault[]>;
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
  /** Whether Kafka has the topic: asked for a topic start-up did not make (the producer would retry a missing one forever). */
  topicExists(topic: string): Promise<boolean>;
  log: Logger;
}

/** Kafka topic names allow [a-zA-Z0-9._-]: anything else becomes '_'. */
export function topicFor(prefix: string, schema: string, table: string): string {
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9._-]/g, '_');
  return `${prefix}.${clean(schema)}.${clean(table)}`;
}

/** Tables whose key and value schemas are registered at once at start: thousands at once would open as many registry connections. */
const REGISTRATIONS_AT_ONCE = 16;

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
  /** Topics start-up made (or Kafka has): the only ones records may go to. */
  private readonly topics = new Set<string>();
  /** Relations with a Relation message but no version (a partition published via its root), for errors. */
  private readonly outside = new Map<number, string>();
  /** The WAL insert position read before the start-up catalog (source-session.ts). */
  private catalogLsn: bigint | null = null;
  private readonly log: Logger;

  constructor(private readonly opts: TableVersionsOptions) {
    this.log = opts.log.child({ component: 'table-versions' });
  }

  /**
   * Versions from the catalog: the snapshot's, and the baseline for the stream. Registers their
   * schemas. `catalogLsn`: the WAL position read before the catalog; their topics are made next.
   */
  async init(tables: TableInfo[], catalogLsn: bigint): Promise<void> {
    this.catalogLsn = catalogLsn;
    for (const t of tables) for (const c of t.columns) this.rememberType(c.type);
    const started = Date.now();
    const versions = await inParallel(tables, REGISTRATIONS_AT_ONCE, (t) => this.register(t));
    for (const v of versions) {
      this.current.set(v.relid, v);
      this.topics.add(v.topic);
    }
    this.log.info({ tables: versions.length, ms: Date.now() - started }, 'table schemas registered');
  }

  /** Hot path: the version changes of `relid` are decoded with. */
  get(relid: number): TableVersion | undefined {
    return this.current.get(relid);
  }

  all(): TableVersion[] {
    return [...this.current.values()];
  }

  /** `schema.name` of a relation the stream has named: a selected table's, or one seen in a Relation message only. */
  nameOf(relid: number): string | undefined {
    return this.current.get(relid)?.qualified ?? this.outside.get(relid);
  }

  /**
   * A Relation message: the version to decode the relation's next changes with; null for a
   * relation that is none of the selected tables. `commitLsn`: the commit position of the
   * transaction it came in (null: unknown, taken as a live change).
   */
  async onRelation(msg: RelationMessage, commitLsn: bigint | null): Promise<TableVersion | null> {
    const prev = this.current.get(msg.relid);
    if (!prev) {
      // pgoutput follows a root's Relation with its partition's own (publish_via_partition_root);
      // the changes come under the root's relid. No topic, no schemas for it.
      this.outside.set(msg.relid, `${msg.namespace}.${msg.name}`);
      return null;
    }
    const missing = [...new Set(msg.columns.map((c) => c.typeOid))].filter((oid) => !this.types.has(oid));
    if (missing.length > 0) {
      const loaded = await this.opts.catalog.loadTypes(missing);
      for (const t of loaded.values()) this.rememberType(t);
    }
    const table = this.relationToTable(msg, prev.table);
    const change = describeChange(prev.table, table);
    // Committed before the catalog read: replayed WAL from before a change made while stopped.
    const live = commitLsn === null || this.catalogLsn === null || commitLsn >= this.catalogLsn;
    if (live) await this.stopOnLiveChange(prev, table, change);
    else this.noteEarlierChange(prev, table, change);
    if (sameShape(prev.table, table)) {
      if (prev.table.replicaIdentity === table.replicaIdentity) return prev;
      const v = { ...prev, table };
      this.current.set(msg.relid, v);
      return v;
    }
    const topic = topicFor(this.opts.topicPrefix, table.schema, table.name);
    if (!this.topics.has(topic)) {
      if (!(await this.opts.topicExists(topic))) throw missingTopicError(table, topic, prev.topic);
      this.topics.add(topic);
    }
    const v = await this.register(table);
    this.current.set(msg.relid, v);
    this.log.info(
      {
        table: v.qualified,
        topic: v.topic,
        added: change.added,
        dropped: change.dropped,
        ...(change.renamedColumns.length > 0 ? { renamed: change.renamedColumns.map((r) => `${r.from} -> ${r.to}`) } : {}),
        valueSchemaId: v.valueSchemaId,
      },
      'new table version',
    );
    if (change.added.length > 0) await this.warnAddedDefaults(table, change.added);
    return v;
  }

  /** For a change of a relation without a version: none of the selected tables (the stream cannot place it). */
  unknownRelation(relid: number): SourceError {
    const name = this.outside.get(relid);
    return new SourceError(`a change of ${name ?? `relation ${relid}`}, which is none of the selected tables, came in the stream`, {
      context: { relid, table: name },
      remedy: 'the publication must list the selected tables only, with publish_via_partition_root = true (the connector sets both at start-up): check that nobody altered it',
    });
  }

  /** A change made while the connector runs that the destination cannot follow by itself: stop (everything before it is confirmed). */
  private async stopOnLiveChange(prev: TableVersion, table: TableInfo, change: RelationChange): Promise<void> {
    if (change.renamedTable) throw tableRenameError(prev.table, table);
    if (change.typeChanges.length > 0) throw typeChangeError(prev.qualified, change.typeChanges);
    if (change.renamedColumns.length > 0) throw columnRenameError(table, change.renamedColumns);
    const identity = table.replicaIdentity;
    if (identity === 'nothing' || (identity === 'index' && change.keyChanged)) {
      // The start-up check, on the table as the stream now shows it: the identity index's columns are the flagged ones.
      const primaryKey = await this.opts.catalog.primaryKey(table.relid);
      const [problem] = replicaIdentityProblem({ ...table, keyColumns: primaryKey }, identity === 'index' ? table.keyColumns : undefined);
      if (problem) throw replicaIdentityError(problem);
    }
    if (change.keyChanged) throw keyChangeError(prev.table, table);
  }

  /** A change committed before the start-up catalog read (made while the connector was stopped): go on, and say so. */
  private noteEarlierChange(prev: TableVersion, table: TableInfo, change: RelationChange): void {
    if (change.typeChanges.length > 0 || change.renamedTable || change.renamedColumns.length > 0) {
      this.log.info(
        {
          table: prev.qualified,
          changes: typeChangeList(change.typeChanges),
          renamedColumns: change.renamedColumns.map((r) => `${r.from} -> ${r.to}`),
          ...(change.renamedTable ? { renamed: true } : {}),
        },
        'schema change made while the connector was stopped (before its start-up catalog read): continuing with it',
      );
    }
    if (change.keyChanged) {
      this.log.warn(
        { table: prev.qualified, oldKey: prev.table.keyColumns, newKey: table.keyColumns, remedy: 'once the sink applied them, compare the table with shardbridge cutover --verify-only' },
        "the key columns changed in WAL written before the connector started: each row's records from here on have another key, and may land on another partition than its earlier ones",
      );
    }
  }

  private async warnAddedDefaults(table: TableInfo, added: string[]): Promise<void> {
    for (const d of await this.opts.catalog.columnDefaults(table.relid, added)) {
      const w = addedDefaultWarning(table, d);
      this.log.warn({ table: `${table.schema}.${table.name}`, column: d.column, default: d.default, remedy: w.remedy }, w.message);
    }
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
  private relationToTable(msg: RelationMessage, prev: TableInfo): TableInfo {
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
      keyColumns = prev.keyColumns;
    } else {
      const flagged = columns.filter((c) => c.isKey).map((c) => c.name);
      const prevKey = prev.keyColumns;
      const same = prevKey.length === flagged.length && prevKey.every((k) => flagged.includes(k));
      keyColumns = same ? prevKey : flagged;
    }
    keyColumns = keyColumns.filter((k) => names.has(k));
    const keySet = new Set(keyColumns);
    for (const c of columns) c.isKey = keySet.has(c.name);
    return { relid: msg.relid, schema: msg.namespace, name: msg.name, columns, keyColumns, replicaIdentity: msg.replicaIdentity };
  }
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
