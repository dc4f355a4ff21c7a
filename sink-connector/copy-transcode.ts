/**
 * Change-event bytes → COPY text, without building JS values. Pure.
 *
 * The general decode (decode.ts) turns every record into objects and strings, collapse
 * turns those into rows, and the COPY writer turns the rows back into text: on the sink's
 * hot path that was most of its CPU and nearly all of its garbage. For a row that is just
 * inserted or replaced, the COPY line can be written straight from the Avro bytes: a text
 * column's UTF-8 bytes are its COPY field (escaped), an integer's varint its digits. Column
 * types without such a shortcut go through the same `textEncoderFor` functions as the
 * general decode, so both paths produce the same text (test/unit/copy-transcode.test.ts).
 *
 * `compileEnvelope` compiles a writer schema once; `scan` then reads one record's op and
 * flags and writes its after-image as a COPY line. Anything unusual (a malformed record, an
 * op we do not know) answers "not here": the general decode takes it and reports it.
 */
import type avro from 'avsc';
import { BYTEA_TEXT, DECIMAL_TEXT, IDENTITY_TEXT, textEncoderFor, type TextEncoder } from '../shared/type-mapping/index.ts';
import { MALFORMED, connectNameOf, nullableBranches, orNull, readLength, readLong, readLongBig, skipperOf, type AvscType, type Cursor } from './avro-read.ts';
import { binaryWriter, writeFieldCount } from './copy-binary.ts';

// ---- writing COPY text.

const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** A growing byte buffer of COPY text lines. */
export class LineWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** UTF-8 bytes `src[start, end)` as a COPY field: backslash, tab, newline and CR escaped. */
  escapedBytes(src: Buffer, start: number, end: number): void {
    let room = (end - start) * 2;
    if (room > 8192) {
      // A long value: room for what it holds, not twice that (a 20 MB jsonb would take 40).
      room = end - start;
      for (let i = start; i < end; i++) {
        const b = src[i];
        if (b === 0x5c || b === 0x09 || b === 0x0a || b === 0x0d) room++;
      }
    }
    this.ensure(room);
    const out = this.buf;
    let p = this.pos;
    for (let i = start; i < end; i++) {
      const b = src[i];
      if (b === 0x5c || b === 0x09 || b === 0x0a || b === 0x0d) {
        out[p++] = 0x5c;
        out[p++] = b === 0x5c ? 0x5c : b === 0x09 ? 0x74 : b === 0x0a ? 0x6e : 0x72;
      } else out[p++] = b;
    }
    this.pos = p;
  }

  /** A JS string as a COPY field. */
  escapedString(s: string): void {
    // Room for its UTF-8 bytes: three per character at most, counted exactly for a long
    // string (a 20 MB value would otherwise make room for 60).
    this.ensure(s.length <= 4096 ? s.length * 3 : Buffer.byteLength(s, 'utf8'));
    const start = this.pos;
    const n = this.buf.write(s, start, 'utf8');
    for (let i = start; i < start + n; i++) {
      const b = this.buf[i];
      if (b === 0x5c || b === 0x09 || b === 0x0a || b === 0x0d) {
        // Rare: redo this field through the escaping byte copy.
        const raw = Buffer.from(this.buf.subarray(start, start + n));
        this.pos = start;
        this.escapedBytes(raw, 0, raw.length);
        return;
      }
    }
    this.pos = start + n;
  }

  /** `src[start, end)` as they are. */
  bytes(src: Buffer, start: number, end: number): void {
    this.ensure(end - start);
    this.pos += src.copy(this.buf, this.pos, start, end);
  }

  /** `src[start, end)` as a bytea COPY field: `\\x` and two hex digits per byte, no string in between. */
  byteaHex(src: Buffer, start: number, end: number): void {
    this.ensure(3 + 2 * (end - start));
    const out = this.buf;
    let p = this.pos;
    out[p++] = 0x5c;
    out[p++] = 0x5c;
    out[p++] = 0x78;
    for (let i = start; i < end; i++) {
      const b = src[i];
      out[p++] = HEX[b >> 4];
      out[p++] = HEX[b & 15];
    }
    this.pos = p;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  nullField(): void {
    this.ensure(2);
    this.buf[this.pos++] = 0x5c;
    this.buf[this.pos++] = 0x4e;
  }

  /** An exact integer's decimal digits. */
  integer(v: number): void {
    this.ensure(21);
    const out = this.buf;
    if (v < 0) {
      out[this.pos++] = 0x2d;
      v = -v;
    }
    if (v < 10) {
      out[this.pos++] = 0x30 + v;
      return;
    }
    let digits = 0;
    for (let x = v; x >= 1; x = Math.floor(x / 10)) digits++;
    let p = this.pos + digits;
    this.pos = p;
    for (let x = v; x >= 1; x = Math.floor(x / 10)) out[--p] = 0x30 + (x % 10);
  }
}

// ---- one column: read its Avro value, write its COPY field.

/** Writes one column's field; true when it was NULL. */
export type FieldWriter = (buf: Buffer, c: Cursor, out: LineWriter) => boolean;

