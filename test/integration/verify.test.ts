/**
 * verifyTables against two real clusters: equal tables match; a row changed, deleted or
 * added directly on the destination is reported with its table, key range and key, through
 * both range kinds (integer key quantiles, hashed composite text key) and through the
 * sub-hash narrowing of a large range.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { getTestDestination, startTestSource } from '../helpers/postgres.ts';
import { verifyTables, type VerifyTable } from '../../shared/verify/index.ts';

const SCHEMA = `sb_verify_${process.pid}_${Date.now().toString(36)}`;
let source: PgCluster;
let destUrl: string;
let release: () => Promise<void> = async () => {};
let src: pg.Client;
let dst: pg.Client;

// Same deterministic data on both sides; the destination renames customer_id to customer.
const ORDERS_SQL = (customer: string) => `
  CREATE TABLE ${SCHEMA}.orders (id bigint PRIMARY KEY, ${customer} int, amount numeric(12,2), status text,
                                 created_at timestamptz, payload jsonb, tags text[]);
  INSERT INTO ${SCHEMA}.orders
  SELECT g, g % 97, (g * 7 % 10000) / 100.0, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'new' END,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '37 seconds', jsonb_build_object('n', g, 's', repeat('x', g % 5)),
         CASE WHEN g % 4 = 0 THEN NULL ELSE ARRAY['a', g::text] END
    FROM generate_series(1, 5000) g;`;
const ITEMS_SQL = `
  CREATE TABLE ${SCHEMA}.items (sku text, region text, qty int, note text, PRIMARY KEY (sku, region));
  INSERT INTO ${SCHEMA}.items SELECT 'sku-' || (g / 3), 'r' || (g % 3), g, CASE WHEN g % 2 = 0 THEN NULL ELSE 'n' || g END
    FROM generate_series(0, 2999) g;`;
const BIG_SQL = `
  CREATE TABLE ${SCHEMA}.big (id int PRIMARY KEY, v text);
  INSERT INTO ${SCHEMA}.big SELECT g, md5(g::text) FROM generate_series(1, 45000) g;`;

const orders: VerifyTable = {
  source: { schema: SCHEMA, name: 'orders' },
  destination: { schema: SCHEMA, name: 'orders' },
  keyColumns: ['id'],
  columns: ['id', 'customer_id', 'amount', 'status', 'created_at', 'payload', 'tags'],
  columnMap: { customer_id: 'customer' },
};
const items: VerifyTable = {
  source: { schema: SCHEMA, name: 'items' },
  destination: { schema: SCHEMA, name: 'items' },
  keyColumns: ['sku', 'region'],
  columns: ['sku', 'region', 'qty', 'note'],
};
const big: VerifyTable = {
  source: { schema: SCHEMA, name: 'big' },
  destination: { schema: SCHEMA, name: 'big' },
  keyColumns: ['id'],
  columns: ['id', 'v'],
};

before(async () => {
  const [s, d] = await Promise.all([startTestSource(), getTestDestination()]);
  source = s;
  destUrl = d.url;
  release = d.release;
  src = new pg.Client({ connectionString: source.url() });
  dst = new pg.Client({ connectionString: destUrl });
  await Promise.all([src.connect(), dst.connect()]);
  await src.query(`CREATE SCHEMA ${SCHEMA}; ${ORDERS_SQL('customer_id')} ${ITEMS_SQL} ${BIG_SQL}`);
  await dst.query(`CREATE SCHEMA ${SCHEMA}; ${ORDERS_SQL('customer')} ${ITEMS_SQL} ${BIG_SQL}`);
  await Promise.all([src.query('ANALYZE'), dst.query('ANALYZE')]);
});

after(async () => {
  await dst?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
  await Promise.all([src?.end(), dst?.end()]);
  await release();
  await source?.destroy();
});

const verify = (tables: VerifyTable[], ranges = 8) =>
  verifyTables({ source: { connectionString: source.url() }, destination: { connectionString: destUrl }, tables, ranges, parallel: 3 });

test('equal tables match, split by key quantiles (integer key) and by hash (composite text key)', async () => {
  const r = await verify([orders, items, big]);
  assert.equal(r.match, true, JSON.stringify(r, null, 2));
  const [o, i, b] = r.tables;
  assert.deepEqual([o.sourceRows, o.destRows, o.split, o.ranges], [5000, 5000, 'key ranges', 8]);
  assert.deepEqual([i.sourceRows, i.destRows, i.split, i.ranges], [3000, 3000, 'key hash', 8]);
  assert.deepEqual([b.sourceRows, b.destRows], [45000, 45000]);
  assert.ok(r.tables.every((t) => t.differingRanges.length === 0 && t.error === undefined));
});

test('a row changed, deleted and added on the destination: no-go naming table, key range and keys', async () => {
  await dst.query(`UPDATE ${SCHEMA}.orders SET amount = amount + 0.01 WHERE id = 1234`);
  await dst.query(`DELETE FROM ${SCHEMA}.orders WHERE id = 4000`);
  await dst.query(`INSERT INTO ${SCHEMA}.orders (id, customer, amount) VALUES (9002, 1, 1)`);
  await dst.query(`UPDATE ${SCHEMA}.items SET note = 'changed' WHERE sku = 'sku-7' AND region = 'r1'`);
  const r = await verify([orders, items]);
  assert.equal(r.match, false);
  const [o, i] = r.tables;
  assert.equal(o.match, false);
  assert.deepEqual([o.sourceRows, o.destRows], [5000, 5000]);
  const found = o.differingRanges.flatMap((d) => d.sampleKeys.map((k) => [k.key.id, k.difference, d]));
  assert.deepEqual(found.map(([id, diff]) => [id, diff]), [
    ['1234', 'changed'],
    ['4000', 'missing on destination'],
    ['9002', 'only on destination'],
  ]);
  for (const [id, , range] of found as [string, string, { from: string | null; to: string | null; range: string }][]) {
    assert.ok((range.from === null || BigInt(range.from) <= BigInt(id)) && (range.to === null || BigInt(id) < BigInt(range.to)), `${id} outside ${range.range}`);
    assert.match(range.range, /^id in \[/);
  }
  const deleted = o.differingRanges.find((d) => d.sampleKeys.some((k) => k.key.id === '4000'))!;
  assert.equal(deleted.sourceRows - deleted.destRows, 1);

  assert.equal(i.match, false);
  assert.equal(i.differingRanges.length, 1);
  assert.match(i.differingRanges[0].range, /^hash bucket \d of 8 over \(sku, region\)$/);
  assert.deepEqual(i.differingRanges[0].sampleKeys, [{ key: { sku: 'sku-7', region: 'r1' }, difference: 'changed' }]);
});

test('a large differing range is narrowed by sub-hashing to the exact keys', async () => {
  await dst.query(`UPDATE ${SCHEMA}.big SET v = 'x' WHERE id IN (17, 30001)`);
  await dst.query(`DELETE FROM ${SCHEMA}.big WHERE id = 44999`);
  // One range of 45,000 rows: above the row-fetch limit, so the narrowing recurses.
  const r = await verify([big], 1);
  const [b] = r.tables;
  assert.equal(b.split, 'key hash');
  assert.equal(b.differingRanges.length, 1);
  assert.deepEqual([b.differingRanges[0].sourceRows, b.differingRanges[0].destRows], [45000, 44999]);
  assert.deepEqual(b.differingRanges[0].sampleKeys.map((k) => [k.key.id, k.difference]), [
    ['17', 'changed'],
    ['30001', 'changed'],
    ['44999', 'missing on destination'],
  ]);
});

test('a table missing on the destination is a no-go with the error, other tables still compared', async () => {
  const missing: VerifyTable = { ...big, destination: { schema: SCHEMA, name: 'nope' } };
  const r = await verify([missing, items]);
  assert.equal(r.match, false);
  assert.equal(r.tables[0].match, false);
  assert.match(r.tables[0].error!, /relation .*nope.* does not exist/);
  assert.equal(r.tables[1].error, undefined);
  assert.equal(r.tables[1].destRows, 3000);
});

test('real on the source, double precision on the destination (a widening check accepts): equal values match, a changed one is found', async () => {
  // float4 prints 1234567 as 1.234567e+06 and float8 as 1234567: compared as text they differ.
  await src.query(`CREATE TABLE ${SCHEMA}.floats (id int PRIMARY KEY, r real, rs real[]);
    INSERT INTO ${SCHEMA}.floats VALUES (1, 0.1, '{0.1,2.5}'), (2, 1234567, '{1234567}'), (3, 3e7, NULL), (4, NULL, '{}'), (5, -0.000123, '{3e7}')`);
  await dst.query(`CREATE TABLE ${SCHEMA}.floats (id int PRIMARY KEY, r double precision, rs double precision[]);
    INSERT INTO ${SCHEMA}.floats VALUES (1, 0.1, '{0.1,2.5}'), (2, 1234567, '{1234567}'), (3, 3e7, NULL), (4, NULL, '{}'), (5, -0.000123, '{3e7}')`);
  const floats: VerifyTable = { source: { schema: SCHEMA, name: 'floats' }, destination: { schema: SCHEMA, name: 'floats' }, keyColumns: ['id'], columns: ['id', 'r', 'rs'] };
  for (const ranges of [4, 1]) {
    const r = await verify([floats], ranges);
    assert.equal(r.match, true, JSON.stringify(r, null, 2));
  }
  await dst.query(`UPDATE ${SCHEMA}.floats SET r = 1234568 WHERE id = 2`);
  const r = await verify([floats], 4);
  assert.equal(r.match, false);
  assert.deepEqual(r.tables[0].differingRanges.flatMap((d) => d.sampleKeys), [{ key: { id: '2' }, difference: 'changed' }]);
});

test('a destination without a primary key: a NULL key and a duplicated key are found and named', async () => {
  const create = (pk: string) => `CREATE TABLE ${SCHEMA}.nokey (id int ${pk}, v text); INSERT INTO ${SCHEMA}.nokey SELECT g, 'v' || g FROM generate_series(1, 100) g`;
  await src.query(create('PRIMARY KEY'));
  await dst.query(create(''));
  await Promise.all([src.query(`ANALYZE ${SCHEMA}.nokey`), dst.query(`ANALYZE ${SCHEMA}.nokey`)]);
  const nokey: VerifyTable = { source: { schema: SCHEMA, name: 'nokey' }, destination: { schema: SCHEMA, name: 'nokey' }, keyColumns: ['id'], columns: ['id', 'v'] };
  assert.equal((await verify([nokey])).match, true);

  await dst.query(`INSERT INTO ${SCHEMA}.nokey VALUES (NULL, 'junk')`);
  const withNull = await verify([nokey]);
  const [n] = withNull.tables;
  assert.equal(n.split, 'key ranges');
  assert.deepEqual([withNull.match, n.sourceRows, n.destRows], [false, 100, 101]);
  assert.equal(n.differingRanges.length, 1);
  assert.match(n.differingRanges[0].range, /^id in \[-∞, \d+\) or NULL$/);
  assert.deepEqual(n.differingRanges[0].sampleKeys, [{ key: { id: null }, difference: 'only on destination' }]);

  await dst.query(`DELETE FROM ${SCHEMA}.nokey WHERE id IS NULL; INSERT INTO ${SCHEMA}.nokey VALUES (50, 'v50')`);
  const dup = await verify([nokey]);
  assert.equal(dup.match, false);
  assert.deepEqual(dup.tables[0].differingRanges.flatMap((d) => d.sampleKeys), [{ key: { id: '50' }, difference: 'duplicated on destination' }]);
});
