/**
 * Reading Avro binary without building values, for the sink's COPY transcoder: zigzag varints as
 * exact numbers, and skippers compiled once per avsc type that step over a value. Every read is
 * bounds-checked and throws MALFORMED past the end. Pure.
 */

/** avsc's type objects, as far as we walk them. */
export interface AvscType {
  typeName: string;
  fields?: { name: string; type: AvscType }[];
  types?: AvscType[];
  itemsType?: AvscType;
  valuesType?: AvscType;
  size?: number;
  fromBuffer(buf: Buffer): unknown;
}

export class Malformed extends Error {}
export const MALFORMED = new Malformed('malformed Avro');

// ---- reading varints and skipping values: bounds-checked, throw MALFORMED.

/** Zigzag varint at `pos` as a number when exact (|v| < 2^53), else NaN. Sets `cursor.pos`. */
export function readLong(buf: Buffer, cursor: Cursor): number {
  let pos = cursor.pos;
  let n = 0;
  let mul = 1;
  for (;;) {
    if (pos >= cursor.end || mul > 2 ** 63) throw MALFORMED;
    const b = buf[pos++];
    n += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  cursor.pos = pos;
  if (n > Number.MAX_SAFE_INTEGER) return NaN;
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

/** The same varint as a BigInt (for longs beyond 2^53); `start` is where it began. */
export function readLongBig(buf: Buffer, start: number): bigint {
  let n = 0n;
  let shift = 0n;
  for (let pos = start; ; pos++) {
    const b = BigInt(buf[pos]);
    n |= (b & 0x7fn) << shift;
    if (b < 0x80n) break;
    shift += 7n;
  }
  return n & 1n ? -((n + 1n) >> 1n) : n >> 1n;
}

export interface Cursor {
  pos: number;
  end: number;
}

type Skipper = (buf: Buffer, c: Cursor) => void;

function skipVarint(buf: Buffer, c: Cursor): void {
  let pos = c.pos;
  for (let i = 0; i < 10; i++) {
    if (pos >= c.end) throw MALFORMED;
    if (buf[pos++] < 0x80) {
      c.pos = pos;
      return;
    }
  }
  throw MALFORMED;
}

/** The length of a string or bytes value, checked against the end; the cursor is left at its first byte. */
export function readLength(buf: Buffer, c: Cursor): number {
  const n = readLong(buf, c);
  if (!(n >= 0) || c.pos + n > c.end) throw MALFORMED;
  return n;
}

/** The `connect.name` of a value's schema JSON (Debezium's logical type), if it has one. */
export const connectNameOf = (schema: unknown): unknown =>
  schema !== null && typeof schema === 'object' ? (schema as Record<string, unknown>)['connect.name'] : undefined;

/** A nullable union `["null", T]` (either order, `schema` its JSON): the branch indexes of T and of null; null for any other type. */
export function nullableBranches(type: AvscType, schema: unknown): { value: number; nul: number } | null {
  if (!type.typeName.startsWith('union') || !Array.isArray(schema) || schema.length !== 2) return null;
  const nul = type.types!.findIndex((t) => t.typeName === 'null');
  return nul < 0 ? null : { value: 1 - nul, nul };
}

/** `write` behind a nullable union's branch index; `writeNull` for the null branch. Both return whether the value was null. */
export function orNull<O>(write: (buf: Buffer, c: Cursor, out: O) => boolean, branches: { value: number; nul: number }, writeNull: (out: O) => void): (buf: Buffer, c: Cursor, out: O) => boolean {
  const { value, nul } = branches;
  return (buf, c, out) => {
    const i = readLong(buf, c);
    if (i === value) return write(buf, c, out);
    if (i !== nul) throw MALFORMED;
    writeNull(out);
    return true;
  };
}

function skipBytes(buf: Buffer, c: Cursor): void {
  const n = readLength(buf, c); // before reading c.pos: it moves the cursor
  c.pos += n;
}

const fixedSkipper =
  (n: number): Skipper =>
  (_buf, c) => {
    if (c.pos + n > c.end) throw MALFORMED;
    c.pos += n;
  };

/** Arrays and maps: blocks of `count` items (a negative count is followed by the block's byte size). */
function blockSkipper(item: Skipper): Skipper {
  return (buf, c) => {
    for (;;) {
      let count = readLong(buf, c);
      if (count === 0) return;
      if (!Number.isSafeInteger(count)) throw MALFORMED;
      if (count < 0) {
        count = -count;
        readLong(buf, c);
      }
      for (let i = 0; i < count; i++) item(buf, c);
    }
  };
}

const skippers = new WeakMap<AvscType, Skipper>();

export function skipperOf(t: AvscType): Skipper {
  const known = skippers.get(t);
  if (known) return known;
  // Records can refer to themselves: register a forwarder before compiling the fields.
  const slot: { compiled?: Skipper } = {};
  skippers.set(t, (buf, c) => slot.compiled!(buf, c));
  slot.compiled = compileSkipper(t);
  skippers.set(t, slot.compiled);
  return slot.compiled;
}

function compileSkipper(t: AvscType): Skipper {
  const name = t.typeName;
  switch (name) {
    case 'null':
      return () => {};
    case 'boolean':
      return fixedSkipper(1);
    case 'int':
    case 'long':
    case 'abstract:long':
    case 'enum':
      return skipVarint;
    case 'float':
      return fixedSkipper(4);
    case 'double':
      return fixedSkipper(8);
    case 'string':
    case 'bytes':
      return skipBytes;
    case 'fixed':
      return fixedSkipper(t.size!);
    case 'array':
      return blockSkipper(skipperOf(t.itemsType!));
    case 'map': {
      const value = skipperOf(t.valuesType!);
      return blockSkipper((buf, c) => (skipBytes(buf, c), value(buf, c)));
    }
    case 'record':
    case 'error': {
      const fields = t.fields!.map((f) => skipperOf(f.type));
      return (buf, c) => {
        for (let i = 0; i < fields.length; i++) fields[i](buf, c);
      };
    }
    default:
      if (name.startsWith('union')) {
        const branches = t.types!.map(skipperOf);
        return (buf, c) => {
          const i = readLong(buf, c);
          const b = branches[i];
          if (b === undefined) throw MALFORMED;
          b(buf, c);
        };
      }
      throw new Malformed(`no skipper for Avro type ${name}`);
  }
}