const ZONED_TIMESTAMP = 'io.debezium.time.ZonedTimestamp';

/** A string written as is (text, numeric, json, uuid, …): its bytes are the field. */
const textField: FieldWriter = (buf, c, out) => {
  const n = readLength(buf, c);
  out.escapedBytes(buf, c.pos, c.pos + n);
  c.pos += n;
  return false;
};

/**
 * bytea: its hex text straight from the Avro bytes. Through the generic writer a 30 MB value
 * became a 60 MB string, room for three bytes per character, and a second pass to escape its
 * leading backslash: ~10x the value, per row of a batch.
 */
const byteaField: FieldWriter = (buf, c, out) => {
  const n = readLength(buf, c);
  out.byteaHex(buf, c.pos, c.pos + n);
  c.pos += n;
  return false;
};

const integerField: FieldWriter = (buf, c, out) => {
  const start = c.pos;
  const v = readLong(buf, c);
  if (Number.isNaN(v)) out.escapedString(readLongBig(buf, start).toString());
  else out.integer(v);
  return false;
};

/**
 * timestamptz as Debezium's ISO text `YYYY-MM-DDTHH:MM:SS[.f]Z` becomes PostgreSQL's
 * `YYYY-MM-DD HH:MM:SS[.f]+00` by moving bytes (the same shortcut timestamptzToText takes);
 * other spellings (BC, expanded years, infinity) take timestamptzToText itself.
 */
function zonedTimestampField(encode: TextEncoder): FieldWriter {
  return (buf, c, out) => {
    const n = readLength(buf, c);
    const s = c.pos;
    c.pos += n;
    if (n > 11 && buf[s + 4] === 0x2d && buf[s + 10] === 0x54 && buf[s + n - 1] === 0x5a && !(buf[s] === 0x30 && buf[s + 1] === 0x30 && buf[s + 2] === 0x30 && buf[s + 3] === 0x30)) {
      out.ensure(n + 3);
      const o = out.buf;
      // Byte by byte: for ~30 bytes a loop beats two Buffer.copy calls into C++.
      let p = out.pos;
      for (let i = s; i < s + n - 1; i++) o[p++] = buf[i];
      o[out.pos + 10] = 0x20;
      o[p++] = 0x2b;
      o[p++] = 0x30;
      o[p++] = 0x30;
      out.pos = p;
    } else {
      out.escapedString(encode(buf.toString('utf8', s, s + n)));
    }
    return false;
  };
}

/** Any other type: avsc decodes the value's bytes, the general decode's encoder makes its text. */
function genericField(type: AvscType, encode: TextEncoder): FieldWriter {
  const skip = skipperOf(type);
  return (buf, c, out) => {
    const start = c.pos;
    skip(buf, c);
    let value: unknown;
    try {
      value = type.fromBuffer(buf.subarray(start, c.pos));
    } catch {
      throw MALFORMED;
    }
    if (value === null) {
      out.nullField();
      return true;
    }
    out.escapedString(encode(value));
    return false;
  };
}

function valueWriter(type: AvscType, schema: unknown): FieldWriter {
  const encode = textEncoderFor(schema as object);
  const connectName = connectNameOf(schema);
  switch (type.typeName) {
    case 'string':
      if (encode === IDENTITY_TEXT) return textField;
      if (connectName === ZONED_TIMESTAMP) return zonedTimestampField(encode);
      break;
    case 'int':
    case 'long':
    case 'abstract:long':
      if (encode === DECIMAL_TEXT) return integerField;
      break;
    case 'bytes':
      if (encode === BYTEA_TEXT) return byteaField;
      break;
    case 'boolean':
      return (buf, c, out) => {
        if (c.pos >= c.end) throw MALFORMED;
        out.byte(buf[c.pos++] === 0 ? 0x66 : 0x74);
        return false;
      };
  }
  return genericField(type, encode);
}

/** A column: nullable unions `["null", T]` (either order) unwrap to T; other unions are generic. */
function fieldWriter(type: AvscType, schema: unknown): FieldWriter {
  const b = nullableBranches(type, schema);
  if (!b) return valueWriter(type, schema);
  return orNull(valueWriter(type.types![b.value], (schema as unknown[])[b.value]), b, (out) => out.nullField());
}

// ---- the envelope.

/** What `scan` found in one record; one object reused for every record. */
export interface ScanResult {
  /** 'c', 'u', 'd', 'r' or 't' as a char code. */
  op: number;
  hasBefore: boolean;
  /** unchanged_toast lists a column. */
  toast: boolean;
  /** The after-image was written to the LineWriter as one line, from `lineStart` to its `pos`. */
  line: boolean;
  lineStart: number;
  /** A key column's after-image value was null (the general path reports that). */
  nullKey: boolean;
}

export interface EnvelopeTranscoder {
  /**
   * Reads `buf[start, end)` (an envelope without its wire header). Writes the after-image as
   * a COPY line when there is one. Returns false when the record is not for this path (the
   * writer then ends where it began).
   */
  scan(buf: Buffer, start: number, end: number, out: LineWriter, into: ScanResult): boolean;
}

