/**
 * Change-event bytes → COPY BINARY fields, for destination columns whose type is known. Pure.
 *
 * PostgreSQL parses a text COPY field with the type's input function (numeric, timestamptz
 * and jsonb parsing are most of its COPY cost: a text COPY of the benchmark's orders rows
 * costs it ~30 % more than the same rows in binary). In binary the sink writes the type's
 * send format, which for these types is cheap to make from the Avro bytes. The format
 * depends on the destination column's exact type, so a writer exists only for a pair
 * (Avro value, destination type) listed in `binaryWriter`; any other column keeps its
 * table version on text COPY. A value a writer cannot make exactly (NaN, an infinity it
 * has no sentinel for, an unusual spelling) throws MALFORMED: that record then takes the
 * general path, as every record the transcoder cannot read does.
 */
import { DECIMAL_TEXT, IDENTITY_TEXT, INT32_MAX, INT32_MIN, textEncoderFor, type TextEncoder } from '../shared/type-mapping/index.ts';
import { daysFromCivil } from '../shared/type-mapping/temporal.ts';
import { MALFORMED, connectNameOf, nullableBranches, orNull, readLength, readLong, readLongBig, type AvscType } from './avro-read.ts';
import type { FieldWriter, LineWriter } from './copy-transcode.ts';

/** `PGCOPY\n\377\r\n\0`, no flags, no header extension. */
export const BINARY_HEADER = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
/** A field count of -1 ends the data. */
export const BINARY_TRAILER = Buffer.from([0xff, 0xff]);

const TWO_32 = 4294967296;
const TWO_62 = 2n ** 62n;
/** Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
const PG_EPOCH_DAYS = 10957;
const PG_EPOCH_US = 946684800000000;

// Big-endian words stored byte by byte: Buffer's write*BE validate their arguments on every
// call, which cost more than the stores for the few bytes of a field.

/** A 32-bit word at `p` (two's complement for negatives); returns the position after it. */
function put32(b: Buffer, p: number, v: number): number {
  b[p] = v >>> 24;
  b[p + 1] = v >>> 16;
  b[p + 2] = v >>> 8;
  b[p + 3] = v;
  return p + 4;
}

function put16(b: Buffer, p: number, v: number): number {
  b[p] = v >>> 8;
  b[p + 1] = v;
  return p + 2;
}

export function writeFieldCount(out: LineWriter, n: number): void {
  out.ensure(2);
  out.pos = put16(out.buf, out.pos, n);
}

export function writeNull(out: LineWriter): void {
  out.ensure(4);
  out.pos = put32(out.buf, out.pos, -1);
}

/** A safe integer as an 8-byte field. */
function int64(out: LineWriter, v: number): void {
  out.ensure(12);
  const b = out.buf;
  const hi = Math.floor(v / TWO_32);
  out.pos = put32(b, put32(b, put32(b, out.pos, 8), hi), v - hi * TWO_32);
}

function int64Big(out: LineWriter, v: bigint): void {
  out.ensure(12);
  out.pos = out.buf.writeBigInt64BE(v, put32(out.buf, out.pos, 8));
}

function int32(out: LineWriter, v: number): void {
  out.ensure(8);
  out.pos = put32(out.buf, put32(out.buf, out.pos, 4), v);
}

/** Length word, an optional prefix byte, then `src[start, end)` (a loop: fields are short, Buffer.copy's call costs more). */
function bytesField(out: LineWriter, src: Buffer, start: number, end: number, prefix = -1): void {
  const n = end - start + (prefix >= 0 ? 1 : 0);
  out.ensure(n + 4);
  const b = out.buf;
  let p = put32(b, out.pos, n);
  if (prefix >= 0) b[p++] = prefix;
  if (end - start > 256) p += src.copy(b, p, start, end);
  else for (let i = start; i < end; i++) b[p++] = src[i];
  out.pos = p;
}

// ---- the writers, by destination type.

const integerWriter =
  (bytes: 2 | 4 | 8): FieldWriter =>
  (buf, c, out) => {
    const start = c.pos;
    const v = readLong(buf, c);
    if (bytes === 8) {
      if (Number.isNaN(v)) int64Big(out, readLongBig(buf, start));
      else int64(out, v);
    } else if (bytes === 4) {
      if (!(v >= INT32_MIN && v <= INT32_MAX)) throw MALFORMED;
      int32(out, v);
    } else {
      if (!(v >= -32768 && v <= 32767)) throw MALFORMED;
      out.ensure(6);
      out.pos = put16(out.buf, put32(out.buf, out.pos, 2), v);
    }
    return false;
  };

/** A string's UTF-8 bytes (or Avro bytes) as they are, or after jsonb's version byte. */
const stringWriter =
  (prefix: number): FieldWriter =>
  (buf, c, out) => {
    const n = readLength(buf, c);
    bytesField(out, buf, c.pos, c.pos + n, prefix);
    c.pos += n;
    return false;
  };

