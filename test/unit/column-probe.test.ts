/**
 * Naming the column behind a stall whose error names none (column-probe.ts): which stalls
 * want it, PostgreSQL's assignment length checks done here, the cast probe's halving to the
 * first failing column (against a fake destination that casts like one), and what the stall
 * then says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { SinkApplyError } from '../../shared/errors.ts';
import { arrayElements, castProbeSql, ColumnNamer, findColumn, firstFailingCast, PROBE_CASTS, probedValues, valueProblem, wantsColumn, withFinding, type ProbedValue } from '../../sink-connector/column-probe.ts';
import { classify } from '../../sink-connector/destination-errors.ts';
import type { DecodedRecord } from '../../sink-connector/decode.ts';
import type { TableVersion } from '../../sink-connector/schema-compile.ts';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import { describeStall, remedyFor, type StallInfo } from '../../sink-connector/stall.ts';
import { parseArray1D } from '../../shared/type-mapping/arrays.ts';
import type { TableStates } from '../../sink-connector/table-state.ts';
import { testLogger } from '../helpers/kafka.ts';

const AT = { topic: 'p.public.orders', partition: 0, offset: '1234' };
const TABLE: ApplyTable = {
  schema: 's',
  name: 'orders',
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'note', type: 'character varying(5)' },
    { name: 'qty', type: 'integer' },
    { name: 'amount', type: 'numeric(5,2)' },
    { name: 'code', type: 'character(2)' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  citus: 'local',
};
const v = (column: string, type: string, value: string, sourceType?: string): ProbedValue => ({ column, type, value, ...(sourceType ? { sourceType } : {}) });

function pgError(code: string, message: string, extra: Record<string, string> = {}): Error {
  return Object.assign(new Error(message), { severity: 'ERROR', code, ...extra });
}

/** A destination that casts like PostgreSQL for the few types here: integer range, numeric(5,2) overflow. */
function fakeDestination(): { run: (sql: string, params: unknown[]) => Promise<any>; statements: string[] } {
  const statements: string[] = [];
  const run = async (sql: string, params: unknown[]) => {
    statements.push(sql);
    const types = [...sql.matchAll(/\$\d+::text::(.+?)(?=, \$\d+::|$)/g)].map((m) => m[1]);
    assert.equal(types.length, params.length, sql);
    // PostgreSQL's MaxTupleAttributeNumber: whatever the casts, such a statement fails.
    if (types.length > 1664) throw pgError('54011', 'target lists can have at most 1664 entries');
    const check = (type: string, value: string) => {
      if (type.endsWith('[]')) {
        // array_in casts each element as the element type.
        for (const e of parseArray1D(value, ',') ?? []) if (e !== null) check(type.slice(0, -2), e);
        return;
      }
      if (type === 'integer' && !/^-?\d+$/.test(value)) throw pgError('22P02', `invalid input syntax for type integer: "${value}"`);
      if (type === 'integer' && Math.abs(Number(value)) > 2 ** 31 - 1) throw pgError('22003', `value "${value}" is out of range for type integer`);
      if (type === 'numeric(5,2)' && Math.abs(Number(value)) >= 1000) throw pgError('22003', 'numeric field overflow');
    };
    types.forEach((type, i) => check(type, String(params[i])));
    return { rows: [] };
  };
  return { run, statements };
}

test('only value errors that name no column are probed', () => {
  const base = { reason: 'apply' as const, column: undefined };
  for (const sqlstate of ['22001', '22P02', '22003', '22007', '22008', '22021', '22P05', '23514']) assert.equal(wantsColumn({ ...base, sqlstate }), true, sqlstate);
  for (const sqlstate of ['23505', '23503', '42703', '57014', 'XX000', undefined]) assert.equal(wantsColumn({ ...base, sqlstate }), false, String(sqlstate));
  assert.equal(wantsColumn({ reason: 'apply', column: 'v', sqlstate: '22001' }), false, 'named already (a COPY context)');
  assert.equal(wantsColumn({ reason: 'decode', column: undefined, sqlstate: '22001' }), false);
});

