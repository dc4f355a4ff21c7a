/**
 * The generated statements against a real PostgreSQL (or SHARDBRIDGE_TEST_DESTINATION):
 * values of many types arrive value-exactly, plans replay idempotently, moved rows leave
 * one row per source key, and the staging COPY path equals the unnest path.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { getTestDestination, hasCitus } from '../helpers/postgres.ts';
import pino from 'pino';
import { queryWith } from '../../sink-connector/destination-errors.ts';
import { createInPlaceGroup, updateInPlace } from '../../sink-connector/update-in-place.ts';
import { SinkApplyError } from '../../shared/errors.ts';
import { createOwnSchemasSql } from '../../shared/sql.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { ensureStaging, upsertViaStaging, writeCopy } from '../../sink-connector/staging.ts';
import { collapse, type ApplyPlan } from '../../sink-connector/collapse.ts';
import { beginAndLockOffset, CREATE_SINK_TABLES_SQL, storeOffsetAndCommitSql } from '../../sink-connector/offsets.ts';
import type { ApplyTable, SinkChange } from '../../sink-connector/sink-change.ts';
import {
  buildDelete,
  buildSparingDelete,
  buildUpsert,
  copyTextChunks,
  qualifiedName,
  truncateSql,
} from '../../sink-connector/upsert-batch.ts';
import {
  clearStagingSql,
  copyIntoStagingSql,
  createStagingSql,
  mergeFromStagingSql,
  stagingTableName,
} from '../../sink-connector/staging-sql.ts';

type Row = Record<string, string | null>;

const SCHEMA = `sb_upsert_${process.pid}_${Date.now().toString(36)}`;
let release: () => Promise<void> = async () => {};
let db: pg.Client;
let destUrl = '';
let citus = false;

// Every type family the value contract promises to carry exactly.
const ITEM_COLUMNS: [string, string][] = [
  ['id', 'bigint'],
  ['a"b', 'text'],
  ['amount', 'numeric(12,2)'],
  ['at', 'timestamp with time zone'],
  ['ints', 'integer[]'],
  ['doc', 'jsonb'],
  ['raw', 'bytea'],
  ['code', 'character(3)'],
  ['vc', 'character varying(5)'],
  ['bits', 'bit(4)'],
  ['period', 'tstzrange'],
  ['f', 'double precision'],
  ['big', 'text'],
];

// On a Citus destination the items tables are distributed by id, so that every statement
// shape meets Citus's rules for distributed tables (plain PostgreSQL runs the same statements).
function itemTable(name: string): ApplyTable {
  return {
    schema: SCHEMA,
    name,
    columns: ITEM_COLUMNS.map(([n, type]) => ({ name: n, type })),
    sourceKey: ['id'],
    destKey: ['id'],
    ...(citus ? { citus: 'distributed', distributionColumn: 'id' } : { citus: 'local' }),
  };
}

// Source key (id), destination key (customer_id, id), "distributed" by customer_id: the
// statements are exactly the ones Citus gets (plain PostgreSQL runs them too).
function orderTable(name: string): ApplyTable {
  return {
    schema: SCHEMA,
    name,
    columns: [
      { name: 'customer_id', type: 'integer' },
      { name: 'id', type: 'bigint' },
      { name: 'amount', type: 'numeric(12,2)' },
      { name: 'status', type: 'text' },
      { name: 'payload', type: 'jsonb' },
    ],
    sourceKey: ['id'],
    destKey: ['customer_id', 'id'],
    distributionColumn: 'customer_id',
    citus: 'distributed',
  };
}

const TRICKY_TEXT = 'it\'s "q" back\\slash\ttab\nnewline\r\n\\N \\. end';
const BIG = 'x'.repeat(100_000); // stored out of line (TOAST)

const ITEMS: Row[] = [
  {
    id: '1', 'a"b': TRICKY_TEXT, amount: '12345678.90', at: 'infinity', ints: '{1,NULL,3}',
    doc: '{"a": [1, 2.50, {"b": null}], "k": "v\\"x"}', raw: '\\x00ff5c0a27', code: 'ab', vc: 'hello',
    bits: '1010', period: '["2020-01-01 00:00:00+00",infinity)', f: '-0', big: BIG,
  },
  {
    id: '2', 'a"b': '', amount: '-0.01', at: '-infinity', ints: '{}', doc: 'null', raw: '\\x', code: null, vc: '',
    bits: null, period: 'empty', f: '1.7976931348623157e+308', big: null,
  },
  {
    id: '3', 'a"b': 'NULL', amount: null, at: '2000-01-01 00:00:00.000001+00', ints: '{{1,2},{3,NULL}}',
    doc: '"é \\\\ x"', raw: null, code: 'xyz', vc: null, bits: '0001', period: null, f: 'NaN', big: 'small',
  },
];

const quiet = pino({ level: 'silent' });

let offset = 0;
function change(op: SinkChange['op'], after: Row | null, opts: { key?: string; before?: Row | null; toast?: string[] } = {}): SinkChange {
  const id = opts.key ?? (after?.id as string);
  return { op, topic: 't', partition: 0, offset: String(offset++), key: { id }, after, before: opts.before ?? null, unchangedToast: opts.toast ?? [] };
}

async function createTable(table: ApplyTable, extra = ''): Promise<void> {
  const cols = table.columns.map((c) => `${pg.escapeIdentifier(c.name)} ${c.type}`).join(', ');
  const pk = table.destKey.map((c) => pg.escapeIdentifier(c)).join(', ');
  await db.query(`CREATE TABLE ${qualifiedName(table)} (${cols}, PRIMARY KEY (${pk})${extra})`);
  if (citus && table.citus === 'distributed') await db.query(`SELECT create_distributed_table($1, $2)`, [qualifiedName(table), table.distributionColumn]);
}

/** What the sink's writer does with a plan, in one transaction; every upsert group optionally via staging. */
async function runPlan(table: ApplyTable, plan: ApplyPlan, opts: { staging?: boolean } = {}): Promise<void> {
  await db.query('BEGIN');
  try {
    for (const step of plan) {
      if (step.kind === 'truncate') {
        await db.query(truncateSql(table));
        continue;
      }
      // As the writer (apply.ts): updates in place before the deletes.
      for (const g of step.upserts) if (g.inPlace) await updateInPlace(queryWith(db), table, g, quiet);
      for (const ks of [step.deletes, step.exactDeletes]) {
        if (ks.rows.length > 0) {
          const st = buildDelete(table, ks.columns);
          await db.query(st.text, st.bind(ks.rows));
        }
      }
      if (step.sparingDeletes.rows.length > 0) {
        const st = buildSparingDelete(table);
        await db.query(st.text, st.bind(step.sparingDeletes.rows));
      }
      // Rows created without their unchanged TOASTed values: after the deletes.
      for (const g of step.upserts) if (g.inPlace) await createInPlaceGroup(queryWith(db), table, g, quiet);
      for (const g of step.upserts) {
        if (g.inPlace) continue;
        if (opts.staging) {
          await db.query(createStagingSql(table));
          await writeCopy(db.query(copyFrom(copyIntoStagingSql(table, g.columns))), copyTextChunks(g.rows));
          await db.query(mergeFromStagingSql(table, g.columns));
          await db.query(clearStagingSql(table));
        } else {
          const st = buildUpsert(table, g.columns);
          await db.query(st.text, st.bind(g.rows));
        }
      }
    }
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK');
    throw err;
  }
}