/** text, varchar, json and bytea: the bytes as they are. */
const plainBytesWriter: FieldWriter = stringWriter(-1);
const jsonbWriter: FieldWriter = stringWriter(1);

const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39;

/**
 * numeric from its plain text `-?D+(.D+)?` (what PostgreSQL prints): base-10000 digit groups
 * aligned on the decimal point, weight, sign and display scale. numeric_recv applies the
 * column's typmod as numeric_in does, so the stored value is the same.
 */
const numericWriter: FieldWriter = (buf, c, out) => {
  const n = readLength(buf, c);
  const s = c.pos;
  const e = s + n;
  c.pos = e;
  let i = s;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  const intStart = i;
  while (i < e && isDigit(buf[i])) i++;
  const intEnd = i;
  let fracStart = e;
  if (i < e) {
    if (buf[i] !== 0x2e) throw MALFORMED;
    fracStart = ++i;
    while (i < e && isDigit(buf[i])) i++;
    if (i !== e || fracStart === e) throw MALFORMED;
  }
  const intLen = intEnd - intStart;
  if (intLen === 0) throw MALFORMED;
  const fracLen = e - fracStart;
  const intGroups = Math.ceil(intLen / 4);
  const fracGroups = Math.ceil(fracLen / 4);
  const ndigits = intGroups + fracGroups;
  if (ndigits > 8192 || fracLen > 0x3fff) throw MALFORMED;
  const len = 8 + 2 * ndigits;
  out.ensure(len + 4);
  const b = out.buf;
  let p = put32(b, out.pos, len);
  p = put16(b, p, ndigits);
  p = put16(b, p, intGroups - 1);
  p = put16(b, p, negative ? 0x4000 : 0);
  p = put16(b, p, fracLen);
  // Integer groups: the first takes the leftover digits.
  let k = intStart;
  for (let g = 0; g < intGroups; g++) {
    const take = g === 0 ? intLen - (intGroups - 1) * 4 : 4;
    let d = 0;
    for (let j = 0; j < take; j++) d = d * 10 + (buf[k++] - 0x30);
    p = put16(b, p, d);
  }
  // Fraction groups: the last is padded with zeros on the right.
  k = fracStart;
  for (let g = 0; g < fracGroups; g++) {
    let d = 0;
    for (let j = 0; j < 4; j++) d = d * 10 + (k < e ? buf[k++] - 0x30 : 0);
    p = put16(b, p, d);
  }
  out.pos = p;
  return false;
};

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digits(buf: Buffer, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const b = buf[i];
    if (!isDigit(b)) throw MALFORMED;
    v = v * 10 + (b - 0x30);
  }
  return v;
}

/** timestamptz from Debezium's `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` (years 0001–9999): µs since 2000-01-01 UTC. */
const zonedTimestampWriter: FieldWriter = (buf, c, out) => {
  const n = readLength(buf, c);
  const s = c.pos;
  c.pos += n;
  if (n < 20 || n > 27 || n === 21 || buf[s + 4] !== 0x2d || buf[s + 7] !== 0x2d || buf[s + 10] !== 0x54 || buf[s + 13] !== 0x3a || buf[s + 16] !== 0x3a || buf[s + n - 1] !== 0x5a) {
    throw MALFORMED;
  }
  const y = digits(buf, s, 4);
  const mo = digits(buf, s + 5, 2);
  const d = digits(buf, s + 8, 2);
  const h = digits(buf, s + 11, 2);
  const mi = digits(buf, s + 14, 2);
  const sec = digits(buf, s + 17, 2);
  let frac = 0;
  if (n > 20) {
    if (buf[s + 19] !== 0x2e) throw MALFORMED;
    const fd = n - 21;
    frac = digits(buf, s + 20, fd) * 10 ** (6 - fd);
  }
  const leap = mo === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > DAYS_IN_MONTH[mo - 1] + (leap ? 1 : 0) || h > 23 || mi > 59 || sec > 59) throw MALFORMED;
  const secs = (daysFromCivil(y, mo, d) - PG_EPOCH_DAYS) * 86400 + h * 3600 + mi * 60 + sec;
  // Exact as a double below 2^53 µs (~285 years either side of 2000).
  if (Math.abs(secs) < 9e9) int64(out, secs * 1e6 + frac);
  else int64Big(out, BigInt(secs) * 1000000n + BigInt(frac));
  return false;
};

/** date from Debezium's days since 1970; the ±infinity sentinels (INT32 max/min) are PostgreSQL's too. */
const dateWriter: FieldWriter = (buf, c, out) => {
  const v = readLong(buf, c);
  if (v === INT32_MAX || v === INT32_MIN) int32(out, v);
  else if (v - PG_EPOCH_DAYS > INT32_MIN && v < INT32_MAX) int32(out, v - PG_EPOCH_DAYS);
  else throw MALFORMED;
  return false;
};

/**
 * timestamp from Debezium's µs since 1970. ±infinity (INT64 max/min) and the years past
 * 146,000 AD that the mapping folds below INT64_MIN's neighbourhood are left to the general path.
 */
