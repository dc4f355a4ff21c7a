/**
 * The value contract against a real PostgreSQL: for every type and its edge values, the
 * text PostgreSQL prints under SOURCE_SESSION_SETTINGS goes text -> codec -> avsc bytes ->
 * textEncoderFor (from the schema as JSON, as the sink sees it) -> `$1::text[]` -> `::type`,
 * and PostgreSQL itself says the result is the same value with the same text output.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPostgres, type PgCluster } from '../../shared/devstack/postgres.ts';
import { sourceSessionOptions, type TableInfo, type TextTuple } from '../../shared/pg-types.ts';
import { codecFor, createAvroType, formatTypeName, nullableAvroType, textEncoderFor } from '../../shared/type-mapping/index.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';

interface TypeCase {
  /** SQL type as written in DDL. */
  sql: string;
  /** SQL expressions of the edge values. */
  values: string[];
  /** The type has no `=` operator: compare text output only. */
  noEq?: boolean;
  /** Our text is a different spelling of the same value (money: no currency symbol). */
  respelled?: boolean;
}

const q = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const lits = (...xs: string[]): string[] => xs.map(q);

const CASES: TypeCase[] = [
  { sql: 'smallint', values: ['-32768', '32767', '0'] },
  { sql: 'integer', values: ['-2147483648', '2147483647', '0'] },
  { sql: 'bigint', values: ['9223372036854775807', '-9223372036854775808', '9007199254740993', '0'] },
  { sql: 'oid', values: ['4294967295', '0'] },
  { sql: 'real', values: [...lits('NaN', 'Infinity', '-Infinity', '-0'), '0', '1.1', '3.4028235e38', '1e-45', '1.17549435e-38', '1e6', '123456', '0.0001', '1e-5', '-7.5', '16777217'] },
  {
    sql: 'double precision',
    values: [
      ...lits('NaN', 'Infinity', '-Infinity', '-0'),
      '0',
      '1.0000000000000002',
      '1e15',
      '1e14',
      '1e-5',
      '1e-7',
      '1.7976931348623157e308',
      '5e-324',
      '2.2250738585072014e-308',
      '0.1',
      '123456789012345680000',
      '-9007199254740993',
    ],
  },
  { sql: 'boolean', values: ['true', 'false'] },
  { sql: 'numeric', values: [...lits('NaN', 'Infinity', '-Infinity'), '123.4500', '-0.000000000000000000001', '1e100', '0.0'] },
  { sql: 'numeric(12,2)', values: ['1234567890.12', '-0.01', '0'] },
  { sql: 'money', values: lits('$1,234.56', '-5', '-92233720368547758.08', '92233720368547758.07', '0'), respelled: true },
  { sql: 'text', values: [...lits('', 'a b', 'NULL', 'line\nbreak', '\\', 'ünï ✓', '{1,2}', '"q"'), "repeat('x', 10000)"] },
  { sql: 'varchar(20)', values: lits('abc', '') },
  { sql: 'char(5)', values: lits('ab', '') },
  { sql: 'name', values: lits('pg_class') },
  { sql: '"char"', values: lits('a') },
  { sql: 'bytea', values: [...lits('\\x', '\\x00ff'), "decode(repeat('ff00', 1000), 'hex')"] },
  { sql: 'uuid', values: lits('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') },
  { sql: 'json', values: lits('{"a": 1, "a": 2}', '  [1,\n 2 ]  ', 'null', '"\\u0000x"'), noEq: true },
  { sql: 'jsonb', values: lits('{"a": 1, "b": [1, null, "x y"]}', '1e400') },
  { sql: 'xml', values: lits('<a x="1">t</a>', 'text only'), noEq: true },
  { sql: 'date', values: lits('2024-02-29', 'infinity', '-infinity', '0044-03-15 BC', '4714-11-24 BC', '5874897-12-31', '0001-01-01', '0001-12-31 BC', '1970-01-01', '1969-12-31') },
  {
    sql: 'timestamp',
    values: lits(
      '2000-01-01 00:00:00.000001',
      'infinity',
      '-infinity',
      '0001-01-01 00:00:00 BC',
      '4714-11-24 00:00:00 BC',
      '294276-12-31 23:59:59.999999',
      '294247-01-10 04:00:54.775807',
      '294247-01-10 04:00:54.775806',
      '294247-01-10 04:00:54.775808',
      '1969-12-31 23:59:59.999999',
      '2024-02-29 13:45:10.5',
    ),
  },
  { sql: 'timestamp(0)', values: lits('2024-02-29 13:45:10') },
  {
    sql: 'timestamptz',
    values: lits(
      '2000-01-01 00:00:00.000001+00',
      'infinity',
      '-infinity',
      '0001-01-01 00:00:00+00 BC',
      '0044-03-15 12:00:00+00 BC',
      '4714-11-24 00:00:00+00 BC',
      '294276-12-31 23:59:59.999999+00',
      '2024-06-01 02:00:00+05:30',
      '10000-01-01 00:00:00+00',
    ),
  },
  { sql: 'time', values: lits('24:00:00', '00:00:00', '13:45:10.5', '23:59:59.999999') },
  { sql: 'time(2)', values: lits('13:45:10.25') },
  { sql: 'timetz', values: lits('13:45:10.123456+05:30', '24:00:00+00', '00:00:00-15:59', '12:00:00-00:30', '13:45:10.5+05:30:15', '01:00:00-05', '00:00:00+15:59') },
  {
    sql: 'interval',
    values: lits('P1Y2M3DT4H5M6.789S', '0', '-1 day', '-1 year +2 months -3 days', '-0.000001 seconds', '178000000 years', '1 day -1 second', '-2147483648 days'),
  },
  { sql: 'interval year to month', values: lits('1 year 2 months') },
  { sql: 'bit(3)', values: ["B'101'", "B'000'"] },
  { sql: 'varbit', values: ["B''", "B'1010101010101010101'"] },
  { sql: 'inet', values: lits('192.168.0.1/24', '::1', '10.0.0.1') },
  { sql: 'cidr', values: lits('10.0.0.0/8', '2001:db8::/32') },
  { sql: 'macaddr', values: lits('08:00:2b:01:02:03') },
  { sql: 'macaddr8', values: lits('08:00:2b:01:02:03:04:05') },
  { sql: 'point', values: lits('(1.5,-2)', '(NaN,Infinity)'), noEq: true },
  { sql: 'box', values: lits('((1,1),(0,0))') },
  { sql: 'tsvector', values: lits("'a' 'b':2") },
  { sql: 'int4range', values: lits('[1,10)', 'empty', '(,)') },
  { sql: 'tstzrange', values: lits('["2000-01-01 00:00:00+00",)', '[-infinity,infinity]') },
  { sql: 'int4multirange', values: lits('{[1,3),[5,7)}', '{}') },
  { sql: 'mood', values: lits('happy', 'with space') },
  { sql: 'posint', values: ['42'] },
  { sql: 'integer[]', values: lits('{1,2,NULL}', '{}', '{{1,2},{3,4}}', '[0:1]={1,2}', '{{{1}}}', '{NULL}') },
  { sql: 'bigint[]', values: lits('{9223372036854775807,-9223372036854775808}') },
  { sql: 'text[]', values: lits('{"a b","c\\"d",NULL}', '{"NULL",""}', '{"\\\\","{}",",",a}', '{"  lead","trail  "}', '{{"a b",NULL},{c,d}}', '{"ü ✓"}') },
  { sql: 'varchar(3)[]', values: lits('{ab,NULL}') },
  { sql: 'double precision[]', values: lits('{NaN,-0,Infinity,-Infinity,1e-07,0.1}') },
  { sql: 'real[]', values: lits('{1.1,-0,NaN}') },
  { sql: 'bytea[]', values: lits('{"\\\\x00ff",NULL,"\\\\x"}') },
  { sql: 'boolean[]', values: lits('{t,f,NULL}') },
  { sql: 'numeric(12,2)[]', values: lits('{1.50,NULL,-0.01}') },
  { sql: 'numeric[]', values: lits('{NaN,Infinity,1.000}') },
  { sql: 'date[]', values: lits('{2024-02-29,infinity,"0044-03-15 BC"}') },
  { sql: 'timestamp[]', values: lits('{"2000-01-01 00:00:00.000001",infinity,"0001-01-01 00:00:00 BC"}') },
  { sql: 'timestamptz[]', values: lits('{"2000-01-01 00:00:00.000001+00","0001-01-01 00:00:00+00 BC"}') },
  { sql: 'time[]', values: lits('{24:00:00,00:00:00.5}') },
  { sql: 'timetz[]', values: lits('{13:45:10+05:30,00:00:00+00}') },
  { sql: 'interval[]', values: lits('{"1 day","-1 year"}') },
  { sql: 'json[]', values: lits('{"{\\"a\\": 1, \\"a\\": 2}",NULL}'), noEq: true },
  { sql: 'jsonb[]', values: lits('{"{\\"a\\": 1}"}') },
  { sql: 'uuid[]', values: lits('{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}') },
  { sql: 'box[]', values: lits('{"((1,1),(0,0))";"((2,2),(1,1))"}'), noEq: true },
  { sql: 'point[]', values: lits('{"(1,2)",NULL}'), noEq: true },
  { sql: 'mood[]', values: lits('{happy,"with space"}') },
  { sql: 'posint[]', values: lits('{1,NULL}') },
  { sql: 'int4range[]', values: lits('{"[1,10)",empty}') },
  { sql: 'bit(2)[]', values: lits('{10,01}') },
  { sql: 'inet[]', values: lits('{192.168.0.1/24,::1}') },
  { sql: 'money[]', values: lits('{"$1.50","-$2.00"}'), respelled: true },
  { sql: 'char(3)[]', values: lits('{"a  ",b}') },
];

