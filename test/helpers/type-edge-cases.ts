/**
 * Edge values of every supported type, as SQL, for test/integration/type-edges.test.ts: per
 * type its values, the tables they go in (one rotating every column's values, one of the
 * types the sink copies in binary with one value per row, keys, big TOASTed columns, odd
 * column names) and the statements that write them.
 */

export const q = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const lits = (...xs: string[]): string[] => xs.map(q);
/** A bytea of the given byte values. */
const bytes = (from: number, to: number): string => `(SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), '' ORDER BY g), 'hex') FROM generate_series(${from}, ${to}) g)`;

export interface Case {
  /** The column's type as written in DDL. */
  type: string;
  /** SQL expressions of its edge values; each column also takes NULL in turn. */
  values: string[];
  /** No `=` for the type (or its elements): compared by text only. */
  noEq?: boolean;
}

/** Types of the test's own, created on both sides. */
export const TYPES_DDL = `
CREATE EXTENSION citext; CREATE EXTENSION hstore; CREATE EXTENSION ltree; CREATE EXTENSION cube;
CREATE TYPE mood AS ENUM ('sad', 'with space', 'a"b\\c,d', 'NULL', '');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN shortarr AS integer[] CHECK (cardinality(VALUE) < 10);
CREATE DOMAIN price AS numeric(5,2) CHECK (VALUE >= 0);
CREATE TYPE pair AS (a integer, b text);
CREATE DOMAIN shortarr2 AS shortarr;
CREATE DOMAIN posarr AS posint[];
CREATE DOMAIN mooddom AS mood;
CREATE DOMAIN pairdom AS pair;
CREATE DOMAIN bytesdom AS bytea;
CREATE DOMAIN tsdom AS timestamptz;
CREATE DOMAIN floatdom AS double precision;
CREATE DOMAIN boxdom AS box;
CREATE DOMAIN jsondom AS json CHECK (VALUE::text <> '');
CREATE DOMAIN hsdom AS hstore;
CREATE DOMAIN rangedom AS int4range;
CREATE TYPE posrange AS RANGE (subtype = integer);
CREATE TYPE holder AS (s shortarr, p posint, m mooddom[]);
CREATE TYPE nest AS (p pair, n numeric, xs integer[], m mood)`;

