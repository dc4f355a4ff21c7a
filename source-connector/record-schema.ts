/**
 * Per table version: the Debezium-shaped key / value / envelope Avro schemas, their avsc
 * types, and the TextTuple -> Avro record converters (column codecs resolved once here,
 * never per row). Pure.
 */
import type avro from 'avsc';
import { SchemaError, SourceError } from '../shared/errors.ts';
import type { ColumnInfo, TableInfo, TextTuple } from '../shared/pg-types.ts';
import { codecFor, nullableAvroType, pgTypeName, sharedAvroType, writeCached, type ColumnCodec } from '../shared/type-mapping/index.ts';

export const SOURCE_SCHEMA_NAME = 'io.debezium.connector.postgresql.Source';
export const CONNECTOR_NAME = 'postgresql';

export type SnapshotMarker = 'true' | 'last' | 'false';

/** Debezium's `source` block (PostgreSQL connector fields we fill). */
export interface SourceInfo {
  version: string;
  connector: string;
  /** Logical server name: the topic prefix. */
  name: string;
  ts_ms: bigint | number;
  snapshot: SnapshotMarker;
  db: string;
  schema: string;
  table: string;
  txId: bigint | number | null;
  lsn: bigint | number | null;
  xmin: bigint | number | null;
}

/** The per-event part of SourceInfo; the table's part comes from `sourceFor`. */
export interface SourceEvent {
  db: string;
  /** Commit time (or snapshot read time) in ms since 1970. */
  tsMs: bigint | number;
  snapshot?: SnapshotMarker;
  txId?: bigint | number | null;
  lsn?: bigint | number | null;
  xmin?: bigint | number | null;
}

export interface FieldMapping {
  /** Index into TableInfo.columns / TextTuple. */
  index: number;
  /** The PostgreSQL column name (also the field's `pg.column`). */
  column: string;
  /** The Avro field name (`field.name.adjustment.mode=avro`). */
  field: string;
  /** Full PostgreSQL type name incl. typmod. */
  pgType: string;
}

export interface RowConversion {
  row: Record<string, unknown>;
  /** PostgreSQL names of the columns whose value was not sent (unchanged TOAST). */
  unchangedToast: string[];
}

export interface TableRecordSchemas {
  /** Avro namespace from the topic, e.g. `shop.public.orders`. */
  namespace: string;
  topic: string;
  /** `<ns>.Key`, key columns non-null; null when the table has no key columns. */
  keySchema: object | null;
  /** `<ns>.Value`, every field `["null", T]` default null (as embedded in the envelope). */
  valueSchema: object;
  /** `<ns>.Envelope`. */
  envelopeSchema: object;
  keyType: avro.Type | null;
  envelopeType: avro.Type;
  /** All columns in column order. */
  fields: FieldMapping[];
  /** Key columns in key order. */
  keyFields: FieldMapping[];
  /** Per column (column order): its codec. */
  codecs: ColumnCodec[];
  /** Null when the table has no key columns. Throws SourceError on a missing key value. */
  keyFromTuple(tuple: TextTuple): Record<string, unknown> | null;
  rowFromTuple(tuple: TextTuple): RowConversion;
  /** Fills the table's part of the `source` block. */
  sourceFor(ev: SourceEvent): SourceInfo;
}

const AVRO_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** An Avro name from any text: invalid characters become `_`, a leading digit gets `_`. */
export function sanitizeAvroName(s: string): string {
  if (AVRO_NAME.test(s)) return s;
  let out = '';
  for (const ch of s) out += /[A-Za-z0-9_]/.test(ch) ? ch : '_';
  return out === '' || /^[0-9]/.test(out) ? '_' + out : out;
}

/** Namespace from a topic name: each dot-separated part sanitized. */
export function namespaceForTopic(topic: string): string {
  return topic.split('.').map(sanitizeAvroName).join('.');
}

/** FNV-1a of the UTF-16 code units, 8 hex digits: a suffix that depends on the name alone. */
function nameHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * Field names for columns. Valid names stay; others are sanitized, and when that clashes
 * (`a-b` next to `a_b`) get a hash of their original name, so no two fields collide and
 * the suffix does not depend on column order. The sink maps by `pg.column`, not by name.
 */
function fieldNames(columns: ColumnInfo[]): string[] {
  const taken = new Set<string>();
  for (const c of columns) if (AVRO_NAME.test(c.name)) taken.add(c.name);
  return columns.map((c) => {
    if (AVRO_NAME.test(c.name)) return c.name;
    let name = sanitizeAvroName(c.name);
    if (taken.has(name)) name = `${name}_${nameHash(c.name)}`;
    for (let n = 1; taken.has(name); n++) name = `${sanitizeAvroName(c.name)}_${nameHash(c.name)}_${n}`;
    taken.add(name);
    return name;
  });
}

