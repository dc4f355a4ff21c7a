/**
 * The COPY transcoder against the general decode: for records of a table with every kind of
 * column and edge values, the line written straight from the Avro bytes equals the COPY text
 * of the values the general decode produces (the same text the direct-COPY path sent before).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { RecordDecoder, type RawRecord } from '../../sink-connector/decode.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { encodeCopyTextLine } from '../../sink-connector/upsert-batch.ts';
import { compileEnvelope, LineWriter, type ScanResult } from '../../sink-connector/copy-transcode.ts';
import { EVERY_TYPE_ROWS, EVERY_TYPE_TABLE, column, pgType } from '../helpers/pg-fixtures.ts';

const TABLE = EVERY_TYPE_TABLE;
const ROWS = EVERY_TYPE_ROWS;

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

const keyFields = new Set(['id', 'region']);

function transcoder() {
  return compileEnvelope(createAvroType(schemas.envelopeSchema), schemas.envelopeSchema, keyFields)!;
}

const fresh = (): ScanResult => ({ op: 0, hasBefore: false, toast: false, line: false, lineStart: 0, nullKey: false });

test('every column type: the transcoded COPY line equals the COPY text of the general decode', async () => {
  const decoder = new RecordDecoder({ getSchema: async (id) => (id === 1 ? schemas.keySchema! : schemas.envelopeSchema) }, () => ({ schema: 'shop', table: 'every', columns: {}, sources: [] }), 'pfx');
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
  const [del] = encode({ kind: 'delete', key: ['5', 'eu', ...Array(TABLE.columns.length - 2).fill(null)] } as unknown as DecodedChange);
  assert.equal(tc.scan(del.value!, 5, del.value!.length, out, into), true);
  assert.equal(String.fromCharCode(into.op), 'd');
  assert.equal(into.line, false);
  assert.equal(into.hasBefore, true);
  assert.equal(out.pos, 0);

  const toastRow = [...ROWS[0]];
  toastRow[TABLE.columns.findIndex((c) => c.name === 'body')] = undefined;
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

test('a large bytea, array or text value: its line is the general decode\'s, written without room for much more than the line', async () => {
  const table = { ...TABLE, columns: [column('id', pgType('int8'), -1, true), column('bin', pgType('bytea')), column('texts', pgType('_text', 'array', { elem: pgType('text') })), column('body', pgType('text'))], keyColumns: ['id'] };
  const big = buildRecordSchemas(table, TOPIC, '1.0.0');
  const source = big.sourceFor({ db: 'shop', tsMs: 1 });
  const decoder = new RecordDecoder({ getSchema: async (id) => (id === 1 ? big.keySchema! : big.envelopeSchema) }, () => ({ schema: 'shop', table: 'every', columns: {}, sources: [] }), 'pfx');
  const tc = compileEnvelope(createAvroType(big.envelopeSchema), big.envelopeSchema, new Set(['id']))!;
  const rows = [
    ['1', `\\x${Buffer.alloc(2_000_000, 0xa7).toString('hex')}`, null, null],
    ['2', null, `{${'x'.repeat(2_000_000)},"a\\\\b"}`, null],
    ['3', null, null, `${'y'.repeat(2_000_000)}\t\\`],
  ];
  for (const row of rows) {
    const [ev] = changeToEvents({ kind: 'insert', new: row } as DecodedChange, { schemas: big, source, tsMs: 1, tombstones: true });
    const raw: RawRecord = { topic: TOPIC, partition: 0, offset: '0', key: encodeWire(1, big.keyType!.toBuffer(ev.key)), value: encodeWire(2, big.envelopeType.toBuffer(ev.value)) };
    await decoder.prepare([raw]);
    const general = decoder.decode(raw)!;
    const expected = encodeCopyTextLine(general.table.columns.map((c) => general.change.after![c.name] ?? null)) + '\n';
    // Room for 1.25 lines: the writer must not grow. It did: the generic writers made room
    // for three bytes per character of bytea's hex string (and copied it to escape its
    // backslash), the text writer for twice a text's length.
    const room = Math.ceil(Buffer.byteLength(expected) * 1.25);
    const out = new LineWriter(room);
    assert.equal(tc.scan(raw.value!, 5, raw.value!.length, out, fresh()), true);
    assert.equal(out.buf.toString('utf8', 0, out.pos), expected, `row ${row[0]}`);
    assert.equal(out.buf.length, room, `row ${row[0]}: the writer grew to ${out.buf.length} bytes for a ${out.pos}-byte line`);
  }
});
