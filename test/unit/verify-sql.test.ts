import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  andPredicates,
  boundsSql,
  bucketChecksumsSql,
  cleanBounds,
  describeRange,
  destinationCasts,
  hashBucketExpr,
  rangeChecksumSql,
  rangeCount,
  rangePredicate,
  rowDigestExpr,
  rowDigestsSql,
  sideTables,
  type RangePlan,
  type VerifyTable,
} from '../../shared/verify/sql.ts';
import { compareKeys, diffDigests, differingIndexes } from '../../shared/verify/compare.ts';

const orders: VerifyTable = {
  source: { schema: 'public', name: 'orders' },
  destination: { schema: 'app', name: 'Orders' },
  keyColumns: ['id'],
  columns: ['id', 'customer_id', 'amount'],
  columnMap: { customer_id: 'customer' },
};
const { source, destination } = sideTables(orders);

test('sideTables renames destination columns through the map and keeps the source order', () => {
  assert.deepEqual(destination.columns, ['id', 'customer', 'amount']);
  assert.deepEqual(destination.keyColumns, ['id']);
  assert.deepEqual(source.columns, orders.columns);
  assert.equal(destination.name, 'Orders');
});

test('the row digest is the same expression on both sides, over quoted names in a fixed order', () => {
  assert.equal(rowDigestExpr(source), `('x' || substr(md5(ROW("id", "customer_id", "amount")::text), 1, 16))::bit(64)::bigint::numeric`);
  assert.equal(
    rowDigestExpr(destination).replace('"customer"', '"customer_id"'),
    rowDigestExpr(source),
  );
  assert.match(rowDigestExpr({ ...source, columns: ['a"b'] }), /ROW\("a""b"\)/);
});

test('a destination column widened to a type that prints differently is compared cast to the source type', () => {
  const t: VerifyTable = { ...orders, columns: ['id', 'customer_id', 'amount', 'score', 'name', 'ratios'] };
  const src = new Map([['id', 'integer'], ['customer_id', 'real'], ['amount', 'numeric(10,2)'], ['score', 'real'], ['name', 'character varying(10)'], ['ratios', 'real[]']]);
  const dst = new Map([['id', 'bigint'], ['customer', 'double precision'], ['amount', 'numeric(12,2)'], ['score', 'real'], ['name', 'text'], ['ratios', 'double precision[]']]);
  // float4 prints 1234567 as 1.234567e+06, float8 as 1234567: only real needs the cast. The
  // other widenings print alike, and a cast back would truncate (varchar) or round.
  const casts = destinationCasts(t, src, dst);
  assert.deepEqual(casts, { customer_id: 'real', ratios: 'real[]' });
  const sides = sideTables(t, casts);
  assert.equal(sides.source.casts, undefined);
  assert.deepEqual(sides.destination.casts, { customer: 'real', ratios: 'real[]' });
  assert.match(rowDigestExpr(sides.destination), /ROW\("id", "customer"::real, "amount", "score", "name", "ratios"::real\[\]\)/);
  assert.match(rowDigestExpr(sides.source), /ROW\("id", "customer_id", "amount", "score", "name", "ratios"\)/);
  // The key text and the fetched keys use the cast too, so both sides hash a key alike.
  const keyed = sideTables({ ...t, keyColumns: ['customer_id'] }, casts).destination;
  assert.match(hashBucketExpr(keyed, 0, 4), /md5\(ROW\("customer"::real\)::text\)/);
  assert.match(rowDigestsSql(keyed, { text: 'true', values: [] }).text, /^SELECT "customer"::real::text AS k0, /);
  // A column the destination lacks gets no cast (the query then names the missing column).
  assert.deepEqual(destinationCasts(t, src, new Map()), {});
});