const SCHEMA = 'tm';
const rawText = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;
let cluster: PgCluster;
let db: pg.Client;
/** Default type parsing, for the catalog reader. */
let catalogDb: pg.Client;
let tables: Map<string, TableInfo>;

before(async () => {
  cluster = await startPostgres({ name: 'type-mapping' });
  // The source's session settings, as every snapshot and walsender connection has them.
  db = new pg.Client({ connectionString: cluster.url(), options: sourceSessionOptions(), types: rawText });
  await db.connect();
  const ddl = [
    `CREATE SCHEMA ${SCHEMA}`,
    `SET search_path = ${SCHEMA}, public`,
    `CREATE TYPE mood AS ENUM ('happy', 'with space')`,
    `CREATE DOMAIN posint AS integer CHECK (VALUE > 0)`,
    ...CASES.map((c, i) => `CREATE TABLE t${i} (id int PRIMARY KEY, v ${c.sql})`),
    ...CASES.map((c, i) => `INSERT INTO t${i} VALUES ${c.values.map((v, k) => `(${k + 1}, ${v})`).join(', ')}`),
  ];
  await db.query(ddl.join(';\n'));
  // node-pg leaves name[] (oid 1003, catalog.ts's array_agg(attname) for key columns) as
  // text; parse it like text[] until the catalog reader casts it itself.
  const nameArrayAsTextArray = {
    getTypeParser: (oid: number, format?: 'text' | 'binary') => pg.types.getTypeParser(oid === 1003 ? 1009 : oid, format ?? 'text'),
  } as unknown as pg.CustomTypesConfig;
  catalogDb = new pg.Client({ connectionString: cluster.url(), types: nameArrayAsTextArray });
  await catalogDb.connect();
  const resolved = await resolveTables(catalogDb, { schemas: [SCHEMA], include: [], exclude: [] });
  tables = new Map(resolved.tables.map((t) => [t.name, t]));
});

