/**
 * pgoutput tuple bytes → Avro key and envelope bytes, without building JS values. Pure.
 *
 * The general path decodes every column value into a string (pgoutput-decoder.ts), converts
 * it into an Avro value (record-schema.ts), builds the envelope object (envelope.ts) and has
 * avsc write it: on the streaming hot path, strings and objects made only to be written out
 * again. For the common shapes (an insert, an update whose key did not change, a delete by
 * key, under default replica identity) the record is written here straight from the
 * message: a text column's UTF-8 bytes become its Avro string, an integer's digits its
 * varint. Other column types decode their text and go through the same codec and avsc type
 * as the general path, so the bytes are the same (test/unit/row-transcode.test.ts pins it).
 * Anything else answers "not here" and takes the general path.
 */
import { BIGINT_FROM_TEXT, BYTEA_FROM_TEXT, IDENTITY_FROM_TEXT, INT_FROM_TEXT, type ColumnCodec } from '../shared/type-mapping/index.ts';
import { NUMERIC_KEY_TEXT, numericKeyEnd } from '../shared/type-mapping/key-text.ts';
import { timestamptzFromText } from '../shared/type-mapping/temporal.ts';
import type { TableRecordSchemas } from './record-schema.ts';

/** A TupleData of a pgoutput message, located: per column its kind ('t', 'n', 'u') and byte range. */
export class TupleRef {
  n = 0;
  kinds: Uint8Array;
  starts: Int32Array;
  ends: Int32Array;

  constructor(capacity = 64) {
    this.kinds = new Uint8Array(capacity);
    this.starts = new Int32Array(capacity);
    this.ends = new Int32Array(capacity);
  }

  /** Room for `n` columns. */
  reserve(n: number): void {
    if (n <= this.kinds.length) return;
    this.kinds = new Uint8Array(n);
    this.starts = new Int32Array(n);
    this.ends = new Int32Array(n);
  }

  /**
   * Locates the TupleData at `pos` (Int16 count, then per column 'n' | 'u' | 't' Int32 len
   * bytes). Returns the position after it, or -1 when it is not one this path takes (binary
   * values, a malformed tuple): the general decoder then reports it.
   */
  scan(buf: Buffer, pos: number): number {
    if (pos + 2 > buf.length) return -1;
    const n = buf.readUInt16BE(pos);
    pos += 2;
    this.reserve(n);
    for (let i = 0; i < n; i++) {
      if (pos >= buf.length) return -1;
      const kind = buf[pos++];
      this.kinds[i] = kind;
      if (kind === T) {
        if (pos + 4 > buf.length) return -1;
        const len = buf.readUInt32BE(pos);
        pos += 4;
        if (pos + len > buf.length) return -1;
        this.starts[i] = pos;
        this.ends[i] = pos + len;
        pos += len;
      } else if (kind !== N && kind !== U) {
        return -1;
      }
    }
    this.n = n;
    return pos;
  }
}

/**
 * Locates the fields of one COPY text row `buf[s, e)` (no LF) into `ref`: `\N` as null, any
 * other field as text, a field starting with an escaped backslash from its second byte. False
 * when a field holds another escape (the general parser unescapes it) or the row has more
 * fields than `max`.
 */
export function scanCopyRow(ref: TupleRef, buf: Buffer, s: number, e: number, max: number): boolean {
  ref.reserve(max);
  let n = 0;
  let f = s;
  for (let i = s; i <= e; i++) {
    const c = i < e ? buf[i] : 0x09;
    if (c === 0x09) {
      if (n === max) return false;
      ref.kinds[n] = T;
      ref.starts[n] = f;
      ref.ends[n++] = i;
      f = i + 1;
    } else if (c === 0x5c) {
      if (i === f && i + 2 <= e && buf[i + 1] === 0x4e && (i + 2 === e || buf[i + 2] === 0x09)) {
        ref.kinds[n] = N;
        ref.starts[n] = ref.ends[n] = i;
        n++;
        i += 2;
        f = i + 1;
        if (i === e) {
          ref.n = n;
          return true;
        }
      } else if (i === f && i + 1 < e && buf[i + 1] === 0x5c) {
        // A field whose one escape is a leading `\\` (every bytea, `\\x4142`): its value is its
        // bytes after the first backslash. A later backslash in it is not at `f`: refused.
        f = ++i;
      } else return false;
    }
  }
  ref.n = n;
  return true;
}

const T = 0x74; // 't': text value
const N = 0x6e; // 'n': null
const U = 0x75; // 'u': unchanged TOAST

/** Written past the end of `buf`: the caller retries with a bigger one. */
export const NO_ROOM = -1;
/** A record this path does not take (a key column without a value, a value a codec refuses). */
export const NOT_HERE = -2;