test('hash buckets read a different 32-bit slice of md5(key text) per level', () => {
  const ab = { ...source, keyColumns: ['a', 'b'] };
  const a = { ...source, keyColumns: ['a'] };
  assert.equal(hashBucketExpr(ab, 0, 16), `mod(('x' || substr(md5(ROW("a", "b")::text), 1, 8))::bit(32)::bigint, 16)`);
  assert.match(hashBucketExpr(a, 1, 16), /, 9, 8\)/);
  assert.match(hashBucketExpr(a, 3, 16), /, 25, 8\)/);
  assert.throws(() => hashBucketExpr(a, 4, 16), RangeError);
});

test('bounds come from percentile_disc at n-1 fractions, with an optional block sample', () => {
  const q = boundsSql(source, 4);
  assert.equal(q.text, `SELECT (percentile_disc($1::float8[]) WITHIN GROUP (ORDER BY "id"))::text[] AS bounds FROM "public"."orders"`);
  assert.deepEqual(q.values, [[0.25, 0.5, 0.75]]);
  assert.match(boundsSql(source, 4, 2.5).text, /FROM "public"\."orders" TABLESAMPLE SYSTEM \(2\.5\)$/);
  assert.doesNotMatch(boundsSql(source, 4, 100).text, /TABLESAMPLE/);
  assert.deepEqual(boundsSql(source, 1).values, [[]]);
});

test('cleanBounds drops NULLs and duplicates and sorts numerically', () => {
  assert.deepEqual(cleanBounds(['10', '10', null, '-5', '9223372036854775807', '2']), ['-5', '2', '10', '9223372036854775807']);
  assert.deepEqual(cleanBounds(null), []);
});

test('integer ranges: below the first bound (and NULL keys), between bounds, from the last bound up', () => {
  const plan: RangePlan = { kind: 'int', column: 'id', bounds: ['100', '200'] };
  assert.equal(rangeCount(plan), 3);
  const cases: [number, string, unknown[], string][] = [
    // A destination without a primary key may hold NULL keys: no bound comparison counts them.
    [0, `("id" < $1::int8 OR "id" IS NULL)`, ['100'], 'id in [-∞, 100) or NULL'],
    [1, `"id" >= $1::int8 AND "id" < $2::int8`, ['100', '200'], 'id in [100, 200)'],
    [2, `"id" >= $1::int8`, ['200'], 'id in [200, +∞)'],
  ];
  for (const [i, text, values, human] of cases) {
    assert.deepEqual(rangePredicate(plan, source, i), { text, values });
    assert.equal(describeRange(plan, ['id'], i).text, human);
  }
  assert.deepEqual(describeRange(plan, ['id'], 1), { from: '100', to: '200', text: 'id in [100, 200)' });
  assert.deepEqual(rangePredicate({ kind: 'int', column: 'id', bounds: [] }, source, 0), { text: 'true', values: [] });
});

test('hash ranges name the bucket and the key columns', () => {
  const plan: RangePlan = { kind: 'hash', buckets: 8 };
  assert.equal(rangeCount(plan), 8);
  assert.equal(rangePredicate(plan, source, 5).text, `${hashBucketExpr(source, 0, 8)} = 5`);
  assert.deepEqual(describeRange(plan, ['a', 'b'], 5), { from: null, to: null, text: 'hash bucket 5 of 8 over (a, b)' });
});

test('checksum, bucket and digest queries', () => {
  const where = rangePredicate({ kind: 'int', column: 'id', bounds: ['100'] }, destination, 1);
  const c = rangeChecksumSql(destination, where);
  assert.equal(
    c.text,
    `SELECT count(*)::int8::text AS rows, coalesce(sum(${rowDigestExpr(destination)}), 0)::text AS sum FROM "app"."Orders" WHERE "id" >= $1::int8`,
  );
  assert.deepEqual(c.values, ['100']);
  const b = bucketChecksumsSql(source, 1, 16, where);
  assert.match(b.text, /^SELECT mod\(.*, 9, 8\)\)::bit\(32\)::bigint, 16\) AS bucket, count\(\*\)::int8::text AS rows, sum\(.*\)::text AS sum FROM "public"\."orders" WHERE "id" >= \$1::int8 GROUP BY 1$/);
  assert.doesNotMatch(bucketChecksumsSql(source, 0, 16).text, /WHERE/);
  const d = rowDigestsSql({ ...source, keyColumns: ['a', 'b'] }, { text: 'true', values: [] });
  assert.equal(d.text, `SELECT "a"::text AS k0, "b"::text AS k1, md5(ROW("id", "customer_id", "amount")::text) AS digest FROM "public"."orders" WHERE true`);
});

