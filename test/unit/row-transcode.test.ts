/**
 * The source's row transcoder against the general path: for a table with every kind of
 * column and edge values, the key and envelope written straight from pgoutput tuple bytes
 * equal avsc's encoding of what changeToEvents builds from the decoded tuple.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TableInfo, TextTuple } from '../../shared/pg-types.ts';
import { column, EVERY_TYPE_ROWS, EVERY_TYPE_TABLE, pgType } from '../helpers/pg-fixtures.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { compileRowTranscoder, NO_ROOM, NOT_HERE, scanCopyRow, TupleRef, type TranscodedOp } from '../../source-connector/row-transcode.ts';

const TABLE = EVERY_TYPE_TABLE;
const ROWS = EVERY_TYPE_ROWS;

const schemas = buildRecordSchemas(TABLE, 'pfx.shop.every', '1.0.0');

/** pgoutput TupleData: strings as 't', null as 'n', undefined as 'u'. */
function tupleBytes(values: TextTuple, lead = 3): Buffer {
  const parts: Buffer[] = [Buffer.alloc(lead, 0x41)]; // bytes before the tuple, as in a message
  const count = Buffer.alloc(2);
  count.writeUInt16BE(values.length);
  parts.push(count);
  for (const v of values) {
    if (v === null) parts.push(Buffer.from('n'));
    else if (v === undefined) parts.push(Buffer.from('u'));
    else {
      const body = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(body.length);
      parts.push(Buffer.from('t'), len, body);
    }
  }
  parts.push(Buffer.from('trailing'));
  return Buffer.concat(parts);
}

function located(values: TextTuple): { src: Buffer; ref: TupleRef } {
  const src = tupleBytes(values);
  const ref = new TupleRef(4); // small: grows
  assert.equal(ref.scan(src, 3), src.length - 'trailing'.length);
  return { src, ref };
}

const tc = compileRowTranscoder(schemas)!;
const source = schemas.sourceFor({ db: 'shop', tsMs: 1_700_000_000_123, txId: 770, lsn: 0x16b374d848n });
const ctx = { schemas, source, tsMs: 1_700_000_000_456, tombstones: true };

function transcoded(op: TranscodedOp, values: TextTuple, size = 1 << 16): { key: Buffer; value: Buffer } {
  const { src, ref } = located(values);
  const buf = Buffer.alloc(size);
  const keyEnd = tc.writeKey(buf, 7, src, ref);
  assert.ok(keyEnd > 0, `key written (${keyEnd})`);
  const key = Buffer.from(buf.subarray(7, keyEnd));
  const valueEnd = tc.writeEnvelope(buf, keyEnd, op, src, ref, tc.sourceBytes(source), ctx.tsMs);
  assert.ok(valueEnd > 0, `value written (${valueEnd})`);
  return { key, value: Buffer.from(buf.subarray(keyEnd, valueEnd)) };
}

test('inserts, updates and deletes by key: the same key and envelope bytes as the general path, for every column type', () => {
  assert.ok(tc, 'the table compiles');
  for (const row of ROWS) {
    for (const [kind, op] of [['insert', 'c'], ['update', 'u']] as const) {
      const [ev] = changeToEvents({ kind, new: row } as DecodedChange, ctx);
      const got = transcoded(op, row);
      assert.deepEqual(got.key, schemas.keyType!.toBuffer(ev.key), `${kind} key of row ${row[0]}`);
      assert.deepEqual(got.value, schemas.envelopeType.toBuffer(ev.value), `${kind} of row ${row[0]}`);
    }
    const keyOnly = row.map((v, i) => (i < 2 ? v : null));
    const [del, tombstone] = changeToEvents({ kind: 'delete', key: keyOnly }, ctx);
    assert.equal(tombstone.value, null);
    const got = transcoded('d', keyOnly);
    assert.deepEqual(got.key, schemas.keyType!.toBuffer(del.key));
    assert.deepEqual(got.value, schemas.envelopeType.toBuffer(del.value), `delete of row ${row[0]}`);
  }
});

test('unchanged TOAST columns are null in the row and listed by their PostgreSQL name', () => {
  const row = [...ROWS[0]];
  row[10] = undefined;
  row[25] = undefined;
  const [ev] = changeToEvents({ kind: 'update', new: row }, ctx);
  assert.deepEqual(ev.value!.unchanged_toast, ['body', 'weird name']);
  assert.deepEqual(transcoded('u', row).value, schemas.envelopeType.toBuffer(ev.value));
});

