/**
 * A value the destination column cannot hold: PostgreSQL's error does not name the column
 * (22001 value too long, 22003 out of range, a check constraint names itself), so the stall
 * finds it by probing the stalled record's values against the column types, and names it in
 * its log line, its row and its remedy. The ALTER the remedy gives resumes the partition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const { ID, SRC, DST, table, env } = sinkTestFile('scol');

type Row = [id: number, note: string, qty: string, amount: string];
const rows = (list: Row[]) => list.map(([id, note, qty, amount]) => ({ kind: 'insert' as const, new: [String(id), note, qty, amount] }));
const fits = (from: number, to: number): Row[] => Array.from({ length: to - from + 1 }, (_, i) => [from + i, `n${from + i}`, String(from + i), '1.50']);

/** The stall row of the group once it is at `offset`. */
async function stallAt(groupId: string, offset: string): Promise<Record<string, any>> {
  const { db } = env();
  return waitFor(`stall at offset ${offset}`, async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1 AND next_offset = $2', [groupId, offset])).rows[0], {
    timeoutMs: 30_000,
    intervalMs: 50,
  });
}

test('a value too long, out of range or over a numeric precision stalls naming its column, type and remedy; each ALTER resumes the partition', async () => {
  const { db, admin, producer, servers } = env();
  const prefix = uniqueTopic('sbcol');
  const t = await table(prefix, 'narrow', {
    ddl: '(id int PRIMARY KEY, note text, qty bigint, amount numeric(12,2))',
    destDdl: '(id int PRIMARY KEY, note varchar(5), qty int, amount numeric(5,2))',
  });
  // The failing records are not the first of their batch: bisecting finds them, the probe names the column.
  await produceChanges(producer, t, rows([...fits(1, 3), [4, 'twelve chars', '4', '1.50'], [5, 'n5', '10000000000', '1.50'], [6, 'n6', '6', '12345.67'], ...fits(7, 8)]));
  const groupId = `g-${ID}-narrow`;
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.narrow`]: { schema: DST } } }), logger, { topicRefreshMs: 500 });
  const stallLines = () => lines().filter((l) => l.level >= 50 && /stalled/.test(l.msg));
  try {
    const long = await stallAt(groupId, '3');
    assert.equal(long.sqlstate, '22001');
    assert.match(long.error, /column: note/);
    assert.match(long.error, /column note \(character varying\(5\)\) cannot hold a value of 12 characters/);
    assert.match(long.error, new RegExp(`ALTER TABLE "${DST}"\\."narrow" ALTER COLUMN "note" TYPE text`));
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.narrow`)).rows[0].n, 3, 'the records before it are applied');
    const first = stallLines()[0];
    assert.equal(first.column, 'note');
    assert.equal(first.offset, '3');
    assert.match(first.msg, /column note \(character varying\(5\)\) cannot hold a value of 12 characters/);
    assert.match(first.remedy, /ALTER COLUMN "note" TYPE text/);

    await db.query(`ALTER TABLE ${DST}.narrow ALTER COLUMN note TYPE text`);
    const range = await stallAt(groupId, '4');
    assert.equal(range.sqlstate, '22003');
    assert.match(range.error, /column: qty/);
    assert.match(range.error, new RegExp(`ALTER TABLE "${DST}"\\."narrow" ALTER COLUMN "qty" TYPE bigint`));
    await waitFor('the stall logged', async () => stallLines().length >= 2, { timeoutMs: 10_000, intervalMs: 50 });
    assert.equal(stallLines()[1].column, 'qty');

    await db.query(`ALTER TABLE ${DST}.narrow ALTER COLUMN qty TYPE bigint`);
    const precision = await stallAt(groupId, '5');
    assert.equal(precision.sqlstate, '22003');
    assert.match(precision.error, /column: amount/);
    assert.match(precision.error, /numeric\(5,2\)/);
    assert.match(precision.error, new RegExp(`ALTER COLUMN "amount" TYPE numeric\\(12,2\\)`));

    await db.query(`ALTER TABLE ${DST}.narrow ALTER COLUMN amount TYPE numeric(12,2)`);
    await waitApplied(db, admin, groupId, [t.topic]);
    const { rows: applied } = await db.query(`SELECT id, note, qty::text, amount::text FROM ${DST}.narrow WHERE id BETWEEN 4 AND 6 ORDER BY id`);
    assert.deepEqual(applied.map((r) => [r.id, r.note, r.qty, r.amount]), [[4, 'twelve chars', '4', '1.50'], [5, 'n5', '10000000000', '1.50'], [6, 'n6', '6', '12345.67']]);
    await waitFor('stall cleared', async () => (await db.query('SELECT 1 FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rowCount === 0);
  } finally {
    await sink.stop();
  }
});

