/**
 * Sink direction: from an Avro field type alone (as read from the registry) build the
 * function that turns the decoded Avro value back into PostgreSQL input text, which the
 * destination casts to its column type. Built once per schema; null is the caller's.
 */
import { SchemaError } from '../errors.ts';
import { quoteArrayElement } from './arrays.ts';
import { byteaToText, float4ToText, float8ToText } from './scalars.ts';
import { dateToText, timestamptzToText, timestampToText, timeToText, timetzToText } from './temporal.ts';

export type TextEncoder = (value: unknown) => string;

type AvroObject = Record<string, unknown>;

const asString: TextEncoder = (v) => v as string;
const decimal: TextEncoder = (v) => String(v as bigint | number);
const bytea: TextEncoder = (v) => byteaToText(v as Buffer);
/** The encoders of Avro strings kept as they are, of integers as decimal digits and of bytes as bytea hex (the sink's COPY transcoder writes those straight from the bytes). */
export const IDENTITY_TEXT: TextEncoder = asString;
export const DECIMAL_TEXT: TextEncoder = decimal;
export const BYTEA_TEXT: TextEncoder = bytea;

const BY_CONNECT_NAME: Record<string, TextEncoder> = {
  'io.debezium.time.Date': (v) => dateToText(v as number),
  'io.debezium.time.MicroTimestamp': (v) => timestampToText(v as bigint | number),
  'io.debezium.time.ZonedTimestamp': (v) => timestamptzToText(v as string),
  'io.debezium.time.MicroTime': (v) => timeToText(v as bigint | number),
  'io.debezium.time.ZonedTime': (v) => timetzToText(v as string),
};

const BY_AVRO_TYPE: Record<string, TextEncoder> = {
  int: decimal,
  long: decimal,
  float: (v) => float4ToText(v as number),
  double: (v) => float8ToText(v as number),
  boolean: (v) => (v ? 't' : 'f'),
  bytes: bytea,
  string: asString,
};

function unsupported(avroType: unknown): SchemaError {
  return new SchemaError(`no PostgreSQL text form for Avro type ${JSON.stringify(avroType)}`, {
    remedy: 'the topic was not written by ShardBridge\'s source connector, or its schema was edited',
  });
}

function unionEncoder(branches: unknown[]): TextEncoder {
  const nonNull = branches.filter((b) => b !== 'null' && !(typeof b === 'object' && b !== null && (b as AvroObject).type === 'null'));
  if (nonNull.length === 1) return textEncoderFor(nonNull[0] as object);
  if (nonNull.length === 2) {
    // Array columns: [array<…>, string] where the string is the verbatim array text.
    const arrayIdx = nonNull.findIndex((b) => typeOf(b) === 'array');
    const stringIdx = nonNull.findIndex((b) => typeOf(b) === 'string');
    if (arrayIdx >= 0 && stringIdx >= 0) {
      const arr = textEncoderFor(nonNull[arrayIdx] as object);
      return (v) => (typeof v === 'string' ? v : arr(v));
    }
  }
  throw unsupported(branches);
}

function typeOf(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t !== null && typeof t === 'object' && !Array.isArray(t)) {
    const inner = (t as AvroObject).type;
    return typeof inner === 'string' ? inner : typeOf(inner);
  }
  return undefined;
}

function itemPgType(items: unknown): string | undefined {
  const branches = Array.isArray(items) ? items : [items];
  for (const b of branches) {
    if (b !== null && typeof b === 'object' && typeof (b as AvroObject)['pg.type'] === 'string') return (b as AvroObject)['pg.type'] as string;
  }
  return undefined;
}

/** A one-dimensional PostgreSQL array literal `{a,"b c",NULL}` from an Avro array. */
function arrayEncoder(schema: AvroObject): TextEncoder {
  const items = schema.items;
  const elem = textEncoderFor(items as object);
  const delim = itemPgType(items) === 'box' ? ';' : ',';
  return (v) => {
    const arr = v as unknown[];
    let out = '{';
    for (let i = 0; i < arr.length; i++) {
      if (i > 0) out += delim;
      const e = arr[i];
      out += e === null || e === undefined ? 'NULL' : quoteArrayElement(elem(e), delim);
    }
    return out + '}';
  };
}

/**
 * PostgreSQL input text for values of an Avro field type (a nullable union is fine: the
 * null branch is ignored). Dispatches on Debezium's `connect.name`, then the Avro type.
 */
export function textEncoderFor(avroFieldType: object | string): TextEncoder {
  if (typeof avroFieldType === 'string') {
    const byType = BY_AVRO_TYPE[avroFieldType];
    if (byType) return byType;
    throw unsupported(avroFieldType);
  }
  if (Array.isArray(avroFieldType)) return unionEncoder(avroFieldType);
  const schema = avroFieldType as AvroObject;
  const connectName = schema['connect.name'];
  if (typeof connectName === 'string') {
    const byName = BY_CONNECT_NAME[connectName];
    if (byName) return byName;
  }
  const type = schema.type;
  if (type === 'array') return arrayEncoder(schema);
  if (typeof type === 'string') {
    const byType = BY_AVRO_TYPE[type];
    if (byType) return byType;
  } else if (type !== null && typeof type === 'object') {
    return textEncoderFor(type);
  }
  throw unsupported(avroFieldType);
}