test("the length checks an INSERT's assignment makes, as PostgreSQL makes them", () => {
  assert.deepEqual(valueProblem(v('n', 'character varying(5)', 'twelve chars')), { sqlstate: '22001', what: 'a value of 12 characters' });
  assert.equal(valueProblem(v('n', 'character varying(5)', 'abcde')), undefined);
  assert.equal(valueProblem(v('n', 'character varying(5)', 'abc    ')), undefined, 'spaces past the length are cut, not refused');
  assert.equal(valueProblem(v('n', 'character varying(5)', 'héllö')), undefined, 'characters, not bytes');
  assert.equal(valueProblem(v('n', 'character varying(2)', '😀😀')), undefined, 'characters, not UTF-16 units');
  assert.deepEqual(valueProblem(v('n', 'character(2)', 'abc')), { sqlstate: '22001', what: 'a value of 3 characters' });
  assert.deepEqual(valueProblem(v('b', 'bit(4)', '101')), { sqlstate: '22026', what: 'a value of 3 bits' }, 'bit(n) takes exactly n bits');
  assert.equal(valueProblem(v('b', 'bit(8)', 'xF0')), undefined);
  assert.deepEqual(valueProblem(v('b', 'bit varying(2)', '101')), { sqlstate: '22001', what: 'a value of 3 bits' });
  assert.equal(valueProblem(v('n', 'text', 'x'.repeat(10_000))), undefined);
  assert.deepEqual(valueProblem(v('n', 'character varying(5)[]', '{ab,"ten chars!",NULL}')), { sqlstate: '22001', what: 'an element of 10 characters (element 2 of 3)' }, "each element's length, as the assignment checks it");
  assert.equal(valueProblem(v('n', 'character varying(5)[]', '{abcde,"ab   ",NULL}')), undefined);
  assert.deepEqual(valueProblem(v('b', 'bit(2)[]', '{10,1}')), { sqlstate: '22026', what: 'an element of 1 bits (element 2 of 2)' });
  assert.equal(valueProblem(v('n', 'character varying(5)[]', '{{abcdefgh}}')), undefined, 'a multi-dimensional array is left to the cast');
  assert.equal(valueProblem(v('n', 'text[]', '{abcdefgh}')), undefined);
  assert.equal(valueProblem(v('n', 'text', 'a\u0000b'))?.sqlstate, '22021');
});

test('the cast probe casts as the apply does: to the unconstrained type where the length is checked apart', () => {
  assert.equal(castProbeSql([v('a', 'integer', '1'), v('b', 'character varying(5)', 'x'), v('c', 'numeric(5,2)', '1')]), 'SELECT $1::text::integer, $2::text::character varying, $3::text::numeric(5,2)');
});

test('the first failing cast is found in halves: one statement when none fails, 1 + log2(columns) when one does', async () => {
  const values = Array.from({ length: 80 }, (_, i) => v(`c${i}`, 'integer', String(i)));
  const ok = fakeDestination();
  assert.equal(await firstFailingCast(ok.run, values), undefined);
  assert.equal(ok.statements.length, 1);
  values[57] = v('c57', 'integer', '10000000000');
  values[70] = v('c70', 'integer', 'x');
  const bad = fakeDestination();
  assert.deepEqual(await firstFailingCast(bad.run, values), { index: 57, code: '22003', message: 'value "10000000000" is out of range for type integer' });
  assert.ok(bad.statements.length <= 1 + Math.ceil(Math.log2(80)), `${bad.statements.length} statements`);
  values[0] = v('c0', 'integer', 'y');
  assert.equal((await firstFailingCast(fakeDestination().run, values))?.index, 0);
  // Not a database error: the probe's own failure, thrown (the caller keeps the stall as it was).
  await assert.rejects(firstFailingCast(async () => Promise.reject(new Error('Connection terminated')), values), /Connection terminated/);
});

test('the first failing cast among more values than a SELECT takes (1,664): statements of up to PROBE_CASTS, then halves', async () => {
  // An integer[] of 5,000 elements with the 4,990th bad: found, not PostgreSQL's 54011 at element 1,665.
  const elements = Array.from({ length: 5000 }, (_, i) => v(`element ${i + 1} of 5000`, 'integer', i === 4989 ? 'x' : String(i)));
  const db = fakeDestination();
  assert.deepEqual(await firstFailingCast(db.run, elements), { index: 4989, code: '22P02', message: 'invalid input syntax for type integer: "x"' });
  assert.ok(db.statements.length <= Math.ceil(5000 / PROBE_CASTS) + Math.ceil(Math.log2(PROBE_CASTS)), `${db.statements.length} statements`);
  elements[4989] = v('element 4990 of 5000', 'integer', '1');
  const ok = fakeDestination();
  assert.equal(await firstFailingCast(ok.run, elements), undefined);
  assert.equal(ok.statements.length, Math.ceil(5000 / PROBE_CASTS));
});

