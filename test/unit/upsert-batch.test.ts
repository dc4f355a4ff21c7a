import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildDelete,
  buildElsewhereQuery,
  buildSparingDelete,
  buildUpdateInPlace,
  buildUpsert,
  CACHED_STATEMENTS,
  castType,
  copyTextChunks,
  quoteIdent,
  truncateSql,
} from '../../sink-connector/upsert-batch.ts';
import {
  clearStagingSql,
  copyIntoStagingSql,
  createStagingSql,
  mergeFromStagingSql,
  stagingBaseName,
  stagingNullableSql,
  stagingTableName,
} from '../../sink-connector/staging-sql.ts';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import {
  distributeStagingSql,
  MAX_TABLE_COLUMNS,
  openStagingPrepareSql,
  stagingLayout,
  stagingLayoutSql,
  stagingIdentitySql,
  stagingPrepareSql,
  type StagingColumn,
} from '../../sink-connector/staging-layout.ts';
import { SchemaError } from '../../shared/errors.ts';

const orders: ApplyTable = {
  schema: 'public',
  name: 'orders',
  columns: [
    { name: 'customer_id', type: 'integer' },
    { name: 'id', type: 'bigint' },
    { name: 'amount', type: 'numeric(12,2)' },
    { name: 'tags', type: 'text[]' },
  ],
  sourceKey: ['id'],
  destKey: ['customer_id', 'id'],
  distributionColumn: 'customer_id',
  citus: 'distributed',
};

/** Keys of a domain over an enum, which has no `=`: compared as the enum. */
const moods: ApplyTable = {
  schema: 'public',
  name: 'moods',
  columns: [
    { name: 'm', type: 'mood_domain', compareAs: 'mood' },
    { name: 'region', type: 'region_domain', compareAs: 'app.region' },
    { name: 'v', type: 'text' },
  ],
  sourceKey: ['m'],
  destKey: ['m', 'region'],
  distributionColumn: 'region',
  citus: 'distributed',
};