/** The whole table as text, ordered by its key: what "same rows" means below. */
async function contents(table: ApplyTable): Promise<string[]> {
  const order = table.destKey.map((c) => pg.escapeIdentifier(c)).join(', ');
  const { rows } = await db.query(`SELECT t::text AS r FROM ${qualifiedName(table)} t ORDER BY ${order}`);
  return rows.map((r) => r.r);
}

before(async () => {
  const dest = await getTestDestination();
  release = dest.release;
  destUrl = dest.url;
  db = new pg.Client({ connectionString: dest.url, options: '-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c bytea_output=hex' });
  await db.connect();
  citus = (await hasCitus(db));
  await db.query(`CREATE SCHEMA ${pg.escapeIdentifier(SCHEMA)}`);
  await db.query(CREATE_SINK_TABLES_SQL);
});

after(async () => {
  if (db) {
    await db.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(SCHEMA)} CASCADE`);
    await db.query(`DELETE FROM shardbridge.sink_offsets WHERE group_id = $1`, [SCHEMA]).catch(() => {});
    await db.end();
  }
  await release();
});

test('values of many types arrive value-exactly through unnest casts', async () => {
  const table = itemTable('Order Items');
  await createTable(table);
  await runPlan(table, collapse(ITEMS.map((row) => change('c', row)), table));

  // Every stored value equals the value its text denotes, column by column.
  for (const row of ITEMS) {
    for (const [col, type] of ITEM_COLUMNS) {
      const q = pg.escapeIdentifier(col);
      const { rows } = await db.query(`SELECT ${q} IS NOT DISTINCT FROM $2::${type} AS same FROM ${qualifiedName(table)} WHERE id = $1`, [row.id, row[col]]);
      assert.equal(rows[0]?.same, true, `id ${row.id} column ${col}`);
    }
  }
  const { rows } = await db.query(
    `SELECT id, "a""b" AS s, amount::text, at::text, ints::text, doc::text, raw, code, f::text, length(big) AS big FROM ${qualifiedName(table)} ORDER BY id`,
  );
  assert.deepEqual(rows[0], {
    id: '1', s: TRICKY_TEXT, amount: '12345678.90', at: 'infinity', ints: '{1,NULL,3}', doc: '{"a": [1, 2.50, {"b": null}], "k": "v\\"x"}',
    raw: Buffer.from([0x00, 0xff, 0x5c, 0x0a, 0x27]), code: 'ab ', f: '-0', big: 100_000,
  });
  assert.deepEqual(rows[1], { id: '2', s: '', amount: '-0.01', at: '-infinity', ints: '{}', doc: 'null', raw: Buffer.alloc(0), code: null, f: '1.7976931348623157e+308', big: null });
  assert.deepEqual(rows[2], { id: '3', s: 'NULL', amount: null, at: '2000-01-01 00:00:00.000001+00', ints: '{{1,2},{3,NULL}}', doc: '"é \\\\ x"', raw: null, code: 'xyz', f: 'NaN', big: 5 });
});

test('a too-long varchar is refused, not truncated (unnest and staging paths)', async () => {
  const table = itemTable('too_long');
  await createTable(table);
  const plan = collapse([change('r', { id: '1', vc: 'toolong' })], table);
  for (const staging of [false, true]) {
    await assert.rejects(runPlan(table, plan, { staging }), (err: any) => err.code === '22001', `staging=${staging}`);
  }
  assert.deepEqual(await contents(table), []);
});

test('writeCopy: many chunks past the socket buffer all arrive; a refused row or a failing source aborts the COPY and the connection goes on', async () => {
  const table = `${SCHEMA}.copy_target`;
  await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, s text)`);
  const pad = 'x'.repeat(1000);
  function* chunks(n: number, from = 0) {
    for (let c = 0; c < n; c++) yield Buffer.from(Array.from({ length: 1000 }, (_, k) => `${from + c * 1000 + k}\t${pad}\n`).join(''));
  }
  await writeCopy(db.query(copyFrom(`COPY ${table} (id, s) FROM STDIN`)), chunks(20)); // ~20 MB
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 20_000);

  await assert.rejects(writeCopy(db.query(copyFrom(`COPY ${table} (id, s) FROM STDIN`)), ['20000\tok\n', 'not-a-number\tx\n']), (err: any) => err.code === '22P02');
  function* failing() {
    yield* chunks(3, 30_000);
    throw new Error('encoder failed');
  }
  await assert.rejects(writeCopy(db.query(copyFrom(`COPY ${table} (id, s) FROM STDIN`)), failing()), /encoder failed/);
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 20_000, 'neither aborted COPY left rows');
});

