import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PgTypeInfo } from '../../shared/pg-types.ts';
import {
  writeCached,
  INT64_MAX,
  INT64_MIN,
  codecForType,
  createAvroType,
  formatTypeName,
  nullableAvroType,
  parseArray1D,
  pgTypeName,
  quoteArrayElement,
  textEncoderFor,
} from '../../shared/type-mapping/index.ts';
import {
  civilFromDays,
  daysFromCivil,
  timestamptzFromText,
  timestamptzToText,
  timetzFromText,
  timetzToText,
} from '../../shared/type-mapping/temporal.ts';

const T = (name: string, extra: Partial<PgTypeInfo> = {}): PgTypeInfo => ({ oid: 0, schema: 'pg_catalog', name, kind: 'base', ...extra });
const arr = (elem: PgTypeInfo): PgTypeInfo => T(`_${elem.name}`, { kind: 'array', elem });
const NUMERIC_12_2 = ((12 << 16) | 2) + 4;

/** text -> codec -> avsc (nullable field, schema via JSON as the registry would hold it) -> text. */
function roundTrip(type: PgTypeInfo, typmod: number, text: string): { avro: unknown; decoded: unknown; back: string } {
  const codec = codecForType(type, typmod);
  const schemaJson = JSON.stringify({ type: 'record', name: 'R', fields: [{ name: 'v', type: nullableAvroType(codec.avroType), default: null }] });
  const avroType = createAvroType(schemaJson);
  const avro = codec.fromText(text);
  const decoded = (avroType.fromBuffer(avroType.toBuffer({ v: avro })) as { v: unknown }).v;
  const fieldType = (JSON.parse(schemaJson) as { fields: { type: object }[] }).fields[0].type;
  return { avro, decoded, back: textEncoderFor(fieldType)(decoded) };
}

interface Case {
  type: PgTypeInfo;
  typmod?: number;
  texts: string[];
  /** Where PostgreSQL reads our text as the same value but the spelling differs. */
  differs?: Record<string, string>;
}

