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

interface Tap {
  pos: number;
  writeLong(n: number): void;
  readLong(): number;
}
type LongInternals = { _write(tap: Tap, v: unknown): void; _read(tap: Tap): bigint };

/** avsc hands us/expects 8-byte little-endian two's complement buffers. */
const BUFFER_LONG_TYPE = avro.types.LongType.__with({
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
}) as unknown as LongInternals;

/**
 * avsc's abstract long turns every value into an 8-byte buffer (`toBuffer`, then
 * `packLongBytes`), and back on reads: a Buffer and a BigInt round trip per value on the
 * per-row path. Values within ±2^52 take avsc's own number varint instead (exact there);
 * the rest keep the buffer path. Same bytes either way. `__with` freezes its type, so the
 * same (unfrozen) constructor builds ours with the two methods added.
 */
const SAFE_LIMIT = 2 ** 52;
const SAFE_LIMIT_N = BigInt(SAFE_LIMIT);

function fastLongType(): avro.Type {
  const Ctor = Object.getPrototypeOf(BUFFER_LONG_TYPE).constructor as new (noUnpack: boolean) => LongInternals;
  const t = new Ctor(false) as LongInternals & Record<string, unknown>;
  for (const k of ['_toBuffer', '_fromBuffer', '_fromJSON', '_toJSON', '_isValid', 'compare']) t[k] = (BUFFER_LONG_TYPE as unknown as Record<string, unknown>)[k];
  const bufferWrite = BUFFER_LONG_TYPE._write;
  const bufferRead = BUFFER_LONG_TYPE._read;
  t._write = function (this: LongInternals, tap: Tap, v: unknown): void {
    if (typeof v === 'number' && Number.isInteger(v) && v > -SAFE_LIMIT && v < SAFE_LIMIT) tap.writeLong(v);
    else if (typeof v === 'bigint' && v > -SAFE_LIMIT_N && v < SAFE_LIMIT_N) tap.writeLong(Number(v));
    else bufferWrite.call(this, tap, v);
  };
  t._read = function (this: LongInternals, tap: Tap): bigint {
    const start = tap.pos;
    const n = tap.readLong();
    if (n > -SAFE_LIMIT && n < SAFE_LIMIT) return BigInt(n);
    tap.pos = start;
    return bufferRead.call(this, tap);
  };
  return Object.freeze(t) as unknown as avro.Type;
}

/**
 * Avro long read as `bigint`, written from `bigint | number | string` (a decimal integer).
 */
export const BIGINT_LONG_TYPE: avro.Type = fastLongType();

interface StringTap extends Tap {
  buf: Buffer;
}
const AvscStringType = avro.types.StringType as unknown as new () => { _write(tap: StringTap, v: unknown): void };

/**
 * avsc writes every string with `Buffer.byteLength` first (a call into C++), then a copy loop.
 * Most of our strings are short ASCII (ops, names, numbers as text, timestamps): those go
 * straight into the buffer behind a one-byte length; anything else takes avsc's own path.
 * Same bytes either way.
 */
class FastStringType extends AvscStringType {
  override _write(tap: StringTap, v: unknown): void {
    if (typeof v === 'string' && v.length < 64) {
      const buf = tap.buf;
      const start = tap.pos + 1;
      const n = v.length;
      if (start + n <= buf.length) {
        let i = 0;
        for (; i < n; i++) {
          const c = v.charCodeAt(i);
          if (c >= 0x80) break;
          buf[start + i] = c;
        }
        if (i === n) {
          buf[tap.pos] = n << 1; // zigzag varint of n < 64: one byte
          tap.pos = start + n;
          return;
        }
      }
    }
    super._write(tap, v);
  }
}

const STRING_TYPE = new FastStringType() as unknown as avro.Type;

type Writer = { _write(tap: Tap, v: unknown): void };
const AvscUnwrappedUnion = avro.types.UnwrappedUnionType as unknown as new (schema: unknown, opts: unknown) => Writer & { types: Writer[] };