test('replaying the same plan leaves the same rows; unchanged TOAST columns are kept', async () => {
  const table = itemTable('replay');
  await createTable(table);
  await runPlan(table, collapse(ITEMS.map((row) => change('c', row)), table));
  const plan = collapse(
    [
      change('u', { id: '1', 'a"b': 'changed', amount: '1.00' }, { toast: ['big'] }), // big stays as stored
      change('d', null, { key: '2' }),
      change('c', { id: '4', 'a"b': 'four', ints: '{4}' }),
      change('u', { id: '4', amount: '4.44' }, { toast: ['a"b'] }), // merges with the insert
      change('c', { id: '5', 'a"b': 'gone' }),
      change('d', null, { key: '5' }),
    ],
    table,
  );
  await runPlan(table, plan);
  const once = await contents(table);
  await runPlan(table, plan);
  assert.deepEqual(await contents(table), once);

  const { rows } = await db.query(`SELECT id, "a""b" AS s, amount::text, length(big) AS big FROM ${qualifiedName(table)} ORDER BY id`);
  assert.deepEqual(rows, [
    { id: '1', s: 'changed', amount: '1.00', big: 100_000 },
    { id: '3', s: 'NULL', amount: null, big: 5 },
    { id: '4', s: 'four', amount: '4.44', big: null },
  ]);
});

test('updates leaving a NOT NULL TOASTed column unchanged update the row in place; a key with no row gets none', async () => {
  const table = itemTable('not_null_toast');
  await createTable({ ...table, columns: table.columns.filter((c) => c.name !== 'big') }, ', big text NOT NULL');
  await runPlan(table, collapse([change('c', { ...ITEMS[0] }), change('c', { ...ITEMS[2] })], table));
  const plan = collapse(
    [
      // Types whose text input is STABLE (a timestamp, an array, a range): Citus takes no such cast of a column in an UPDATE.
      change('u', { id: '1', 'a"b': 'first', amount: '1.00', at: '1999-01-01 00:00:00+00', ints: '{1}', period: 'empty' }, { toast: ['big'] }),
      change('u', { id: '3', 'a"b': 'third' }, { toast: ['big', 'doc'] }), // another column set
      change('u', { id: '1', 'a"b': 'last', amount: '1.50', at: '2001-02-03 04:05:06.5+00', ints: '{{7,8},{9,NULL}}', period: '[2020-01-01 00:00:00+00,2021-01-01 00:00:00+00)' }, { toast: ['big'] }), // the later one wins
      change('u', { id: '7', 'a"b': 'no such row' }, { toast: ['big'] }), // gone at the destination (a replay past its delete)
    ],
    table,
  );
  const seg = plan[0];
  assert.ok(seg.kind === 'apply');
  assert.deepEqual(
    seg.upserts.map((g) => [g.inPlace, g.rows.length]),
    [[true, 1], [true, 2]],
  );
  await runPlan(table, plan);
  const once = await contents(table);
  await runPlan(table, plan);
  assert.deepEqual(await contents(table), once, 'replaying the plan changes nothing');
  const { rows } = await db.query(`SELECT id, "a""b" AS s, amount::text, at::text, ints::text, period::text, doc::text, length(big) AS big FROM ${qualifiedName(table)} ORDER BY id`);
  assert.deepEqual(rows, [
    {
      id: '1', s: 'last', amount: '1.50', at: '2001-02-03 04:05:06.5+00', ints: '{{7,8},{9,NULL}}', period: '["2020-01-01 00:00:00+00","2021-01-01 00:00:00+00")',
      doc: '{"a": [1, 2.50, {"b": null}], "k": "v\\"x"}', big: 100_000,
    },
    { id: '3', s: 'third', amount: null, at: '2000-01-01 00:00:00.000001+00', ints: '{{1,2},{3,NULL}}', period: null, doc: '"é \\\\ x"', big: 5 },
  ]);
});

