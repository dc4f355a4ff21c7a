/**
 * Registry schemas → the sink's decoders, compiled once per schema id: a value (envelope)
 * schema names its table and gets a field → destination column → text encoder list and a
 * reader schema that skips what the sink does not read; a key schema gets its key columns.
 * Pure: the registry fetches and the caches are decode.ts's.
 */
import type avro from 'avsc';
import { DecodeError, SchemaError } from '../shared/errors.ts';
import { splitQualifiedName } from '../shared/sql.ts';
import { createAvroType, shapeKey, sharedAvroType, textEncoderFor, type TextEncoder } from '../shared/type-mapping/index.ts';
import { compileEnvelope, type EnvelopeTranscoder } from './copy-transcode.ts';
import type { RecordSchemas } from './fast-rows.ts';

/** Where a source table goes: destination schema/table and column renames. */
export interface TableTarget {
  schema: string;
  table: string;
  /** Source column → destination column; unlisted columns keep their names. No prototype: a column may be named `constructor`. */
  columns: Readonly<Record<string, string>>;
  /**
   * Every source table seen so far (`schema.table`) that goes to this destination table: one,
   * unless the mapping merges tables. Shared by all of them and grown as tables are seen.
   */
  sources: readonly string[];
}

export type TargetFor = (sourceSchema: string, sourceTable: string) => TableTarget;

/** The configuration's per-table mapping (`tables`) as a TargetFor; unmapped tables keep their names. */
export function targetsFrom(mapped: Readonly<Record<string, Partial<Pick<TableTarget, 'schema' | 'table' | 'columns'>> | undefined>>): TargetFor {
  const targets = new Map<string, TableTarget>();
  const sourcesOf = new Map<string, string[]>();
  // Keys read as check, schema copy and verify read them (quotes allowed: "My Schema"."Order Items").
  const byName = new Map<string, Partial<Pick<TableTarget, 'schema' | 'table' | 'columns'>> | undefined>();
  for (const [key, m] of Object.entries(mapped)) {
    const q = splitQualifiedName(key);
    byName.set(destIdOf(q.schema, q.table), m);
  }
  return (schema, table) => {
    const id = destIdOf(schema, table);
    let t = targets.get(id);
    if (!t) {
      const m = byName.get(id);
      const dest = { schema: m?.schema ?? schema, table: m?.table ?? table };
      const destId = destIdOf(dest.schema, dest.table);
      let sources = sourcesOf.get(destId);
      if (!sources) sourcesOf.set(destId, (sources = []));
      sources.push(`${schema}.${table}`);
      t = { ...dest, columns: Object.assign(Object.create(null) as Record<string, string>, m?.columns), sources };
      targets.set(id, t);
    }
    return t;
  };
}

/** One value schema (table version) as the sink writes it. */
export interface TableVersion {
  schemaId: number;
  source: { schema: string; table: string };
  dest: { schema: string; name: string };
  /** `schema.name` with a separator that cannot occur in identifiers: a map key. */
  destId: string;
  /** Destination columns this version carries, with the source's type for autoEvolve and the source's name (absent: the same). */
  columns: readonly { name: string; pgType: string | null; source?: string }[];
  /** The source tables going to the same destination table (TableTarget.sources). */
  sources: readonly string[];
  /** Keys of the table's column mapping that name no column of this version (a typo, or a source rename). */
  unmatchedRenames: readonly string[];
}

export const destIdOf = (schema: string, name: string): string => `${schema}\u0000${name}`;

export interface FieldConverter {
  field: string;
  column: string;
  encode: TextEncoder;
}

export interface ValueDecoder {
  version: TableVersion;
  /** Reads only what the sink needs (before, after, op, unchanged_toast) from records of the writer's schema. */
  type: avro.Type;
  resolver: avro.Resolver;
  /** The writer's schema, as JSON and compiled (for the COPY transcoder). */
  schema: object;
  /** Its shapeKey: the compiled parts are shared with the tables of the same shape. */
  shape: string;
  writer: avro.Type;
  fields: FieldConverter[];
  /** Source column name → destination column name (for unchanged_toast and keys). */
  destOf: Map<string, string>;
  /** Key decoders by key schema id, with this table's column renames applied. */
  keys: Map<number, KeyDecoder>;
  /** For records without a key (scanned for their op only). */
  keyless?: RecordSchemas;
}

export interface KeyDecoder {
  type: avro.Type;
  fields: FieldConverter[];
  /** Destination names. */
  columns: readonly string[];
  /** Per value schema: what the fast-row plan needs, with the COPY transcoder (compiled on first use). */
  described?: RecordSchemas;
}