test('findColumn: the first column in table order, by a length check or a cast', async () => {
  const values = [v('id', 'integer', '7'), v('note', 'character varying(5)', 'twelve chars', 'text'), v('qty', 'integer', '10000000000', 'bigint')];
  const long = await findColumn(fakeDestination().run, TABLE, values, { sqlstate: '22001' });
  assert.deepEqual(long, {
    column: 'note',
    type: 'character varying(5)',
    sqlstate: '22001',
    text: 'column note (character varying(5)) cannot hold a value of 12 characters',
    alter: 'ALTER TABLE "s"."orders" ALTER COLUMN "note" TYPE text',
  });
  const range = await findColumn(fakeDestination().run, TABLE, [values[0], values[2], values[1]], { sqlstate: '22003' });
  assert.equal(range?.column, 'qty', 'a cast failing before the long value comes first');
  assert.equal(range?.alter, 'ALTER TABLE "s"."orders" ALTER COLUMN "qty" TYPE bigint');
  assert.equal(range?.text, 'column qty (integer) cannot hold the source\'s value: value "10000000000" is out of range for type integer');
  const precision = await findColumn(fakeDestination().run, TABLE, [v('amount', 'numeric(5,2)', '12345.67', 'numeric(12,2)')], { sqlstate: '22003', message: 'numeric field overflow' });
  assert.equal(precision?.text, "column amount (numeric(5,2)) cannot hold the source's value", 'the same message is not said twice');
  assert.equal(precision?.alter, 'ALTER TABLE "s"."orders" ALTER COLUMN "amount" TYPE numeric(12,2)');
  // Without the source's type: text for a length, no statement for a cast.
  assert.match((await findColumn(fakeDestination().run, TABLE, [v('code', 'character(2)', 'abc')], { sqlstate: '22001' }))!.alter!, /TYPE text$/);
  assert.equal((await findColumn(fakeDestination().run, TABLE, [v('qty', 'integer', 'x')], { sqlstate: '22P02' }))?.alter, undefined);
  assert.equal(await findColumn(fakeDestination().run, TABLE, [values[0]], { sqlstate: '22001' }), undefined, 'nothing fails: nothing named');
});

test("an array column: its elements parsed as the element type, NULLs left out; each element's length checked, the element failing a cast found in halves", async () => {
  assert.deepEqual(arrayElements(v('tags', 'character varying(5)[]', '{a,NULL,"b c"}')), {
    type: 'character varying(5)',
    values: [v('element 1 of 3', 'character varying(5)', 'a'), v('element 3 of 3', 'character varying(5)', 'b c')],
  });
  assert.equal(arrayElements(v('tags', 'text', '{a}')), undefined, 'not an array column');
  assert.equal(arrayElements(v('m', 'integer[][]', '{{1,2},{3,4}}')), undefined, 'multi-dimensional: cast whole');
  assert.equal(arrayElements(v('m', 'integer[]', '[0:1]={1,2}')), undefined, 'dimension decoration: cast whole');

  const long = await findColumn(fakeDestination().run, TABLE, [v('id', 'integer', '1'), v('tags', 'character varying(5)[]', '{ab,"ten chars!"}', 'text[]')], { sqlstate: '22001' });
  assert.deepEqual(long, {
    column: 'tags',
    type: 'character varying(5)[]',
    sqlstate: '22001',
    text: 'column tags (character varying(5)[]) cannot hold an element of 10 characters (element 2 of 2)',
    alter: 'ALTER TABLE "s"."orders" ALTER COLUMN "tags" TYPE text[]',
  });
  // Without the source's type: the unbounded element type, still an array.
  assert.equal((await findColumn(fakeDestination().run, TABLE, [v('tags', 'character varying(5)[]', '{"ten chars!"}')], { sqlstate: '22001' }))?.alter, 'ALTER TABLE "s"."orders" ALTER COLUMN "tags" TYPE text[]');

  const elements = ['1.50', 'NULL', ...Array.from({ length: 40 }, (_, i) => String(i)), '123456.78', '9'];
  const db = fakeDestination();
  const range = await findColumn(db.run, TABLE, [v('id', 'integer', '1'), v('amounts', 'numeric(5,2)[]', `{${elements.join(',')}}`, 'numeric(12,2)[]')], { sqlstate: '22003', message: 'numeric field overflow' });
  assert.equal(range?.column, 'amounts');
  assert.equal(range?.text, "column amounts (numeric(5,2)[]) cannot hold element 43 of 44 of the source's value");
  assert.equal(range?.alter, 'ALTER TABLE "s"."orders" ALTER COLUMN "amounts" TYPE numeric(12,2)[]');
  assert.ok(db.statements.length <= 2 + 1 + Math.ceil(Math.log2(43)), `${db.statements.length} statements: the columns' halving, then the elements'`);
  assert.ok(db.statements.at(-1)!.includes('::text::numeric(5,2)') && !db.statements.at(-1)!.includes('[]'), 'elements cast as the element type');
});

