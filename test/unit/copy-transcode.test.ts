/**
 * The COPY transcoder against the general decode: for records of a table with every kind of
 * column and edge values, the line written straight from the Avro bytes equals the COPY text
 * of the values the general decode produces (the same text the direct-COPY path sent before).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ColumnInfo, PgTypeInfo, TableInfo, TextTuple } from '../../shared/pg-types.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { RecordDecoder, type RawRecord } from '../../sink-connector/decode.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { encodeCopyTextLine } from '../../sink-connector/upsert-batch.ts';
import { compileEnvelope, LineWriter, type ScanResult } from '../../sink-connector/copy-transcode.ts';

const T = (name: string, kind: PgTypeInfo['kind'] = 'base', extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({ oid: 0, schema: 'pg_catalog', name, kind, ...extra });
const col = (name: string, type: PgTypeInfo, typmod = -1, isKey = false): ColumnInfo => ({ name, type, typmod, isKey });

const TABLE: TableInfo = {
  relid: 1,
  schema: 'shop',
  name: 'every',
  columns: [
    col('id', T('int8'), -1, true),
    col('i2', T('int2')),
    col('i4', T('int4')),
    col('f4', T('float4')),
    col('f8', T('float8')),
    col('ok', T('bool')),
    col('amount', T('numeric'), ((12 << 16) | 2) + 4),
    col('n', T('numeric')),
    col('body', T('text')),
    col('bin', T('bytea')),
    col('uid', T('uuid')),
    col('doc', T('jsonb')),
    col('day', T('date')),
    col('ts', T('timestamp')),
    col('tstz', T('timestamptz')),
    col('t', T('time')),
    col('ttz', T('timetz')),
    col('span', T('interval')),
    col('bits', T('varbit')),
    col('mood', { oid: 0, schema: 'public', name: 'mood', kind: 'enum' }),
    col('ints', T('_int4', 'array', { elem: T('int4') })),
    col('texts', T('_text', 'array', { elem: T('text') })),
    col('r', T('int4range', 'range', { subtype: T('int4') })),
    col('ip', T('inet')),
  ],
  keyColumns: ['id'],
  replicaIdentity: 'default',
};

/** Rows of PostgreSQL text output (null: SQL NULL), edge values included. */
const ROWS: TextTuple[] = [
  ['1', '-32768', '2147483647', 'NaN', '-0', 't', '1234567890.12', 'NaN', 'plain', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '2024-02-29', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '24:00:00', '13:45:10.123456+05:30', 'P1Y2M3DT4H5M6.789S', '0101', 'happy', '{1,2,NULL}', '{a,"b c",NULL,"NULL",""}', '[1,10)', '192.168.0.1/24'],
  ['9223372036854775807', '0', '-2147483648', 'Infinity', '1.0000000000000002', 'f', '-0.01', '1e100', 'tab\there\nnew line\r\\ back ünï ✓', '\\x', '00000000-0000-0000-0000-000000000000', '"\\\\u0000x"', '0044-03-15 BC', 'infinity', '-infinity', '00:00:00', '00:00:00+00', 'PT0S', '', 'sad', '{{1,2},{3,4}}', '{}', 'empty', '::1'],
  ['-9223372036854775808', null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  ['9007199254740993', '7', '42', '1.5', '5e-324', 't', '0.00', '-Infinity', '', '\\x5c09', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1, 2]', '5874897-12-31', '294276-12-31 23:59:59.999999', '0001-01-01 00:00:00+00 BC', '12:00:00.5', '01:00:00-05', 'P-10M-3D', '1', 'ok', '[0:1]={1,2}', '{"x\\ty"}', '(,5]', '10.0.0.0/8'],
  ['4503599627370497', '1', '1', '3.4028235e38', '-7.5', 'f', '-92233720368.54', '0.0', 'x'.repeat(300) + '\\', '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'null', '1970-01-01', '1969-12-31 23:59:59.999999', '10000-01-01 00:00:00+00', '23:59:59.999999', '13:45:10+05:30:15', 'PT0.000001S', '0', 'happy', '{-1}', '{"\\\\"}', '[-3,-1)', '::ffff:1.2.3.4'],
];

const TOPIC = 'pfx.shop.every';
const schemas = buildRecordSchemas(TABLE, TOPIC, '1.0.0');

function encode(change: DecodedChange): RawRecord[] {
  const source = schemas.sourceFor({ db: 'shop', tsMs: 1, txId: 7, lsn: 123n });
  return changeToEvents(change, { schemas, source, tsMs: 1, tombstones: true }).map((ev, i) => ({
    topic: TOPIC,
    partition: 0,
    offset: String(i),
    key: ev.key ? encodeWire(1, schemas.keyType!.toBuffer(ev.key)) : null,
    value: ev.value ? encodeWire(2, schemas.envelopeType.toBuffer(ev.value)) : null,
  }));
}

const keyFields = new Set(['id']);

function transcoder() {
  return compileEnvelope(createAvroType(schemas.envelopeSchema), schemas.envelopeSchema, keyFields)!;
}

const fresh = (): ScanResult => ({ op: 0, hasBefore: false, toast: false, line: false, lineStart: 0, nullKey: false });

test('every column type: the transcoded COPY line equals the COPY text of the general decode', async () => {
  const decoder = new RecordDecoder({ getSchema: async (id) => (id === 1 ? schemas.keySchema! : schemas.envelopeSchema) }, () => ({ schema: 'shop', table: 'every', columns: {} }), 'pfx');
  const tc = transcoder();
  const out = new LineWriter(16); // small: the writer grows on the way
  for (const [kind, op] of [['read', 'r'], ['insert', 'c'], ['update', 'u']] as const) {
    for (const row of ROWS) {
      const [raw] = encode({ kind, new: row } as DecodedChange);
      await decoder.prepare([raw]);
      const general = decoder.decode(raw)!;
      const expected = encodeCopyTextLine(general.table.columns.map((c) => general.change.after![c.name] ?? null)) + '\n';
      const into = fresh();
      assert.equal(tc.scan(raw.value!, 5, raw.value!.length, out, into), true);
      assert.equal(String.fromCharCode(into.op), op);
      assert.equal(into.line, true);
      assert.equal(into.hasBefore, false);
      assert.equal(into.toast, false);
      assert.equal(into.nullKey, false);
      assert.equal(out.buf.toString('utf8', into.lineStart, out.pos), expected, `row ${row[0]} as ${kind}`);
    }
  }
});

test('flags: a delete has no line, unchanged TOAST and before-images are reported, lines follow each other', () => {
  const tc = transcoder();
  const out = new LineWriter();
  const into = fresh();
  const [del] = encode({ kind: 'delete', key: ['5', ...Array(23).fill(null)] } as unknown as DecodedChange);
  assert.equal(tc.scan(del.value!, 5, del.value!.length, out, into), true);
  assert.equal(String.fromCharCode(into.op), 'd');
  assert.equal(into.line, false);
  assert.equal(into.hasBefore, true);
  assert.equal(out.pos, 0);

  const toastRow = [...ROWS[0]];
  toastRow[8] = undefined;
  const [upd] = encode({ kind: 'update', new: toastRow } as DecodedChange);
  assert.equal(tc.scan(upd.value!, 5, upd.value!.length, out, into), true);
  assert.equal(into.toast, true);
  const first = out.pos;
  const [ins] = encode({ kind: 'insert', new: ROWS[1] } as DecodedChange);
  tc.scan(ins.value!, 5, ins.value!.length, out, into);
  assert.equal(into.lineStart, first);
});

test('a null key column, or bytes that are not the schema, keep the record off this path (the writer unmoved)', () => {
  const tc = transcoder();
  const out = new LineWriter();
  const into = fresh();
  const source = schemas.sourceFor({ db: 'shop', tsMs: 1 });
  const [ev] = changeToEvents({ kind: 'insert', new: ROWS[2] } as DecodedChange, { schemas, source, tsMs: 1, tombstones: true });
  const value = ev.value as unknown as { after: Record<string, unknown> };
  const noKey = encodeWire(2, schemas.envelopeType.toBuffer({ ...value, after: { ...value.after, id: null } }));
  assert.equal(tc.scan(noKey, 5, noKey.length, out, into), true);
  assert.equal(into.nullKey, true);

  const [good] = encode({ kind: 'insert', new: ROWS[0] } as DecodedChange);
  const mark = out.pos;
  for (const cut of [6, 20, good.value!.length - 1]) {
    assert.equal(tc.scan(good.value!, 5, cut, out, into), false, `cut at ${cut}`);
    assert.equal(out.pos, mark);
  }
  const extra = Buffer.concat([good.value!, Buffer.from([0])]);
  assert.equal(tc.scan(extra, 5, extra.length, out, into), false);
  const badOp = Buffer.from(good.value!);
  // The op string sits after the source block; corrupt every byte one at a time and require no crash.
  for (let i = 5; i < badOp.length; i++) {
    const copy = Buffer.from(badOp);
    copy[i] ^= 0xff;
    tc.scan(copy, 5, copy.length, out, into);
  }
});