const timestampWriter: FieldWriter = (buf, c, out) => {
  const start = c.pos;
  const v = readLong(buf, c);
  if (!Number.isNaN(v)) {
    int64(out, v - PG_EPOCH_US);
    return false;
  }
  const big = readLongBig(buf, start);
  if (big < -TWO_62 || big > TWO_62) throw MALFORMED;
  int64Big(out, big - BigInt(PG_EPOCH_US));
  return false;
};

const booleanWriter: FieldWriter = (buf, c, out) => {
  if (c.pos >= c.end) throw MALFORMED;
  const v = buf[c.pos++];
  if (v > 1) throw MALFORMED;
  out.ensure(5);
  const p = put32(out.buf, out.pos, 1);
  out.buf[p] = v;
  out.pos = p + 1;
  return false;
};

/** Avro's little-endian float or double, reversed into network order. */
const floatWriter =
  (size: 4 | 8): FieldWriter =>
  (buf, c, out) => {
    if (c.pos + size > c.end) throw MALFORMED;
    out.ensure(size + 4);
    const p = put32(out.buf, out.pos, size);
    for (let i = 0; i < size; i++) out.buf[p + i] = buf[c.pos + size - 1 - i];
    c.pos += size;
    out.pos = p + size;
    return false;
  };

const hexValue = (b: number): number => (b >= 0x30 && b <= 0x39 ? b - 0x30 : b >= 0x61 && b <= 0x66 ? b - 0x57 : b >= 0x41 && b <= 0x46 ? b - 0x37 : -1);

/** uuid from its 36-character text; other spellings go to the general path. */
const uuidWriter: FieldWriter = (buf, c, out) => {
  const n = readLength(buf, c);
  const s = c.pos;
  if (n !== 36) throw MALFORMED;
  c.pos += n;
  out.ensure(20);
  let p = put32(out.buf, out.pos, 16);
  for (let i = s; i < s + 36; ) {
    if (i - s === 8 || i - s === 13 || i - s === 18 || i - s === 23) {
      if (buf[i++] !== 0x2d) throw MALFORMED;
      continue;
    }
    const hi = hexValue(buf[i]);
    const lo = hexValue(buf[i + 1]);
    if (hi < 0 || lo < 0) throw MALFORMED;
    out.buf[p++] = hi * 16 + lo;
    i += 2;
  }
  out.pos = p;
  return false;
};

/**
 * The binary writer for an Avro value (type and schema JSON, not a union) going into a column
 * of destination type `destType` (`format_type` text); null when there is none.
 */
function valueWriter(type: AvscType, schema: unknown, destType: string): FieldWriter | null {
  let encode: TextEncoder;
  try {
    encode = textEncoderFor(schema as object);
  } catch {
    return null;
  }
  const name = connectNameOf(schema);
  // Without typmods: `numeric(12,2)`, `character varying(20)`, `timestamp(3) with time zone`.
  const base = destType.replace(/\(\d+(?:,\d+)?\)/, '');
  switch (type.typeName) {
    case 'int':
      if (name === 'io.debezium.time.Date') return base === 'date' ? dateWriter : null;
      if (encode !== DECIMAL_TEXT) return null;
      return base === 'smallint' ? integerWriter(2) : base === 'integer' ? integerWriter(4) : base === 'bigint' ? integerWriter(8) : null;
    case 'long':
    case 'abstract:long':
      if (name === 'io.debezium.time.MicroTimestamp') return base === 'timestamp without time zone' ? timestampWriter : null;
      return encode === DECIMAL_TEXT && base === 'bigint' ? integerWriter(8) : null;
    case 'string':
      if (name === 'io.debezium.time.ZonedTimestamp') return base === 'timestamp with time zone' ? zonedTimestampWriter : null;
      if (encode !== IDENTITY_TEXT) return null;
      if (base === 'text' || base === 'character varying' || base === 'json') return plainBytesWriter;
      if (base === 'jsonb') return jsonbWriter;
      if (base === 'numeric') return numericWriter;
      if (base === 'uuid') return uuidWriter;
      return null;
    case 'boolean':
      return base === 'boolean' ? booleanWriter : null;
    case 'double':
      return base === 'double precision' ? floatWriter(8) : null;
    case 'float':
      return base === 'real' ? floatWriter(4) : null;
    case 'bytes':
      return base === 'bytea' ? plainBytesWriter : null;
  }
  return null;
}

/** A column's writer (its length word and bytes): a nullable union `["null", T]` (either order) writes NULL or T; other unions have none. */
export function binaryWriter(type: AvscType, schema: unknown, destType: string): FieldWriter | null {
  if (!type.typeName.startsWith('union')) return valueWriter(type, schema, destType);
  const b = nullableBranches(type, schema);
  const write = b && valueWriter(type.types![b.value], (schema as unknown[])[b.value], destType);
  return write ? orNull(write, b!, writeNull) : null;
}