/** column -> full type name incl. typmod (domains by their own name). */
export function typeSignature(table: TableInfo): Record<string, string> {
  const sig: Record<string, string> = {};
  for (const c of table.columns) sig[c.name] = pgTypeName(c.type, c.typmod);
  return sig;
}

export interface TypeChange {
  column: string;
  oldType: string;
  newType: string;
  /** Whether the Avro type changed too (false e.g. for varchar(20) -> varchar(30)). */
  avroChanged: boolean;
}

/** Columns present in both versions whose type changed. */
export function describeTypeChanges(oldTable: TableInfo, newTable: TableInfo): TypeChange[] {
  const oldSig = typeSignature(oldTable);
  const oldCols = new Map(oldTable.columns.map((c) => [c.name, c]));
  const changes: TypeChange[] = [];
  for (const c of newTable.columns) {
    const before = oldCols.get(c.name);
    if (!before) continue;
    const oldType = oldSig[c.name];
    const newType = pgTypeName(c.type, c.typmod);
    if (oldType === newType) continue;
    const avroChanged = avroShape(codecFor(before).avroType) !== avroShape(codecFor(c).avroType);
    changes.push({ column: c.name, oldType, newType, avroChanged });
  }
  return changes;
}

/** The Avro type without our informational `pg.*` properties. */
function avroShape(t: unknown): string {
  return JSON.stringify(t, (k, v) => (k.startsWith('pg.') ? undefined : v));
}

function snapshotType(): object {
  return {
    type: 'string',
    'connect.version': 1,
    'connect.parameters': { allowed: 'true,last,false' },
    'connect.default': 'false',
    'connect.name': 'io.debezium.data.Enum',
  };
}

/**
 * io.debezium.connector.postgresql.Source, the fields the PostgreSQL connector sends. One object
 * in every table's envelope schema (with the transaction block): schemas are not mutated once
 * built, and a copy per table was 2 kB of a source over thousands of tables.
 */
export function sourceSchema(): object {
  return SOURCE_SCHEMA;
}

function buildSourceSchema(): object {
  const optLong = (name: string): object => ({ name, type: ['null', 'long'], default: null });
  return writeCached({
    type: 'record',
    name: 'Source',
    namespace: 'io.debezium.connector.postgresql',
    fields: [
      { name: 'version', type: 'string' },
      { name: 'connector', type: 'string' },
      { name: 'name', type: 'string' },
      { name: 'ts_ms', type: 'long' },
      { name: 'snapshot', type: [snapshotType(), 'null'], default: 'false' },
      { name: 'db', type: 'string' },
      { name: 'schema', type: 'string' },
      { name: 'table', type: 'string' },
      optLong('txId'),
      optLong('lsn'),
      optLong('xmin'),
    ],
    'connect.name': SOURCE_SCHEMA_NAME,
  });
}

const SOURCE_SCHEMA = deepFreeze(buildSourceSchema());

/** Debezium's transaction block; we always write null (transaction metadata is off). */
const TRANSACTION_TYPE = deepFreeze(transactionType());

function transactionType(): object {
  return {
    type: 'record',
    name: 'block',
    namespace: 'event',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'total_order', type: 'long' },
      { name: 'data_collection_order', type: 'long' },
    ],
    'connect.version': 1,
    'connect.name': 'event.block',
  };
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (v !== null && typeof v === 'object') deepFreeze(v as object);
  return Object.freeze(o);
}

/**
 * Build schemas and converters for one table version. `version` is the connector version
 * for `source.version`; it is not part of any schema (an upgrade must not make new
 * schema versions).
 */