// An array column: its values cannot be cast as unnest's parameters (unnest flattens arrays).
const tagged: ApplyTable = {
  schema: 'public',
  name: 'tagged',
  columns: [
    { name: 'id', type: 'bigint' },
    { name: 'tags', type: 'text[]' },
    { name: 'at', type: 'timestamp with time zone' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  distributionColumn: 'id',
  citus: 'distributed',
};

const odd: ApplyTable = {
  schema: 'My Schema',
  name: 'Order Items',
  columns: [
    { name: 'id', type: 'bigint' },
    { name: 'a"b', type: 'character varying(10)' },
    { name: 'code', type: 'character(3)[]' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  citus: 'local',
};
const session: ApplyTable = { ...odd, staging: 'session' };

const keyOnly: ApplyTable = {
  schema: 'public',
  name: 'tags',
  columns: [
    { name: 'post_id', type: 'bigint' },
    { name: 'tag', type: 'text' },
  ],
  sourceKey: ['post_id', 'tag'],
  destKey: ['post_id', 'tag'],
  citus: 'local',
};

// Distribution column is the whole key, and the only non-key column is left out of SET.
const reference: ApplyTable = {
  schema: 'public',
  name: 'countries',
  columns: [
    { name: 'code', type: 'text' },
    { name: 'name', type: 'text' },
  ],
  sourceKey: ['code'],
  destKey: ['code'],
  citus: 'reference',
};

const sqlCases: { name: string; sql: () => string; want: string }[] = [
  {
    name: 'upsert, composite key: key and distribution column left out of SET',
    sql: () => buildUpsert(orders, ['customer_id', 'id', 'amount', 'tags']).text,
    want:
      'INSERT INTO "public"."orders" ("customer_id", "id", "amount", "tags") ' +
      'SELECT u."customer_id"::integer, u."id"::bigint, u."amount"::numeric(12,2), u."tags"::text[] ' +
      'FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u("customer_id", "id", "amount", "tags") ' +
      'ON CONFLICT ("customer_id", "id") DO UPDATE SET "amount" = EXCLUDED."amount", "tags" = EXCLUDED."tags"',
  },
  {
    name: 'upsert of a column subset (unchanged TOAST left out)',
    sql: () => buildUpsert(orders, ['customer_id', 'id', 'amount']).text,
    want:
      'INSERT INTO "public"."orders" ("customer_id", "id", "amount") ' +
      'SELECT u."customer_id"::integer, u."id"::bigint, u."amount"::numeric(12,2) ' +
      'FROM unnest($1::text[], $2::text[], $3::text[]) AS u("customer_id", "id", "amount") ' +
      'ON CONFLICT ("customer_id", "id") DO UPDATE SET "amount" = EXCLUDED."amount"',
  },
  {
    name: 'upsert with odd identifiers; length-limited types cast unconstrained',
    sql: () => buildUpsert(odd, ['id', 'a"b', 'code']).text,
    want:
      'INSERT INTO "My Schema"."Order Items" ("id", "a""b", "code") ' +
      'SELECT u."id"::bigint, u."a""b"::character varying, u."code"::bpchar[] ' +
      'FROM unnest($1::text[], $2::text[], $3::text[]) AS u("id", "a""b", "code") ' +
      'ON CONFLICT ("id") DO UPDATE SET "a""b" = EXCLUDED."a""b", "code" = EXCLUDED."code"',
  },
  {
    name: 'upsert where every column is a key column: DO NOTHING',
    sql: () => buildUpsert(keyOnly, ['post_id', 'tag']).text,
    want:
      'INSERT INTO "public"."tags" ("post_id", "tag") SELECT u."post_id"::bigint, u."tag"::text ' +
      'FROM unnest($1::text[], $2::text[]) AS u("post_id", "tag") ON CONFLICT ("post_id", "tag") DO NOTHING',
  },
  {
    name: 'upsert of only the key columns of a wider table: DO NOTHING',
    sql: () => buildUpsert(reference, ['code']).text,
    want: 'INSERT INTO "public"."countries" ("code") SELECT u."code"::text FROM unnest($1::text[]) AS u("code") ON CONFLICT ("code") DO NOTHING',
  },
  {
    name: 'delete by a single-column key: = ANY',
    sql: () => buildDelete(orders, ['id']).text,
    want: 'DELETE FROM "public"."orders" WHERE "id" = ANY($1::text[]::bigint[])',
  },
  {
    name: 'delete by a single odd-named key',
    sql: () => buildDelete(odd, ['id']).text,
    want: 'DELETE FROM "My Schema"."Order Items" WHERE "id" = ANY($1::text[]::bigint[])',
  },
  {
    name: 'delete by destination key: unnest join plus distribution-column pruning',
    sql: () => buildDelete(orders, ['customer_id', 'id']).text,
    want:
      'DELETE FROM "public"."orders" AS t USING unnest($1::text[]::integer[], $2::text[]::bigint[]) AS k("customer_id", "id") ' +
      'WHERE t."customer_id" = k."customer_id" AND t."id" = k."id" AND t."customer_id" = ANY($1::text[]::integer[])',
  },
  {
    name: 'delete by a composite key on a plain table: no pruning clause',
    sql: () => buildDelete(keyOnly, ['post_id', 'tag']).text,
    want: 'DELETE FROM "public"."tags" AS t USING unnest($1::text[]::bigint[], $2::text[]::text[]) AS k("post_id", "tag") WHERE t."post_id" = k."post_id" AND t."tag" = k."tag"',
  },
  {
    name: 'sparing delete for rows that may have moved',
    sql: () => buildSparingDelete(orders).text,
    want:
      'DELETE FROM "public"."orders" AS t USING unnest($1::text[]::bigint[], $2::text[]::integer[]) AS k("id", "customer_id") ' +
      'WHERE t."id" = k."id" AND (t."customer_id" IS DISTINCT FROM k."customer_id")',
  },
  {
    name: 'update in place, composite key: matched on the destination key, key columns never set, pruned on the distribution column',
    sql: () => buildUpdateInPlace(orders, ['customer_id', 'id', 'amount'])!.text,
    want:
      'UPDATE "public"."orders" AS t SET "amount" = k."amount" FROM unnest($1::text[]::integer[], $2::text[]::bigint[], $3::text[]::numeric(12,2)[]) AS k("customer_id", "id", "amount") ' +
      'WHERE t."customer_id" = k."customer_id" AND t."id" = k."id" AND t."customer_id" = ANY($1::text[]::integer[])',
  },
  {
    name: 'update in place, odd identifiers: varchar cast without its length (the assignment checks it)',
    sql: () => buildUpdateInPlace(odd, ['id', 'a"b'])!.text,
    want: 'UPDATE "My Schema"."Order Items" AS t SET "a""b" = k."a""b" FROM unnest($1::text[]::bigint[], $2::text[]::character varying[]) AS k("id", "a""b") WHERE t."id" = k."id"',
  },
  {
    name: 'rows of a source key elsewhere than their new destination key',
    sql: () => buildElsewhereQuery(orders).text,
    want:
      'SELECT k."id" FROM "public"."orders" AS t, unnest($1::text[]::bigint[], $2::text[]::integer[]) AS k("id", "customer_id") ' +
      'WHERE t."id" = k."id" AND (t."customer_id" IS DISTINCT FROM k."customer_id")',
  },
  {
    name: 'delete by a key of a domain over an enum: both sides compared as the enum',
    sql: () => buildDelete(moods, ['m']).text,
    want: 'DELETE FROM "public"."moods" WHERE "m"::mood = ANY($1::text[]::mood[])',
  },
  {
    name: 'delete by a destination key of domains over enums, pruned as the enum',
    sql: () => buildDelete(moods, ['m', 'region']).text,
    want:
      'DELETE FROM "public"."moods" AS t USING unnest($1::text[]::mood_domain[], $2::text[]::region_domain[]) AS k("m", "region") ' +
      'WHERE t."m"::mood = k."m"::mood AND t."region"::app.region = k."region"::app.region AND t."region"::app.region = ANY($2::text[]::app.region[])',
  },
  {
    name: 'update in place and moved-row check by keys of domains over enums: compared as the enum, values set as the domain',
    sql: () => [buildUpdateInPlace(moods, ['m', 'region', 'v'])!.text, buildElsewhereQuery(moods).text].join('\n'),
    want:
      'UPDATE "public"."moods" AS t SET "v" = k."v" FROM unnest($1::text[]::mood_domain[], $2::text[]::region_domain[], $3::text[]::text[]) AS k("m", "region", "v") ' +
      'WHERE t."m"::mood = k."m"::mood AND t."region"::app.region = k."region"::app.region AND t."region"::app.region = ANY($2::text[]::app.region[])\n' +
      'SELECT k."m" FROM "public"."moods" AS t, unnest($1::text[]::mood_domain[], $2::text[]::region_domain[]) AS k("m", "region") ' +
      'WHERE t."m"::mood = k."m"::mood AND (t."region"::app.region IS DISTINCT FROM k."region"::app.region)',
  },
  {
    // Citus refuses a STABLE input function (timestamptz's, an array's) applied to a column in an UPDATE's SET or WHERE.
    name: 'update in place with an array column: the rows cast in a MATERIALIZED CTE, the other columns as parameters',
    sql: () => buildUpdateInPlace(tagged, ['id', 'tags', 'at'])!.text,
    want:
      'WITH k AS MATERIALIZED (SELECT k."id", k."tags"::text[] AS "tags", k."at" FROM unnest($1::text[]::bigint[], $2::text[], $3::text[]::timestamp with time zone[]) AS k("id", "tags", "at")) ' +
      'UPDATE "public"."tagged" AS t SET "tags" = k."tags", "at" = k."at" FROM k WHERE t."id" = k."id" AND t."id" = ANY($1::text[]::bigint[])',
  },
  {
    name: 'delete by an array key: through the CTE too, no pruning on it',
    sql: () => buildDelete({ ...tagged, sourceKey: ['tags'], destKey: ['tags'], distributionColumn: 'tags' }, ['tags']).text,
    want: 'WITH k AS MATERIALIZED (SELECT k."tags"::text[] AS "tags" FROM unnest($1::text[]) AS k("tags")) DELETE FROM "public"."tagged" AS t USING k WHERE t."tags" = k."tags"',
  },
  { name: 'truncate', sql: () => truncateSql(odd), want: 'TRUNCATE "My Schema"."Order Items"' },
  { name: 'staging table name', sql: () => stagingTableName(orders), want: 'shardbridge_staging."public__orders"' },
  { name: 'staging table name, odd identifiers', sql: () => stagingTableName(odd), want: 'shardbridge_staging."My Schema__Order Items"' },
  {
    name: 'create staging',
    sql: () => createStagingSql(orders),
    want: 'CREATE TABLE IF NOT EXISTS shardbridge_staging."public__orders" (LIKE "public"."orders" INCLUDING DEFAULTS)',
  },
  {
    name: 'distribute staging colocated with the target (idempotent)',
    sql: () => distributeStagingSql(orders) ?? 'null',
    want:
      `SELECT create_distributed_table('shardbridge_staging."public__orders"', 'customer_id', colocate_with => '"public"."orders"') ` +
      `WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'shardbridge_staging."public__orders"'::regclass)`,
  },
  { name: 'no distribution for a reference table', sql: () => distributeStagingSql(reference) ?? 'null', want: 'null' },
  {
    name: "the staging table's Citus layout beside the target's",
    sql: () => stagingLayoutSql(orders) ?? 'null',
    want:
      `SELECT s.partmethod::text AS method, s.colocationid = t.colocationid AS colocated, column_to_column_name(s.logicalrelid, s.partkey) AS "column" ` +
      `FROM pg_dist_partition s JOIN pg_dist_partition t ON t.logicalrelid = '"public"."orders"'::regclass ` +
      `WHERE s.logicalrelid = 'shardbridge_staging."public__orders"'::regclass`,
  },
  { name: 'no staging layout to check for a reference table', sql: () => stagingLayoutSql(reference) ?? 'null', want: 'null' },
  // A single-shard table has no column to colocate a staging table by, nor to prune by.
  { name: 'no distribution for a single-shard table', sql: () => distributeStagingSql({ ...reference, citus: 'single-shard' }) ?? 'null', want: 'null' },
  {
    name: 'COPY into staging',
    sql: () => copyIntoStagingSql(odd, ['id', 'a"b']),
    want: 'COPY shardbridge_staging."My Schema__Order Items" ("id", "a""b") FROM STDIN',
  },
  {
    name: 'merge from staging',
    sql: () => mergeFromStagingSql(orders, ['customer_id', 'id', 'amount']),
    want:
      'INSERT INTO "public"."orders" ("customer_id", "id", "amount") SELECT "customer_id", "id", "amount" ' +
      'FROM shardbridge_staging."public__orders" ON CONFLICT ("customer_id", "id") DO UPDATE SET "amount" = EXCLUDED."amount"',
  },
  { name: 'clear staging', sql: () => clearStagingSql(orders), want: 'DELETE FROM shardbridge_staging."public__orders"' },
  // A destination without Citus: a temporary table per connection, emptied by the commit.
  { name: 'session staging table name', sql: () => stagingTableName(session), want: 'pg_temp."My Schema__Order Items"' },
  {
    name: 'create session staging (again for each table version)',
    sql: () => createStagingSql(session),
    want:
      'DROP TABLE IF EXISTS pg_temp."My Schema__Order Items"; ' +
      'CREATE TEMPORARY TABLE pg_temp."My Schema__Order Items" (LIKE "My Schema"."Order Items" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS',
  },
  {
    // A NOT NULL column the changes may not carry (an identity of the destination's own) must not refuse staged rows; the key keeps it.
    name: 'create session staging: NOT NULL dropped but on the key',
    sql: () => createStagingSql({ ...session, columns: session.columns.map((c) => ({ ...c, notNull: true })) }),
    want:
      'DROP TABLE IF EXISTS pg_temp."My Schema__Order Items"; ' +
      'CREATE TEMPORARY TABLE pg_temp."My Schema__Order Items" (LIKE "My Schema"."Order Items" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; ' +
      `ALTER TABLE pg_temp."My Schema__Order Items" ${session.columns.filter((c) => !session.destKey.includes(c.name)).map((c) => `ALTER COLUMN ${quoteIdent(c.name)} DROP NOT NULL`).join(', ')}`,
  },
  {
    name: 'shared staging: NOT NULL dropped but on the key and the distribution column',
    sql: () => stagingNullableSql(orders, ['customer_id', 'id', 'amount']) ?? '',
    want: 'ALTER TABLE shardbridge_staging."public__orders" ALTER COLUMN "amount" DROP NOT NULL',
  },
  { name: 'shared staging: nothing to drop', sql: () => stagingNullableSql(orders, ['id']) ?? 'none', want: 'none' },
  { name: 'COPY into session staging', sql: () => copyIntoStagingSql(session, ['id']), want: 'COPY pg_temp."My Schema__Order Items" ("id") FROM STDIN' },
  { name: 'clear session staging', sql: () => clearStagingSql(session), want: 'DELETE FROM pg_temp."My Schema__Order Items"' },
];

for (const tc of sqlCases) {
  test(`sql: ${tc.name}`, () => {
    assert.equal(tc.sql(), tc.want);
  });
}

test('an update in place with nothing but key columns to carry has no statement', () => {
  assert.equal(buildUpdateInPlace(odd, ['id']), null);
  assert.equal(buildUpdateInPlace(orders, ['customer_id', 'id']), null);
});

test('quoteIdent doubles inner quotes', () => {
  for (const [name, want] of [
    ['id', '"id"'],
    ['Order Items', '"Order Items"'],
    ['a"b', '"a""b"'],
    ['""', '""""""'],
  ]) {
    assert.equal(quoteIdent(name), want);
  }
});

test('castType drops length limits that an explicit cast would silently apply', () => {
  for (const [type, want] of [
    ['character varying(10)', 'character varying'],
    ['character varying(10)[]', 'character varying[]'],
    ['character(3)', 'bpchar'],
    ['bit(4)', 'bit varying'],
    ['bit varying(4)', 'bit varying'],
    ['numeric(12,2)', 'numeric(12,2)'],
    ['timestamp(3) with time zone', 'timestamp(3) with time zone'],
    ['"character"(3)', '"character"(3)'],
    ['integer[]', 'integer[]'],
  ]) {
    assert.equal(castType(type), want, type);
  }
});

test('statements are cached per table object and column set', () => {
  assert.equal(buildUpsert(orders, ['customer_id', 'id', 'amount']), buildUpsert(orders, ['customer_id', 'id', 'amount']));
  assert.notEqual(buildUpsert(orders, ['customer_id', 'id', 'amount']), buildUpsert(orders, ['customer_id', 'id', 'tags']));
  assert.notEqual(buildUpsert(orders, ['id', 'customer_id']), buildUpsert({ ...orders }, ['id', 'customer_id']));
});

test('the statements kept per table are bounded: the least recently used goes first', () => {
  const wide: ApplyTable = { ...orders, columns: [...orders.columns, ...Array.from({ length: 400 }, (_, i) => ({ name: `c${i}`, type: 'text' }))] };
  const set = (i: number) => ['customer_id', 'id', `c${i}`];
  const first = buildUpsert(wide, set(0));
  for (let i = 1; i < CACHED_STATEMENTS; i++) buildUpsert(wide, set(i));
  assert.equal(buildUpsert(wide, set(0)), first, 'kept while within the bound (and now the most recently used)');
  buildUpsert(wide, set(CACHED_STATEMENTS));
  assert.equal(buildUpsert(wide, set(0)), first, 'the least recently used went, not the first made');
  const second = buildUpsert(wide, set(2));
  for (let i = 0; i < CACHED_STATEMENTS; i++) buildUpsert(wide, set(200 + i));
  assert.notEqual(buildUpsert(wide, set(2)), second, 'made again once evicted');
  assert.equal(buildUpsert(wide, set(2)).text, second.text);
});

test('bind turns rows into one array per column', () => {
  const st = buildUpsert(orders, ['customer_id', 'id', 'amount']);
  assert.deepEqual(
    st.bind([
      ['1', '10', '1.50'],
      ['2', '11', null],
    ]),
    [
      ['1', '2'],
      ['10', '11'],
      ['1.50', null],
    ],
  );
  assert.deepEqual(st.bind([]), [[], [], []]);
  assert.deepEqual(buildDelete(orders, ['id']).bind([['10'], ['11']]), [['10', '11']]);
  assert.deepEqual(buildSparingDelete(orders).bind([['10', '3']]), [['10'], ['3']]);
  assert.throws(() => st.bind([['1', '2']]), RangeError);
});

const refusals: { name: string; build: () => unknown; message: RegExp }[] = [
  { name: 'an upsert without the destination key', build: () => buildUpsert(orders, ['id', 'amount']), message: /key column customer_id/ },
  { name: 'an unknown column', build: () => buildUpsert(orders, ['customer_id', 'id', 'nope']), message: /column nope/ },
  { name: 'a delete that does not cover the source key', build: () => buildDelete(orders, ['customer_id']), message: /key column id/ },
  { name: 'a sparing delete where no key column can move', build: () => buildSparingDelete(odd), message: /beyond the source key/ },
  { name: 'a moved-row check where no key column can move', build: () => buildElsewhereQuery(odd), message: /beyond the source key/ },
  { name: 'an update in place without the destination key', build: () => buildUpdateInPlace(orders, ['id', 'amount']), message: /key column customer_id/ },
];

for (const tc of refusals) {
  test(`builders refuse ${tc.name}`, () => {
    assert.throws(tc.build, (err: unknown) => err instanceof SchemaError && tc.message.test((err as Error).message));
  });
}

test('COPY text rows escape backslash, tab, newline, carriage return; NULL is \\N', () => {
  const cases: [(string | null)[], string][] = [
    [['1', 'plain'], '1\tplain\n'],
    [[null, ''], '\\N\t\n'],
    [['a\tb', 'c\nd', 'e\rf', 'g\\h'], 'a\\tb\tc\\nd\te\\rf\tg\\\\h\n'],
    [['\\N', '\\.'], '\\\\N\t\\\\.\n'],
    [['\\x00ff'], '\\\\x00ff\n'],
    [["it's \"q\""], 'it\'s "q"\n'],
  ];
  for (const [values, want] of cases) assert.equal([...copyTextChunks([values])].join(''), want);
});

test('staging names stay within 63 bytes and unambiguous', () => {
  const long = { schema: 'public', name: 'x'.repeat(63) };
  const n = stagingBaseName(long);
  assert.ok(Buffer.byteLength(n) <= 63, n);
  assert.notEqual(n, stagingBaseName({ schema: 'public', name: `${'x'.repeat(62)}y` }));
  // "a_" + "__" + "b" and "a" + "__" + "_b" would both read a___b
  assert.notEqual(stagingBaseName({ schema: 'a_', name: 'b' }), stagingBaseName({ schema: 'a', name: '_b' }));
  assert.notEqual(stagingBaseName({ schema: 'a__b', name: 'c' }), stagingBaseName({ schema: 'a', name: 'b__c' }));
  assert.equal(stagingBaseName({ schema: 'sales', name: 'order_items' }), 'sales__order_items');
  // Multi-byte names are cut between characters, never inside one (half an emoji would reach PostgreSQL as U+FFFD).
  for (let k = 0; k < 8; k++) {
    const n = stagingBaseName({ schema: 'a'.repeat(k) + '😀'.repeat(20), name: 't' });
    // No surrogate left once the pairs are taken out: no lone half.
    assert.ok(!/[\ud800-\udfff]/.test(n.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '')) && Buffer.byteLength(n) <= 63, `${k}: ${JSON.stringify(n)}`);
  }
  assert.equal(stagingBaseName({ schema: 'é'.repeat(40), name: 't' }).split('_')[0], 'é'.repeat(25));
});

test('an ALWAYS identity column makes upsert and staging merge keep the source values', () => {
  const t = { schema: 'public', name: 'ids', columns: [{ name: 'id', type: 'bigint' }, { name: 'v', type: 'text' }], sourceKey: ['id'], destKey: ['id'], citus: 'local' as const, identityAlways: true };
  assert.match(buildUpsert(t, ['id', 'v']).text, /^INSERT INTO "public"\."ids" \("id", "v"\) OVERRIDING SYSTEM VALUE SELECT /);
  assert.match(mergeFromStagingSql(t, ['id', 'v']), /\("id", "v"\) OVERRIDING SYSTEM VALUE SELECT /);
  assert.doesNotMatch(buildUpsert({ ...t, identityAlways: false }, ['id', 'v']).text, /OVERRIDING/);
});

test("the staging table's layout: distributed anew, made anew when the target's layout changed", () => {
  assert.equal(stagingLayout(undefined, orders), 'absent');
  assert.equal(stagingLayout({ method: 'h', colocated: true, column: 'customer_id' }, orders), 'ok');
  assert.equal(stagingLayout({ method: 'h', colocated: false, column: 'customer_id' }, orders), 'stale', 'the target was given another shard count');
  assert.equal(stagingLayout({ method: 'h', colocated: true, column: 'id' }, orders), 'stale', 'the target is distributed by another column');
  assert.equal(stagingLayout({ method: 'n', colocated: false, column: null }, orders), 'stale', 'a Citus-managed local table (citus.use_citus_managed_tables)');
});

const attr = (attname: string, type: string, attnotnull = false, attisdropped = false, replident = 'f'): StagingColumn => ({ attname, type, attnotnull, attisdropped, replident });
const S = 'shardbridge_staging."public__orders"';
const IDENTITY = `ALTER TABLE ${S} REPLICA IDENTITY FULL`;
const DISTRIBUTE =
  `SELECT create_distributed_table('${S}', 'customer_id', colocate_with => '"public"."orders"') ` +
  `WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = '${S}'::regclass)`;

test("staging preparation's transaction opens in Citus's sequential mode, then locks the staging table (only the lock without a colocated one)", () => {
  // Sequential before any multi-shard statement: after a parallel DROP or ALTER, Citus refuses
  // create_distributed_table and DDL on another Citus table in the same transaction.
  assert.deepEqual(openStagingPrepareSql(orders), [`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`, `LOCK TABLE ${S} IN ACCESS EXCLUSIVE MODE`]);
  assert.deepEqual(openStagingPrepareSql({ ...orders, citus: 'reference', distributionColumn: undefined }), [`LOCK TABLE ${S} IN ACCESS EXCLUSIVE MODE`]);
});

test('staging preparation: distributed when new, altered when the target changed, nothing when it matches', () => {
  const t: ApplyTable = { ...orders, columns: orders.columns.map((c) => (c.name === 'amount' ? { ...c, notNull: true } : c)) };
  const same = [attr('customer_id', 'integer', true), attr('id', 'bigint', true), attr('amount', 'numeric(12,2)', true), attr('tags', 'text[]')];
  assert.deepEqual(stagingPrepareSql(t, 'ok', same), [`ALTER TABLE ${S} ALTER COLUMN "amount" DROP NOT NULL`]);
  assert.deepEqual(stagingPrepareSql(orders, 'ok', same.map((c) => ({ ...c, attnotnull: false }))), []);
  const fresh = [...same.slice(0, 2).map((c) => ({ ...c, attnotnull: false })), attr('amount', 'numeric(10,2)'), attr('old', 'text', true)].map((c) => ({ ...c, replident: 'd' }));
  assert.deepEqual(stagingPrepareSql(orders, 'absent', fresh), [
    IDENTITY,
    DISTRIBUTE,
    `ALTER TABLE ${S} DROP COLUMN "amount", ADD COLUMN "amount" numeric(12,2)`,
    `ALTER TABLE ${S} ADD COLUMN IF NOT EXISTS "tags" text[]`,
    `ALTER TABLE ${S} DROP COLUMN IF EXISTS "old"`,
  ]);
});

test('staging preparation: made anew, distributed colocated with the target, when laid out for another layout or past 1,600 column numbers', () => {
  const t: ApplyTable = { ...orders, columns: orders.columns.map((c) => ({ ...c, notNull: c.name !== 'tags' })) };
  const remade = [`DROP TABLE ${S}`, `CREATE TABLE IF NOT EXISTS ${S} (LIKE "public"."orders" INCLUDING DEFAULTS)`, IDENTITY, DISTRIBUTE, `ALTER TABLE ${S} ALTER COLUMN "amount" DROP NOT NULL`];
  assert.deepEqual(stagingPrepareSql(t, 'stale', []), remade);
  // 1,596 dropped columns left by earlier retypes: one more retype would need number 1,601.
  const used = [...Array.from({ length: MAX_TABLE_COLUMNS - 4 }, (_, i) => attr(`........pg.dropped.${i + 1}........`, '-', false, true)), attr('customer_id', 'integer', true), attr('id', 'bigint', true), attr('amount', 'numeric(10,2)'), attr('tags', 'text[]')];
  assert.deepEqual(stagingPrepareSql(t, 'ok', used), remade);
  assert.deepEqual(stagingPrepareSql(t, 'absent', used), remade, 'a plain staging table past the limit: made anew and distributed once');
  const reference: ApplyTable = { ...t, citus: 'reference', distributionColumn: undefined, destKey: ['id'] };
  assert.deepEqual(stagingPrepareSql(reference, 'ok', used), [`DROP TABLE ${S}`, remade[1], `ALTER TABLE ${S} ALTER COLUMN "customer_id" DROP NOT NULL, ALTER COLUMN "amount" DROP NOT NULL`], 'a reference target: a plain one, not distributed');
});

test('staging preparation: a distributed staging table gets REPLICA IDENTITY FULL, so that Citus can move its shards (and its target\'s) by logical replication', () => {
  const same = [attr('customer_id', 'integer'), attr('id', 'bigint'), attr('amount', 'numeric(12,2)'), attr('tags', 'text[]')];
  const none = same.map((c) => ({ ...c, replident: 'd' }));
  assert.deepEqual(stagingPrepareSql(orders, 'ok', same), [], 'FULL already: nothing');
  assert.deepEqual(stagingPrepareSql(orders, 'ok', none), [IDENTITY], 'one made by an older sink: altered, shards included');
  assert.deepEqual(stagingPrepareSql(orders, 'absent', none), [IDENTITY, DISTRIBUTE], 'made here: before it is distributed');
  assert.equal(stagingIdentitySql(orders), `ALTER TABLE ${S} REPLICA IDENTITY FULL`);
  const reference: ApplyTable = { ...orders, citus: 'reference', distributionColumn: undefined };
  assert.deepEqual(stagingPrepareSql(reference, 'ok', none), [], 'a coordinator staging table (its target not hash-distributed) is never moved');
});