test("a check constraint's columns come from the catalog", async () => {
  const asked: unknown[][] = [];
  const run = async (_sql: string, params: unknown[]) => {
    asked.push(params);
    return { rows: [{ name: 'qty' }] } as any;
  };
  const f = await findColumn(run, TABLE, [], { sqlstate: '23514', constraint: 'qty_positive_102008' });
  assert.deepEqual(asked, [['s', 'orders', 'qty_positive_102008']]);
  assert.deepEqual([f?.column, f?.text], ['qty', 'check constraint qty_positive_102008 reads column qty']);
});

test('the stall names the column, what it cannot hold, and the ALTER; an error with its own remedy keeps it', () => {
  const err = classify(pgError('22001', 'value too long for type character varying(5)'), { table: 's.orders' });
  const info = describeStall(err, AT, 'apply');
  const finding = { column: 'note', type: 'character varying(5)', sqlstate: '22001', text: 'column note (character varying(5)) cannot hold a value of 12 characters', alter: 'ALTER TABLE "s"."orders" ALTER COLUMN "note" TYPE text' };
  const named = withFinding(info, finding);
  assert.equal(named.column, 'note');
  assert.equal(named.finding, finding.text);
  assert.equal(named.remedy, 'ALTER TABLE "s"."orders" ALTER COLUMN "note" TYPE text; the partition resumes by itself');
  assert.equal(named.message, info.message, "the database's message as it was");
  const own: StallInfo = { ...info, remedy: 'raise the statement_timeout' };
  assert.equal(withFinding(own, finding).remedy, 'raise the statement_timeout');
  const check = withFinding(describeStall(classify(pgError('23514', 'new row violates check constraint "qty_positive"', { constraint: 'qty_positive', table: 'orders', schema: 's' }), {}), AT, 'apply'), {
    column: 'qty',
    type: 'integer',
    sqlstate: '23514',
    text: 'check constraint qty_positive reads column qty',
  });
  assert.match(check.remedy, /check constraint qty_positive of s\.orders \(on qty\) rejects a source row/);
  // As Citus relays it from a shard: the SQLSTATE and text, no constraint field.
  const relayed = describeStall(classify(pgError('23514', 'new row for relation "orders_102008" violates check constraint "qty_positive"'), { table: 's.orders' }), AT, 'apply');
  assert.deepEqual([relayed.constraint, relayed.table], ['qty_positive', 's.orders']);
  assert.match(relayed.remedy, /check constraint qty_positive of s\.orders rejects a source row/);
  assert.match(withFinding(info, { ...finding, alter: undefined, sqlstate: '22021' }).remedy, /cannot hold a NUL byte: make note bytea/);
});

test('a character the database encoding has no code for (22P05) is not a type to widen: the remedy is a UTF8 database or a bytea column, as the stall\'s own', async () => {
  // A LATIN1 destination refuses the probe's parameter itself, whatever the column's type.
  const latin1 = async (sql: string, params: unknown[]) => {
    for (const p of params) if (Array.from(String(p)).some((c) => c.codePointAt(0)! > 0xff)) throw pgError('22P05', 'character with byte sequence 0xe6 0x97 0xa5 in encoding "UTF8" has no equivalent in encoding "LATIN1"');
    return fakeDestination().run(sql, params);
  };
  const info = describeStall(classify(pgError('22P05', 'character with byte sequence 0xe6 0x97 0xa5 in encoding "UTF8" has no equivalent in encoding "LATIN1"'), { table: 's.orders' }), AT, 'apply');
  for (const value of [v('note', 'character varying(5)', '日本', 'text'), v('qty', 'integer', '日本', 'bigint')]) {
    const f = await findColumn(latin1, TABLE, [v('id', 'integer', '7'), value], { sqlstate: '22P05', message: info.message });
    assert.equal(f?.column, value.column);
    assert.equal(f?.sqlstate, '22P05');
    assert.equal(f?.alter, undefined, `no ALTER COLUMN … TYPE for ${value.type}: no type of a LATIN1 database holds the character`);
    const named = withFinding(info, f!);
    assert.doesNotMatch(named.remedy, /ALTER COLUMN .* TYPE/);
    assert.equal(named.remedy, remedyFor({ ...info, column: value.column, sqlstate: '22P05' }));
    assert.match(named.remedy, new RegExp(`encoding cannot store a character .*\\(column ${value.column}\\).*ENCODING 'UTF8'.*or make s\\.orders\\.${value.column} bytea`));
  }
  // Found on another column than the stall's own error (a 22001 stall, a 22P05 probe): still the encoding's remedy.
  const long = describeStall(classify(pgError('22001', 'value too long for type character varying(5)'), { table: 's.orders' }), AT, 'apply');
  assert.match(withFinding(long, { column: 'note', type: 'character varying(5)', sqlstate: '22P05', text: 'column note (character varying(5)) cannot hold the source\'s value' }).remedy, /encoding cannot store a character of this value \(column note\)/);
});