test('a buffer too small answers NO_ROOM; a key without a value or a value a codec refuses answer NOT_HERE', () => {
  const { src, ref } = located(ROWS[3]);
  for (const size of [0, 1, 10, 100, 1000, 5200]) {
    const buf = Buffer.alloc(size);
    const k = tc.writeKey(buf, 0, src, ref);
    const v = k < 0 ? k : tc.writeEnvelope(buf, k, 'c', src, ref, tc.sourceBytes(source), 1);
    assert.equal(Math.min(k, v), NO_ROOM, `size ${size}`);
  }
  const toastedKey = [...ROWS[0]];
  toastedKey[1] = undefined;
  const a = located(toastedKey);
  assert.equal(tc.writeKey(Buffer.alloc(1000), 0, a.src, a.ref), NOT_HERE);
  const badDate = [...ROWS[0]];
  badDate[14] = 'not a date';
  const b = located(badDate);
  assert.equal(tc.writeEnvelope(Buffer.alloc(10_000), 0, 'c', b.src, b.ref, tc.sourceBytes(source), 1), NOT_HERE);
  const badTimestamptz = [...ROWS[0]];
  badTimestamptz[16] = 'soon';
  const bt = located(badTimestamptz);
  assert.equal(tc.writeEnvelope(Buffer.alloc(10_000), 0, 'c', bt.src, bt.ref, tc.sourceBytes(source), 1), NOT_HERE);
  const badInt = [...ROWS[0]];
  badInt[3] = '12x';
  const c = located(badInt);
  assert.equal(tc.writeEnvelope(Buffer.alloc(10_000), 0, 'c', c.src, c.ref, tc.sourceBytes(source), 1), NOT_HERE);
  // A tuple of another width (a Relation message missed) is not this path's either.
  const d = located(ROWS[0].slice(0, 5));
  assert.equal(tc.writeKey(Buffer.alloc(1000), 0, d.src, d.ref), NOT_HERE);
});

test('TupleRef.scan refuses binary values and truncated tuples', () => {
  const ref = new TupleRef();
  const good = tupleBytes(['1', null, undefined], 0);
  assert.equal(ref.scan(good, 0), good.length - 'trailing'.length);
  assert.deepEqual([...ref.kinds.subarray(0, 3)].map((k) => String.fromCharCode(k)), ['t', 'n', 'u']);
  const binary = Buffer.from(good);
  binary[2] = 0x62; // 'b'
  assert.equal(ref.scan(binary, 0), -1);
  for (let cut = 0; cut < 9; cut++) assert.equal(ref.scan(good.subarray(0, cut), 0), -1, `cut ${cut}`);
});