export function buildRecordSchemas(table: TableInfo, topic: string, version: string): TableRecordSchemas {
  const namespace = namespaceForTopic(topic);
  const names = fieldNames(table.columns);
  const codecs = table.columns.map(codecFor);
  const fields: FieldMapping[] = table.columns.map((c, index) => ({
    index,
    column: c.name,
    field: names[index],
    pgType: codecs[index].pgType,
  }));
  const byColumn = new Map(fields.map((f) => [f.column, f]));
  const keyFields = table.keyColumns.map((name) => {
    const f = byColumn.get(name);
    if (!f) throw new SchemaError(`key column ${name} is not a column of the table`, { context: { table: `${table.schema}.${table.name}`, column: name } });
    return f;
  });

  const keySchema = keyFields.length === 0 ? null : {
    type: 'record',
    name: 'Key',
    namespace,
    fields: keyFields.map((f) => ({ name: f.field, type: codecs[f.index].avroType, 'pg.column': f.column })),
    'connect.name': `${namespace}.Key`,
  };
  const valueSchema = {
    type: 'record',
    name: 'Value',
    namespace,
    fields: fields.map((f) => ({ name: f.field, type: nullableAvroType(codecs[f.index].avroType), default: null, 'pg.column': f.column })),
    'connect.name': `${namespace}.Value`,
    'pg.schema': table.schema,
    'pg.table': table.name,
  };
  const envelopeSchema = {
    type: 'record',
    name: 'Envelope',
    namespace,
    fields: [
      { name: 'before', type: ['null', valueSchema], default: null },
      { name: 'after', type: ['null', `${namespace}.Value`], default: null },
      { name: 'source', type: sourceSchema() },
      { name: 'op', type: 'string' },
      { name: 'ts_ms', type: ['null', 'long'], default: null },
      { name: 'transaction', type: ['null', TRANSACTION_TYPE], default: null },
      { name: 'unchanged_toast', type: { type: 'array', items: 'string' }, default: [] },
    ],
    'connect.version': 1,
    'connect.name': `${namespace}.Envelope`,
  };

  const qualified = `${table.schema}.${table.name}`;
  const ncols = table.columns.length;
  const converters = codecs.map((c) => c.fromText);
  const fieldOf = names;
  const columnOf = table.columns.map((c) => c.name);

  const convert = (i: number, text: string): unknown => {
    try {
      return converters[i](text);
    } catch (err) {
      throw new SchemaError(`cannot convert a value of column ${columnOf[i]}`, {
        context: { table: qualified, column: columnOf[i], type: fields[i].pgType },
        cause: err,
      });
    }
  };
  const checkWidth = (tuple: TextTuple): void => {
    if (tuple.length !== ncols) {
      throw new SourceError(`tuple has ${tuple.length} columns, table version has ${ncols}`, {
        context: { table: qualified },
        remedy: 'a Relation message must precede changes of a new table version',
      });
    }
  };

  const keyIdx = keyFields.map((f) => f.index);
  const keyTexts = codecs.map((c) => c.keyText);
  const keyFromTuple = (tuple: TextTuple): Record<string, unknown> | null => {
    if (keyIdx.length === 0) return null;
    checkWidth(tuple);
    const key: Record<string, unknown> = {};
    for (const i of keyIdx) {
      const t = tuple[i];
      if (typeof t !== 'string') {
        throw new SourceError(`key column ${columnOf[i]} has no value`, {
          context: { table: qualified, column: columnOf[i] },
          remedy: 'set REPLICA IDENTITY FULL on the table if its key values can be TOASTed',
        });
      }
      const canonical = keyTexts[i];
      key[fieldOf[i]] = convert(i, canonical === undefined ? t : canonical(t));
    }
    return key;
  };

  const rowFromTuple = (tuple: TextTuple): RowConversion => {
    checkWidth(tuple);
    const row: Record<string, unknown> = {};
    let unchangedToast: string[] | undefined;
    for (let i = 0; i < ncols; i++) {
      const t = tuple[i];
      if (typeof t === 'string') {
        row[fieldOf[i]] = convert(i, t);
      } else {
        row[fieldOf[i]] = null;
        if (t === undefined) (unchangedToast ??= []).push(columnOf[i]);
      }
    }
    return { row, unchangedToast: unchangedToast ?? [] };
  };

  const serverName = topic.endsWith(`.${table.schema}.${table.name}`)
    ? topic.slice(0, topic.length - table.schema.length - table.name.length - 2)
    : topic;
  // Frozen: the envelope type writes one source object's bytes once and copies them after (avro.ts).
  const sourceFor = (ev: SourceEvent): SourceInfo =>
    Object.freeze({
      version,
      connector: CONNECTOR_NAME,
      name: serverName,
      ts_ms: ev.tsMs,
      snapshot: ev.snapshot ?? 'false',
      db: ev.db,
      schema: table.schema,
      table: table.name,
      txId: ev.txId ?? null,
      lsn: ev.lsn ?? null,
      xmin: ev.xmin ?? null,
    });

  return {
    namespace,
    topic,
    keySchema,
    valueSchema,
    envelopeSchema,
    // Shared with the tables of the same shape (a schema per tenant): names do not reach the bytes.
    keyType: keySchema ? sharedAvroType(keySchema) : null,
    envelopeType: sharedAvroType(envelopeSchema),
    fields,
    keyFields,
    codecs,
    keyFromTuple,
    rowFromTuple,
    sourceFor,
  };
}