test('a key change leaving a TOASTed column unchanged (no before-image): the new key is created without it, NULL or a clear stall when NOT NULL', async () => {
  const nullable = itemTable('key_change_toast');
  await createTable(nullable);
  await runPlan(nullable, collapse([change('c', { ...ITEMS[0] })], nullable));
  // pgoutput under REPLICA IDENTITY DEFAULT: the old key, and the new row without `big`.
  const moved: Row = { ...ITEMS[0], id: '100' };
  delete moved.big;
  const plan = collapse([change('d', null, { key: '1' }), change('c', moved, { toast: ['big'] })], nullable);
  await runPlan(nullable, plan);
  await runPlan(nullable, plan); // a replay: the same
  const { rows } = await db.query(`SELECT id, "a""b" AS s, big FROM ${qualifiedName(nullable)} ORDER BY id`);
  assert.deepEqual(rows, [{ id: '100', s: ITEMS[0]['a"b'], big: null }]);

  const strict = itemTable('key_change_toast_nn');
  await createTable({ ...strict, columns: strict.columns.filter((c) => c.name !== 'big') }, ', big text NOT NULL');
  await runPlan(strict, collapse([change('c', { ...ITEMS[0] })], strict));
  await assert.rejects(runPlan(strict, collapse([change('d', null, { key: '1' }), change('c', moved, { toast: ['big'] })], strict)), (err: unknown) => {
    assert.ok(err instanceof SinkApplyError, String(err));
    assert.match(err.message, /a primary-key change of .*key_change_toast_nn \(new key id=100\) left TOASTed column\(s\) big unchanged/);
    assert.match(err.remedy ?? '', /REPLICA IDENTITY FULL/);
    return true;
  });
  const kept = await db.query(`SELECT id, length(big) AS n FROM ${qualifiedName(strict)}`);
  assert.deepEqual(kept.rows, [{ id: '1', n: 100_000 }], 'rolled back: the old row is still there');
});

test('a key deleted and then taken by a key change leaving a TOASTed column unchanged, in one chunk: the deleted row is gone, the new one has NULL there', async () => {
  const table = itemTable('retaken_key');
  await createTable(table);
  await runPlan(table, collapse([change('c', { ...ITEMS[0] }), change('c', { ...ITEMS[0], id: '2', big: 'old value of 2' })], table));
  // DELETE id=2, then UPDATE … SET id = 2 WHERE id = 1 leaving `big` unchanged (REPLICA IDENTITY DEFAULT).
  const moved: Row = { ...ITEMS[0], id: '2' };
  delete moved.big;
  const plan = collapse([change('d', null, { key: '2' }), change('d', null, { key: '1' }), change('c', moved, { toast: ['big'] })], table);
  await runPlan(table, plan);
  await runPlan(table, plan); // a replay: the same
  const { rows } = await db.query(`SELECT id, big FROM ${qualifiedName(table)} ORDER BY id`);
  assert.deepEqual(rows, [{ id: '2', big: null }], "the deleted row's value is not kept under the key");
  // Created, deleted and taken again within the chunk: the key ends with a row.
  const again = collapse([change('c', { ...ITEMS[0], id: '3' }), change('d', null, { key: '3' }), change('c', { ...moved, id: '3' }, { toast: ['big'] })], table);
  await runPlan(table, again);
  const three = await db.query(`SELECT id, big FROM ${qualifiedName(table)} WHERE id = 3`);
  assert.deepEqual(three.rows, [{ id: '3', big: null }]);
});

test('an unchanged-TOAST update that moves a row to another distribution value stalls instead of losing the row', async () => {
  const table = orderTable('moved_toast');
  await createTable(table);
  const row = { customer_id: '1', id: '5', amount: '5.00', status: 'new', payload: `{"big": "${'y'.repeat(50_000)}"}` };
  await runPlan(table, collapse([change('c', row)], table));
  const { payload: _, ...moved } = { ...row, customer_id: '2', status: 'moved' };
  const plan = collapse([change('u', moved, { toast: ['payload'] })], table);
  await assert.rejects(runPlan(table, plan), (err: unknown) => {
    assert.ok(err instanceof SinkApplyError, String(err));
    assert.match(err.message, new RegExp(`an update of ${SCHEMA}\\.moved_toast \\(id=5\\) moves the row to other customer_id values but leaves TOASTed column\\(s\\) payload unchanged`));
    assert.match(err.remedy ?? '', /REPLICA IDENTITY FULL/);
    assert.equal(err.retriable, false);
    return true;
  });
  const { rows } = await db.query(`SELECT customer_id, id, status, length(payload::text) AS n FROM ${qualifiedName(table)}`);
  assert.deepEqual(rows, [{ customer_id: 1, id: '5', status: 'new', n: 50_011 }], 'the row is where it was, payload and all');
  // Put where the update moved it (the remedy's manual step: a delete and an insert, as Citus changes no distribution value), the same plan applies.
  await db.query(`BEGIN`);
  await db.query(`INSERT INTO ${qualifiedName(table)} SELECT 2, id, amount, status, payload FROM ${qualifiedName(table)} WHERE customer_id = 1`);
  await db.query(`DELETE FROM ${qualifiedName(table)} WHERE customer_id = 1`);
  await db.query(`COMMIT`);
  await runPlan(table, plan);
  const after = await db.query(`SELECT customer_id, status, length(payload::text) AS n FROM ${qualifiedName(table)}`);
  assert.deepEqual(after.rows, [{ customer_id: 2, status: 'moved', n: 50_011 }]);
});

test('truncate steps wipe the table and keep what follows', async () => {
  const table = itemTable('truncated');
  await createTable(table);
  await runPlan(table, collapse(ITEMS.map((row) => change('c', row)), table));
  const plan = collapse([change('c', { id: '9', 'a"b': 'before' }), change('t', null, { key: '' }), change('c', { id: '8', 'a"b': 'after' })], table);
  await runPlan(table, plan);
  await runPlan(table, plan);
  const { rows } = await db.query(`SELECT id, "a""b" AS s FROM ${qualifiedName(table)}`);
  assert.deepEqual(rows, [{ id: '8', s: 'after' }]);
});