const textArray = arr(T('text'));
const CASES: Case[] = [
  { type: T('int2'), texts: ['0', '-32768', '32767'] },
  { type: T('int4'), texts: ['0', '-2147483648', '2147483647'] },
  { type: T('int8'), texts: ['0', '9223372036854775807', '-9223372036854775808', '9007199254740993'] },
  { type: T('oid'), texts: ['0', '4294967295'] },
  { type: T('float4'), texts: ['0', '-0', 'NaN', 'Infinity', '-Infinity', '1.1', '1e+06', '123456', '1e-05', '0.0001', '3.4028235e+38', '1e-45', '-1.5'] },
  {
    type: T('float8'),
    texts: ['0', '-0', 'NaN', 'Infinity', '-Infinity', '1.0000000000000002', '1e+15', '100000000000000', '1e-05', '1e-07', '1.5e+300', '5e-324', '1.2345678901234568e+20', '-2.5e-310'],
  },
  { type: T('bool'), texts: ['t', 'f'] },
  { type: T('numeric'), texts: ['123.4500', 'NaN', 'Infinity', '-Infinity', '0', '-0.000000000000000000000001', '123456789012345678901234567890.123456789'] },
  { type: T('numeric'), typmod: NUMERIC_12_2, texts: ['1234567890.12', '-0.01'] },
  { type: T('money'), texts: ['$1,234.56', '-$5.00', '-$92,233,720,368,547,758.08'], differs: { '$1,234.56': '1234.56', '-$5.00': '-5.00', '-$92,233,720,368,547,758.08': '-92233720368547758.08' } },
  { type: T('text'), texts: ['', 'a b', 'NULL', 'line\nbreak', '\\x00', 'ünïcödé ✓'] },
  { type: T('varchar'), typmod: 24, texts: ['abc'] },
  { type: T('bpchar'), typmod: 9, texts: ['ab   '] },
  { type: T('name'), texts: ['pg_class'] },
  { type: T('bytea'), texts: ['\\x', '\\x00ff', '\\xdeadbeef'] },
  { type: T('uuid'), texts: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'] },
  { type: T('json'), texts: ['{"a": 1, "a": 2}', '  [1,\n 2 ]  ', 'null'] },
  { type: T('jsonb'), texts: ['{"a": 2, "b": [1, null]}'] },
  { type: T('xml'), texts: ['<a x="1">t</a>'] },
  {
    type: T('date'),
    texts: ['2024-02-29', '1970-01-01', '1969-12-31', 'infinity', '-infinity', '0044-03-15 BC', '0001-01-01 BC', '0001-01-01', '4714-11-24 BC', '5874897-12-31', '10000-01-01'],
  },
  {
    type: T('timestamp'),
    texts: [
      '2000-01-01 00:00:00.000001',
      '1969-12-31 23:59:59.999999',
      '2024-02-29 13:45:10.5',
      'infinity',
      '-infinity',
      '0001-01-01 00:00:00 BC',
      '4714-11-24 00:00:00 BC',
      '294276-12-31 23:59:59.999999',
      '294247-01-10 04:00:54.775806',
      '294247-01-10 04:00:54.775807',
    ],
  },
  { type: T('timestamp'), typmod: 3, texts: ['2000-01-01 00:00:00.123'] },
  {
    type: T('timestamptz'),
    texts: [
      '2000-01-01 00:00:00.000001+00',
      '2024-02-29 23:59:59+00',
      'infinity',
      '-infinity',
      '0001-01-01 00:00:00+00 BC',
      '0044-03-15 12:00:00+00 BC',
      '4714-11-24 00:00:00+00 BC',
      '0999-12-31 23:59:59.5+00',
      '10000-01-01 00:00:00+00',
      '294276-12-31 23:59:59.999999+00',
    ],
  },
  { type: T('time'), texts: ['00:00:00', '13:45:10.5', '23:59:59.999999', '24:00:00'] },
  { type: T('timetz'), texts: ['13:45:10.123456+05:30', '00:00:00+00', '24:00:00+00', '12:00:00-00:30', '01:00:00-05', '13:45:10.5+05:30:15', '00:00:00-15:59'] },
  { type: T('interval'), texts: ['P1Y2M3DT4H5M6.789S', 'PT0S', 'P-1D', 'P-10M-3D', 'PT-0.000001S', 'P178000000Y'] },
  { type: T('bit'), typmod: 3, texts: ['101'] },
  { type: T('varbit'), texts: ['', '0', '1010101010101010101'] },
  { type: T('inet'), texts: ['192.168.0.1/24', '::1'] },
  { type: T('cidr'), texts: ['10.0.0.0/8'] },
  { type: T('macaddr'), texts: ['08:00:2b:01:02:03'] },
  { type: T('macaddr8'), texts: ['08:00:2b:01:02:03:04:05'] },
  { type: T('point'), texts: ['(1.5,-2)'] },
  { type: T('tsvector'), texts: ["'a' 'b':2"] },
  { type: T('mood', { schema: 'public', kind: 'enum' }), texts: ['happy', 'with space'] },
  { type: T('posint', { schema: 'public', kind: 'domain', base: T('int4') }), texts: ['42'] },
  { type: T('int4range', { kind: 'range', subtype: T('int4') }), texts: ['[1,10)', 'empty'] },
  { type: T('tstzrange', { kind: 'range', subtype: T('timestamptz') }), texts: ['["2000-01-01 00:00:00+00",)'] },
  { type: T('int4multirange', { kind: 'multirange' }), texts: ['{[1,3),[5,7)}'] },
  { type: T('citext', { schema: 'public' }), texts: ['MiXeD'] },
  { type: arr(T('int4')), texts: ['{1,2,NULL}', '{}', '{{1,2},{3,4}}', '[0:1]={1,2}', '{{{1}}}'] },
  { type: arr(T('int8')), texts: ['{9223372036854775807,-9223372036854775808,NULL}'] },
  { type: textArray, texts: ['{"a b","c\\"d",NULL}', '{"NULL",NULL,""}', '{"\\\\","{}",",",a}', '{"  lead","trail  "}', '{{"a b",NULL},{c,d}}'] },
  { type: arr(T('float8')), texts: ['{NaN,-0,Infinity,-Infinity,1e-07}'] },
  { type: arr(T('bytea')), texts: ['{"\\\\x00ff",NULL}'] },
  { type: arr(T('bool')), texts: ['{t,f,NULL}'] },
  { type: arr(T('numeric')), texts: ['{1.50,NaN,Infinity}'] },
  { type: arr(T('date')), texts: ['{2024-02-29,infinity,"0044-03-15 BC"}'] },
  { type: arr(T('timestamp')), texts: ['{"2000-01-01 00:00:00.000001",infinity}'] },
  { type: arr(T('timestamptz')), texts: ['{"2000-01-01 00:00:00.000001+00","0001-01-01 00:00:00+00 BC"}'] },
  { type: arr(T('json')), texts: ['{"{\\"a\\": 1, \\"a\\": 2}"}'] },
  { type: arr(T('box')), texts: ['{(1,1),(0,0);(2,2),(1,1)}'] },
  { type: arr(T('mood', { schema: 'public', kind: 'enum' })), texts: ['{happy,"with space"}'] },
  { type: arr(T('int4range', { kind: 'range' })), texts: ['{"[1,10)",empty}'] },
];

for (const c of CASES) {
  test(`round trip ${pgTypeName(c.type, c.typmod ?? -1)}`, () => {
    for (const text of c.texts) {
      const { back } = roundTrip(c.type, c.typmod ?? -1, text);
      assert.equal(back, c.differs?.[text] ?? text, `text ${JSON.stringify(text)}`);
    }
  });
}

test('int8 beyond 2^53 never passes through a number', () => {
  for (const [text, big] of [
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
    ['9007199254740993', 9007199254740993n],
  ] as const) {
    const { avro, decoded } = roundTrip(T('int8'), -1, text);
    assert.equal(avro, big);
    assert.equal(decoded, big);
  }
  // Short ones go as numbers (exact: at most 15 digits); either way the same Avro bytes.
  for (const text of ['0', '-1', '999999999999999', '-999999999999999', '1000000000000000', '-1000000000000000']) {
    const { avro, decoded } = roundTrip(T('int8'), -1, text);
    assert.equal(typeof avro, text.replace('-', '').length < 16 ? 'number' : 'bigint', text);
    assert.equal(decoded, BigInt(text));
  }
});

test('Avro values of the Debezium time types', () => {
  const cases: [PgTypeInfo, string, unknown][] = [
    [T('timestamp'), '2000-01-01 00:00:00.000001', 946684800000001n],
    [T('timestamp'), '1969-12-31 23:59:59.999999', -1n],
    [T('timestamp'), 'infinity', 9223372036854775807n],
    [T('timestamp'), '-infinity', -9223372036854775808n],
    [T('timestamp'), '0001-01-01 00:00:00 BC', -62167219200000000n],
    // Past INT64_MAX µs: folded just above INT64_MIN, never onto the infinity sentinel.
    [T('timestamp'), '294247-01-10 04:00:54.775807', -9223372036854775807n],
    [T('date'), '2024-02-29', 19782],
    [T('date'), 'infinity', 2147483647],
    [T('date'), '-infinity', -2147483648],
    [T('date'), '0044-03-15 BC', -735160],
    [T('time'), '24:00:00', 86400000000n],
    [T('timestamptz'), '2000-01-01 00:00:00.000001+00', '2000-01-01T00:00:00.000001Z'],
    [T('timestamptz'), '0001-01-01 00:00:00+00 BC', '0000-01-01T00:00:00Z'],
    [T('timestamptz'), '0044-03-15 12:00:00+00 BC', '-0043-03-15T12:00:00Z'],
    [T('timestamptz'), '10000-01-01 00:00:00+00', '+10000-01-01T00:00:00Z'],
    [T('timetz'), '13:45:10.123456+05:30', '13:45:10.123456+05:30'],
    [T('timetz'), '13:45:10+00', '13:45:10Z'],
    [T('timetz'), '01:00:00-05', '01:00:00-05:00'],
  ];
  for (const [type, text, expected] of cases) assert.equal(roundTrip(type, -1, text).decoded, expected, text);
});

test('float specials survive avsc: NaN, ±Infinity, -0', () => {
  for (const name of ['float4', 'float8']) {
    assert.ok(Number.isNaN(roundTrip(T(name), -1, 'NaN').decoded as number));
    assert.equal(roundTrip(T(name), -1, 'Infinity').decoded, Infinity);
    assert.equal(roundTrip(T(name), -1, '-Infinity').decoded, -Infinity);
    assert.ok(Object.is(roundTrip(T(name), -1, '-0').decoded, -0), `${name} -0`);
  }
});

test('numeric keeps NaN, ±Infinity and trailing zeros as text', () => {
  for (const text of ['NaN', 'Infinity', '-Infinity', '123.4500']) assert.equal(roundTrip(T('numeric'), -1, text).decoded, text);
});

test('json keeps duplicate keys and whitespace verbatim', () => {
  const text = '{"a": 1,   "a": 2}';
  assert.equal(roundTrip(T('json'), -1, text).decoded, text);
});

test('arrays: 1-D as Avro arrays, anything else as verbatim text', () => {
  assert.deepEqual(roundTrip(arr(T('int4')), -1, '{1,2,NULL}').decoded, [1, 2, null]);
  assert.deepEqual(roundTrip(textArray, -1, '{"a b","c\\"d",NULL,"NULL"}').decoded, ['a b', 'c"d', null, 'NULL']);
  assert.equal(roundTrip(arr(T('int4')), -1, '{{1,2},{3,4}}').decoded, '{{1,2},{3,4}}');
  assert.equal(roundTrip(arr(T('int4')), -1, '[0:1]={1,2}').decoded, '[0:1]={1,2}');
  assert.deepEqual(roundTrip(arr(T('int8')), -1, '{9223372036854775807}').decoded, [9223372036854775807n]);
  // An extension's element type has its own delimiter (PostGIS geometry: ':'): split on ',' it was one element.
  const geometry = T('geometry', { schema: 'public' });
  const text = '{0101000000000000000000F03F000000000000F03F:0101000000000000000000F03F0000000000000040}';
  const r = roundTrip(arr(geometry), -1, text);
  assert.equal(r.decoded, text);
  assert.equal(r.back, text);
  assert.deepEqual(roundTrip(arr(T('mood', { schema: 'public', kind: 'enum' })), -1, '{sad,ok}').decoded, ['sad', 'ok']);
});

test('an array of an extension type keeps the schema earlier versions registered (the upgrade is BACKWARD-compatible), its value the string branch', () => {
  // The Avro type of a citext[] column as ShardBridge of 2026-12-05 registered it (fixture): the
  // registry refused a plain string as its next version, and the upgraded source stopped at start.
  const registeredBefore = [
    { type: 'array', items: ['null', { type: 'string', 'pg.type': 'public.citext' }], 'pg.type': 'public._citext' },
    { type: 'string', 'pg.type': 'public._citext' },
  ];
  const citextArray = T('_citext', { schema: 'public', kind: 'array', elem: T('citext', { schema: 'public' }) });
  assert.deepEqual(codecForType(citextArray, -1).avroType, registeredBefore);
  const r = roundTrip(citextArray, -1, '{A,b}');
  assert.equal(r.avro, '{A,b}');
  assert.equal(r.back, '{A,b}');
  // A record the earlier version wrote (the array branch) still reads, with the new schema as the reader.
  const field = (t: unknown): string => JSON.stringify({ type: 'record', name: 'R', fields: [{ name: 'v', type: nullableAvroType(t as object), default: null }] });
  const older = createAvroType(field(registeredBefore));
  const newer = createAvroType(field(codecForType(citextArray, -1).avroType));
  const read = newer.fromBuffer(older.toBuffer({ v: ['A', 'b'] }), newer.createResolver(older)) as { v: unknown };
  assert.deepEqual(read.v, ['A', 'b']);
});

test('an array of a domain over an array is verbatim text (its element codec is a union, which an array item cannot be)', () => {
  const shortarr = T('shortarr', { schema: 'public', kind: 'domain', base: arr(T('int4')) });
  const type = T('_shortarr', { schema: 'public', kind: 'array', elem: shortarr });
  const text = '{"{1,2}",NULL,"[2:3]={1,2}"}';
  const r = roundTrip(type, -1, text);
  assert.equal(r.decoded, text);
  assert.equal(r.back, text);
  assert.equal((codecForType(type, -1).avroType as { 'pg.type': string })['pg.type'], 'public._shortarr');
});

test('parseArray1D follows array_in', () => {
  const cases: [string, string, (string | null)[] | undefined][] = [
    ['{}', ',', []],
    ['{ }', ',', []],
    ['{a,b}', ',', ['a', 'b']],
    ['{ a , b }', ',', ['a', 'b']],
    ['{"a , b"}', ',', ['a , b']],
    ['{NULL,null,"NULL"}', ',', [null, null, 'NULL']],
    ['{a\\,b,c\\ }', ',', ['a,b', 'c ']],
    ['{"\\\\",""}', ',', ['\\', '']],
    ['{(1,1),(0,0);(2,2),(1,1)}', ';', ['(1,1),(0,0)', '(2,2),(1,1)']],
    ['{{1},{2}}', ',', undefined],
    ['[1:1]={1}', ',', undefined],
    ['{1,2', ',', undefined],
    ['{1}x', ',', undefined],
  ];
  for (const [text, delim, expected] of cases) assert.deepEqual(parseArray1D(text, delim), expected, text);
});

test('quoteArrayElement quotes what array_out quotes', () => {
  const cases: [string, string][] = [
    ['abc', 'abc'],
    ['', '""'],
    ['null', '"null"'],
    ['a b', '"a b"'],
    ['a,b', '"a,b"'],
    ['a"b', '"a\\"b"'],
    ['a\\b', '"a\\\\b"'],
    ['{x}', '"{x}"'],
    ['tab\t', '"tab\t"'],
  ];
  for (const [s, expected] of cases) assert.equal(quoteArrayElement(s, ','), expected, s);
  assert.equal(quoteArrayElement('(1,1),(0,0)', ';'), '(1,1),(0,0)');
});

test('Avro types carry connect.name and pg.type', () => {
  const numericCodec = codecForType(T('numeric'), NUMERIC_12_2);
  assert.deepEqual(numericCodec.avroType, { type: 'string', 'pg.type': 'numeric(12,2)' });
  assert.deepEqual(codecForType(T('varchar'), 24).avroType, { type: 'string', 'pg.type': 'varchar(20)' });
  assert.deepEqual(codecForType(T('int2'), -1).avroType, { type: 'int', 'connect.type': 'int16', 'pg.type': 'int2' });
  assert.deepEqual(codecForType(T('timestamp'), 3).avroType, {
    type: 'long',
    'connect.version': 1,
    'connect.name': 'io.debezium.time.MicroTimestamp',
    'pg.type': 'timestamp(3)',
  });
  assert.deepEqual(codecForType(T('bit'), 3).avroType, {
    type: 'string',
    'connect.version': 1,
    'connect.name': 'shardbridge.data.Bits',
    'connect.parameters': { length: '3' },
    'pg.type': 'bit(3)',
  });
  assert.deepEqual(codecForType(T('posint', { schema: 'public', kind: 'domain', base: T('int4') }), -1).avroType, {
    type: 'int',
    'pg.type': 'int4',
    'pg.domain': 'public.posint',
  });
  assert.deepEqual(codecForType(arr(T('int4')), -1).avroType, [
    { type: 'array', items: ['null', { type: 'int', 'pg.type': 'int4' }], 'pg.type': '_int4' },
    { type: 'string', 'pg.type': '_int4' },
  ]);
  assert.equal(codecForType(arr(T('numeric')), NUMERIC_12_2).pgType, '_numeric(12,2)');
  assert.equal(codecForType(T('mood', { schema: 'public', kind: 'enum' }), -1).pgType, 'public.mood');
});

test('pgTypeName prints typmods like format_type', () => {
  const cases: [PgTypeInfo, number, string][] = [
    [T('numeric'), ((10 << 16) | 0) + 4, 'numeric(10,0)'],
    [T('numeric'), ((5 << 16) | (-2 & 0x7ff)) + 4, 'numeric(5,-2)'],
    [T('bpchar'), 14, 'bpchar(10)'],
    [T('timestamptz'), 0, 'timestamptz(0)'],
    [T('interval'), (((1 << 2) | (1 << 1)) << 16) | 0xffff, 'interval year to month'],
    [T('interval'), (0x7fff << 16) | 3, 'interval(3)'],
    [T('int4'), -1, 'int4'],
  ];
  for (const [type, typmod, expected] of cases) assert.equal(pgTypeName(type, typmod), expected);
});

test('BigInt long: accepts bigint, safe number and decimal string; rejects the rest', () => {
  const t = createAvroType('long');
  for (const v of [0n, 5, '-9223372036854775808', 9223372036854775807n]) assert.equal(t.fromBuffer(t.toBuffer(v)), BigInt(v));
  for (const v of [1.5, 2 ** 60, '1e3', 9223372036854775808n, null]) assert.equal(t.isValid(v), false, String(v));
  // Nested in unions and arrays it is the same type.
  const u = createAvroType({ type: 'array', items: ['null', { type: 'long', 'connect.name': 'x' }] });
  assert.deepEqual(u.fromBuffer(u.toBuffer([null, -1n, '12'])), [null, -1n, 12n]);
});

test('BigInt long: the number fast path writes the same zigzag varint bytes and reads back exactly', () => {
  const t = createAvroType('long');
  const zigzagVarint = (v: bigint): Buffer => {
    let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    const out: number[] = [];
    while (z >= 0x80n) {
      out.push(Number(z & 0x7fn) | 0x80);
      z >>= 7n;
    }
    out.push(Number(z));
    return Buffer.from(out);
  };
  const edges = [0n, 1n, -1n, 63n, 64n, -64n, -65n, 2n ** 31n, -(2n ** 31n), 2n ** 52n - 1n, -(2n ** 52n) + 1n, 2n ** 52n, -(2n ** 52n), 2n ** 53n + 1n, INT64_MAX, INT64_MIN];
  for (let e = 0n; e < 63n; e += 3n) edges.push(2n ** e + 7n, -(2n ** e) - 3n);
  for (const v of edges) {
    const forms: unknown[] = [v, v.toString()];
    if (Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v) forms.push(Number(v));
    for (const form of forms) {
      const buf = t.toBuffer(form);
      assert.deepEqual(buf, zigzagVarint(v), `${typeof form} ${v}`);
      assert.equal(t.fromBuffer(buf), v);
    }
  }
  assert.throws(() => t.toBuffer(1.5));
  assert.throws(() => t.toBuffer(2 ** 60));
});

test('strings: the short-ASCII fast path writes the bytes avsc writes, also when the buffer must grow', async () => {
  const avro = (await import('avsc')).default;
  const ours = createAvroType({ type: 'record', name: 'S', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: ['null', { type: 'string', 'connect.name': 'x' }] }] });
  const stock = avro.Type.forSchema({ type: 'record', name: 'S', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: ['null', 'string'] }] }, { wrapUnions: 'never' });
  const samples = ['', 'a', 'op', 'x'.repeat(63), 'y'.repeat(64), 'z'.repeat(500), 'café', 'naïve-ascii-then-ü', '日本語', '😀 emoji', 'tab\there', '\u007f\u0080'];
  for (let n = 0; n < 70; n++) samples.push(String.fromCharCode(...Array.from({ length: n }, (_, i) => 32 + ((i * 7) % 95))));
  for (const a of samples) {
    for (const b of [null, a, 'q'.repeat(900) + a]) {
      const bytes = ours.toBuffer({ a, b });
      assert.deepEqual(bytes, stock.toBuffer({ a, b }), JSON.stringify(a));
      assert.deepEqual({ ...(ours.fromBuffer(bytes) as object) }, { a, b });
    }
  }
  assert.throws(() => ours.toBuffer({ a: 5, b: null }));
});