/** A value (envelope) schema → its decoder, named for the destination table `targetFor` maps it to. */
export function compileValue(schemaId: number, schema: object, topic: string, targetFor: TargetFor, topicPrefix: string): ValueDecoder {
  const valueRecord = findValueRecord(schema);
  if (!valueRecord) {
    throw new DecodeError(`schema ${schemaId} is not a change-event envelope (no before/after record)`, { context: { schemaId } });
  }
  const { schema: sourceSchema, table: sourceTable } = namedSource(valueRecord) ?? tableFromTopic(topic, topicPrefix);
  const target = targetFor(sourceSchema, sourceTable);
  const destOf = new Map<string, string>();
  const fields: FieldConverter[] = [];
  const columns: { name: string; pgType: string | null; source: string }[] = [];
  const fromSource = new Map<string, string>();
  for (const f of valueRecord.fields as AvroField[]) {
    const source = typeof f['pg.column'] === 'string' ? (f['pg.column'] as string) : f.name;
    const column = target.columns[source] ?? source;
    const other = fromSource.get(column);
    if (other !== undefined) {
      // One value would silently win over the other (or the statement names the column twice).
      throw new SchemaError(`source columns ${other} and ${source} of ${sourceSchema}.${sourceTable} both go to destination column ${column}`, {
        context: { schemaId, table: `${target.schema}.${target.table}`, column },
        remedy: `map one of them to another destination column under tables."${sourceSchema}.${sourceTable}".columns in the sink's configuration, and restart the sink`,
      });
    }
    fromSource.set(column, source);
    destOf.set(source, column);
    fields.push({ field: f.name, column, encode: encoderOf(f.type, { schemaId, table: `${target.schema}.${target.table}`, column }) });
    columns.push({ name: column, pgType: pgTypeOf(f.type), source });
  }
  const version: TableVersion = {
    schemaId,
    source: { schema: sourceSchema as string, table: sourceTable as string },
    dest: { schema: target.schema, name: target.table },
    destId: destIdOf(target.schema, target.table),
    columns,
    sources: target.sources,
    unmatchedRenames: Object.keys(target.columns).filter((c) => !destOf.has(c)),
  };
  const shape = shapeKey(schema);
  const { reader, writer, resolver } = readTypes(schema, shape);
  return { version, type: reader, resolver, schema, shape, writer, fields, destOf, keys: new Map() };
}

/** Reader, writer and resolver per shape of value schema (shared-types.ts): tenants' tables share them. */
const readTypesByShape = new Map<string, { reader: avro.Type; writer: avro.Type; resolver: avro.Resolver }>();

function readTypes(schema: object, key: string): { reader: avro.Type; writer: avro.Type; resolver: avro.Resolver } {
  let t = readTypesByShape.get(key);
  if (!t) {
    const reader = createAvroType(readerSchema(schema));
    const writer = sharedAvroType(schema, key);
    readTypesByShape.set(key, (t = { reader, writer, resolver: reader.createResolver(writer) }));
  }
  return t;
}

/** The column's text encoder; a type without one is refused naming its table and column. */
function encoderOf(type: unknown, context: { schemaId: number; table: string; column: string }): TextEncoder {
  try {
    return textEncoderFor(type as object);
  } catch (err) {
    if (!(err instanceof SchemaError)) throw err;
    throw new SchemaError(`${err.message} (column ${context.column} of ${context.table})`, { context, remedy: err.remedy, cause: err });
  }
}

/** A key schema → its decoder, in source column names (renamedKey applies a table's renames). */
export function compileKey(schema: object): KeyDecoder {
  const rec = schema as { type?: unknown; fields?: AvroField[] };
  if (rec.type !== 'record' || !Array.isArray(rec.fields)) throw new DecodeError('key schema is not a record');
  const fields = rec.fields.map((f) => ({
    field: f.name,
    column: typeof f['pg.column'] === 'string' ? (f['pg.column'] as string) : f.name,
    encode: textEncoderFor(f.type as object),
  }));
  return { type: sharedAvroType(schema), fields, columns: fields.map((f) => f.column) };
}

/** Key decoder `raw` with the column renames of the value schema's table. */
export function renamedKey(raw: KeyDecoder, value: ValueDecoder): KeyDecoder {
  const fields = raw.fields.map((f) => ({ ...f, column: value.destOf.get(f.column) ?? f.column }));
  return { type: raw.type, fields, columns: fields.map((f) => f.column) };
}

/** The plan's view of records with this value schema and key schema, made once per pair. */
export const describedBy = (value: ValueDecoder, keySchemaId: number, kd: KeyDecoder): RecordSchemas =>
  (kd.described ??= recordSchemas(value, keySchemaId, kd.columns, kd.fields.map((f) => f.field)));