after(async () => {
  await db?.end();
  await catalogDb?.end();
  await cluster?.destroy();
});

test('session settings are the source settings', async () => {
  const { rows } = await db.query<{ d: string; i: string }>(`SELECT current_setting('DateStyle') AS d, current_setting('IntervalStyle') AS i`);
  assert.deepEqual(rows[0], { d: 'ISO, MDY', i: 'iso_8601' });
});

/** text -> Avro (bytes) -> text, with the schema passed through JSON as the registry would. */
function throughAvro(avroType: object, fromText: (t: string) => unknown, texts: string[]): string[] {
  const schema = JSON.stringify({ type: 'record', name: 'R', fields: [{ name: 'v', type: nullableAvroType(avroType), default: null }] });
  const type = createAvroType(schema);
  const encode = textEncoderFor((JSON.parse(schema) as { fields: { type: object }[] }).fields[0].type);
  return texts.map((t) => encode((type.fromBuffer(type.toBuffer({ v: fromText(t) })) as { v: unknown }).v));
}

interface Verdict {
  id: number;
  original: string;
  sent: string;
  /** 't' / 'f' (the client keeps every value as PostgreSQL's text). */
  same_text: string;
  same_value: string | null;
}

/** PostgreSQL's verdict: the sent texts as `$2::text[]` cast to the column type vs the stored values. */
async function verdicts(table: string, sqlType: string, ids: number[], sent: string[], withEq: boolean): Promise<Verdict[]> {
  const eq = withEq ? `(x.s::${sqlType}) IS NOT DISTINCT FROM t.v` : 'NULL::boolean';
  const { rows } = await db.query<Verdict>(
    // format('%s') prints with the type's output function (::text casts differ for bool, inet, char).
    `SELECT x.id, format('%s', t.v) AS original, x.s AS sent, format('%s', x.s::${sqlType}) = format('%s', t.v) AS same_text, ${eq} AS same_value
       FROM unnest($1::int[], $2::text[]) AS x(id, s) JOIN ${SCHEMA}.${table} t ON t.id = x.id ORDER BY x.id`,
    [ids, sent],
  );
  return rows;
}

