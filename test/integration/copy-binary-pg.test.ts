/**
 * COPY BINARY rows written straight from change-event bytes (copy-binary.ts) against a real
 * PostgreSQL (or SHARDBRIDGE_TEST_DESTINATION): a table of every type with a binary writer
 * gets the same rows from binary COPY as from the text lines of the same records, edge values
 * included; values without an exact binary form are left to the general path, not guessed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { getTestDestination } from '../helpers/postgres.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';
import type { TableInfo, TextTuple } from '../../shared/pg-types.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents } from '../../source-connector/envelope.ts';
import { compileEnvelope, LineWriter, type ScanResult } from '../../sink-connector/copy-transcode.ts';
import { BINARY_HEADER, BINARY_TRAILER } from '../../sink-connector/copy-binary.ts';
import { writeCopy } from '../../sink-connector/staging.ts';

const SCHEMA = `sb_binary_${process.pid}_${Date.now().toString(36)}`;
let release: () => Promise<void> = async () => {};
let db: pg.Client;

const TABLE: TableInfo = {
  relid: 1,
  schema: SCHEMA,
  name: 'b',
  columns: [
    column('id', pgType('int8'), -1, true),
    column('i2', pgType('int2')),
    column('i4', pgType('int4')),
    column('amount', pgType('numeric'), ((12 << 16) | 2) + 4),
    column('n', pgType('numeric')),
    column('body', pgType('text')),
    column('vc', pgType('varchar'), 10 + 4),
    column('j', pgType('json')),
    column('doc', pgType('jsonb')),
    column('uid', pgType('uuid')),
    column('ok', pgType('bool')),
    column('f4', pgType('float4')),
    column('f8', pgType('float8')),
    column('bin', pgType('bytea')),
    column('day', pgType('date')),
    column('ts', pgType('timestamp')),
    column('tstz', pgType('timestamptz')),
    column('tstz3', pgType('timestamptz'), 3),
  ],
  keyColumns: ['id'],
  replicaIdentity: 'default',
};

// PostgreSQL's own output text of each value, as the source sends it.
const ROWS: TextTuple[] = [
  ['1', '-32768', '2147483647', '1234567890.12', '0.0001', 'plain', 'ten chars!', '{"a": [1, 2]}', '{"a": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 't', '3.4028235e+38', '-0', '\\x00ff', '2024-02-29', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '1999-12-31 23:59:59.999+00'],
  ['9223372036854775807', '32767', '-2147483648', '-0.01', '123456789012345678901234567890.000000000000001', 'tab\there\nnew line\r\\ back ✓', '', '[]', '"x"', '00000000-0000-0000-0000-000000000000', 'f', 'NaN', 'Infinity', '\\x', 'infinity', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '2024-01-02 03:04:05.123+00'],
  ['-9223372036854775808', null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  ['9007199254740993', '0', '0', '0.00', '-12.3400', 'ünïcödé', 'a', 'null', '{"k": "ü\\u00fc", "n": 1.50}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 't', '-1.5', '5e-324', '\\xdeadbeef', '-infinity', '2262-04-11 23:47:16.854775', '9999-12-31 23:59:59.999999+00', '0001-01-01 00:00:00+00'],
  ['-1', '1', '1', '99999999.99', '10000', 'z', 'z', '1', '2', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'f', '1', '1e+308', '\\x5c', '0044-03-15 BC', '4713-11-24 00:00:00 BC', '1600-02-29 12:00:00+00', '2000-02-29 23:59:59.5+00'],
];
// Values without an exact binary form here: the record keeps to the general path.
const FALLBACK_ROWS: TextTuple[] = [
  ['100', '1', '1', 'NaN', '1', 'x', 'x', '1', '1', null, null, null, null, null, null, null, null, null],
  ['101', '1', '1', '1.00', 'Infinity', 'x', 'x', '1', '1', null, null, null, null, null, null, null, null, null],
  ['102', '1', '1', '1.00', '1', 'x', 'x', '1', '1', null, null, null, null, null, null, null, 'infinity', null],
  ['103', '1', '1', '1.00', '1', 'x', 'x', '1', '1', null, null, null, null, null, null, 'infinity', null, null],
  ['104', '1', '1', '1.00', '1', 'x', 'x', '1', '1', null, null, null, null, null, null, null, '0001-01-01 00:00:00+00 BC', null],
  ['105', '1', '1', '1.00', '1', 'x', 'x', '1', '1', null, null, null, null, null, null, '294276-12-31 23:59:59.999999', null, null],
];

const schemas = buildRecordSchemas(TABLE, `p.${SCHEMA}.b`, '1.0.0');
const writerType = createAvroType(schemas.envelopeSchema);

function valueBytes(row: TextTuple): Buffer {
  const source = schemas.sourceFor({ db: 'd', tsMs: 1 });
  const [ev] = changeToEvents({ kind: 'insert', new: row }, { schemas, source, tsMs: 1, tombstones: false });
  return encodeWire(2, schemas.envelopeType.toBuffer(ev.value!));
}

before(async () => {
  const dest = await getTestDestination();
  release = dest.release;
  db = new pg.Client({ connectionString: dest.url });
  await db.connect();
  await db.query(`CREATE SCHEMA ${SCHEMA}`);
  const ddl = `(id bigint PRIMARY KEY, i2 smallint, i4 integer, amount numeric(12,2), n numeric, body text, vc varchar(10), j json, doc jsonb,
    uid uuid, ok boolean, f4 real, f8 double precision, bin bytea, day date, ts timestamp, tstz timestamptz, tstz3 timestamptz(3))`;
  await db.query(`CREATE TABLE ${SCHEMA}.as_text ${ddl}; CREATE TABLE ${SCHEMA}.as_binary ${ddl}`);
});

after(async () => {
  await db?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
  await db?.end();
  await release();
});

const fresh = (): ScanResult => ({ op: 0, hasBefore: false, toast: false, line: false, lineStart: 0, nullKey: false });

async function copyInto(table: string, format: string, chunks: Buffer[]): Promise<void> {
  await writeCopy(db.query(copyFrom(`COPY ${SCHEMA}.${table} FROM STDIN${format}`)), chunks);
}

test('binary COPY rows made from the Avro bytes store the same values as the text lines; values without an exact binary form fall back', async () => {
  const { rows: cat } = await db.query(
    `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = '${SCHEMA}.as_binary'::regclass AND attnum > 0 ORDER BY attnum`,
  );
  const destTypes = cat.map((r) => r.type as string);
  const binary = compileEnvelope(writerType, schemas.envelopeSchema, new Set(['id']), destTypes);
  const text = compileEnvelope(writerType, schemas.envelopeSchema, new Set(['id']))!;
  assert.ok(binary, `every column has a binary writer: ${destTypes.join(', ')}`);

  const bin = new LineWriter(16);
  const txt = new LineWriter(16);
  for (const row of ROWS) {
    const v = valueBytes(row);
    const into = fresh();
    assert.equal(binary.scan(v, 5, v.length, bin, into), true, `row ${row[0]} has a binary form`);
    assert.equal(into.line, true);
    assert.equal(text.scan(v, 5, v.length, txt, fresh()), true);
  }
  for (const row of FALLBACK_ROWS) {
    const v = valueBytes(row);
    const mark = bin.pos;
    assert.equal(binary.scan(v, 5, v.length, bin, fresh()), false, `row ${row[0]} falls back`);
    assert.equal(bin.pos, mark, 'the writer is left where it was');
  }
  await copyInto('as_text', '', [txt.buf.subarray(0, txt.pos)]);
  await copyInto('as_binary', ' WITH (FORMAT binary)', [BINARY_HEADER, bin.buf.subarray(0, bin.pos), BINARY_TRAILER]);
  const all = (t: string) => db.query(`SELECT t::text AS r FROM ${SCHEMA}.${t} t ORDER BY id`).then((r) => r.rows.map((x) => x.r as string));
  const [a, b] = [await all('as_text'), await all('as_binary')];
  assert.equal(b.length, ROWS.length);
  assert.deepEqual(b, a);
  // Typmods apply as for text input: numeric(12,2) rounds its scale, timestamptz(3) its fraction.
  const { rows } = await db.query(`SELECT amount::text, tstz3::text FROM ${SCHEMA}.as_binary WHERE id = 9007199254740993`);
  assert.deepEqual(rows[0], { amount: '0.00', tstz3: '0001-01-01 00:00:00+00' });
});

test('a column type without a binary writer keeps the table version on text', () => {
  const types = TABLE.columns.map(() => 'text');
  types[1] = 'integer[]';
  assert.equal(compileEnvelope(writerType, schemas.envelopeSchema, new Set(['id']), types), null);
  assert.equal(compileEnvelope(writerType, schemas.envelopeSchema, new Set(['id']), types.slice(1)), null, 'a count that does not match');
});
