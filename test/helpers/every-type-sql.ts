/**
 * A table with a column of every type family of the value contract, and rows of edge values,
 * as SQL for a real server (the sink's and the whole pipeline's tests). `big` holds values
 * large enough for TOAST.
 */

export const ITEMS_DDL = (schema: string) => `
CREATE TYPE ${schema}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN ${schema}.posint AS integer CHECK (VALUE > 0);
CREATE TABLE ${schema}.items (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric(12,2), numu numeric, f4 real, f8 double precision,
  b boolean, t text, vc varchar(10), ch char(3), by bytea, u uuid, j json, jb jsonb, d date, tm time, ttz timetz,
  ts timestamp, tstz timestamptz, iv interval, mo money, bits bit(4), vb varbit, ip inet, net cidr, mac macaddr,
  ints integer[], texts text[], grid integer[][], r int4range, tr tstzrange, mood ${schema}.mood, pos ${schema}.posint,
  pt point, big text)`;

export const ITEM_ROWS = (schema: string) => `
INSERT INTO ${schema}.items VALUES
 (1, -32768, 2147483647, 9223372036854775807, 1234567890.12, 'NaN', '-0', 'Infinity', true, 'it''s "q" \\ tab	nl
end', 'hello', 'ab', '\\x00ff5c0a27', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1, "a": 2}', '{"k": [1, 2.50, null]}',
  '2024-02-29', '23:59:59.999999', '12:00:00+05:30', 'infinity', '2000-01-01 00:00:00.000001+00', 'P1Y2M3DT4H5M6.000007S',
  '-1234.56', '1010', '10101', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{1,NULL,3}', '{"a,b","c\\"d",NULL,""}',
  '{{1,2},{3,4}}', '[1,10)', '["2020-01-01 00:00:00+00",infinity)', 'happy', 7, '(1.5,-2)', repeat('x', 100000)),
 (2, 0, 0, -9223372036854775808, '-0.01', '123456789012345678901234567890.000000000000001', 'NaN', '-1.7976931348623157e+308', false,
  '', '', 'xyz', '\\x', '00000000-0000-0000-0000-000000000000', 'null', '"é \\\\ x"', '-infinity', '00:00', '00:00:00-11',
  '-infinity', '-infinity', 'PT0S', '0', '0000', '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '{}', '{}', '{{NULL}}', 'empty', 'empty',
  'sad', 1, '(0,0)', md5('a') || repeat('y', 90000)),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 1, 1, 1, 1, 1, 1, 1, true, 'four', 'four', 'fou', '\\x04', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14', '[]', '[]', '0001-01-01 BC',
  '12:00', '12:00+00', '1999-12-31 23:59:59.5', '1999-12-31 23:59:59.5+00', 'P-1D', '1', '1111', '1', '1.2.3.4', '1.2.3.0/24',
  '00:00:00:00:00:00', '{4}', '{four}', '{{4}}', '(,)', '(,)', 'ok', 4, '(4,4)', 'four'),
 (5, 5, 5, 5, 5, 5, 5, 5, false, 'five', 'five', 'fiv', '\\x05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15', '5', '5', '2000-01-05',
  '05:05', '05:05+05', '2000-01-05 05:05', '2000-01-05 05:05+05', 'P5D', '5', '0101', '0101', '5.5.5.5', '5.5.5.0/24',
  '05:05:05:05:05:05', '{5,5}', '{five}', '{{5}}', '[5,6)', '[2000-01-05 00:00:00+00,2000-01-06 00:00:00+00)', 'ok', 5, '(5,5)', 'five')`;