test('nullable fields ["null", T]: same bytes as avsc\'s own union, wrong values still refused', async () => {
  const avro = (await import('avsc')).default;
  const fields = [
    { name: 'l', type: ['null', 'long'], default: null },
    { name: 's', type: ['null', 'string'], default: null },
    { name: 'r', type: ['null', { type: 'record', name: 'Inner', fields: [{ name: 'x', type: 'int' }] }], default: null },
    { name: 'd', type: ['null', 'double'], default: null },
  ];
  const ours = createAvroType({ type: 'record', name: 'N', fields });
  // The reference: avsc's own long (numbers only, safe range) and unions.
  const stock = avro.Type.forSchema({ type: 'record', name: 'N', fields } as Parameters<typeof avro.Type.forSchema>[0], { wrapUnions: 'never' });
  const values = [
    { l: null, s: null, r: null, d: null },
    { l: 0, s: '', r: { x: 1 }, d: -0 },
    { l: -123456789, s: 'välue', r: { x: -5 }, d: Number.NaN },
    { l: 2 ** 52 - 1, s: 'a'.repeat(300), r: null, d: 1.5 },
  ];
  for (const v of values) assert.deepEqual(ours.toBuffer(v), stock.toBuffer(v), JSON.stringify(v));
  assert.deepEqual(ours.toBuffer({ ...values[2], l: -123456789n }), stock.toBuffer(values[2]), 'a BigInt long writes as the number would');
  assert.throws(() => ours.toBuffer({ ...values[0], l: 'twelve' }));
  assert.throws(() => ours.toBuffer({ ...values[0], s: 12 }));
  assert.deepEqual(ours.toBuffer({ ...values[0], d: undefined }), stock.toBuffer({ ...values[0], d: undefined }), 'undefined: the field default, as avsc does');
});

