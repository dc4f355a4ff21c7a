/**
 * Source direction: a column's PostgreSQL type -> its Avro type (Debezium's shape where
 * that is lossless, see docs/type-mapping.md) and a text -> Avro value converter, built
 * once per column per table version.
 */
import type { ColumnInfo, PgTypeInfo } from '../pg-types.ts';
import { parseArray1D } from './arrays.ts';
import { byteaFromText, float4FromText, floatFromText, moneyFromText } from './scalars.ts';
import {
  dateFromText,
  timeFromText,
  timestampFromText,
  timestamptzFromText,
  timetzFromText,
} from './temporal.ts';
import { keyTextFor } from './key-text.ts';
import { pgTypeName, qualifiedName, resolveDomain } from './type-names.ts';

export interface ColumnCodec {
  /** Non-null Avro type JSON; a union (JSON array) for array columns. */
  avroType: object;
  /** PostgreSQL text output -> the Avro value avsc writes for `avroType`. */
  fromText(text: string): unknown;
  /** Full type name incl. typmod, as in the schema's `pg.type`. */
  pgType: string;
  /**
   * For a key column: its text → the canonical text of its value (key-text.ts), applied before
   * `fromText` for the Kafka key only. Absent for types whose text is canonical.
   */
  keyText?: (text: string) => string;
}

/** Our own logical name for bit strings kept as '0'/'1' text (Debezium's Bits is bytes). */
export const BITS_NAME = 'shardbridge.data.Bits';

type AvroObject = Record<string, unknown>;
type FromText = (text: string) => unknown;

const identity: FromText = (t) => t;

/** A Debezium semantic type: connect.version/connect.name as Kafka Connect's AvroData writes them. */
function connect(type: string, name: string, params?: Record<string, string>): AvroObject {
  const o: AvroObject = { type, 'connect.version': 1, 'connect.name': name };
  if (params) o['connect.parameters'] = params;
  return o;
}

interface Mapping {
  avro: AvroObject;
  fromText: FromText;
}

const int = (t: string): number => +t;
// Up to 15 digits is always a safe integer: a number, which the long writer takes without a
// BigInt; longer text (beyond 2^53 possibly) stays exact as a BigInt.
const SAFE_DIGITS = /^-?[0-9]{1,15}$/;
const bigint = (t: string): bigint | number => (SAFE_DIGITS.test(t) ? +t : BigInt(t));

/** The converters the source's row transcoder writes straight from the text bytes (row-transcode.ts). */
export const IDENTITY_FROM_TEXT: FromText = identity;
export const INT_FROM_TEXT: FromText = int;
export const BIGINT_FROM_TEXT: FromText = bigint;

/** pg_catalog base types by typname. Anything not here is carried as its text. */
function baseMapping(name: string, typmod: number): Mapping | undefined {
  switch (name) {
    case 'int2':
      return { avro: { type: 'int', 'connect.type': 'int16' }, fromText: int };
    case 'int4':
      return { avro: { type: 'int' }, fromText: int };
    case 'int8':
      return { avro: { type: 'long' }, fromText: bigint };
    case 'oid':
      return { avro: { type: 'long' }, fromText: int };
    case 'float4':
      return { avro: { type: 'float' }, fromText: float4FromText };
    case 'float8':
      return { avro: { type: 'double' }, fromText: floatFromText };
    case 'bool':
      return { avro: { type: 'boolean' }, fromText: (t) => t === 't' };
    case 'bytea':
      return { avro: { type: 'bytes' }, fromText: byteaFromText };
    case 'numeric':
      // decimal.handling.mode=string: NaN and ±Infinity have no BigDecimal.
      return { avro: { type: 'string' }, fromText: identity };
    case 'money':
      return { avro: { type: 'string' }, fromText: moneyFromText };
    case 'uuid':
      return { avro: connect('string', 'io.debezium.data.Uuid'), fromText: identity };
    case 'json':
    case 'jsonb':
      return { avro: connect('string', 'io.debezium.data.Json'), fromText: identity };
    case 'xml':
      return { avro: connect('string', 'io.debezium.data.Xml'), fromText: identity };
    case 'date':
      return { avro: connect('int', 'io.debezium.time.Date'), fromText: dateFromText };
    case 'timestamp':
      return { avro: connect('long', 'io.debezium.time.MicroTimestamp'), fromText: timestampFromText };
    case 'timestamptz':
      return { avro: connect('string', 'io.debezium.time.ZonedTimestamp'), fromText: timestamptzFromText };
    case 'time':
      return { avro: connect('long', 'io.debezium.time.MicroTime'), fromText: timeFromText };
    case 'timetz':
      return { avro: connect('string', 'io.debezium.time.ZonedTime'), fromText: timetzFromText };
    case 'interval':
      return { avro: connect('string', 'io.debezium.time.Interval'), fromText: identity };
    case 'bit':
    case 'varbit':
      return { avro: connect('string', BITS_NAME, typmod >= 0 ? { length: String(typmod) } : undefined), fromText: identity };
    default:
      return undefined;
  }
}