/**
 * `["null", T]`, the shape of every nullable field: avsc's unwrapped union finds the branch of
 * each value by its type, and for an abstract type (our long) by running the value through
 * its validity check, on every write. A null is branch 0, anything else branch 1 (whose own
 * write refuses a wrong value). Same bytes.
 */
class NullableType extends AvscUnwrappedUnion {
  override _write(tap: Tap, v: unknown): void {
    if (v === null) tap.writeLong(0);
    else if (v !== undefined) {
      tap.writeLong(1);
      this.types[1]._write(tap, v);
    } else super._write(tap, v);
  }
}

type WriteFn = (this: unknown, tap: StringTap, v: unknown) => void;
const AvscRecordType = avro.types.RecordType as unknown as new (schema: unknown, opts: unknown) => { _createWriter(): WriteFn };

/**
 * A record type that keeps the bytes of the last value it wrote and copies them when the
 * same frozen object comes again: the change-event `source` block is one object per
 * transaction and table (or snapshot chunk), written into every record of it. Frozen, it
 * cannot have changed since.
 */
class WriteCachedRecordType extends AvscRecordType {
  override _createWriter(): WriteFn {
    const write = super._createWriter();
    let last: unknown = null;
    let bytes: Buffer | null = null;
    return function (this: unknown, tap: StringTap, v: unknown): void {
      if (v === last && bytes !== null) {
        const end = tap.pos + bytes.length;
        if (end <= tap.buf.length) tap.buf.set(bytes, tap.pos);
        tap.pos = end;
        return;
      }
      const start = tap.pos;
      write.call(this, tap, v);
      if (tap.pos <= tap.buf.length && typeof v === 'object' && v !== null && Object.isFrozen(v)) {
        last = v;
        bytes = Buffer.from(tap.buf.subarray(start, tap.pos));
      }
    };
  }
}

const WRITE_CACHED = new WeakSet<object>();

/** Marks a record schema object so that its type caches the last frozen value's bytes (see WriteCachedRecordType). */
export function writeCached<T extends object>(recordSchema: T): T {
  WRITE_CACHED.add(recordSchema);
  return recordSchema;
}

/** Whether `writeCached` marked this schema object. */
export function isWriteCached(schema: object): boolean {
  return WRITE_CACHED.has(schema);
}

const PRIMITIVE_HOOKS = new Map<unknown, avro.Type>([
  ['long', BIGINT_LONG_TYPE],
  ['string', STRING_TYPE],
]);

function typeHook(schema: unknown, opts: unknown): avro.Type | undefined {
  if (typeof schema === 'string') return PRIMITIVE_HOOKS.get(schema);
  if (Array.isArray(schema)) return schema.length === 2 && schema[0] === 'null' ? (new NullableType(schema, opts) as unknown as avro.Type) : undefined;
  if (schema === null || typeof schema !== 'object') return undefined;
  if (WRITE_CACHED.has(schema)) return new WriteCachedRecordType(schema, opts) as unknown as avro.Type;
  const s = schema as { type?: unknown; logicalType?: unknown };
  return s.logicalType === undefined ? PRIMITIVE_HOOKS.get(s.type) : undefined;
}

/**
 * Fresh avsc `forSchema` options (the registry object is mutated by avsc, so never share
 * one). Unions are always unwrapped: a nullable value is the value or `null`, an array
 * column is a JS array or its verbatim text.
 */
export function avroRegistryOptions(): Partial<avro.ForSchemaOptions> {
  return { registry: {}, typeHook: typeHook as avro.ForSchemaOptions['typeHook'], wrapUnions: 'never' };
}

/** Compile an Avro schema (JSON object or text) with the project's options. */
export function createAvroType(schema: object | string): avro.Type {
  const parsed = typeof schema === 'string' && schema.trimStart().match(/^[[{"]/) ? JSON.parse(schema) : schema;
  return avro.Type.forSchema(parsed as avro.Schema, avroRegistryOptions());
}