test("a Citus relay's XX000 stalls under the worker's SQLSTATE, with its remedy (and so is probed)", () => {
  const info = describeStall(classify(pgError('XX000', 'value too long for type character varying(3)'), { table: 's.orders' }), AT, 'apply');
  assert.equal(info.sqlstate, '22001');
  assert.match(info.remedy, /ALTER TABLE s\.orders ALTER COLUMN … TYPE/);
  assert.notEqual(info.remedy, remedyFor({ sqlstate: 'XX000', reason: 'apply' }));
});

test("the probed values: the record's non-null values in the table's column order, with the source's types", () => {
  const record = {
    change: { op: 'u', topic: 't', partition: 0, offset: '1', key: { id: '7' }, after: { qty: '3', id: '7', note: null, amount: '1.5', gone: 'x' }, before: null, unchangedToast: [] },
    table: { columns: [{ name: 'id', pgType: 'int4' }, { name: 'qty', pgType: 'int8' }, { name: 'amount', pgType: null }] } as unknown as TableVersion,
    keyColumns: ['id'],
  } as DecodedRecord;
  assert.deepEqual(probedValues(record, TABLE), [v('id', 'integer', '7', 'integer'), v('qty', 'integer', '3', 'bigint'), v('amount', 'numeric(5,2)', '1.5')]);
  const del = { ...record, change: { ...record.change, op: 'd', after: null, key: { id: 'x' } } } as DecodedRecord;
  assert.deepEqual(probedValues(del, TABLE), [v('id', 'integer', 'x', 'integer')], 'a delete: its key');
});

test('SinkApplyError context keeps a relayed code apart from the one reported', () => {
  const e = classify(pgError('XX000', 'value too long for type character varying(3)'), {}) as SinkApplyError;
  assert.deepEqual([e.context.sqlstate, e.context.reportedSqlstate], ['22001', 'XX000']);
});

test('each distinct stall is probed once: its retries under the same catalog reuse the finding; a changed catalog or a failed probe probes again', async () => {
  const record = {
    change: { op: 'c', topic: 't', partition: 0, offset: '1234', key: { id: '7' }, after: { id: '7', qty: '10000000000' }, before: null, unchangedToast: [] },
    table: { columns: [{ name: 'id', pgType: 'int4' }, { name: 'qty', pgType: 'int8' }] } as unknown as TableVersion,
    keyColumns: ['id'],
  } as DecodedRecord;
  let table: ApplyTable = { ...TABLE, digest: 'a' };
  const states = { peek: () => table, resolve: async () => table } as unknown as TableStates;
  const dest = fakeDestination();
  let down = false;
  const pool = {
    connect: async () => {
      if (down) throw new Error('connect ECONNREFUSED');
      return { query: dest.run, release: () => {} };
    },
  } as unknown as pg.Pool;
  const namer = new ColumnNamer(pool, states, testLogger());
  const info = describeStall(classify(pgError('22003', 'value "10000000000" is out of range for type integer'), { table: 's.orders' }), AT, 'apply');
  const first = await namer.name(info, record);
  assert.equal(first.column, 'qty');
  const probed = dest.statements.length;
  assert.ok(probed > 0);
  assert.equal((await namer.name(info, record)).column, 'qty');
  assert.equal(dest.statements.length, probed, 'a retry under the same catalog: no probe');
  table = { ...TABLE, digest: 'b' };
  await namer.name(info, record);
  assert.ok(dest.statements.length > probed, 'the catalog changed: probed again');
  table = { ...TABLE, digest: 'c' };
  down = true;
  assert.equal(await namer.name(info, record), info, 'a probe that fails leaves the stall as it was');
  down = false;
  assert.equal((await namer.name(info, record)).column, 'qty', 'and is not remembered');
  const other: StallInfo = { ...info, sqlstate: '23505' };
  assert.equal(await namer.name(other, record), other, 'other errors are not probed');
  assert.equal(await namer.name(info, null), info);
});