/** Extension types Debezium names (looked up by typname in any schema). */
function extensionMapping(name: string): Mapping | undefined {
  if (name === 'ltree') return { avro: connect('string', 'io.debezium.data.Ltree'), fromText: identity };
  return undefined;
}

function mappingFor(type: PgTypeInfo, typmod: number): Mapping {
  switch (type.kind) {
    case 'base': {
      const m = type.schema === 'pg_catalog' ? baseMapping(type.name, typmod) : extensionMapping(type.name);
      return m ?? { avro: { type: 'string' }, fromText: identity };
    }
    case 'enum':
      return { avro: connect('string', 'io.debezium.data.Enum'), fromText: identity };
    case 'array':
      return arrayMapping(type, typmod);
    default:
      // range, multirange, composite, pseudo and unknown kinds: the text form itself.
      return { avro: { type: 'string' }, fromText: identity };
  }
}

/**
 * `[array<[null, elem]>, string]`: a one-dimensional array with lower bound 1 (almost all
 * of them) as Debezium's array, anything else (multi-dimensional, `[0:1]={…}`) verbatim.
 * Arrays of base types from outside pg_catalog (extensions) are verbatim too (the string
 * branch): their element delimiter is the type's own (PostGIS geometry's is ':'), not the ','
 * read and written here; and arrays of a domain over an array (`string` alone).
 */
function arrayMapping(type: PgTypeInfo, typmod: number): Mapping {
  const pgType = pgTypeName(type, typmod);
  if (!type.elem) return { avro: { type: 'string' }, fromText: identity };
  const elemBase = resolveDomain(type.elem);
  // A domain over an array as the element (`{"{1,2}",NULL}`): its own codec is a union, which
  // cannot be an array item's branch (Avro unions do not nest).
  if (elemBase.kind === 'array') return { avro: { type: 'string', 'pg.type': pgType } as unknown as AvroObject, fromText: identity };
  const elem = codecForType(type.elem, typmod);
  const avro = [
    { type: 'array', items: ['null', elem.avroType], 'pg.type': pgType },
    { type: 'string', 'pg.type': pgType },
  ];
  // An extension's element type: always the string branch, but the schema keeps the array one:
  // versions before 2026-12-06 registered this union, and a plain string cannot read their
  // records (the registry's BACKWARD check refused the upgraded source's schema: exit at start).
  if (elemBase.kind === 'base' && elemBase.schema !== 'pg_catalog' && elemBase.schema !== '') {
    return { avro: avro as unknown as AvroObject, fromText: identity };
  }
  const elemFrom = elem.fromText;
  const delim = elemBase.name === 'box' ? ';' : ',';
  const fromText = (text: string): unknown => {
    const parts = parseArray1D(text, delim);
    if (parts === undefined) return text;
    const out: unknown[] = new Array(parts.length);
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      out[i] = p === null ? null : elemFrom(p);
    }
    return out;
  };
  return { avro: avro as unknown as AvroObject, fromText };
}

/** Codec of a type with a typmod (the column's, or the element's for arrays). */
export function codecForType(type: PgTypeInfo, typmod: number): ColumnCodec {
  const base = resolveDomain(type);
  const m = mappingFor(base, typmod);
  const pgType = pgTypeName(base, typmod);
  if (Array.isArray(m.avro)) {
    const branches = base === type ? m.avro : m.avro.map((b: AvroObject) => ({ ...b, 'pg.domain': qualifiedName(type) }));
    return { avroType: branches, fromText: m.fromText, pgType };
  }
  const avroType: AvroObject = { ...m.avro, 'pg.type': pgType };
  if (base !== type) avroType['pg.domain'] = qualifiedName(type);
  const keyText = base.kind === 'base' ? keyTextFor(base.name, base.schema, typmod) : null;
  return keyText === null ? { avroType, fromText: m.fromText, pgType } : { avroType, fromText: m.fromText, pgType, keyText };
}

export function codecFor(column: ColumnInfo): ColumnCodec {
  return codecForType(column.type, column.typmod);
}

/** The nullable form of a codec's Avro type (unions cannot nest, so arrays are flattened). */
export function nullableAvroType(avroType: object): unknown[] {
  return Array.isArray(avroType) ? ['null', ...avroType] : ['null', avroType];
}
