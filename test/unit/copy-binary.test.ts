/** COPY BINARY field writers (copy-binary.ts, pure): exact send formats, and MALFORMED where no exact form exists. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import type { AvscType } from '../../sink-connector/avro-read.ts';
import { binaryWriter } from '../../sink-connector/copy-binary.ts';
import { daysFromCivil } from '../../shared/type-mapping/temporal.ts';
import { LineWriter } from '../../sink-connector/copy-transcode.ts';

/** The field `destType` gets for `value` written with Avro `schema`; null when the writer refuses it. */
function field(schema: object | string, destType: string, value: unknown): string | null {
  const type = createAvroType(schema as object);
  const write = binaryWriter(type as unknown as AvscType, schema, destType);
  assert.ok(write, `a writer for ${JSON.stringify(schema)} into ${destType}`);
  const bytes = type.toBuffer(value);
  const out = new LineWriter(4);
  try {
    write(bytes, { pos: 0, end: bytes.length }, out);
  } catch {
    return null;
  }
  return out.buf.toString('hex', 0, out.pos);
}

test('numeric: base-10000 groups aligned on the point, weight, sign and display scale', () => {
  // length 12 | ndigits 2 | weight 0 | positive | dscale 4 | 12 | 3400
  assert.equal(field('string', 'numeric(12,4)', '12.3400'), '0000000c' + '0002' + '0000' + '0000' + '0004' + '000c' + '0d48');
  // -0.01: one group after the point (100), weight -1 is not needed: the integer group 0 keeps weight 0.
  assert.equal(field('string', 'numeric', '-0.01'), '0000000c' + '0002' + '0000' + '4000' + '0002' + '0000' + '0064');
  // 123456789: groups 1 | 2345 | 6789, weight 2.
  assert.equal(field('string', 'numeric', '123456789'), '0000000e' + '0003' + '0002' + '0000' + '0000' + '0001' + '0929' + '1a85');
  for (const odd of ['NaN', 'Infinity', '-Infinity', '1e5', '.5', '5.', ' 1', '', '-', '1.2.3']) assert.equal(field('string', 'numeric', odd), null, odd);
});

test('timestamptz from the ISO text: µs since 2000-01-01 UTC; other spellings are refused', () => {
  const zoned = { type: 'string', 'connect.name': 'io.debezium.time.ZonedTimestamp' };
  assert.equal(field(zoned, 'timestamp with time zone', '2000-01-01T00:00:00Z'), '00000008' + '0000000000000000');
  assert.equal(field(zoned, 'timestamp with time zone', '2000-01-01T00:00:00.000001Z'), '00000008' + '0000000000000001');
  assert.equal(field(zoned, 'timestamp with time zone', '1999-12-31T23:59:59.9Z'), '00000008' + 'fffffffffffe7960');
  assert.equal(field(zoned, 'timestamp(3) with time zone', '9999-12-31T23:59:59.999999Z'), '00000008' + (253402300799999999n - 946684800000000n).toString(16).padStart(16, '0'));
  for (const odd of ['infinity', '-infinity', '0000-01-01T00:00:00Z', '2001-02-29T00:00:00Z', '2000-01-01T24:00:00Z', '2000-01-01T00:00:00.1234567Z', '2000-01-01T00:00:00+01:00', '12024-01-01T00:00:00Z']) {
    assert.equal(field(zoned, 'timestamp with time zone', odd), null, odd);
  }
  assert.equal(daysFromCivil(1970, 1, 1), 0);
  assert.equal(daysFromCivil(2000, 1, 1), 10957);
  assert.equal(daysFromCivil(1600, 2, 29), -135081);
  assert.equal(daysFromCivil(-43, 3, 15), -735160, '44 BC (astronomical year -43), as JavaScript dates count');
});

test('integers, dates, timestamps, booleans, floats, uuids, text and jsonb in their send formats', () => {
  assert.equal(field('long', 'bigint', -2n), '00000008' + 'fffffffffffffffe');
  assert.equal(field('long', 'bigint', 9223372036854775807n), '00000008' + '7fffffffffffffff');
  assert.equal(field('int', 'integer', -1), '00000004' + 'ffffffff');
  assert.equal(field({ type: 'int', 'connect.type': 'int16' }, 'smallint', -32768), '00000002' + '8000');
  assert.equal(field('int', 'smallint', 40000), null, 'out of range for smallint');
  const date = { type: 'int', 'connect.name': 'io.debezium.time.Date' };
  assert.equal(field(date, 'date', 10958), '00000004' + '00000001');
  assert.equal(field(date, 'date', 2147483647), '00000004' + '7fffffff', 'infinity is the same sentinel');
  const ts = { type: 'long', 'connect.name': 'io.debezium.time.MicroTimestamp' };
  assert.equal(field(ts, 'timestamp without time zone', 946684800000001n), '00000008' + '0000000000000001');
  assert.equal(field(ts, 'timestamp without time zone', 9223372036854775807n), null, 'infinity goes to the general path');
  assert.equal(field('boolean', 'boolean', true), '00000001' + '01');
  assert.equal(field('double', 'double precision', 1.5), '00000008' + '3ff8000000000000');
  assert.equal(field('float', 'real', -2), '00000004' + 'c0000000');
  assert.equal(field('string', 'uuid', 'A0EEBC99-9c0b-4ef8-bb6d-6bb9bd380a11'), '00000010' + 'a0eebc999c0b4ef8bb6d6bb9bd380a11');
  assert.equal(field('string', 'uuid', 'a0eebc999c0b4ef8bb6d6bb9bd380a11'), null, 'another spelling');
  assert.equal(field('string', 'text', 'a\tb'), '00000003' + '610962');
  assert.equal(field('string', 'jsonb', '{}'), '00000003' + '01' + '7b7d');
  assert.equal(field('bytes', 'bytea', Buffer.from([0, 255])), '00000002' + '00ff');
  assert.equal(field(['null', 'long'], 'bigint', null), 'ffffffff');
});

test('no writer where the destination type would read other bytes', () => {
  const none = (schema: object | string, destType: string) => binaryWriter(createAvroType(schema as object) as unknown as AvscType, schema, destType);
  assert.equal(none('long', 'integer'), null);
  assert.equal(none('string', 'timestamp with time zone'), null, 'a plain string is not a timestamp');
  assert.equal(none('string', 'character(3)'), null);
  assert.equal(none('string', 'integer[]'), null);
  assert.equal(none({ type: 'long', 'connect.name': 'io.debezium.time.MicroTime' }, 'bigint'), null);
});