// ---- writing Avro.

function writeVarint(buf: Buffer, pos: number, zigzag: number): number {
  while (zigzag >= 0x80) {
    if (pos >= buf.length) return NO_ROOM;
    buf[pos++] = (zigzag & 0x7f) | 0x80;
    zigzag = Math.floor(zigzag / 128);
  }
  if (pos >= buf.length) return NO_ROOM;
  buf[pos++] = zigzag;
  return pos;
}

/** Zigzag varint of an exact integer (|v| < 2^53). */
const writeLong = (buf: Buffer, pos: number, v: number): number => writeVarint(buf, pos, v >= 0 ? v * 2 : -v * 2 - 1);

function writeBigLong(buf: Buffer, pos: number, v: bigint): number {
  let z = v >= 0n ? v << 1n : (-v << 1n) - 1n;
  while (z >= 0x80n) {
    if (pos >= buf.length) return NO_ROOM;
    buf[pos++] = Number(z & 0x7fn) | 0x80;
    z >>= 7n;
  }
  if (pos >= buf.length) return NO_ROOM;
  buf[pos++] = Number(z);
  return pos;
}

/** An Avro string from UTF-8 bytes. */
function writeBytes(buf: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  const len = end - start;
  pos = writeLong(buf, pos, len);
  if (pos < 0 || pos + len > buf.length) return NO_ROOM;
  // Most values are short: a loop beats Buffer.copy's argument checks and call into C++.
  if (len < 64) for (let i = start; i < end; i++) buf[pos++] = src[i];
  else pos += src.copy(buf, pos, start, end);
  return pos;
}

/**
 * PostgreSQL's decimal text of an integer column as an Avro int/long. Up to 15 digits is
 * exact as a number (as the codecs take it); longer goes through BigInt. NOT_HERE for text
 * that is not a plain decimal integer.
 */
function writeDecimal(buf: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  let i = start;
  const negative = src[i] === 0x2d;
  if (negative) i++;
  const digits = end - i;
  if (digits < 1) return NOT_HERE;
  if (digits > 15) {
    for (let k = i; k < end; k++) if (src[k] < 0x30 || src[k] > 0x39) return NOT_HERE;
    return writeBigLong(buf, pos, BigInt(src.toString('latin1', start, end)));
  }
  let v = 0;
  for (; i < end; i++) {
    const d = src[i] - 0x30;
    if (d < 0 || d > 9) return NOT_HERE;
    v = v * 10 + d;
  }
  return writeLong(buf, pos, negative ? -v : v);
}

/**
 * timestamptz text `YYYY-MM-DD HH:MM:SS[.f]+00` (what the source sessions print, TimeZone UTC)
 * as Debezium's `YYYY-MM-DDTHH:MM:SS[.f]Z`, moving bytes as timestamptzFromText's own fast
 * path does; any other spelling (BC, infinity) goes through timestamptzFromText itself.
 */
function writeTimestamptz(buf: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  const n = end - start;
  if (n < 14 || src[start + 4] !== 0x2d || src[start + 10] !== 0x20 || src[end - 3] !== 0x2b || src[end - 2] !== 0x30 || src[end - 1] !== 0x30) {
    let iso: string;
    try {
      iso = timestamptzFromText(src.toString('utf8', start, end));
    } catch {
      return NOT_HERE;
    }
    return writeIso(buf, pos, iso);
  }
  pos = writeLong(buf, pos, n - 2);
  if (pos < 0 || pos + n - 2 > buf.length) return NO_ROOM;
  for (let i = start; i < end - 3; i++) buf[pos++] = src[i];
  buf[pos - (end - 3 - start) + 10] = 0x54; // 'T'
  buf[pos++] = 0x5a; // 'Z'
  return pos;
}

/** Hex digits decoded per native call: bounds the temporary string, not the value. */
const HEX_PIECE = 64 * 1024;

/**
 * bytea's hex text (`\x4142`, what the source sessions print) as Avro bytes, decoded straight
 * into `buf` a piece at a time. The general path made the whole value a string (twice the
 * value's size) and then a Buffer before avsc copied it in: for a 60 MB bytea 180 MB more.
 * Escape-format text, odd lengths and non-hex digits go to the general path.
 */
function writeByteaHex(buf: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  const digits = end - start - 2;
  if (digits < 0 || (digits & 1) !== 0 || src[start] !== 0x5c || src[start + 1] !== 0x78) return NOT_HERE;
  const len = digits / 2;
  pos = writeLong(buf, pos, len);
  if (pos < 0 || pos + len > buf.length) return NO_ROOM;
  for (let s = start + 2; s < end; s += HEX_PIECE) {
    const e = Math.min(s + HEX_PIECE, end);
    const n = buf.write(src.toString('latin1', s, e), pos, (e - s) / 2, 'hex');
    if (n * 2 !== e - s) return NOT_HERE; // a non-hex digit: left to the general path, whatever it makes of it
    pos += n;
  }
  return pos;
}