export const CASES: Case[] = [
  { type: 'smallint', values: ['-32768', '32767', '0'] },
  { type: 'integer', values: ['-2147483648', '2147483647'] },
  { type: 'bigint', values: ['-9223372036854775808', '9223372036854775807', '9007199254740993'] },
  { type: 'oid', values: ['4294967295', '0'] },
  { type: 'boolean', values: ['true', 'false'] },
  { type: 'numeric', values: [...lits('NaN', 'Infinity', '-Infinity', '0', '-0.0', '1.50'), `('1e-1000')::numeric`, `repeat('9', 1000)::numeric`, `('-0.' || repeat('0', 16000) || '1')::numeric`] },
  { type: 'numeric(5,2)', values: ['1.5', '-999.99', '0', "'NaN'"] },
  { type: 'numeric(2,-3)', values: ['12345', '-99499', '0'] },
  { type: 'numeric(3,5)', values: ['0.00123', '-0.00999'] },
  { type: 'real', values: [...lits('NaN', 'Infinity', '-Infinity', '-0'), '1.17549435e-38', '1e-45', '3.4028235e38', '0.1', '16777217'] },
  { type: 'double precision', values: [...lits('NaN', 'Infinity', '-Infinity', '-0'), '4.9e-324', '2.2250738585072014e-308', '1.7976931348623157e308', '0.1', '1e-7', '123456789012345680000'] },
  { type: 'money', values: lits('-92233720368547758.08', '92233720368547758.07', '0', '1234.56') },
  {
    type: 'text',
    values: [
      ...lits('', 'back\\slash', 'tab\there', 'nl\nhere', 'cr\rhere', 'a\n\\.\nb', '\\.', 'ff\fvt\v', '\u2028\u2029', '😀 ünï', '\\N', 'NULL', '\\x41\\101\\u0041', '\b\u0001\u001f\u007f'),
      "repeat('long ', 40000)",
    ],
  },
  { type: 'varchar(5)', values: lits('ab  ', '', '\\\t') },
  { type: 'char(5)', values: lits('ab', '', '  a', 'abcde') },
  { type: 'bpchar', values: lits('ab  ', '') },
  { type: '"char"', values: [...lits('a', '\\001', '\\377', '\\\\', ''), `'\\'::"char"`] },
  { type: 'name', values: lits('pg_class', 'with space', 'x'.repeat(63), 'ü\\') },
  { type: 'bytea', values: [...lits('\\x', '\\x5c78', '\\x5c'), bytes(0, 255), `decode(repeat('00ff', 30000), 'hex')`] },
  { type: 'uuid', values: lits('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff') },
  { type: 'json', values: lits('{"a":1, "a":2}', '  [1,\n 2 ]  ', '"\\u0000x"', '{"n": 1e400, "s": "\\ud83d\\ude00"}', 'null'), noEq: true },
  { type: 'jsonb', values: lits('{"n": 1e400, "m": -0.0, "x": 1.50}', '"\\u2028\\\\"', '[]', '{}', 'null') },
  { type: 'xml', values: lits('<a x="1">t</a>', 'text only <b/>', '', '<?xml version="1.0"?><r/>'), noEq: true },
  { type: 'date', values: lits('infinity', '-infinity', '4713-01-01 BC', '4714-11-24 BC', '5874897-12-31', '10000-01-01', '0044-03-15 BC', '2024-02-29') },
  {
    type: 'timestamp',
    values: lits('infinity', '-infinity', '4714-11-24 00:00:00 BC', '294276-12-31 23:59:59.999999', '10000-01-01 00:00:00', '0001-01-01 00:00:00 BC', '2000-02-29 12:00:00.000001'),
  },
  { type: 'timestamp(3)', values: lits('2000-01-01 00:00:00.1234', '1999-12-31 23:59:59.9995') },
  {
    type: 'timestamptz',
    values: lits('infinity', '-infinity', '4714-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', '10000-01-01 00:00:00+00', '0001-01-01 00:00:00+00 BC', '2000-06-01 00:00:00.000001+05:45', '1900-01-01 00:00:00+00'),
  },
  { type: 'time', values: lits('24:00:00', '00:00:00', '00:00:00.000001', '23:59:59.999999') },
  { type: 'timetz', values: lits('12:00:00+05:45', '12:00:00-00:30', '12:00:00+05:30:15', '24:00:00-15:59', '00:00:00+15:59', '23:59:59.999999+00') },
  {
    type: 'interval',
    values: lits('1 year -2 months 3 days -04:05:06.000007', '-178000000 years', '178000000 years', '-2147483648 days', '2562047788:00:54.775807', '-2562047788:00:54.775807', '0', '-1 mon 1 day', '1 day -00:00:00.000001'),
  },
  { type: 'interval day to second(2)', values: lits('1 day 00:00:01.25') },
  { type: 'bit(5)', values: ["B'10101'", "B'00000'"] },
  { type: 'varbit', values: ["B''", "B'1'", `repeat('10', 5000)::varbit`] },
  { type: 'inet', values: lits('192.168.0.1/24', '10.0.0.1', '2001:db8::1/64', '::ffff:1.2.3.4', '::') },
  { type: 'cidr', values: lits('10.0.0.0/8', '2001:db8::/32', '0.0.0.0/0') },
  { type: 'macaddr', values: lits('08:00:2b:01:02:03') },
  { type: 'macaddr8', values: lits('08:00:2b:01:02:03:04:05') },
  { type: 'tsvector', values: lits("'it''s':1A 'a b' 'c':2,3B", '') },
  { type: 'tsquery', values: lits("'a' & !'b' | 'c':*", "'x y' <2> 'z'") },
  { type: 'point', values: lits('(1.5,-2)', '(NaN,Infinity)', '(-0,1e-300)'), noEq: true },
  { type: 'line', values: lits('{1,-1,0}'), noEq: true },
  { type: 'lseg', values: lits('[(0,0),(1,1)]'), noEq: true },
  { type: 'box', values: lits('(1,1),(0,0)'), noEq: true },
  { type: 'path', values: lits('[(0,0),(1,1),(2,0)]', '((0,0),(1,1))'), noEq: true },
  { type: 'polygon', values: lits('((0,0),(1,1),(1,0))'), noEq: true },
  { type: 'circle', values: lits('<(0,0),1.5>'), noEq: true },
  { type: 'pg_lsn', values: lits('0/0', 'FFFFFFFF/FFFFFFFF') },
  { type: 'txid_snapshot', values: lits('10:20:10,14,15'), noEq: true },
  { type: 'pg_snapshot', values: lits('10:20:10,14,15'), noEq: true },
  { type: 'int4range', values: lits('empty', '(,)', '[1,2]', '(1,5)') },
  { type: 'numrange', values: lits('[1.50,NaN)', '(,2.5]') },
  { type: 'daterange', values: lits('[-infinity,infinity]', '[,2000-01-01)') },
  { type: 'tstzrange', values: lits('["2000-01-01 00:00:00+05:45",)', '(-infinity,"4714-11-24 00:00:00+00 BC"]') },
  { type: 'int4multirange', values: lits('{}', '{[1,3),[5,7)}') },
  { type: 'datemultirange', values: lits('{[2000-01-01,infinity)}') },
  { type: 'mood', values: lits('with space', 'a"b\\c,d', 'NULL', '') },
  { type: 'posint', values: ['1', '2147483647'] },
  { type: 'price', values: ['1.5', '999.99'] },
  { type: 'shortarr', values: lits('{}', '{1,NULL}', '[2:3]={1,2}') },
  { type: 'pair', values: lits('(1,"x y")', '(,)', '(2,"a\\"b\\\\c,()")', '(,"")') },
  { type: 'nest', values: lits('("(1,\\"q\\"\\"\\")",NaN,"{1,NULL}","a""b\\\\c,d")', '(,,,)', '("(,)",1.50,{},NULL)') },
  { type: 'regtype', values: lits('integer', 'character varying', '"char"[]') },
  { type: 'regclass', values: lits('pg_class', 'pg_catalog.pg_type') },
  { type: 'tid', values: lits('(0,1)', '(4294967295,65535)') },
  { type: 'xid8', values: lits('18446744073709551615') },
  { type: 'xid', values: lits('4294967295'), noEq: true },
  { type: 'int2vector', values: lits('1 2 -3', '') },
  { type: 'oidvector', values: lits('23 25', '') },
  { type: 'citext', values: lits('MiXeD', 'a\\b') },
  { type: 'hstore', values: lits('"a"=>"1", "b"=>NULL, "c\\"d"=>"e,f"', '') },
  { type: 'ltree', values: lits('a.b_c.D', '') },
  { type: 'cube', values: lits('(1, 2), (3, 4)', '(-0)') },
  { type: 'hstore[]', values: lits('{"\\"a\\"=>\\"1\\"",NULL}') },
  { type: 'citext[]', values: lits('{A,b}') },
  { type: 'integer[]', values: lits('{1,NULL,3}', '{}', '{{1,2},{3,4}}', '[2:3]={1,2}', '[0:0][1:2]={{1,2}}', '{NULL}') },
  {
    type: 'text[]',
    values: lits('{"a\\"b","c\\\\d","e,f","{g}","NULL",NULL,""," sp "}', '{"nl\nx","tab\tx","\\\\."}', '{{a,b},{c,NULL}}', '[5:5]={x}', '{"\u2028😀"}'),
  },
  { type: 'numeric[]', values: lits('{NaN,1.50,-0.0,Infinity}') },
  { type: 'double precision[]', values: lits('{-0,NaN,4.9e-324,-Infinity}') },
  { type: 'real[]', values: lits('{-0,1e-45,NaN}') },
  { type: 'bytea[]', values: lits('{"\\\\x","\\\\x5c78",NULL}') },
  { type: 'boolean[]', values: lits('{t,f,NULL}') },
  { type: 'date[]', values: lits('{infinity,"4713-01-01 BC",10000-01-01}') },
  { type: 'timestamp[]', values: lits('{-infinity,"294276-12-31 23:59:59.999999"}') },
  { type: 'timestamptz[]', values: lits('{infinity,"0001-01-01 00:00:00+00 BC","2000-01-01 00:00:00.5+05:45"}') },
  { type: 'time[]', values: lits('{24:00:00,NULL}') },
  { type: 'timetz[]', values: lits('{12:00:00+05:30:15,"24:00:00-15:59"}') },
  { type: 'interval[]', values: lits('{"-178000000 years","1 day -00:00:00.000001"}') },
  { type: 'json[]', values: lits('{"{\\"a\\":1, \\"a\\":2}",NULL,"  [ ]"}'), noEq: true },
  { type: 'jsonb[]', values: lits('{"{\\"n\\": 1e400}"}') },
  { type: 'uuid[]', values: lits('{00000000-0000-0000-0000-000000000000,NULL}') },
  { type: 'money[]', values: lits('{-92233720368547758.08,1.5}') },
  { type: 'char(3)[]', values: lits('{"a  ",b,"   "}') },
  { type: '"char"[]', values: lits('{a,"\\\\001",""}') },
  { type: 'name[]', values: lits('{"with space",x}') },
  { type: 'bit(2)[]', values: lits('{10,01}') },
  { type: 'varbit[]', values: lits('{"",1}') },
  { type: 'inet[]', values: lits('{192.168.0.1/24,::1}') },
  { type: 'mood[]', values: lits('{"with space","a\\"b\\\\c,d","NULL",""}', '{NULL}') },
  { type: 'posint[]', values: lits('{1,NULL}') },
  { type: 'pair[]', values: lits('{"(1,\\"x y\\")","(,)",NULL}') },
  { type: 'int4range[]', values: lits('{empty,"[1,3)"}') },
  { type: 'box[]', values: lits('{(1,1),(0,0);(2,2),(1,1)}'), noEq: true },
  { type: 'point[]', values: lits('{"(1,2)",NULL}'), noEq: true },
  { type: 'tsvector[]', values: lits('{"\'a\':1"}') },
  { type: 'smallint[]', values: lits('{-32768,32767,NULL}') },
  { type: 'oid[]', values: lits('{4294967295,0}') },
  { type: 'numeric(5,2)[]', values: lits('{1.5,NaN,-999.99}') },
  { type: 'varchar(5)[]', values: lits('{"ab  ","",NULL}') },
  { type: 'bpchar[]', values: lits('{"a  ",""}') },
  { type: 'xml[]', values: lits('{"<a x=\\"1\\"/>","text, <b/>",NULL}'), noEq: true },
  { type: 'macaddr[]', values: lits('{08:00:2b:01:02:03,NULL}') },
  { type: 'cidr[]', values: lits('{10.0.0.0/8,2001:db8::/32}') },
  { type: 'daterange[]', values: lits('{"[2000-01-01,infinity)",empty}') },
  { type: 'int4multirange[]', values: lits('{"{[1,3),[5,7)}","{}"}') },
  { type: 'pg_lsn[]', values: lits('{0/0,FFFFFFFF/FFFFFFFF}') },
  { type: 'tsquery[]', values: lits('{"\'a\' & !\'b\'"}') },
  { type: 'varbit[]', values: lits('{"",101}') },
  { type: 'interval day to second(2)[]', values: lits('{"1 day 00:00:01.25"}') },
  { type: 'lseg[]', values: lits('{"[(0,0),(1,1)]"}'), noEq: true },
  { type: 'path[]', values: lits('{"[(0,0),(1,1)]","((0,0),(1,1))"}'), noEq: true },
  { type: 'polygon[]', values: lits('{"((0,0),(1,1),(1,0))"}'), noEq: true },
  { type: 'circle[]', values: lits('{"<(0,0),1.5>"}'), noEq: true },
  { type: 'line[]', values: lits('{"{1,-1,0}"}'), noEq: true },
  { type: 'txid_snapshot[]', values: lits('{10:20:10\\,14}'), noEq: true },
  { type: 'ltree[]', values: lits('{a.b,""}') },
  { type: 'cube[]', values: lits('{"(1, 2), (3, 4)"}') },
  { type: 'nest[]', values: [String.raw`ARRAY[ROW(ROW(1, 'q"')::pair, 'NaN', '{1,NULL}', 'a"b\c,d')::nest, NULL]`] },
  { type: 'shortarr[]', values: lits('{"{1,2}",NULL}') },
  { type: 'price[]', values: lits('{1.5,NULL}') },
  { type: 'shortarr2', values: lits('{1,NULL}', '[0:1]={1,2}') },
  { type: 'shortarr2[]', values: lits('{"{1,2}",NULL}') },
  { type: 'posarr', values: lits('{1,NULL}') },
  { type: 'posarr[]', values: lits('{"{1,2}"}') },
  { type: 'mooddom', values: lits('with space'), noEq: true },
  { type: 'mooddom[]', values: lits('{"with space",NULL,"a\\"b\\\\c,d"}') },
  { type: 'pairdom', values: lits('(1,"x y")') },
  { type: 'pairdom[]', values: lits('{"(1,\\"x y\\")",NULL}') },
  { type: 'bytesdom', values: lits('\\x00ff') },
  { type: 'bytesdom[]', values: lits('{"\\\\x00ff",NULL}') },
  { type: 'tsdom', values: lits('infinity', '0001-01-01 00:00:00+00 BC') },
  { type: 'tsdom[]', values: lits('{infinity,"2000-01-01 00:00:00.5+05:45"}') },
  { type: 'floatdom', values: lits('-0', 'NaN') },
  { type: 'floatdom[]', values: lits('{-0,NaN,NULL}') },
  { type: 'boxdom[]', values: lits('{(1,1),(0,0);(2,2),(1,1)}'), noEq: true },
  { type: 'jsondom', values: lits('{"a":1, "a":2}'), noEq: true },
  { type: 'jsondom[]', values: lits('{"{\\"a\\":1, \\"a\\":2}"}'), noEq: true },
  { type: 'hsdom[]', values: lits('{"\\"a\\"=>\\"1\\""}') },
  { type: 'rangedom', values: lits('empty', '[1,3)') },
  { type: 'rangedom[]', values: lits('{empty,"[1,3)"}') },
  { type: 'posrange', values: lits('[1,3)', 'empty') },
  { type: 'posmultirange', values: lits('{[1,3),[5,7)}') },
  { type: 'holder', values: lits('("{1,2}",3,"{\\"with space\\",NULL}")') },
  { type: 'holder[]', values: lits('{"(\\"{1,2}\\",3,{})"}') },
  { type: 'timestamp(3)[]', values: lits('{"2000-01-01 00:00:00.1234"}') },
];