test('moved rows: one row per source key, with or without before-images, replay-safe', async () => {
  const table = orderTable('orders');
  await createTable(table);
  const start = [
    ['1', '5', '5.00', 'new'],
    ['1', '6', '6.00', 'new'],
    ['3', '7', '7.00', 'new'],
    ['3', '8', '8.00', 'new'],
    ['4', '9', '9.00', 'new'],
  ].map(([customer_id, id, amount, status]) => change('c', { customer_id, id, amount, status, payload: `{"id": ${id}}` }));
  await runPlan(table, collapse(start, table));
  const order = (customer: string, id: string, amount: string, status: string): Row => ({ customer_id: customer, id, amount, status, payload: `{"id": ${id}}` });
  const { payload: _, ...stayed } = order('4', '9', '9.50', 'stayed');
  const plan = collapse(
    [
      change('u', order('2', '5', '5.00', 'moved, no before')), // REPLICA IDENTITY DEFAULT
      change('u', order('2', '6', '6.00', 'moved, before'), { before: order('1', '6', '6.00', 'new') }), // FULL
      change('d', null, { key: '7', before: order('3', '7', '7.00', 'new') }),
      change('d', null, { key: '8' }),
      // Did not move; its unchanged-TOAST payload must survive the sparing delete.
      change('u', stayed, { toast: ['payload'] }),
    ],
    table,
  );
  const seg = plan[0];
  assert.ok(seg.kind === 'apply');
  assert.deepEqual(seg.sparingDeletes.rows, [['5', '2'], ['9', '4']]);
  assert.deepEqual(seg.exactDeletes.rows, [['1', '6'], ['3', '7']]);
  assert.deepEqual(seg.deletes.rows, [['8']]);

  await runPlan(table, plan);
  const once = await contents(table);
  await runPlan(table, plan);
  assert.deepEqual(await contents(table), once);
  const { rows } = await db.query(`SELECT id, customer_id, status, payload FROM ${qualifiedName(table)} ORDER BY id`);
  assert.deepEqual(rows, [
    { id: '5', customer_id: 2, status: 'moved, no before', payload: { id: 5 } },
    { id: '6', customer_id: 2, status: 'moved, before', payload: { id: 6 } },
    { id: '9', customer_id: 4, status: 'stayed', payload: { id: 9 } },
  ]);
});