/** A COPY TO text row: `\N` for NULL, fields as they are (callers pick escape-free values). */
/** A row as COPY TO writes it: backslash, tab, LF and CR escaped. */
const copyLine = (values: TextTuple): Buffer =>
  Buffer.from(values.map((v) => (v == null ? '\\N' : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r'))).join('\t'), 'utf8');
const needsEscape = (v: string | null | undefined) => typeof v === 'string' && /[\t\n\r\\]/.test(v);
/** COPY escapes that leave a row to the parser: all but one leading backslash (every bytea: `\\x…`). */
const leftToParser = (v: string | null | undefined) => typeof v === 'string' && (/[\t\n\r]/.test(v) || v.indexOf('\\', 1) >= 0);

test('snapshot rows from COPY text: rows without escapes but a leading backslash give the general path\'s bytes; rows with others are left to the parser', () => {
  const ref = new TupleRef(2);
  let taken = 0;
  let expected = 0;
  // The rows as they are, and with every value left to the parser replaced by NULL.
  for (const row of [...ROWS, ...ROWS.map((r) => r.map((v) => (leftToParser(v) ? null : v)))]) {
    const line = copyLine(row);
    const ok = scanCopyRow(ref, line, 0, line.length, TABLE.columns.length);
    assert.equal(ok, !row.some(leftToParser), `row ${row[0]}`);
    if (!ok) continue;
    if (row.some(needsEscape)) expected++; // a bytea (or other value) starting with a backslash
    taken++;
    const [ev] = changeToEvents({ kind: 'read', new: row } as DecodedChange, ctx);
    const buf = Buffer.alloc(1 << 16);
    const keyEnd = tc.writeKey(buf, 0, line, ref);
    assert.deepEqual(buf.subarray(0, keyEnd), schemas.keyType!.toBuffer(ev.key));
    const end = tc.writeEnvelope(buf, keyEnd, 'r', line, ref, tc.sourceBytes(source), ctx.tsMs);
    assert.deepEqual(buf.subarray(keyEnd, end), schemas.envelopeType.toBuffer(ev.value), `read of row ${row[0]}`);
  }
  assert.ok(taken >= ROWS.length, `every row without a value left to the parser is taken (${taken})`);
  assert.ok(expected >= ROWS.length, `rows with a bytea are taken (${expected})`);
  // NULL first, last and in a row of NULLs; a field that merely starts with \N is an escape.
  const edge = (s: string) => {
    const b = Buffer.from(s);
    return scanCopyRow(ref, b, 0, b.length, 8) ? [...ref.kinds.subarray(0, ref.n)].map((k) => String.fromCharCode(k)).join('') : null;
  };
  assert.equal(edge('\\N\ta\t\\N'), 'ntn');
  assert.equal(edge('\\N\t\\N'), 'nn');
  assert.equal(edge('a\t\tb\t'), 'tttt');
  assert.equal(edge('\\Nx\ta'), null);
  assert.equal(edge('a\\tb'), null);
  assert.equal(edge('\\\\x41\t\\\\'), 'tt');
  assert.deepEqual([ref.starts[0], ref.ends[0], ref.starts[1], ref.ends[1]], [1, 5, 7, 8], 'each from its second backslash');
  assert.equal(edge('\\\\x4\\\\1'), null);
  assert.equal(edge('x\\\\'), null);
  assert.equal(edge(['1', '2', '3', '4', '5', '6', '7', '8', '9'].join('\t')), null, 'more fields than the table has');
});

test('keys equal in PostgreSQL but spelled apart (1.50 and 1.5, -0 and 0, PT24H and P1D) get one key on both paths; the envelope keeps the spelling', () => {
  const spelled: TableInfo = {
    relid: 2,
    schema: 'shop',
    name: 'spelled',
    columns: [
      column('n', pgType('numeric'), -1, true),
      column('f', pgType('float8'), -1, true),
      column('r', pgType('float4'), -1, true),
      column('i', pgType('interval'), -1, true),
      column('m', pgType('numeric'), ((12 << 16) | 2) + 4, true),
      column('v', pgType('text')),
    ],
    keyColumns: ['n', 'f', 'r', 'i', 'm'],
    replicaIdentity: 'default',
  };
  const s = buildRecordSchemas(spelled, 'pfx.shop.spelled', '1.0.0');
  const t = compileRowTranscoder(s)!;
  const c = { schemas: s, source, tsMs: 1, tombstones: false };
  const keyOf = (row: TextTuple): Buffer => {
    const { src, ref } = located(row);
    const buf = Buffer.alloc(1000);
    const end = t.writeKey(buf, 0, src, ref);
    const key = Buffer.from(buf.subarray(0, end));
    const [ev] = changeToEvents({ kind: 'insert', new: row }, c);
    assert.deepEqual(key, s.keyType!.toBuffer(ev.key), `${row.join(' ')}: the general path's key`);
    assert.equal((ev.value!.after as Record<string, unknown>).n, row[0], 'the envelope keeps the stored spelling');
    return key;
  };
  const one = keyOf(['1.50', '-0', '-0', 'PT24H', '2.50', 'a']);
  assert.deepEqual(one, keyOf(['1.5', '0', '0', 'P1D', '2.50', 'b']));
  assert.deepEqual(one, keyOf(['1.500', '0', '-0', 'PT1440M', '2.50', 'c']));
  assert.deepEqual({ ...(s.keyType!.fromBuffer(one) as object) }, { n: '1.5', f: 0, r: 0, i: 'P1D', m: '2.50' });
  assert.ok(Object.is((s.keyType!.fromBuffer(one) as { f: number }).f, 0), '+0, not -0');
  assert.notDeepEqual(one, keyOf(['15', '0', '0', 'P1D', '2.50', 'd']), 'a different value stays a different key');
});

test('a large bytea is decoded from its hex straight into the record: the general path\'s bytes, without a string of the whole value', () => {
  const value = Buffer.alloc(3_000_000);
  for (let i = 0; i < value.length; i++) value[i] = (i * 7919) & 0xff;
  const row = [...ROWS[0]];
  row[11] = '\\x' + value.toString('hex');
  const [ev] = changeToEvents({ kind: 'insert', new: row }, ctx);
  const { src, ref } = located(row);
  // Every string made from a Buffer while the transcoder runs: the whole value's hex (6 MB) was one.
  const toString = Buffer.prototype.toString;
  let longest = 0;
  Buffer.prototype.toString = function (this: Buffer, encoding?: BufferEncoding, start = 0, end = this.length) {
    longest = Math.max(longest, Math.min(end, this.length) - start);
    return toString.call(this, encoding, start, end);
  } as typeof toString;
  const buf = Buffer.alloc(src.length + 4096);
  let valueEnd: number;
  try {
    const keyEnd = tc.writeKey(buf, 0, src, ref);
    valueEnd = tc.writeEnvelope(buf, keyEnd, 'c', src, ref, tc.sourceBytes(source), ctx.tsMs);
    assert.ok(valueEnd > 0, `value written (${valueEnd})`);
    assert.ok(longest <= 128 * 1024, `no string of the whole value (longest: ${longest} bytes)`);
    assert.deepEqual(buf.subarray(tc.writeKey(buf, 0, src, ref), valueEnd), schemas.envelopeType.toBuffer(ev.value));
  } finally {
    Buffer.prototype.toString = toString;
  }
  // Escape-format text and odd hex are left to the general path.
  for (const odd of ['\\\\000abc', '\\x0', '\\xzz']) {
    row[11] = odd;
    const o = located(row);
    const end = tc.writeEnvelope(Buffer.alloc(1 << 16), 0, 'c', o.src, o.ref, tc.sourceBytes(source), ctx.tsMs);
    assert.equal(end, NOT_HERE, odd);
  }
});