/** Edge values of big columns (TOASTed, stored out of line; small enough for a FULL before-image and after-image in one record) left unchanged by updates of another column. */
export const TOAST_COLUMNS: [string, string][] = [
  ['text', "repeat(E't\\n', 5000)"],
  ['bytea', `decode(repeat('5c0a', 5000), 'hex')`],
  ['json', `('{"a":1, "a":2, "k":"' || repeat('j', 5000) || '"}')::json`],
  ['jsonb', `('{"k":"' || repeat('j', 5000) || '"}')::jsonb`],
  ['integer[]', 'ARRAY(SELECT g FROM generate_series(1, 3000) g)'],
  ['text[]', "ARRAY(SELECT 'x,\"' || g FROM generate_series(1, 1000) g)"],
  ['numeric', `repeat('7', 6000)::numeric`],
  ['xml', `('<r>' || repeat('x', 5000) || '</r>')::xml`],
  ['varbit', `repeat('1', 80000)::varbit`],
  ['tsvector', `array_to_tsvector(ARRAY(SELECT 'w' || g FROM generate_series(1, 800) g))`],
  ['pair', `ROW(1, repeat('p', 5000))::pair`],
];

/** Primary keys of edge values: upserted, deleted, re-inserted and moved by key (each value must be distinct by `=`). */
export const KEY_CASES: [string, string[]][] = [
  ['numeric', lits('1.50', 'NaN', '-0.0', '1e-100', '99999999999999999999999999999999999999.000', 'Infinity')],
  ['numeric(5,2)', lits('1.5', '-0', '999.99')],
  ['numeric(2,-3)', lits('12345', '-1000', '0')],
  ['floatdom', lits('-0', 'NaN', '1e308')],
  ['tsdom', lits('infinity', '2000-01-01 00:00:00.000001+05:45')],
  ['mooddom', lits('with space', '')],
  ['bytesdom', lits('\\x', '\\x5c78')],
  ['double precision', lits('-0', 'NaN', 'Infinity', '4.9e-324', '0.1')],
  ['real', lits('-0', 'NaN', '1e-45')],
  ['text', [...lits('', 'tab\tnl\ncr\r', 'back\\slash', '\\.', '😀', 'NULL'), "repeat('k', 2000)"]],
  ['char(3)', lits('a', '', 'a b')],
  ['bytea', [...lits('\\x', '\\x5c78', '\\x00'), bytes(0, 255)]],
  ['uuid', lits('00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff')],
  ['timestamptz', lits('infinity', '-infinity', '4714-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', '2000-01-01 00:00:00.000001+05:45')],
  ['timestamp', lits('infinity', '4714-11-24 00:00:00 BC', '294276-12-31 23:59:59.999999')],
  ['date', lits('-infinity', '4713-01-01 BC', '5874897-12-31')],
  ['time', lits('24:00:00', '00:00:00')],
  ['timetz', lits('12:00:00+05:45', '06:15:00+00', '12:00:00+05:30:15')],
  ['interval', lits('1 mon', '1 day', '-178000000 years', '-0.000001 seconds')],
  ['jsonb', lits('{"a": 1, "b": [1.50]}', '1e400', '[]', '""')],
  ['pair', lits('(1,"x y")', '(,)', '(,"")')],
  ['integer[]', lits('{}', '{1,NULL}', '[2:3]={1,2}', '{{1},{2}}')],
  ['text[]', lits('{"a,b","NULL",NULL}', '{""}')],
  ['inet', lits('10.0.0.1/8', '10.0.0.1', '::ffff:10.0.0.1')],
  ['mood', lits('with space', 'a"b\\c,d', '')],
  ['int4range', lits('empty', '(,)', '[1,2)')],
  ['"char"', lits('\\001', 'a')],
  ['bit(3)', ["B'000'", "B'101'"]],
];
/** Column names that are not Avro names, or clash once adjusted (`a-b`, `a_b`), or differ by case only. */
export const ODD_NAMES = ['a-b', 'a_b', 'A', 'a', '1x', '_1x', 'sp ace', 'ü', 'quo"te', 'dot.ted', 'x'.repeat(63), 'before', 'after', 'op'];
export const qi = (n: string): string => `"${n.replace(/"/g, '""')}"`;
/** Odd ones with REPLICA IDENTITY FULL (a before-image with every update and delete). */
export const KEY_TABLES = KEY_CASES.map((_, i) => `k${i}`);
/** `bigf` with REPLICA IDENTITY FULL: the source fills unchanged TOAST from the old row. */
export const BIG_TABLES = ['big', 'bigf'];