const OP_CODES = new Set([0x63, 0x75, 0x64, 0x72, 0x74]);

/**
 * @param writer  avsc type of the envelope as written (from the registry schema)
 * @param schema  the same schema as JSON (for the columns' `connect.name` and encoders)
 * @param keyFields  Value record field names of the key columns (a null there keeps a row off this path)
 * @param binaryTypes  for COPY BINARY rows (copy-binary.ts): the destination type of each Value
 *   field, in order; null when a column has no binary writer for its type. Text lines without.
 */
export function compileEnvelope(writer: avro.Type, schema: object, keyFields: ReadonlySet<string>, binaryTypes?: readonly string[]): EnvelopeTranscoder | null {
  const env = writer as unknown as AvscType;
  const envJson = schema as { fields?: { name: string; type: unknown }[] };
  if (env.typeName !== 'record' || !Array.isArray(envJson.fields)) return null;
  const names = env.fields!.map((f) => f.name);
  const at = (n: string) => names.indexOf(n);
  const [iBefore, iAfter, iOp, iToast] = [at('before'), at('after'), at('op'), at('unchanged_toast')];
  if (iAfter < 0 || iOp < 0) return null;
  const afterType = env.fields![iAfter].type;
  if (!afterType.typeName.startsWith('union')) return null;
  const recordAt = afterType.types!.findIndex((t) => t.typeName === 'record');
  const nullAt = afterType.types!.findIndex((t) => t.typeName === 'null');
  if (recordAt < 0 || nullAt < 0 || afterType.types!.length !== 2) return null;
  const value = afterType.types![recordAt];
  const valueJson = findValueJson(envJson);
  if (!valueJson || valueJson.length !== value.fields!.length) return null;
  let columns: FieldWriter[];
  if (binaryTypes) {
    if (binaryTypes.length !== value.fields!.length) return null;
    const writers = value.fields!.map((f, i) => binaryWriter(f.type, valueJson[i].type, binaryTypes[i]));
    if (writers.some((w) => w === null)) return null;
    columns = writers as FieldWriter[];
  } else {
    try {
      columns = value.fields!.map((f, i) => fieldWriter(f.type, valueJson[i].type));
    } catch {
      return null; // a column type without a text form: the general decode reports it
    }
  }
  const keyAt = value.fields!.map((f) => keyFields.has(f.name));
  const skip = env.fields!.map((f) => skipperOf(f.type));
  const beforeSkip = iBefore >= 0 ? skip[iBefore] : null;
  const cursor: Cursor = { pos: 0, end: 0 };

  const writeRow = binaryTypes
    ? (buf: Buffer, c: Cursor, out: LineWriter, into: ScanResult): void => {
        writeFieldCount(out, columns.length);
        for (let k = 0; k < columns.length; k++) if (columns[k](buf, c, out) && keyAt[k]) into.nullKey = true;
      }
    : (buf: Buffer, c: Cursor, out: LineWriter, into: ScanResult): void => {
        for (let k = 0; k < columns.length; k++) {
          if (k > 0) out.byte(0x09);
          if (columns[k](buf, c, out) && keyAt[k]) into.nullKey = true;
        }
        out.byte(0x0a);
      };

  return {
    scan(buf, start, end, out, into) {
      const c = cursor;
      c.pos = start;
      c.end = end;
      const mark = out.pos;
      into.op = 0;
      into.hasBefore = false;
      into.toast = false;
      into.line = false;
      into.lineStart = mark;
      into.nullKey = false;
      try {
        for (let f = 0; f < skip.length; f++) {
          if (f === iAfter) {
            const branch = readLong(buf, c);
            if (branch === recordAt) {
              writeRow(buf, c, out, into);
              into.line = true;
            } else if (branch !== nullAt) throw MALFORMED;
          } else if (f === iOp) {
            const n = readLong(buf, c);
            if (n !== 1 || c.pos >= end) throw MALFORMED;
            into.op = buf[c.pos++];
            if (!OP_CODES.has(into.op)) throw MALFORMED;
          } else if (f === iBefore) {
            const p = c.pos;
            beforeSkip!(buf, c);
            into.hasBefore = !(c.pos === p + 1 && buf[p] === 0);
          } else if (f === iToast) {
            const p = c.pos;
            skip[f](buf, c);
            into.toast = !(c.pos === p + 1 && buf[p] === 0);
          } else skip[f](buf, c);
        }
        if (c.pos !== end) throw MALFORMED;
        return true;
      } catch {
        // Malformed bytes, or a value an encoder refuses: the general decode says which.
        out.pos = mark;
        into.line = false;
        return false;
      }
    },
  };
}

function findValueJson(env: { fields?: { name: string; type: unknown }[] }): { name: string; type: unknown }[] | null {
  for (const name of ['before', 'after']) {
    const f = env.fields!.find((x) => x.name === name);
    const branches = Array.isArray(f?.type) ? f.type : [f?.type];
    for (const b of branches) {
      if (b && typeof b === 'object' && (b as { type?: unknown }).type === 'record') return (b as { fields: { name: string; type: unknown }[] }).fields;
    }
  }
  return null;
}