/** What the fast-row plan needs of a value × key schema, with its COPY transcoder. */
export function recordSchemas(value: ValueDecoder, keySchemaId: number, keyColumns: readonly string[], keyFields: string[]): RecordSchemas {
  const keys = new Set(keyFields);
  const key = `${value.shape}\0${keyFields.join('\0')}`;
  return {
    table: value.version,
    keyColumns,
    keySchemaId,
    transcoder: sharedTranscoder(key, () => compileEnvelope(value.writer, value.schema, keys)),
    binaryFor: (destTypes) => sharedTranscoder(`${key}\0\0${destTypes.join('\0')}`, () => compileEnvelope(value.writer, value.schema, keys, destTypes)),
  };
}

/**
 * COPY transcoders per shape of value schema, key fields and (binary) destination types: pure
 * functions of those (a scan is synchronous, so one cursor serves every table).
 */
const transcoders = new Map<string, EnvelopeTranscoder | null>();

function sharedTranscoder(key: string, compile: () => EnvelopeTranscoder | null): EnvelopeTranscoder | null {
  let t = transcoders.get(key);
  if (t === undefined) transcoders.set(key, (t = compile()));
  return t;
}

const NEEDED_FIELDS = new Set(['before', 'after', 'op', 'unchanged_toast']);

/**
 * The envelope without `source`, `ts_ms` and `transaction`: with it as the reader schema
 * avsc skips those bytes instead of building strings and objects per record (less GC).
 */
function readerSchema(envelope: object): object {
  const e = envelope as { fields: AvroField[] };
  const fields = e.fields.filter((f) => NEEDED_FIELDS.has(f.name));
  if (!fields.some((f) => f.name === 'unchanged_toast')) fields.push({ name: 'unchanged_toast', type: { type: 'array', items: 'string' }, default: [] });
  return { ...envelope, fields };
}

interface AvroField {
  name: string;
  type: unknown;
  [prop: string]: unknown;
}

/** The `<ns>.Value` record inside an envelope schema (the before/after union's record branch). */
/**
 * The source table a change-event schema names (`pg.schema`, `pg.table`): its real name, where the
 * topic's may have characters replaced. Null when the schema names none. Pure.
 */
export function namedSourceTable(schema: object): { schema: string; table: string } | null {
  const record = findValueRecord(schema);
  return record ? namedSource(record) : null;
}

/**
 * The source table and source column names of a value schema (a subject's latest version,
 * table-state.ts sourceDropped), without compiling it; null when it is no change-event envelope. Pure.
 */
export function sourceColumnsOf(schema: object): { source: { schema: string; table: string } | null; columns: string[] } | null {
  const record = findValueRecord(schema);
  if (!record) return null;
  const columns = (record.fields as AvroField[]).map((f) => (typeof f['pg.column'] === 'string' ? (f['pg.column'] as string) : f.name));
  return { source: namedSource(record), columns };
}

function namedSource(valueRecord: { [prop: string]: unknown }): { schema: string; table: string } | null {
  const schema = valueRecord['pg.schema'];
  const table = valueRecord['pg.table'];
  return typeof schema === 'string' && typeof table === 'string' ? { schema, table } : null;
}

function findValueRecord(schema: object): { fields: unknown[]; [prop: string]: unknown } | undefined {
  const fields = (schema as { fields?: AvroField[] }).fields;
  if (!Array.isArray(fields)) return undefined;
  for (const name of ['before', 'after']) {
    const f = fields.find((x) => x.name === name);
    const branches = Array.isArray(f?.type) ? f.type : [f?.type];
    for (const b of branches) {
      if (b && typeof b === 'object' && (b as { type?: unknown }).type === 'record' && Array.isArray((b as { fields?: unknown }).fields)) {
        return b as { fields: unknown[] };
      }
    }
  }
  return undefined;
}

/** The `pg.type` of a (nullable) field type: on the non-null branch, or on an array union's branches. */
export function pgTypeOf(type: unknown): string | null {
  const branches = Array.isArray(type) ? type : [type];
  for (const b of branches) {
    if (b && typeof b === 'object') {
      const t = (b as Record<string, unknown>)['pg.type'];
      if (typeof t === 'string') return t;
    }
  }
  return null;
}

/** `<prefix>.<schema>.<table>` → schema, table (the schema part cannot contain a dot here). */
export function tableFromTopic(topic: string, prefix: string): { schema: string; table: string } {
  const rest = topic.startsWith(prefix + '.') ? topic.slice(prefix.length + 1) : topic;
  const dot = rest.indexOf('.');
  return dot < 0 ? { schema: 'public', table: rest } : { schema: rest.slice(0, dot), table: rest.slice(dot + 1) };
}