/** The sink's COPY BINARY has writers for these: a table of only them is copied in binary. */
const BINARY_TYPES = new Set(['smallint', 'integer', 'bigint', 'boolean', 'numeric', 'numeric(5,2)', 'numeric(2,-3)', 'numeric(3,5)', 'real', 'double precision', 'text', 'varchar(5)', 'bytea', 'uuid', 'json', 'jsonb', 'date', 'timestamp', 'timestamp(3)', 'timestamptz']);
/**
 * `e`: every case, each row a rotation of every column's values. `bin`: the binary ones, one
 * value per row (the others NULL): a record the fast paths cannot write exactly takes the
 * general path whole, so a row of many edge values would test the fast ones little.
 */
export const TABLES: Record<string, { cases: Case[]; sparse?: boolean }> = { e: { cases: CASES }, bin: { cases: CASES.filter((c) => BINARY_TYPES.has(c.type)), sparse: true } };
const SPARSE = TABLES.bin.cases.flatMap((c, k) => [...c.values.keys()].map((j) => [k, j]));

/** The value of the `k`th case of a table in the `n`th row of its rotation (NULL in turn). */
const valueAt = (table: string, k: number, n: number): string => {
  const { cases, sparse } = TABLES[table];
  const vs = cases[k].values;
  if (sparse) {
    const [pk, pj] = SPARSE[n % SPARSE.length];
    return pk === k ? vs[pj] : 'NULL';
  }
  const r = n % (vs.length + 1);
  return r === vs.length ? 'NULL' : vs[r];
};
export const ROWS = Math.max(SPARSE.length, ...CASES.map((c) => c.values.length + 1));
const cols = (cases: Case[]): string[] => cases.map((_, k) => `c${k}`);