test('staging COPY + merge (shared and session staging) gives the same rows as the unnest path, inserts and updates', async () => {
  const viaUnnest = itemTable('via_unnest');
  const viaStaging = itemTable('via_staging');
  const viaSession: ApplyTable = { ...itemTable('via_session'), staging: 'session' };
  await createTable(viaUnnest);
  await createTable(viaStaging);
  await createTable(viaSession);
  const reads = ITEMS.map((row) => change('r', row));
  const rereads = ITEMS.map((row) => change('r', { ...row, 'a"b': `${row['a"b']}\t2`, amount: '0.50', ints: '{NULL}' }));
  for (const batch of [reads, rereads]) {
    await runPlan(viaUnnest, collapse(batch, viaUnnest));
    await runPlan(viaStaging, collapse(batch, viaStaging), { staging: true });
    await runPlan(viaSession, collapse(batch, viaSession), { staging: true });
    assert.deepEqual(await contents(viaStaging), await contents(viaUnnest));
    assert.deepEqual(await contents(viaSession), await contents(viaUnnest));
  }
  assert.equal((await contents(viaStaging)).length, ITEMS.length);
  for (const t of [viaStaging, viaSession]) {
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${stagingTableName(t)}`);
    assert.equal(rows[0].n, 0, `${stagingTableName(t)} left empty`);
  }

  const orders = orderTable('orders_staged');
  await createTable(orders);
  await runPlan(orders, collapse([change('r', { customer_id: '1', id: '1', amount: '1.00', status: 'a\\b', payload: '{"x": 1}' })], orders), { staging: true });
  assert.deepEqual(await contents(orders), ['(1,1,1.00,"a\\\\b","{""x"": 1}")']);
});

test('shared staging follows a column type changed at the target (it outlives the sink): no rounding to the old scale', async () => {
  const cols = [
    { name: 'id', type: 'bigint' },
    { name: 'amount', type: 'numeric(12,2)' },
    { name: 'code', type: 'character varying(3)' },
  ];
  const v1: ApplyTable = { schema: SCHEMA, name: 'retyped', columns: cols, sourceKey: ['id'], destKey: ['id'], ...(citus ? { citus: 'distributed', distributionColumn: 'id' } : { citus: 'local' }) };
  await createTable(v1);
  const q = queryWith(db);
  const upsert = async (t: ApplyTable, rows: (string | null)[][]) => {
    await db.query('BEGIN');
    try {
      await upsertViaStaging(db, q, t, ['id', 'amount', 'code'], { rows }, new Set());
      await db.query('COMMIT');
    } catch (err) {
      await db.query('ROLLBACK');
      throw err;
    }
  };
  await ensureStaging(db, q, v1);
  await upsert(v1, [['1', '1.25', 'abc']]);
  // The runbook's type change at the destination, then the catalog read afresh (a new table version).
  await db.query(`ALTER TABLE ${qualifiedName(v1)} ALTER COLUMN amount TYPE numeric(14,4), ALTER COLUMN code TYPE varchar(10)`);
  const v2: ApplyTable = { ...v1, columns: [cols[0], { name: 'amount', type: 'numeric(14,4)' }, { name: 'code', type: 'character varying(10)' }] };
  await ensureStaging(db, q, v2);
  await upsert(v2, [['1', '1.2345', 'abcdefgh'], ['2', '2.5', null]]);
  const { rows } = await db.query(`SELECT id, amount::text, code FROM ${qualifiedName(v2)} ORDER BY id`);
  assert.deepEqual(rows, [
    { id: '1', amount: '1.2345', code: 'abcdefgh' },
    { id: '2', amount: '2.5000', code: null },
  ]);
  const types = await db.query(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [stagingTableName(v2)],
  );
  assert.deepEqual(types.rows.map((r) => `${r.attname} ${r.type}`).sort(), ['amount numeric(14,4)', 'code character varying(10)', 'id bigint']);
});

test("shared staging of a 1,600-column target (PostgreSQL's most) follows a type change: made anew, as a column dropped and added again would need a 1,601st number", async () => {
  const cols = [{ name: 'id', type: 'bigint' }, ...Array.from({ length: 1599 }, (_, i) => ({ name: `c${i + 1}`, type: 'integer' }))];
  const v1: ApplyTable = { schema: SCHEMA, name: 'wide_retyped', columns: cols, sourceKey: ['id'], destKey: ['id'], ...(citus ? { citus: 'distributed', distributionColumn: 'id' } : { citus: 'local' }) };
  await createTable(v1);
  const q = queryWith(db);
  const names = cols.map((c) => c.name);
  const upsert = async (t: ApplyTable, rows: (string | null)[][]) => {
    await db.query('BEGIN');
    try {
      await upsertViaStaging(db, q, t, names, { rows }, new Set());
      await db.query('COMMIT');
    } catch (err) {
      await db.query('ROLLBACK');
      throw err;
    }
  };
  await ensureStaging(db, q, v1);
  await upsert(v1, [['1', ...names.slice(1).map((_, i) => String(i))]]);
  await db.query(`ALTER TABLE ${qualifiedName(v1)} ALTER COLUMN c7 TYPE bigint`);
  const v2: ApplyTable = { ...v1, columns: cols.map((c) => (c.name === 'c7' ? { name: 'c7', type: 'bigint' } : c)) };
  await ensureStaging(db, q, v2);
  await upsert(v2, [['2', ...names.slice(1).map((c) => (c === 'c7' ? '9000000000' : null))]]);
  const { rows } = await db.query(`SELECT id, c7::text, c8 FROM ${qualifiedName(v2)} ORDER BY id`);
  assert.deepEqual(rows, [{ id: '1', c7: '6', c8: 7 }, { id: '2', c7: '9000000000', c8: null }]);
  const staged = await db.query(`SELECT count(*)::int AS n, max(format_type(atttypid, atttypmod)) FILTER (WHERE attname = 'c7') AS c7 FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0`, [stagingTableName(v2)]);
  assert.deepEqual(staged.rows[0], { n: 1600, c7: 'bigint' }, 'no dropped column left behind');

  // The next remake (c8 retyped) met by another sink process's batch: the remake is one
  // transaction under the staging table's lock, so that COPY waits, then fills the new table.
  // Before, the DROP committed alone and the COPY met no table (42P01) while the CREATE … LIKE
  // waited (here for a lock held on the target).
  await db.query(`ALTER TABLE ${qualifiedName(v1)} ALTER COLUMN c8 TYPE bigint`);
  const v3: ApplyTable = { ...v2, columns: v2.columns.map((c) => (c.name === 'c8' ? { name: 'c8', type: 'bigint' } : c)) };
  const connect = async () => {
    const c = new pg.Client({ connectionString: destUrl });
    await c.connect();
    return c;
  };
  const [holder, remaker, other] = [await connect(), await connect(), await connect()];
  try {
    const waiting = async (like: string) =>
      (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, [like])).rows[0].n > 0;
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${qualifiedName(v3)} IN ACCESS EXCLUSIVE MODE`);
    const remaking = ensureStaging(remaker, queryWith(remaker), v3);
    remaking.catch(() => {});
    await waitFor('the remake waiting on the target for its CREATE … LIKE', () => waiting('CREATE TABLE IF NOT EXISTS shardbridge_staging.%'));
    let settled = false;
    const batch = (async () => {
      await other.query('BEGIN');
      await upsertViaStaging(other, queryWith(other), v3, names, { rows: [['3', ...names.slice(1).map((c) => (c === 'c8' ? '9000000001' : null))]] }, new Set());
      await other.query('COMMIT');
    })().finally(() => (settled = true));
    batch.catch(() => {});
    await waitFor("the other batch's COPY waiting for the staging table (or done)", async () => settled || (await waiting('COPY shardbridge_staging.%')));
    await holder.query('COMMIT');
    await remaking;
    await batch;
    const moved = await db.query(`SELECT c8::text FROM ${qualifiedName(v3)} WHERE id = 3`);
    assert.deepEqual(moved.rows, [{ c8: '9000000001' }]);
  } finally {
    await Promise.all([holder, other].map((c) => c.query('ROLLBACK').catch(() => {})));
    await Promise.all([holder, remaker, other].map((c) => c.end()));
  }
});