test("a big batch, a table's check constraint and a domain's name the column as well", async () => {
  const { db, admin, producer, servers } = env();
  const prefix = uniqueTopic('sbcolbig');
  await db.query(`CREATE DOMAIN ${DST}.posint AS int CHECK (VALUE > 0)`);
  const t = await table(prefix, 'big', {
    ddl: '(id int PRIMARY KEY, note text, qty bigint, amount numeric(12,2), score int)',
    destDdl: `(id int PRIMARY KEY, note varchar(5), qty int CONSTRAINT qty_positive CHECK (qty > 0), amount numeric(12,2), score ${DST}.posint)`,
  });
  const list = fits(1, 400).map((r) => ({ kind: 'insert' as const, new: [String(r[0]), r[1], r[2], r[3], '1'] }));
  list[249].new[1] = 'far too long';
  list[299].new[2] = '-1';
  list[349].new[4] = '-5';
  await produceChanges(producer, t, list);
  const groupId = `g-${ID}-big`;
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.big`]: { schema: DST } } }), logger, { topicRefreshMs: 500 });
  try {
    // The 400 fail together in COPY staging first, then in halves down to the one record.
    const long = await stallAt(groupId, '249');
    assert.equal(long.sqlstate, '22001');
    assert.match(long.error, /column: note/);
    assert.equal(lines().find((l) => l.level >= 50 && /stalled/.test(l.msg))?.column, 'note');
    await db.query(`ALTER TABLE ${DST}.big ALTER COLUMN note TYPE text`);
    const check = await stallAt(groupId, '299');
    assert.equal(check.sqlstate, '23514');
    assert.match(check.error, /column: qty/);
    assert.match(check.error, /check constraint qty_positive reads column qty/);
    await db.query(`ALTER TABLE ${DST}.big DROP CONSTRAINT qty_positive`);
    const domain = await stallAt(groupId, '349');
    assert.equal(domain.sqlstate, '23514');
    assert.match(domain.error, /value for domain .*posint violates check constraint/);
    assert.match(domain.error, /column: score/);
    assert.match(domain.error, /ALTER COLUMN "score" TYPE integer/);
    await db.query(`ALTER TABLE ${DST}.big ALTER COLUMN score TYPE integer`);
    await waitApplied(db, admin, groupId, [t.topic]);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.big`)).rows[0].n, 400);
  } finally {
    await sink.stop();
  }
});

test('an array element too long or out of range stalls naming the array column, the element and the remedy', async () => {
  const { db, admin, producer, servers } = env();
  const prefix = uniqueTopic('sbcolarr');
  const t = await table(prefix, 'arrays', {
    ddl: '(id int PRIMARY KEY, tags text[], amounts numeric(12,2)[])',
    destDdl: '(id int PRIMARY KEY, tags varchar(5)[], amounts numeric(4,2)[])',
  });
  await produceChanges(producer, t, [
    { kind: 'insert', new: ['1', '{ab,cd}', '{1.50}'] },
    { kind: 'insert', new: ['2', '{ab,"ten chars!",NULL}', '{1.50}'] },
    { kind: 'insert', new: ['3', '{ab}', '{1.50,NULL,123.45}'] },
  ]);
  const groupId = `g-${ID}-arrays`;
  const { logger, lines } = capturingLogger();
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.arrays`]: { schema: DST } } }), logger, { topicRefreshMs: 500 });
  try {
    const long = await stallAt(groupId, '1');
    assert.equal(long.sqlstate, '22001');
    assert.match(long.error, /column: tags/);
    assert.match(long.error, /column tags \(character varying\(5\)\[\]\) cannot hold an element of 10 characters \(element 2 of 3\)/);
    assert.match(long.error, new RegExp(`ALTER TABLE "${DST}"\\."arrays" ALTER COLUMN "tags" TYPE text\\[\\]`));
    const logged = lines().find((l) => l.level >= 50 && /stalled/.test(l.msg));
    assert.equal(logged?.column, 'tags');
    assert.match(logged?.remedy, /ALTER COLUMN "tags" TYPE text\[\]/);
    await db.query(`ALTER TABLE ${DST}.arrays ALTER COLUMN tags TYPE text[]`);
    const range = await stallAt(groupId, '2');
    assert.equal(range.sqlstate, '22003');
    assert.match(range.error, /column: amounts/);
    assert.match(range.error, /column amounts \(numeric\(4,2\)\[\]\) cannot hold element 3 of 3 of the source's value/);
    assert.match(range.error, new RegExp(`ALTER COLUMN "amounts" TYPE numeric\\(12,2\\)\\[\\]`));
    await db.query(`ALTER TABLE ${DST}.arrays ALTER COLUMN amounts TYPE numeric(12,2)[]`);
    await waitApplied(db, admin, groupId, [t.topic]);
    const { rows: applied } = await db.query(`SELECT id, tags::text, amounts::text FROM ${DST}.arrays ORDER BY id`);
    assert.deepEqual(applied.map((r) => [r.id, r.tags, r.amounts]), [[1, '{ab,cd}', '{1.50}'], [2, '{ab,"ten chars!",NULL}', '{1.50}'], [3, '{ab}', '{1.50,NULL,123.45}']]);
  } finally {
    await sink.stop();
  }
});