export const TABLE_DDL = `
${Object.entries(TABLES).map(([name, { cases }]) => `CREATE TABLE ${name} (id integer PRIMARY KEY, ${cases.map((c, k) => `c${k} ${c.type}`).join(', ')});`).join('\n')}
${KEY_CASES.map(([type], i) => `CREATE TABLE k${i} (k ${type} PRIMARY KEY, v integer);`).join('\n')}
${BIG_TABLES.map((big) => `CREATE TABLE ${big} (id integer PRIMARY KEY, flag integer, ${TOAST_COLUMNS.map(([t], i) => `b${i} ${t}`).join(', ')});
${TOAST_COLUMNS.map((_, i) => `ALTER TABLE ${big} ALTER COLUMN b${i} SET STORAGE EXTERNAL;`).join('\n')}`).join('\n')}
ALTER TABLE bigf REPLICA IDENTITY FULL;
CREATE TABLE names (id integer PRIMARY KEY, ${ODD_NAMES.map((n) => `${qi(n)} text`).join(', ')});
${KEY_TABLES.filter((_, i) => i % 2 === 1).map((k) => `ALTER TABLE ${k} REPLICA IDENTITY FULL;`).join('\n')}`;

/** Rows `ids` of every table, each set to the values `shift` along its rotation. */
export const insertRows = (ids: number[], shift: number): string =>
  Object.entries(TABLES)
    .map(([name, { cases }]) => `INSERT INTO ${name} (id, ${cols(cases).join(', ')}) VALUES ${ids.map((id) => `(${id}, ${cases.map((_, k) => valueAt(name, k, id + shift)).join(', ')})`).join(',\n')};`)
    .join('\n');
export const updateRows = (ids: number[], shift: number): string =>
  Object.entries(TABLES)
    .flatMap(([name, { cases }]) => ids.map((id) => `UPDATE ${name} SET ${cases.map((_, k) => `c${k} = ${valueAt(name, k, id + shift)}`).join(', ')} WHERE id = ${id};`))
    .join('\n');