test('write-cached records: the same frozen object is copied, any other value written afresh; same bytes as an uncached type', () => {
  const source = () => ({ type: 'record', name: 'Src', fields: [{ name: 'db', type: 'string' }, { name: 'lsn', type: ['null', 'long'], default: null }] });
  const envelope = (src: object) => ({ type: 'record', name: 'Env', fields: [{ name: 'source', type: src }, { name: 'n', type: 'int' }] });
  const cached = createAvroType(envelope(writeCached(source())));
  const plain = createAvroType(envelope(source()));
  const a = Object.freeze({ db: 'shop', lsn: 42n });
  const b = Object.freeze({ db: 'other-db', lsn: null });
  const mutable = { db: 'm', lsn: 1n };
  const seq: { source: object; n: number }[] = [
    { source: a, n: 1 }, { source: a, n: 2 }, { source: b, n: 3 }, { source: a, n: 4 },
    { source: mutable, n: 5 }, { source: (mutable.db = 'changed', mutable), n: 6 }, { source: { db: 'x'.repeat(2000), lsn: null }, n: 7 },
  ];
  for (const v of seq) assert.deepEqual(cached.toBuffer(v), plain.toBuffer(v), JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x)));
  // Into a buffer too small for the copy: avsc's resize-and-retry still gets the same bytes.
  const small = Buffer.alloc(4);
  assert.ok(cached.encode({ source: a, n: 9 }, small, 0) < 0);
  assert.deepEqual(cached.toBuffer({ source: a, n: 9 }), plain.toBuffer({ source: a, n: 9 }));
});