test('staging table creation: concurrent partitions of one sink, and a racing sink process, end with one ready table', async () => {
  const connect = async () => {
    const c = new pg.Client({ connectionString: destUrl });
    await c.connect();
    return c;
  };
  const [a, b, rival] = [await connect(), await connect(), await connect()];
  try {
    const concurrent = itemTable('staged_concurrently');
    await createTable(concurrent);
    // Two partitions of one sink reach the COPY path at once: one creates, the other waits for it.
    await Promise.all([ensureStaging(a, queryWith(a), concurrent), ensureStaging(b, queryWith(b), { ...concurrent })]);

    // Another sink process creates the same staging table in a transaction still open: our
    // CREATE TABLE IF NOT EXISTS waits on the catalog's unique index, then fails with 23505
    // once the rival commits. That means the table exists: no stall.
    const raced = itemTable('staged_racing');
    await createTable(raced);
    await rival.query('BEGIN');
    await rival.query(createStagingSql(raced));
    const ours = ensureStaging(a, queryWith(a), raced);
    const blocked = async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE IF NOT EXISTS%'`)).rows[0].n > 0;
    for (const deadline = Date.now() + 10_000; !(await blocked()); ) {
      assert.ok(Date.now() < deadline, 'our CREATE waits for the rival transaction');
      await new Promise((r) => setTimeout(r, 20));
    }
    await rival.query('COMMIT');
    await ours;
    for (const t of [concurrent, raced]) {
      await runPlan(t, collapse(ITEMS.map((row) => change('r', row)), t), { staging: true });
      assert.equal((await contents(t)).length, ITEMS.length);
    }
  } finally {
    await rival.query('ROLLBACK').catch(() => {});
    await Promise.all([a, b, rival].map((c) => c.end()));
  }
});

test('session staging: a temporary table per connection, made again for a new table version, emptied by commit and rollback', async () => {
  const connect = async () => {
    const c = new pg.Client({ connectionString: destUrl });
    await c.connect();
    return c;
  };
  const [a, b] = [await connect(), await connect()];
  const staged = async (c: pg.Client, t: ApplyTable) => (await c.query(`SELECT count(*)::int AS n FROM ${stagingTableName(t)}`)).rows[0].n as number;
  // The sink's own staging step; `used`: the staging tables of the current transaction.
  const stage = async (c: pg.Client, t: ApplyTable, rows: Row[], used: Set<string>, columns = t.columns.map((col) => col.name)) => {
    await upsertViaStaging(c, queryWith(c), t, columns, { rows: rows.map((r) => columns.map((col) => r[col] ?? null)) }, used);
    assert.equal(await staged(c, t), rows.length, 'this group\'s rows (only) staged until the commit');
  };
  const merge = async (c: pg.Client, t: ApplyTable, rows: Row[], end: 'COMMIT' | 'ROLLBACK') => {
    await c.query('BEGIN');
    await stage(c, t, rows, new Set());
    await c.query(end);
  };
  try {
    const v1: ApplyTable = { ...itemTable('session_staged'), staging: 'session' };
    await createTable(v1);
    assert.match(stagingTableName(v1), /^pg_temp\./);
    await ensureStaging(a, queryWith(a), v1);
    await ensureStaging(a, queryWith(a), v1); // once per connection and version
    await ensureStaging(b, queryWith(b), v1);
    await merge(a, v1, [ITEMS[0]], 'COMMIT');
    await merge(b, v1, [ITEMS[1]], 'ROLLBACK');
    assert.deepEqual([await staged(a, v1), await staged(b, v1)], [0, 0]);
    assert.deepEqual((await contents(v1)).length, 1, 'the committed row only');
    // Never a shared table: another connection has no such relation.
    await assert.rejects(db.query(`SELECT 1 FROM ${stagingTableName(v1)}`), /does not exist/);

    // A column added to the target: the next version's staging has it.
    await db.query(`ALTER TABLE ${qualifiedName(v1)} ADD COLUMN note text`);
    const v2: ApplyTable = { ...v1, columns: [...v1.columns, { name: 'note', type: 'text' }] };
    await ensureStaging(a, queryWith(a), v2);
    await merge(a, v2, [{ ...ITEMS[2], note: 'added' }], 'COMMIT');
    const { rows } = await db.query(`SELECT id, note FROM ${qualifiedName(v2)} ORDER BY id`);
    assert.deepEqual(rows, [{ id: '1', note: null }, { id: '3', note: 'added' }]);

    // Two groups in one transaction, the first without a column (an unchanged-TOAST update):
    // the second group's merge must not see the first's rows, or it would null that column.
    await a.query('BEGIN');
    const used = new Set<string>();
    await stage(a, v2, [{ id: '1', 'a"b': 'partial' }], used, ['id', 'a"b']);
    await stage(a, v2, [{ ...ITEMS[1], note: 'full' }], used);
    await a.query('COMMIT');
    assert.equal(await staged(a, v2), 0, 'the commit empties it');
    const after = await db.query(`SELECT id, "a""b" AS ab, big = $1 AS big_kept FROM ${qualifiedName(v2)} WHERE id = 1`, [BIG]);
    assert.deepEqual(after.rows, [{ id: '1', ab: 'partial', big_kept: true }]);
  } finally {
    await Promise.all([a, b].map((c) => c.end()));
  }
});

test('key-only tables upsert with DO NOTHING; composite deletes match both columns', async () => {
  const table: ApplyTable = {
    schema: SCHEMA,
    name: 'post_tags',
    columns: [
      { name: 'post_id', type: 'bigint' },
      { name: 'tag', type: 'text' },
    ],
    sourceKey: ['post_id', 'tag'],
    destKey: ['post_id', 'tag'],
    citus: 'local',
  };
  await createTable(table);
  const tag = (op: SinkChange['op'], post: string, t: string): SinkChange => ({
    op, topic: 't', partition: 0, offset: String(offset++), key: { post_id: post, tag: t }, after: op === 'd' ? null : { post_id: post, tag: t }, before: null, unchangedToast: [],
  });
  const plan = collapse([tag('c', '1', 'a'), tag('c', '1', 'b'), tag('c', '2', 'a')], table);
  await runPlan(table, plan);
  await runPlan(table, plan);
  await runPlan(table, collapse([tag('d', '1', 'a'), tag('d', '2', 'b')], table));
  assert.deepEqual(await contents(table), ['(1,b)', '(2,a)']);
});