/** An ASCII string (timestamps) as an Avro string. */
function writeIso(buf: Buffer, pos: number, s: string): number {
  pos = writeLong(buf, pos, s.length);
  if (pos < 0 || pos + s.length > buf.length) return NO_ROOM;
  for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
  return pos;
}

/** Writes one column's value (a 't' column) as its Avro type; returns the new position, NO_ROOM or NOT_HERE. */
type ColumnWriter = (buf: Buffer, pos: number, src: Buffer, start: number, end: number) => number;

interface AvscType {
  typeName: string;
  fields?: { name: string; type: AvscType }[];
  types?: AvscType[];
  encode(value: unknown, buf: Buffer, pos?: number): number;
  toBuffer(value: unknown): Buffer;
}

/**
 * `type`: the column's Avro type as avsc writes it (for the Value record the nullable union,
 * for the Key the bare type). A union is written whole by avsc on the generic path.
 */
function columnWriter(fromText: (t: string) => unknown, type: AvscType, nullable: boolean): ColumnWriter {
  const bare = nullable && type.types?.length === 2 ? type.types[1] : nullable ? null : type;
  const name = bare?.typeName;
  let body: ColumnWriter | null = null;
  if (fromText === IDENTITY_FROM_TEXT && name === 'string') body = writeBytes;
  else if (fromText === timestamptzFromText && name === 'string') body = writeTimestamptz;
  else if (fromText === BYTEA_FROM_TEXT && name === 'bytes') body = writeByteaHex;
  else if ((fromText === INT_FROM_TEXT || fromText === BIGINT_FROM_TEXT) && (name === 'int' || name === 'long' || name === 'abstract:long')) body = writeDecimal;
  if (body !== null) {
    if (!nullable) return body;
    const inner = body;
    return (buf, pos, src, start, end) => {
      if (pos >= buf.length) return NO_ROOM;
      buf[pos] = 0x02; // union branch 1
      return inner(buf, pos + 1, src, start, end);
    };
  }
  return (buf, pos, src, start, end) => {
    let value: unknown;
    try {
      value = fromText(src.toString('utf8', start, end));
    } catch {
      return NOT_HERE; // the general path names table and column
    }
    const out = type.encode(value, buf, pos);
    return out < 0 ? NO_ROOM : out;
  };
}

/**
 * A key column's writer: its canonical text (key-text.ts) when its type has one. A numeric
 * key's is its own bytes shortened, no allocation; the other types (float, interval) pay a
 * string, being rare as keys.
 */
function keyWriter(codec: ColumnCodec, type: AvscType): ColumnWriter {
  const { keyText, fromText } = codec;
  if (keyText === undefined) return columnWriter(fromText, type, false);
  if (keyText === NUMERIC_KEY_TEXT && fromText === IDENTITY_FROM_TEXT && type.typeName === 'string') {
    return (buf, pos, src, start, end) => writeBytes(buf, pos, src, start, numericKeyEnd(src, start, end));
  }
  return columnWriter((text) => fromText(keyText(text)), type, false);
}

export type TranscodedOp = 'c' | 'u' | 'd' | 'r';
const OP_BYTE: Record<TranscodedOp, number> = { c: 0x63, u: 0x75, d: 0x64, r: 0x72 };

export interface RowTranscoder {
  /** The Kafka key (Avro body, no wire header) from `tuple`'s key columns. */
  writeKey(buf: Buffer, pos: number, src: Buffer, tuple: TupleRef): number;
  /**
   * The envelope (Avro body): `image` is the after-image for c/u/r, the before-image for d.
   * `source`: the source block's bytes (sourceBytes).
   */
  writeEnvelope(buf: Buffer, pos: number, op: TranscodedOp, src: Buffer, image: TupleRef, source: Buffer, tsMs: number): number;
  /** The `source` block's bytes for a SourceInfo (callers keep them for as long as the SourceInfo lasts). */
  sourceBytes(source: object): Buffer;
}

const compiled = new WeakMap<object, RowTranscoder | null>();

/** The table version's transcoder, compiled on first use (null: the general path only). */
export function transcoderFor(schemas: TranscodedSchemas): RowTranscoder | null {
  let tc = compiled.get(schemas);
  if (tc === undefined) compiled.set(schemas, (tc = compileRowTranscoder(schemas)));
  return tc;
}

type TranscodedSchemas = Pick<TableRecordSchemas, 'envelopeType' | 'keyType' | 'keyFields' | 'fields' | 'codecs'>;