test('andPredicates renumbers the second predicate parameters', () => {
  const a = { text: '"id" >= $1::int8 AND "id" < $2::int8', values: ['1', '9'] };
  const b = { text: 'x = $1 OR y = $2', values: [3, 4] };
  assert.deepEqual(andPredicates(a, b), { text: '("id" >= $1::int8 AND "id" < $2::int8) AND (x = $3 OR y = $4)', values: ['1', '9', 3, 4] });
});

test('differingIndexes: count or sum differs, or a range exists on one side only', () => {
  const s = new Map([[0, { rows: 2, sum: '5' }], [1, { rows: 2, sum: '7' }], [2, { rows: 1, sum: '1' }], [4, { rows: 0, sum: '0' }]]);
  const d = new Map([[0, { rows: 2, sum: '5' }], [1, { rows: 2, sum: '8' }], [3, { rows: 1, sum: '-1' }]]);
  assert.deepEqual(differingIndexes(s, d), [1, 2, 3]);
  assert.deepEqual(differingIndexes(s, new Map(s)), []);
});

test('diffDigests classifies changed, missing and extra keys in key order, capped', () => {
  const src = [
    { key: ['10'], digest: 'a' },
    { key: ['2'], digest: 'b' },
    { key: ['3'], digest: 'c' },
  ];
  const dst = [
    { key: ['2'], digest: 'B' },
    { key: ['3'], digest: 'c' },
    { key: ['11'], digest: 'x' },
  ];
  assert.deepEqual(diffDigests(src, dst, ['id'], 10), [
    { key: { id: '2' }, difference: 'changed' },
    { key: { id: '10' }, difference: 'missing on destination' },
    { key: { id: '11' }, difference: 'only on destination' },
  ]);
  assert.equal(diffDigests(src, dst, ['id'], 2).length, 2);
  assert.deepEqual(diffDigests(src, src, ['id'], 10), []);
});

test('diffDigests names a key held more often on one side as duplicated there', () => {
  const src = [
    { key: ['5'], digest: 'a' },
    { key: ['6'], digest: 'b' },
    { key: ['7'], digest: 'c' },
    { key: ['7'], digest: 'd' },
  ];
  const dst = [
    { key: ['5'], digest: 'a' },
    { key: ['5'], digest: 'a' },
    { key: ['6'], digest: 'b' },
    { key: ['7'], digest: 'd' },
    { key: [null], digest: 'e' },
  ];
  assert.deepEqual(diffDigests(src, dst, ['id'], 10), [
    { key: { id: '5' }, difference: 'duplicated on destination' },
    { key: { id: '7' }, difference: 'duplicated on source' },
    { key: { id: null }, difference: 'only on destination' },
  ]);
  // Equal counts of a duplicated key compare as multisets, in any order.
  const twice = [{ key: ['1'], digest: 'x' }, { key: ['1'], digest: 'y' }];
  assert.deepEqual(diffDigests(twice, [...twice].reverse(), ['id'], 10), []);
  assert.deepEqual(diffDigests(twice, [twice[0], twice[0]], ['id'], 10), [{ key: { id: '1' }, difference: 'changed' }]);
});

test('compareKeys orders integers numerically, text by code point, NULL last, column by column', () => {
  const keys = [['b', '2'], ['10', 'x'], ['9', 'x'], [null, 'a'], ['b', '10'], ['-3', 'z']];
  assert.deepEqual([...keys].sort(compareKeys), [['-3', 'z'], ['9', 'x'], ['10', 'x'], ['b', '2'], ['b', '10'], [null, 'a']]);
});