test('composite keys of a timestamp and an enum (STABLE text input): deletes and in-place updates match them', async () => {
  await db.query(`CREATE TYPE ${pg.escapeIdentifier(SCHEMA)}.kind AS ENUM ('click', 'view')`);
  const table: ApplyTable = {
    schema: SCHEMA,
    name: 'events',
    columns: [
      { name: 'tenant', type: 'bigint' },
      { name: 'at', type: 'timestamp with time zone' },
      { name: 'kind', type: `${pg.escapeIdentifier(SCHEMA)}.kind` },
      { name: 'note', type: 'text' },
      { name: 'tags', type: 'text[]' },
    ],
    sourceKey: ['tenant', 'at', 'kind'],
    destKey: ['tenant', 'at', 'kind'],
    ...(citus ? { citus: 'distributed', distributionColumn: 'tenant' } : { citus: 'local' }),
  };
  await createTable(table);
  const ev = (op: SinkChange['op'], tenant: string, at: string, kind: string, note?: string, toast: string[] = []): SinkChange => ({
    op, topic: 't', partition: 0, offset: String(offset++), key: { tenant, at, kind },
    after: op === 'd' ? null : { tenant, at, kind, ...(note === undefined ? {} : { note, tags: `{${note}}` }) }, before: null, unchangedToast: toast,
  });
  const t1 = '2024-01-01 10:00:00+00';
  const t2 = '2024-01-01 10:00:00.5+00';
  await runPlan(table, collapse([ev('c', '1', t1, 'click', 'a'), ev('c', '1', t2, 'click', 'b'), ev('c', '2', t1, 'view', 'c')], table));
  // An update leaving the (unchanged-TOAST) tags as they are updates in place; then deletes by the whole key.
  await runPlan(table, collapse([ev('u', '2', t1, 'view', 'c2', ['tags'])], table));
  await runPlan(table, collapse([ev('d', '1', t1, 'click'), ev('d', '1', t2, 'view')], table));
  const { rows } = await db.query(`SELECT tenant, at::text, kind::text, note, tags::text FROM ${qualifiedName(table)} ORDER BY tenant, at`);
  assert.deepEqual(rows, [
    { tenant: '1', at: '2024-01-01 10:00:00.5+00', kind: 'click', note: 'b', tags: '{b}' },
    { tenant: '2', at: '2024-01-01 10:00:00+00', kind: 'view', note: 'c2', tags: '{c}' },
  ]);
});

test('sink tables: created idempotently; an offsets row locked with BEGIN and stored with COMMIT, names quoted', async () => {
  await db.query(CREATE_SINK_TABLES_SQL);
  await db.query(CREATE_SINK_TABLES_SQL);
  const group = `${SCHEMA} it's`;
  const topic = "t'; DROP TABLE x; --";
  assert.equal(await beginAndLockOffset(db, group, topic, 1), 0n, 'a missing row starts at 0');
  await db.query(storeOffsetAndCommitSql(group, topic, 1, 9007199254740993n));
  assert.equal(await beginAndLockOffset(db, group, topic, 1), 9007199254740993n);
  await db.query(storeOffsetAndCommitSql(group, topic, 0, 10n).replace(/COMMIT$/, 'ROLLBACK'));
  const { rows } = await db.query('SELECT topic, partition, next_offset FROM shardbridge.sink_offsets WHERE group_id = $1 ORDER BY partition', [group]);
  assert.deepEqual(rows, [{ topic, partition: 1, next_offset: '9007199254740993' }], 'the rolled-back store left nothing');
  assert.throws(() => storeOffsetAndCommitSql(group, topic, -1, 1n), RangeError);
});

test("the sink's own schemas are made with Citus's schema-based sharding off, and the setting put back", async () => {
  // Without Citus the setting is a placeholder: what the DO block reads and writes is the same.
  const own = `${SCHEMA}_own`;
  await db.query('BEGIN');
  try {
    await db.query(`CREATE TABLE ${pg.escapeIdentifier(SCHEMA)}.seen (schema_name text, sharding text)`);
    await db.query(`CREATE FUNCTION ${pg.escapeIdentifier(SCHEMA)}.note() RETURNS event_trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO ${pg.escapeIdentifier(SCHEMA)}.seen SELECT object_identity, current_setting('citus.enable_schema_based_sharding', true)
              FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE SCHEMA'; END $$`);
    await db.query(`CREATE EVENT TRIGGER sb_note_schemas ON ddl_command_end WHEN TAG IN ('CREATE SCHEMA') EXECUTE FUNCTION ${pg.escapeIdentifier(SCHEMA)}.note()`);
    await db.query(`SET LOCAL citus.enable_schema_based_sharding = 'on'`);
    await db.query(createOwnSchemasSql(own));
    const { rows } = await db.query(`SELECT schema_name, sharding FROM ${pg.escapeIdentifier(SCHEMA)}.seen`);
    assert.deepEqual(rows, [{ schema_name: own, sharding: 'off' }]);
    assert.equal((await db.query(`SELECT current_setting('citus.enable_schema_based_sharding') AS v`)).rows[0].v, 'on');
  } finally {
    await db.query('ROLLBACK');
  }
});