const ENVELOPE_FIELDS = ['before', 'after', 'source', 'op', 'ts_ms', 'transaction', 'unchanged_toast'];

/** Null when the table version's schemas are not the shape this path writes (then: general path). */
export function compileRowTranscoder(schemas: TranscodedSchemas): RowTranscoder | null {
  const env = schemas.envelopeType as unknown as AvscType;
  const key = schemas.keyType as unknown as AvscType | null;
  if (key === null || env.typeName !== 'record' || env.fields!.map((f) => f.name).join() !== ENVELOPE_FIELDS.join()) return null;
  const [before, after, source, , tsMs, transaction, toast] = env.fields!.map((f) => f.type);
  const isNullable = (t: AvscType) => t.typeName.startsWith('union') && t.types!.length === 2 && t.types![0].typeName === 'null';
  if (![before, after, tsMs, transaction].every(isNullable) || toast.typeName !== 'array') return null;
  const valueRecord = before.types![1];
  if (after.types![1] !== valueRecord || valueRecord.typeName !== 'record' || valueRecord.fields!.length !== schemas.fields.length) return null;

  const columns = schemas.fields.map((f, i) => columnWriter(schemas.codecs[i].fromText, valueRecord.fields![i].type, true));
  const keyIndex = schemas.keyFields.map((f) => f.index);
  const keyWriters = schemas.keyFields.map((f, i) => keyWriter(schemas.codecs[f.index], key.fields![i].type));
  // Made at the table's first unchanged-TOAST value, mostly never: small Buffers come from
  // Node's 8 kB pool, and one kept per column of every table held ~960 pool slabs (8 MB) alive
  // in a source over 2,000 tables.
  let columnNames: Buffer[] | null = null;

  const writeRow = (buf: Buffer, pos: number, src: Buffer, t: TupleRef): number => {
    if (t.n !== columns.length) return NOT_HERE;
    for (let i = 0; i < columns.length && pos >= 0; i++) {
      const kind = t.kinds[i];
      if (kind === T) pos = columns[i](buf, pos, src, t.starts[i], t.ends[i]);
      else if (pos >= buf.length) return NO_ROOM;
      else buf[pos++] = 0x00; // null, or unchanged TOAST (listed apart)
    }
    return pos;
  };

  const writeToast = (buf: Buffer, pos: number, t: TupleRef): number => {
    let count = 0;
    for (let i = 0; i < t.n; i++) if (t.kinds[i] === U) count++;
    if (count > 0) {
      columnNames ??= schemas.fields.map((f) => Buffer.from(f.column, 'utf8'));
      pos = writeLong(buf, pos, count);
      for (let i = 0; i < t.n && pos >= 0; i++) {
        if (t.kinds[i] === U) pos = writeBytes(buf, pos, columnNames[i], 0, columnNames[i].length);
      }
    }
    if (pos < 0) return pos;
    if (pos >= buf.length) return NO_ROOM;
    buf[pos++] = 0x00;
    return pos;
  };

  return {
    writeKey(buf, pos, src, t) {
      if (t.n !== columns.length) return NOT_HERE;
      for (let k = 0; k < keyIndex.length && pos >= 0; k++) {
        const i = keyIndex[k];
        if (t.kinds[i] !== T) return NOT_HERE; // the general path names the missing key value
        pos = keyWriters[k](buf, pos, src, t.starts[i], t.ends[i]);
      }
      return pos;
    },

    writeEnvelope(buf, pos, op, src, image, sourceBytes, ts) {
      if (pos + 2 > buf.length) return NO_ROOM;
      if (op === 'd') {
        buf[pos++] = 0x02; // before: the key image
        pos = writeRow(buf, pos, src, image);
        if (pos < 0) return pos;
        if (pos >= buf.length) return NO_ROOM;
        buf[pos++] = 0x00; // after: null
      } else {
        buf[pos++] = 0x00; // before: null
        buf[pos++] = 0x02;
        pos = writeRow(buf, pos, src, image);
        if (pos < 0) return pos;
      }
      if (pos + sourceBytes.length + 6 > buf.length) return NO_ROOM;
      buf.set(sourceBytes, pos);
      pos += sourceBytes.length;
      buf[pos++] = 0x02; // op: a one-character string
      buf[pos++] = OP_BYTE[op];
      buf[pos++] = 0x02; // ts_ms
      pos = writeLong(buf, pos, ts);
      if (pos < 0 || pos >= buf.length) return NO_ROOM;
      buf[pos++] = 0x00; // transaction: null
      return writeToast(buf, pos, image);
    },

    sourceBytes: (s) => source.toBuffer(s),
  };
}
