/**
 * The project's avsc options. Every encoder and decoder in ShardBridge builds its types
 * through `createAvroType` (or `avroRegistryOptions`), so that Avro `long` always means
 * a BigInt-valued long: avsc's stock long throws beyond 2^53 and would lose int8 values,
 * LSNs and microsecond timestamps.
 */
import avro from 'avsc';

export const INT64_MAX = 9223372036854775807n;
export const INT64_MIN = -9223372036854775808n;
export const INT32_MAX = 2147483647;
export const INT32_MIN = -2147483648;

const DECIMAL_INTEGER = /^-?[0-9]+$/;

function toBigInt(v: bigint | number | string): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}

function isValidLong(v: unknown): boolean {
  switch (typeof v) {
    case 'bigint':
      return v >= INT64_MIN && v <= INT64_MAX;
    case 'number':
      return Number.isSafeInteger(v);
    case 'string': {
      if (!DECIMAL_INTEGER.test(v)) return false;
      const b = BigInt(v);
      return b >= INT64_MIN && b <= INT64_MAX;
    }
    default:
      return false;
  }
}

/**
 * Avro long read as `bigint`, written from `bigint | number | string` (a decimal integer).
 * avsc hands us/expects 8-byte little-endian two's complement buffers.
 */
export const BIGINT_LONG_TYPE: avro.Type = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer): bigint => buf.readBigInt64LE(0),
  toBuffer: (v: bigint | number | string): Buffer => {
    const buf = Buffer.allocUnsafe(8);
    buf.writeBigInt64LE(toBigInt(v), 0);
    return buf;
  },
  // JSON has no bigint: safe values as numbers, others as decimal strings (fromJSON takes both).
  fromJSON: (v: bigint | number | string): bigint => toBigInt(v),
  toJSON: (v: bigint): number | string => {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v.toString();
  },
  isValid: isValidLong,
  compare: (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0),
}) as unknown as avro.Type;

function longHook(schema: unknown): avro.Type | undefined {
  if (schema === 'long') return BIGINT_LONG_TYPE;
  if (schema !== null && typeof schema === 'object' && !Array.isArray(schema) && (schema as { type?: unknown }).type === 'long') {
    return BIGINT_LONG_TYPE;
  }
  return undefined;
}

/**
 * Fresh avsc `forSchema` options (the registry object is mutated by avsc, so never share
 * one). Unions are always unwrapped: a nullable value is the value or `null`, an array
 * column is a JS array or its verbatim text.
 */
export function avroRegistryOptions(): Partial<avro.ForSchemaOptions> {
  return { registry: {}, typeHook: longHook as avro.ForSchemaOptions['typeHook'], wrapUnions: 'never' };
}

/** Compile an Avro schema (JSON object or text) with the project's options. */
export function createAvroType(schema: object | string): avro.Type {
  const parsed = typeof schema === 'string' && schema.trimStart().match(/^[[{"]/) ? JSON.parse(schema) : schema;
  return avro.Type.forSchema(parsed as avro.Schema, avroRegistryOptions());
}