for (const [i, c] of CASES.entries()) {
  test(`${c.sql}: text -> Avro -> text is the same value in PostgreSQL`, async () => {
    const { rows } = await db.query<{ id: string; v: string }>(`SELECT id, v FROM ${SCHEMA}.t${i} ORDER BY id`);
    assert.equal(rows.length, c.values.length);
    const column = tables.get(`t${i}`)!.columns[1];
    const codec = codecFor(column);
    const sent = throughAvro(codec.avroType, codec.fromText, rows.map((r) => r.v));
    const result = await verdicts(`t${i}`, c.sql, rows.map((r) => Number(r.id)), sent, !c.noEq);
    const bad = result.filter((r) => r.same_text !== 't' || r.same_value === 'f');
    assert.deepEqual(bad, [], `${c.sql} (${codec.pgType})`);
    assert.equal(result.length, c.values.length);
    // Beyond the same value: the very text PostgreSQL printed, except where documented.
    const respelled = result.filter((r) => r.sent !== r.original);
    if (c.respelled) assert.ok(respelled.length > 0);
    else assert.deepEqual(respelled, []);
  });
}

test('whole rows: catalog TableInfo -> record schema -> envelope bytes -> per-field text via pg.column', async () => {
  // One wide table, a column per type case with awkward names, rows from the per-type tables.
  const maxRows = Math.max(...CASES.map((c) => c.values.length));
  const colName = (i: number): string => `c-${i} ${CASES[i].sql}`;
  const quoted = (s: string): string => `"${s.replace(/"/g, '""')}"`;
  await db.query(
    `CREATE TABLE ${SCHEMA}.wide AS SELECT g AS id, ${CASES.map((_, i) => `t${i}.v AS ${quoted(colName(i))}`).join(', ')}
       FROM generate_series(1, ${maxRows}) g ${CASES.map((_, i) => `LEFT JOIN ${SCHEMA}.t${i} ON t${i}.id = g`).join(' ')};
     ALTER TABLE ${SCHEMA}.wide ADD PRIMARY KEY (id)`,
  );
  const wide = (await resolveTables(catalogDb, { schemas: [], include: [`${SCHEMA}.wide`], exclude: [] })).tables[0];
  const schemas = buildRecordSchemas(wide, `it.${SCHEMA}.wide`, 'test');
  const { rows } = await db.query<TextTuple>({ text: `SELECT * FROM ${SCHEMA}.wide ORDER BY id`, rowMode: 'array' });

  // The sink's view: the envelope schema as JSON, fields mapped back by pg.column.
  const valueFields = (JSON.parse(JSON.stringify(schemas.valueSchema)) as { fields: { name: string; type: object; 'pg.column': string }[] }).fields;
  const encoders = valueFields.map((f) => ({ field: f.name, column: f['pg.column'], encode: textEncoderFor(f.type) }));
  const reader = createAvroType(JSON.stringify(schemas.envelopeSchema));
  const sentByColumn = new Map<string, (string | null)[]>(encoders.map((e) => [e.column, []]));
  for (const tuple of rows) {
    const { row, unchangedToast } = schemas.rowFromTuple(tuple);
    const envelope = { before: null, after: row, source: schemas.sourceFor({ db: 'postgres', tsMs: 0 }), op: 'r', ts_ms: null, transaction: null, unchanged_toast: unchangedToast };
    const decoded = reader.fromBuffer(schemas.envelopeType.toBuffer(envelope)) as { after: Record<string, unknown> };
    for (const e of encoders) {
      const v = decoded.after[e.field];
      sentByColumn.get(e.column)!.push(v === null ? null : e.encode(v));
    }
  }
  const ids = rows.map((r) => Number(r[0]));
  for (const [i, c] of CASES.entries()) {
    const sent = sentByColumn.get(colName(i));
    assert.ok(sent, `column ${colName(i)} mapped back by pg.column`);
    const { rows: check } = await db.query<{ ok: string; n: string }>(
      `SELECT bool_and((x.s IS NULL) = (w.${quoted(colName(i))} IS NULL) AND format('%s', x.s::${c.sql}) = format('%s', w.${quoted(colName(i))})) AS ok,
              count(*) AS n
         FROM unnest($1::int[], $2::text[]) AS x(id, s) JOIN ${SCHEMA}.wide w ON w.id = x.id`,
      [ids, sent],
    );
    assert.deepEqual(check[0], { ok: 't', n: String(maxRows) }, colName(i));
  }
});

test("pg.type names read as format_type prints them: formatTypeName agrees with PostgreSQL on every pg_catalog type", async () => {
  const { rows } = await db.query<{ name: string; type: string }>(
    `SELECT c.relname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname ~ '^t[0-9]+$' AND a.attname = 'v'`,
    [SCHEMA],
  );
  const printed = new Map(rows.map((r) => [r.name, r.type]));
  let compared = 0;
  for (const [i, c] of CASES.entries()) {
    const column = tables.get(`t${i}`)!.columns.find((col) => col.name === 'v')!;
    const name = formatTypeName(codecFor(column).pgType);
    const outside = ['mood', 'posint', 'mood[]', 'posint[]', '"char"'].includes(c.sql);
    if (outside) {
      // Not pg_catalog types (or quoted by format_type): not compared, so never a false mismatch.
      if (c.sql !== 'posint') assert.equal(name, null, c.sql);
      continue;
    }
    assert.equal(name, printed.get(`t${i}`), `${c.sql} (pg.type ${codecFor(column).pgType})`);
    compared++;
  }
  assert.ok(compared > 60, `${compared} types compared`);
});