test('day arithmetic is proleptic Gregorian both ways', () => {
  // Every 97th day across ±6000 years, plus leap days.
  for (let d = -2_500_000; d < 2_500_000; d += 97) {
    const [y, m, dd] = civilFromDays(d);
    assert.equal(daysFromCivil(y, m, dd), d);
  }
  assert.equal(daysFromCivil(2000, 2, 29), 11016);
  assert.equal(daysFromCivil(0, 2, 29), -719469); // 1 BC was a leap year
});

test('textEncoderFor refuses schemas it cannot map', () => {
  assert.throws(() => textEncoderFor({ type: 'record', name: 'X', fields: [] }), /no PostgreSQL text form/);
  assert.throws(() => textEncoderFor(['null', 'int', 'string']), /no PostgreSQL text form/);
});

test('timestamptz / timetz offsets other than UTC are normalised or kept', () => {
  // A connection without TimeZone=UTC still yields the same instant.
  assert.equal(timestamptzFromText('2024-06-01 02:00:00+05:30'), '2024-05-31T20:30:00Z');
  assert.equal(timestamptzFromText('0001-01-01 00:30:00-01 BC'), '0000-01-01T01:30:00Z');
  assert.equal(timestamptzFromText('1999-12-31 23:00:00.25-01:00:30'), '2000-01-01T00:00:30.25Z');
  // ISO text from elsewhere (offsets, expanded years) comes back as PostgreSQL's UTC text.
  assert.equal(timestamptzToText('2024-05-31T22:30:00+02:00'), '2024-05-31 20:30:00+00');
  assert.equal(timestamptzToText('-0043-03-15T12:00:00Z'), '0044-03-15 12:00:00+00 BC');
  assert.equal(timestamptzToText('+294276-12-31T23:59:59.999999Z'), '294276-12-31 23:59:59.999999+00');
  assert.equal(timetzFromText('12:00:00-00:30'), '12:00:00-00:30');
  assert.equal(timetzToText('12:00:00-05:00'), '12:00:00-05');
  assert.equal(timetzToText('12:00:00+00:00'), '12:00:00+00');
});

test('formatTypeName: pg.type names as format_type prints them; null where the printed name cannot be known', () => {
  const cases: [string, string | null][] = [
    ['int4', 'integer'],
    ['_int8', 'bigint[]'],
    ['bool', 'boolean'],
    ['float8', 'double precision'],
    ['numeric(12,2)', 'numeric(12,2)'],
    ['_numeric(12,2)', 'numeric(12,2)[]'],
    ['varchar(20)', 'character varying(20)'],
    ['bpchar(5)', 'character(5)'],
    ['bpchar', 'bpchar'],
    ['timestamptz(3)', 'timestamp(3) with time zone'],
    ['timestamp', 'timestamp without time zone'],
    ['_timetz', 'time with time zone[]'],
    ['interval year to month', 'interval year to month'],
    ['varbit(8)', 'bit varying(8)'],
    ['bit(3)', 'bit(3)'],
    ['jsonb', 'jsonb'],
    ['int4range', 'int4range'],
    ['public.mood', null],
    ['bit', null],
    ['char', null],
  ];
  for (const [pgType, printed] of cases) assert.equal(formatTypeName(pgType), printed, pgType);
});
