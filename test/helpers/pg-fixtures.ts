/**
 * Catalog fixtures for unit tests: PgTypeInfo and ColumnInfo builders, and a table with a
 * column of every type family the value contract covers (composite key, a column name that
 * is no Avro name) with rows of edge values as PostgreSQL prints them (null: SQL NULL).
 */
import type { ColumnInfo, PgTypeInfo, TableInfo, TextTuple } from '../../shared/pg-types.ts';

export const pgType = (name: string, kind: PgTypeInfo['kind'] = 'base', extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({ oid: 0, schema: 'pg_catalog', name, kind, ...extra });
export const column = (name: string, type: PgTypeInfo, typmod = -1, isKey = false): ColumnInfo => ({ name, type, typmod, isKey });

export const EVERY_TYPE_TABLE: TableInfo = {
  relid: 1,
  schema: 'shop',
  name: 'every',
  columns: [
    column('id', pgType('int8'), -1, true),
    column('region', pgType('text'), -1, true),
    column('i2', pgType('int2')),
    column('i4', pgType('int4')),
    column('o', pgType('oid')),
    column('f4', pgType('float4')),
    column('f8', pgType('float8')),
    column('ok', pgType('bool')),
    column('amount', pgType('numeric'), ((12 << 16) | 2) + 4),
    column('cash', pgType('money')),
    column('body', pgType('text')),
    column('bin', pgType('bytea')),
    column('uid', pgType('uuid')),
    column('doc', pgType('jsonb')),
    column('day', pgType('date')),
    column('ts', pgType('timestamp')),
    column('tstz', pgType('timestamptz')),
    column('t', pgType('time')),
    column('ttz', pgType('timetz')),
    column('span', pgType('interval')),
    column('bits', pgType('varbit')),
    column('mood', { oid: 0, schema: 'public', name: 'mood', kind: 'enum' }),
    column('ints', pgType('_int4', 'array', { elem: pgType('int4') })),
    column('texts', pgType('_text', 'array', { elem: pgType('text') })),
    column('r', pgType('int4range', 'range', { subtype: pgType('int4') })),
    column('weird name', pgType('inet')),
  ],
  keyColumns: ['id', 'region'],
  replicaIdentity: 'default',
};

export const EVERY_TYPE_ROWS: TextTuple[] = [
  ['1', 'eu', '-32768', '2147483647', '4294967295', 'NaN', '-0', 't', '1234567890.12', '-1234.56', 'plain', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '2024-02-29', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '24:00:00', '13:45:10.123456+05:30', 'P1Y2M3DT4H5M6.789S', '0101', 'happy', '{1,2,NULL}', '{a,"b c",NULL,"NULL",""}', '[1,10)', '192.168.0.1/24'],
  ['9223372036854775807', 'ünï ✓', '0', '-2147483648', '0', 'Infinity', '1.0000000000000002', 'f', '-0.01', '0.00', 'tab\there\nnew line\r\\ back', '\\x', '00000000-0000-0000-0000-000000000000', '"x"', '0044-03-15 BC', 'infinity', '-infinity', '00:00:00', '00:00:00+00', 'PT0S', '', 'sad', '{{1,2},{3,4}}', '{}', 'empty', '::1'],
  ['-9223372036854775808', '', null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  ['9007199254740993', 'x'.repeat(300), '7', '42', '12', '1.5', '5e-324', 't', 'NaN', '1', 'y'.repeat(5000), '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1, 2]', '5874897-12-31', '294276-12-31 23:59:59.999999', '0001-01-01 00:00:00+00 BC', '12:00:00.5', '01:00:00-05', 'P-10M-3D', '1', 'ok', '[0:1]={1,2}', '{"x\\ty"}', '(,5]', '10.0.0.0/8'],
  ['4503599627370497', 'us', '1', '1', '1', '3.4028235e38', '-7.5', 'f', '123456789012345678901234567890.000000000000001', '-92233720368547758.08', 'z', '\\x5c', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'null', '1970-01-01', '1969-12-31 23:59:59.999999', '10000-01-01 00:00:00+00', '23:59:59.999999', '13:45:10+05:30:15', 'PT0.000001S', '0', 'happy', '{-1}', '{"\\\\"}', '[-3,-1)', '::ffff:1.2.3.4'],
];
