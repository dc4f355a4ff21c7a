import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  columnSql,
  createSequenceSql,
  createTableSql,
  createTypeSql,
  distributeSql,
  extendKeySql,
  identityDeferred,
  indexSql,
  recordForeignKeySql,
  referenceSql,
  rewriteReferences,
} from '../../shared/schema/generate.ts';
import type { ColumnDef, PartitionDef, SchemaModel, SequenceDef, TableDef, ViewDef } from '../../shared/schema/model.ts';
import { planSchemaCopy, resolveDistribution, type DestinationState } from '../../shared/schema/plan.ts';

const col = (name: string, type: string, over: Partial<ColumnDef> = {}): ColumnDef => ({
  name, type, notNull: false, default: null, identity: '', generated: null, collation: null, ...over,
});

const seq: SequenceDef = {
  schema: 'public', name: 'customers_id_seq', dataType: 'integer', start: '1', increment: '1', min: '1', max: '2147483647', cache: '1', cycle: false,
  ownedBy: { schema: 'public', table: 'customers', column: 'id' },
};

const customers: TableDef = {
  schema: 'public', name: 'customers', printed: 'public.customers', kind: 'r', unlogged: false,
  columns: [col('id', 'integer', { notNull: true, default: "nextval('public.customers_id_seq'::regclass)" }), col('email', 'text', { notNull: true })],
  constraints: [
    { name: 'customers_pkey', type: 'p', definition: 'PRIMARY KEY (id)', columns: ['id'] },
    { name: 'customers_email_key', type: 'u', definition: 'UNIQUE (email)', columns: ['email'] },
  ],
  indexes: [],
};

const orders: TableDef = {
  schema: 'public', name: 'orders', printed: 'public.orders', kind: 'r', unlogged: false,
  columns: [
    col('id', 'bigint', { notNull: true, identity: 'a', identitySequence: { schema: 'public', name: 'orders_id_seq', dataType: 'bigint', start: '1', increment: '1', min: '1', max: '9223372036854775807', cache: '1', cycle: false } }),
    col('customer_id', 'integer', { notNull: true }),
    col('amount', 'numeric(12,2)'),
    col('region', 'text', { notNull: true, default: "'eu'::text" }),
    col('doubled', 'numeric', { generated: '(amount * (2)::numeric)' }),
    col('code', 'character varying(8)', { collation: 'pg_catalog."C"' }),
  ],
  constraints: [
    { name: 'orders_pkey', type: 'p', definition: 'PRIMARY KEY (id)', columns: ['id'] },
    { name: 'orders_amount_check', type: 'c', definition: 'CHECK ((amount >= (0)::numeric))', columns: ['amount'] },
    { name: 'orders_customer_fk', type: 'f', definition: 'FOREIGN KEY (customer_id) REFERENCES public.customers(id) ON DELETE CASCADE', columns: ['customer_id'] },
  ],
  indexes: [
    { name: 'orders_amount_idx', definition: 'CREATE INDEX orders_amount_idx ON public.orders USING btree (customer_id, amount DESC) WHERE (amount > (0)::numeric)', unique: false, columns: ['customer_id', 'amount'] },
    { name: 'orders_code_key', definition: 'CREATE UNIQUE INDEX orders_code_key ON public.orders USING btree (code)', unique: true, columns: ['code'] },
  ],
};

const model: SchemaModel = {
  tables: [customers, orders],
  types: [{ kind: 'enum', schema: 'public', name: 'mood', labels: ['sad', "it's ok"] }],
  sequences: [seq],
};

const emptyDest = (over: Partial<DestinationState> = {}): DestinationState => ({
  citus: false, schemas: new Set(['public']), types: new Set(), sequences: new Set(), tables: new Map(), deferredTableExists: false, deferred: new Set(), ...over,
});

test('types: enums quote labels; domains carry default, NOT NULL and named checks', () => {
  assert.equal(createTypeSql(model.types[0]), `CREATE TYPE "public"."mood" AS ENUM ('sad', 'it''s ok')`);
  assert.equal(
    createTypeSql({ kind: 'domain', schema: 's', name: 'posint', baseType: 'integer', notNull: true, default: '1', checks: [{ name: 'pos', definition: 'CHECK ((VALUE > 0))' }] }),
    'CREATE DOMAIN "s"."posint" AS integer DEFAULT 1 NOT NULL CONSTRAINT "pos" CHECK ((VALUE > 0))',
  );
  assert.throws(() => createTypeSql({ kind: 'other', schema: 'public', name: 'citext', typtype: 'b' }), /not created by schema copy/);
});

test('sequences keep type and options', () => {
  assert.equal(createSequenceSql(seq), 'CREATE SEQUENCE "public"."customers_id_seq" AS integer START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 CACHE 1 NO CYCLE');
});

test('columns: identity with its sequence, generated, collation, default, NOT NULL', () => {
  assert.equal(
    columnSql(orders.columns[0]),
    '"id" bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "public"."orders_id_seq" START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE) NOT NULL',
  );
  assert.equal(columnSql(orders.columns[3]), `"region" text DEFAULT 'eu'::text NOT NULL`);
  assert.equal(columnSql(orders.columns[4]), '"doubled" numeric GENERATED ALWAYS AS ((amount * (2)::numeric)) STORED');
  assert.equal(columnSql(orders.columns[5]), '"code" character varying(8) COLLATE pg_catalog."C"');
});

test('a virtual generated column (PostgreSQL 18) is made VIRTUAL on a destination of 18, STORED before 18 and on Citus, with a note', () => {
  const total = col('total', 'numeric', { generated: '(amount * (2)::numeric)', virtual: true });
  assert.equal(columnSql(total, true), '"total" numeric GENERATED ALWAYS AS ((amount * (2)::numeric)) VIRTUAL');
  assert.equal(columnSql(total), '"total" numeric GENERATED ALWAYS AS ((amount * (2)::numeric)) STORED');
  const t: TableDef = { ...orders, columns: [...orders.columns, total] };
  const m: SchemaModel = { ...model, tables: [customers, t] };
  const sqlOf = (p: ReturnType<typeof planSchemaCopy>) => p.steps.find((x) => x.object === 'public.orders')!.sql[0];
  const on18 = planSchemaCopy(m, emptyDest({ serverVersionNum: 180001 }), { distribute: [], reference: [], colocate: false, extendKeys: false });
  assert.match(sqlOf(on18), /"total" numeric GENERATED ALWAYS AS \(\(amount \* \(2\)::numeric\)\) VIRTUAL/);
  assert.match(sqlOf(on18), /"doubled" numeric GENERATED ALWAYS AS \(\(amount \* \(2\)::numeric\)\) STORED/);
  assert.equal(on18.notes.filter((n) => /virtual/.test(n)).length, 0);
  for (const dest of [emptyDest({ serverVersionNum: 170005 }), emptyDest({ serverVersionNum: 180001, citus: true })]) {
    const p = planSchemaCopy(m, dest, { distribute: [], reference: [], colocate: false, extendKeys: false });
    assert.match(sqlOf(p), /"total" numeric GENERATED ALWAYS AS \(\(amount \* \(2\)::numeric\)\) STORED/);
    assert.deepEqual(p.notes.filter((n) => /virtual/.test(n)), [
      `public.orders.total is a virtual generated column on the source: created STORED on the destination (${dest.citus ? 'Citus documents no VIRTUAL generated columns' : 'there are none before PostgreSQL 18'}), with the same values; it takes disk space there`,
    ]);
  }
});

test('CREATE TABLE has every constraint but the foreign key, under the destination name', () => {
  const sql = createTableSql(orders, { schema: 'app', name: 'orders_v2' });
  assert.match(sql, /^CREATE TABLE "app"\."orders_v2" \(\n {2}"id" bigint GENERATED ALWAYS AS IDENTITY/);
  assert.match(sql, /CONSTRAINT "orders_pkey" PRIMARY KEY \(id\),\n {2}CONSTRAINT "orders_amount_check" CHECK \(\(amount >= \(0\)::numeric\)\)\n\)$/);
  assert.doesNotMatch(sql, /FOREIGN KEY|REFERENCES/);
  assert.match(createTableSql({ ...customers, unlogged: true }, customers), /^CREATE UNLOGGED TABLE/);
});

test('indexes are aimed at the destination table with IF NOT EXISTS', () => {
  assert.equal(
    indexSql(orders.indexes[0], orders, { schema: 'app', name: 'orders_v2' }),
    'CREATE INDEX IF NOT EXISTS orders_amount_idx ON "app"."orders_v2" USING btree (customer_id, amount DESC) WHERE (amount > (0)::numeric)',
  );
  assert.equal(indexSql(orders.indexes[1], orders, orders), 'CREATE UNIQUE INDEX IF NOT EXISTS orders_code_key ON "public"."orders" USING btree (code)');
  assert.throws(() => indexSql({ ...orders.indexes[0], definition: 'CREATE INDEX x ON public.other USING btree (a)' }, orders, orders), /not on public\.orders/);
});

test('--extend-keys: drop and re-add the constraint with the distribution column appended', () => {
  const dest = { schema: 'public', name: 'orders' };
  assert.equal(
    extendKeySql(dest, orders.constraints[0], 'region'),
    'ALTER TABLE "public"."orders" DROP CONSTRAINT "orders_pkey", ADD CONSTRAINT "orders_pkey" PRIMARY KEY ("id", "region")',
  );
  assert.equal(
    extendKeySql(dest, { name: 'u1', type: 'u', definition: 'UNIQUE NULLS NOT DISTINCT (a, b)', columns: ['a', 'b'] }, 'region'),
    'ALTER TABLE "public"."orders" DROP CONSTRAINT "u1", ADD CONSTRAINT "u1" UNIQUE NULLS NOT DISTINCT ("a", "b", "region")',
  );
  assert.throws(() => extendKeySql(dest, orders.constraints[1], 'region'), /not a primary key/);
});

test('foreign keys kept aside: quoted destination name, references rewritten for renamed tables', () => {
  const renames = new Map([['public.customers', '"crm"."clients"']]);
  assert.equal(rewriteReferences(orders.constraints[2].definition, renames), 'FOREIGN KEY (customer_id) REFERENCES "crm"."clients"(id) ON DELETE CASCADE');
  assert.equal(rewriteReferences(orders.constraints[2].definition, new Map()), orders.constraints[2].definition);
  assert.equal(
    recordForeignKeySql({ schema: 'public', name: "o'rders" }, orders.constraints[2], new Map()),
    `INSERT INTO shardbridge.deferred_foreign_keys (table_name, constraint_name, definition) VALUES ('"public"."o''rders"', 'orders_customer_fk', 'FOREIGN KEY (customer_id) REFERENCES public.customers(id) ON DELETE CASCADE') ON CONFLICT (table_name, constraint_name) DO UPDATE SET definition = EXCLUDED.definition`,
  );
});

test('Citus calls: distribution with colocation, reference tables', () => {
  assert.equal(distributeSql({ schema: 'public', name: 'orders' }, 'region'), `SELECT create_distributed_table('"public"."orders"', 'region')`);
  assert.equal(
    distributeSql({ schema: 'public', name: 'items' }, 'region', { schema: 'public', name: 'orders' }),
    `SELECT create_distributed_table('"public"."items"', 'region', colocate_with => '"public"."orders"')`,
  );
  assert.equal(referenceSql({ schema: 'public', name: 'customers' }), `SELECT create_reference_table('"public"."customers"')`);
});

const opts = { distribute: [] as { table: string; column: string }[], reference: [] as string[], colocate: false, extendKeys: false };
const summary = (p: ReturnType<typeof planSchemaCopy>) => p.steps.map((s) => `${s.phase} ${s.action} ${s.object}`);

test('plan on an empty destination: types, sequences, tables (with indexes and OWNED BY), FKs aside', () => {
  const p = planSchemaCopy(model, emptyDest(), opts);
  assert.deepEqual(summary(p), [
    'ddl create enum public.mood',
    'ddl create sequence public.customers_id_seq',
    'ddl create table public.customers',
    'ddl create table public.orders',
    'ddl create table shardbridge.deferred_foreign_keys',
    'ddl keep foreign key aside public.orders.orders_customer_fk',
  ]);
  assert.equal(p.steps[2].sql[1], 'ALTER SEQUENCE "public"."customers_id_seq" OWNED BY "public"."customers"."id"');
  assert.equal(p.steps[3].sql.length, 3);
  // The sink inserts with OVERRIDING SYSTEM VALUE itself: nothing for the operator to do, no note.
  assert.deepEqual(p.notes, []);
  assert.deepEqual(p.problems, []);
});

test('plan when everything exists: nothing to do', () => {
  const dest = emptyDest({
    types: new Set(['public.mood']),
    sequences: new Set(['public.customers_id_seq']),
    tables: new Map([['public.customers', { constraints: [], citus: 'local', distributionColumn: null }], ['public.orders', { constraints: [], citus: 'local', distributionColumn: null }]]),
    deferredTableExists: true,
    deferred: new Set(['"public"."orders"\u0000orders_customer_fk']),
  });
  assert.deepEqual(planSchemaCopy(model, dest, opts).steps, []);
});

test('plan on plain PostgreSQL: distribution, reference, colocation and key extension skipped with notes', () => {
  const p = planSchemaCopy(model, emptyDest(), { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: ['public.customers'], colocate: true, extendKeys: true });
  assert.ok(p.steps.every((s) => s.phase === 'ddl' && !/add region/.test(s.action)));
  assert.deepEqual(p.notes.filter((n) => n.startsWith('plain PostgreSQL')), [
    'plain PostgreSQL (no Citus): --extend-keys skipped, keys stay as on the source',
    'plain PostgreSQL (no Citus): create_distributed_table for public.orders by region skipped',
    'plain PostgreSQL (no Citus): create_reference_table for public.customers skipped',
    'plain PostgreSQL (no Citus): --colocate has nothing to colocate',
  ]);
});

test('plan on Citus: extend keys, reference first, distribute with colocation; already distributed is left alone', () => {
  const items: TableDef = { ...orders, name: 'items', printed: 'public.items', constraints: [orders.constraints[0]], indexes: [] };
  const m: SchemaModel = { ...model, tables: [customers, orders, items] };
  const dist = [{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'region' }];
  const p = planSchemaCopy(m, emptyDest({ citus: true }), { ...opts, distribute: dist, reference: ['public.customers'], colocate: true, extendKeys: true });
  const tail = summary(p).slice(-5);
  assert.deepEqual(tail, [
    'ddl add region to primary key public.orders.orders_pkey',
    'ddl add region to primary key public.items.orders_pkey',
    'distribute create reference table public.customers',
    'distribute distribute by region public.orders',
    'distribute distribute by region public.items',
  ]);
  assert.equal(p.steps.at(-1)!.sql[0], `SELECT create_distributed_table('"public"."items"', 'region', colocate_with => '"public"."orders"')`);
  assert.match(p.problems.join("\n"), /public\.orders: unique index orders_code_key \(code\) lacks the distribution column region, which Citus refuses: create public\.orders on the destination by hand/);

  // Second run: keys extended and tables distributed on the destination.
  const state = (citus: 'distributed' | 'reference', pk: string[]) => ({ constraints: [{ name: 'orders_pkey', type: 'p' as const, definition: '', columns: pk }], citus, distributionColumn: citus === 'distributed' ? 'region' : null });
  const done = emptyDest({
    citus: true, types: new Set(['public.mood']), sequences: new Set(['public.customers_id_seq']), deferredTableExists: true,
    deferred: new Set(['"public"."orders"\u0000orders_customer_fk', '"public"."items"\u0000orders_customer_fk']),
    tables: new Map([['public.customers', state('reference', ['id'])], ['public.orders', state('distributed', ['id', 'region'])], ['public.items', state('distributed', ['id', 'region'])]]),
  });
  assert.deepEqual(planSchemaCopy(m, done, { ...opts, distribute: dist, reference: ['public.customers'], colocate: true, extendKeys: true }).steps, []);
});

test('plan on Citus: a 32-column key cannot take the distribution column (PostgreSQL indexes have 32 columns at most): a problem before any DDL, not a failing ALTER', () => {
  const keyCols = Array.from({ length: 32 }, (_, i) => `k${i + 1}`);
  const wide: TableDef = {
    ...orders, name: 'wide', printed: 'public.wide', indexes: [],
    columns: [...keyCols.map((c) => col(c, 'text', { notNull: true })), col('region', 'text', { notNull: true })],
    constraints: [{ name: 'wide_pkey', type: 'p', definition: `PRIMARY KEY (${keyCols.join(', ')})`, columns: keyCols }],
  };
  const short: TableDef = { ...wide, name: 'short', printed: 'public.short', constraints: [{ ...wide.constraints[0], name: 'short_pkey', columns: keyCols.slice(0, 31) }] };
  const m: SchemaModel = { ...model, tables: [wide, short] };
  const dist = [{ table: 'public.wide', column: 'region' }, { table: 'public.short', column: 'region' }];
  const p = planSchemaCopy(m, emptyDest({ citus: true }), { ...opts, distribute: dist, extendKeys: true });
  assert.deepEqual(p.problems, [
    'public.wide: primary key wide_pkey has 32 columns, the most a PostgreSQL index may have (INDEX_MAX_KEYS 32), so it cannot take the distribution column region, which Citus needs in it: distribute by one of its columns',
  ]);
  assert.ok(!summary(p).includes('ddl add region to primary key public.wide.wide_pkey'));
  // 31 columns take it: 32 in the extended key.
  assert.ok(summary(p).includes('ddl add region to primary key public.short.short_pkey'));
  // Distributed by one of its columns, nothing is extended and nothing is refused.
  const byKey = planSchemaCopy(m, emptyDest({ citus: true }), { ...opts, distribute: [{ table: 'public.wide', column: 'k7' }], extendKeys: true });
  assert.deepEqual(byKey.problems, []);
});

test('plan on Citus: an existing single-shard table is left as is and its foreign keys judged as one; a Citus local table is still made a reference table', () => {
  const fkOrders: TableDef = {
    ...orders,
    constraints: orders.constraints.map((c) => (c.type === 'f' ? { ...c, references: { schema: 'public', table: 'customers', columns: ['id'], onUpdate: 'a' as const, onDelete: 'c' as const } } : c)),
  };
  const m: SchemaModel = { ...model, tables: [customers, fkOrders] };
  const pkey = (t: TableDef) => ({ constraints: [t.constraints[0]], distributionColumn: null });
  const dest = emptyDest({
    citus: true, types: new Set(['public.mood']), sequences: new Set(['public.customers_id_seq']),
    tables: new Map([
      // As destination state reads them: a Citus local table is 'local', a single-shard table keeps its colocation group.
      ['public.customers', { ...pkey(customers), citus: 'local' as const }],
      ['public.orders', { ...pkey(orders), citus: 'single-shard' as const, colocationId: 7 }],
    ]),
  });
  const run = (reference: string[]) => planSchemaCopy(m, dest, { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference, colocate: false });
  const p = run(['public.customers']);
  assert.deepEqual(p.steps.filter((s) => s.phase === 'distribute').map((s) => `${s.action} ${s.object}`), ['create reference table public.customers']);
  assert.ok(p.notes.includes('public.orders is already a single-shard distributed table (no distribution column: all its rows in one shard, on one node): left as is (wanted region)'), p.notes.join('\n'));
  assert.ok(!p.notes.some((n) => /will refuse/.test(n)), 'single-shard to reference is accepted');
  const kept = run([]);
  assert.match(kept.notes.find((n) => /will refuse/.test(n)) ?? '', /foreign key orders_customer_fk on public\.orders: .*referenced table stays local/);
});

test('plan on Citus: --colocate stops before any step when Citus would refuse the colocation', () => {
  const items: TableDef = { ...orders, name: 'items', printed: 'public.items', constraints: [orders.constraints[0]], indexes: [] };
  const m: SchemaModel = { ...model, tables: [customers, orders, items] };
  // Only the colocation problems: the keys' own (they lack the distribution column) are the next test's.
  const plan = (distribute: { table: string; column: string }[], tables = new Map()) => {
    const p = planSchemaCopy(m, emptyDest({ citus: true, tables }), { ...opts, distribute, reference: [], colocate: true });
    return { ...p, problems: p.problems.filter((x) => x.startsWith('--colocate')) };
  };
  assert.deepEqual(plan([{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'region' }]).problems, []);
  assert.deepEqual(plan([{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'customer_id' }]).problems, [
    '--colocate: public.items.customer_id is integer, but public.orders, named first, is distributed by region (text): Citus colocates only distribution columns of one type',
  ]);
  // An existing first table counts with its own distribution column; a reference table cannot be colocated with.
  const existing = (citus: 'distributed' | 'reference', distributionColumn: string | null) => new Map([['public.orders', { constraints: [], citus, distributionColumn }]]);
  assert.deepEqual(plan([{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'customer_id' }], existing('distributed', 'customer_id')).problems, []);
  assert.match(plan([{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'region' }], existing('reference', null)).problems[0], /public\.orders, named first, is already a reference table/);
});

test('plan on Citus: a key or unique index without the distribution column stops before any step, naming it and the way out', () => {
  const m: SchemaModel = { ...model, tables: [customers, orders] };
  const plain = planSchemaCopy(m, emptyDest({ citus: true }), { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: [] });
  assert.deepEqual(plain.problems, [
    'public.orders: primary key orders_pkey (id) lacks the distribution column region, which Citus refuses: add --extend-keys (it becomes (id, region)) or distribute by one of its columns',
    'public.orders: unique index orders_code_key (code) lacks the distribution column region, which Citus refuses: create public.orders on the destination by hand with region in that index (schema copy then distributes it as it is)',
  ]);
  // A table named in neither --distribute nor --reference is said to stay local; the distributed one is not.
  assert.deepEqual(plain.notes.filter((n) => /stays a local table/.test(n)), [
    'public.customers stays a local table on the coordinator (named in neither --distribute nor --reference): its rows all live there; distribute it or make it a reference table now, before data arrives',
  ]);
  // Distributed by a key column: nothing to refuse for the key (the unique index on code still lacks id).
  const byId = planSchemaCopy(m, emptyDest({ citus: true }), { ...opts, distribute: [{ table: 'public.orders', column: 'id' }], reference: [] });
  assert.ok(!byId.problems.some((p) => p.includes('primary key')), byId.problems.join('\n'));
  // Already distributed on the destination: left as is, nothing refused.
  const done = emptyDest({ citus: true, tables: new Map([['public.orders', { constraints: [orders.constraints[0]], citus: 'distributed' as const, distributionColumn: 'region' }]]) });
  assert.deepEqual(planSchemaCopy(m, done, { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: [] }).problems, []);
  // Plain PostgreSQL: nothing is distributed, nothing refused.
  assert.deepEqual(planSchemaCopy(m, emptyDest(), { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: [] }).problems, []);
});

test('plan on Citus: an exclusion constraint that does not compare the distribution column with = stops before any step', () => {
  // Citus refuses it at create_distributed_table ("Distributed relations cannot have UNIQUE,
  // EXCLUDE, or PRIMARY KEY constraints that do not include the partition column (with an
  // equality operator if EXCLUDE)", multi_create_table_constraints.out), after the DDL committed.
  const bookings: TableDef = {
    ...orders, name: 'bookings', printed: 'public.bookings', indexes: [],
    columns: [...orders.columns, col('period', 'tstzrange')],
    constraints: [
      { name: 'bookings_pkey', type: 'p', definition: 'PRIMARY KEY (id, region)', columns: ['id', 'region'] },
      { name: 'bookings_region_id', type: 'x', definition: 'EXCLUDE USING btree (region WITH =, id WITH =)', columns: ['region', 'id'], equalityColumns: ['region', 'id'] },
      { name: 'bookings_overlap', type: 'x', definition: 'EXCLUDE USING gist (period WITH &&, customer_id WITH =)', columns: ['period', 'customer_id'], equalityColumns: ['customer_id'] },
    ],
  };
  const m: SchemaModel = { ...model, tables: [customers, bookings] };
  const plan = (column: string, dest = emptyDest({ citus: true })) => planSchemaCopy(m, dest, { ...opts, distribute: [{ table: 'public.bookings', column }], reference: [], extendKeys: true });
  assert.deepEqual(plan('region').problems, [
    'public.bookings: exclusion constraint bookings_overlap (EXCLUDE USING gist (period WITH &&, customer_id WITH =)) does not compare the distribution column region with =, ' +
      'which Citus refuses: create public.bookings on the destination by hand with region WITH = in that constraint (schema copy then distributes it as it is), or distribute by a column it compares with =',
  ]);
  assert.ok(!plan('region').steps.some((s) => /exclusion|bookings_overlap/.test(s.action + s.object)), 'not extendable: --extend-keys leaves it alone');
  // A column in the constraint but compared with && counts as absent, as with Citus.
  const refused = (column: string) => plan(column).problems.map((p) => /exclusion constraint (\w+)/.exec(p)?.[1] ?? p);
  assert.deepEqual(refused('period'), ['bookings_region_id', 'bookings_overlap']);
  assert.deepEqual(refused('id'), ['bookings_overlap']);
  // The table made by hand as the remedy says: read from the destination, nothing refused.
  const fixed = emptyDest({ citus: true, tables: new Map([['public.bookings', { constraints: [bookings.constraints[0], { ...bookings.constraints[2], equalityColumns: ['customer_id', 'region'] }], citus: 'local' as const, distributionColumn: null }]]) });
  assert.deepEqual(plan('region', fixed).problems, []);
  // Plain PostgreSQL: nothing is distributed, nothing refused.
  assert.deepEqual(planSchemaCopy(m, emptyDest(), { ...opts, distribute: [{ table: 'public.bookings', column: 'region' }], reference: [] }).problems, []);
});

test('plan on Citus: tables created in a distributed schema (schema-based sharding) become single-shard tables, not distributed by schema copy', () => {
  const items: TableDef = { ...orders, name: 'items', printed: 'public.items', constraints: [orders.constraints[0]], indexes: [] };
  const withRefs = (t: TableDef, to: string): TableDef => ({
    ...t, constraints: [...t.constraints.filter((c) => c.type !== 'f'), { name: `${t.name}_fk`, type: 'f', definition: '', columns: ['customer_id'], references: { schema: 'public', table: to, columns: ['id'], onUpdate: 'a', onDelete: 'a' } }],
  });
  const m: SchemaModel = { ...model, tables: [customers, withRefs(orders, 'customers'), withRefs(items, 'orders')] };
  const base = { citus: true, types: new Set(['public.mood']), sequences: new Set(['public.customers_id_seq']) };
  const distribute = [{ table: 'public.orders', column: 'region' }, { table: 'public.items', column: 'region' }];
  const summaryOf = (p: ReturnType<typeof planSchemaCopy>) => p.steps.filter((s) => s.phase === 'distribute').map((s) => `${s.action} ${s.object}`);

  // public is a distributed schema (colocation group 9): every table made there is single-shard.
  const tenant = planSchemaCopy(m, emptyDest({ ...base, distributedSchemas: new Map([['public', 9]]) }), { ...opts, distribute, reference: ['public.customers'], colocate: false, extendKeys: true });
  assert.deepEqual(summaryOf(tenant), []);
  assert.ok(!tenant.steps.some((s) => /add region/.test(s.action)), 'no key extended for a table that will not be distributed');
  assert.ok(tenant.notes.includes('public.orders is created in distributed schema public: Citus makes it a single-shard table; create_distributed_table by region skipped'), tenant.notes.join('\n'));
  assert.ok(tenant.notes.includes('public.customers is created in distributed schema public: Citus makes it a single-shard table; create_reference_table skipped'));
  assert.ok(!tenant.notes.some((n) => /will refuse/.test(n)), 'keys within one distributed schema are accepted');
  assert.deepEqual(tenant.problems, []);
  assert.match(planSchemaCopy(m, emptyDest({ ...base, distributedSchemas: new Map([['public', 9]]) }), { ...opts, distribute, reference: [], colocate: true }).problems[0], /public\.orders, named first, is a single-shard table/);

  // Schema-based sharding on and the schema created by the copy: the same; an existing ordinary schema is not affected.
  const created = planSchemaCopy(m, emptyDest({ ...base, schemas: new Set(), schemaBasedSharding: true }), { ...opts, distribute, reference: ['public.customers'], colocate: false });
  assert.deepEqual(summaryOf(created), []);
  const existing = planSchemaCopy(m, emptyDest({ ...base, schemaBasedSharding: true }), { ...opts, distribute, reference: ['public.customers'], colocate: false });
  assert.deepEqual(summaryOf(existing), ['create reference table public.customers', 'distribute by region public.orders', 'distribute by region public.items']);

  // A distributed table cannot reference a table of a distributed schema.
  const mixed = planSchemaCopy({ ...m, tables: [customers, withRefs(orders, 'customers')] }, emptyDest({ ...base, tables: new Map([['public.orders', { constraints: [orders.constraints[0]], citus: 'distributed' as const, distributionColumn: 'customer_id', colocationId: 3 }]]), distributedSchemas: new Map([['public', 9]]) }), { ...opts, distribute: [], reference: [], colocate: false });
  assert.match(mixed.notes.find((n) => /will refuse/.test(n)) ?? '', /orders_fk on public\.orders: .*single-shard table is colocated only with single-shard tables/);
});

test('plan problems: column renames and missing non-enum types stop the copy', () => {
  const p = planSchemaCopy(
    { ...model, tables: [customers, orders], types: [{ kind: 'other', schema: 'public', name: 'citext', typtype: 'b' }] },
    emptyDest(),
    { ...opts, mapping: { 'public.customers': { columns: { email: 'mail' } } } },
  );
  assert.equal(p.problems.length, 2);
  assert.match(p.problems[0], /renames columns \(email → mail\)/);
  assert.match(p.problems[1], /type public\.citext .*CREATE EXTENSION/);
});

test('a partitioned table is created with its partitions (sub-partitions under theirs), then its indexes without ONLY, under a renamed parent too', () => {
  const events: TableDef = {
    schema: 'public', name: 'events', printed: 'public.events', kind: 'p', unlogged: false, partitionKey: 'RANGE (at)',
    columns: [col('id', 'bigint', { notNull: true }), col('at', 'timestamp with time zone', { notNull: true })],
    constraints: [{ name: 'events_pkey', type: 'p', definition: 'PRIMARY KEY (id, at)', columns: ['id', 'at'] }],
    indexes: [{ name: 'events_at_idx', definition: 'CREATE INDEX events_at_idx ON ONLY public.events USING btree (at)', unique: false, columns: ['at'] }],
    partitions: [
      { schema: 'public', name: 'events_2025', parent: { schema: 'public', name: 'events' }, bound: "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00')", partitionKey: 'LIST (id)', unlogged: false },
      { schema: 'public', name: 'events_other', parent: { schema: 'public', name: 'events' }, bound: 'DEFAULT', partitionKey: null, unlogged: false },
      { schema: 'public', name: 'events_2025_1', parent: { schema: 'public', name: 'events_2025' }, bound: 'FOR VALUES IN (1)', partitionKey: null, unlogged: false },
    ],
  };
  const p = planSchemaCopy({ tables: [events], types: [], sequences: [] }, emptyDest(), { ...opts, mapping: { 'public.events': { table: 'events_v2' } } });
  assert.deepEqual(p.problems, []);
  assert.deepEqual(summary(p), ['ddl create partitioned table (3 partitions) public.events_v2']);
  assert.deepEqual(p.steps[0].sql.slice(1), [
    `CREATE TABLE "public"."events_2025" PARTITION OF "public"."events_v2" FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00') PARTITION BY LIST (id)`,
    'CREATE TABLE "public"."events_other" PARTITION OF "public"."events_v2" DEFAULT',
    'CREATE TABLE "public"."events_2025_1" PARTITION OF "public"."events_2025" FOR VALUES IN (1)',
    'CREATE INDEX IF NOT EXISTS events_at_idx ON "public"."events_v2" USING btree (at)',
  ]);
  assert.match(p.steps[0].sql[0], /\n\) PARTITION BY RANGE \(at\)$/);
});

test('views over the selected tables: created last when all they read is there, else named in a note', () => {
  const view = (name: string, reads: string[], over: Partial<ViewDef> = {}): ViewDef => ({
    schema: 'reports', name, kind: 'v', definition: 'SELECT 1', options: [], reads: reads.map((r) => ({ schema: r.split('.')[0], name: r.split('.')[1] })), ...over,
  });
  const views = [
    view('totals', ['public.orders', 'public.customers'], { options: ['security_barrier=true', 'check_option=local'] }),
    view('on_totals', ['public.orders', 'reports.totals']),
    view('with_audit', ['public.orders', 'public.audit']),
    view('there', ['public.orders']),
    view('mat', ['public.orders'], { kind: 'm' }),
  ];
  const p = planSchemaCopy({ ...model, views }, emptyDest({ relations: new Set(['reports.there']) }), opts);
  assert.deepEqual(summary(p).filter((x) => /view|schema/.test(x)), ['ddl create schema reports', 'views create view reports.totals', 'views create view reports.on_totals']);
  assert.equal(p.steps.at(-2)!.sql[0], 'CREATE VIEW "reports"."totals" WITH (security_barrier=true) AS\nSELECT 1\nWITH LOCAL CHECK OPTION');
  assert.match(p.notes.join('\n'), /view reports\.with_audit also reads public\.audit, not migrated and not on the destination: not created; create it .*pg_dump --schema-only -t 'reports\.with_audit'/);
  assert.match(p.notes.join('\n'), /materialized view reports\.mat .*REFRESH it/);
  const renamed = planSchemaCopy({ ...model, views: [views[3]] }, emptyDest(), { ...opts, mapping: { 'public.orders': { table: 'orders_v2' } } });
  assert.match(renamed.notes.join('\n'), /view reports\.there reads public\.orders, which the sink mapping renames: not created/);
});

test('on Citus a view reading a table left local is noted: Citus creates it on the coordinator only', () => {
  const view = (name: string, reads: string[]): ViewDef => ({
    schema: 'public', name, kind: 'v', definition: 'SELECT 1', options: [], reads: reads.map((r) => ({ schema: r.split('.')[0], name: r.split('.')[1] })),
  });
  const views = [view('both', ['public.orders', 'public.customers']), view('only_orders', ['public.orders'])];
  const p = planSchemaCopy({ ...model, views }, emptyDest({ citus: true }), { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: [] });
  assert.deepEqual(p.notes.filter((n) => /^view /.test(n)), [
    'view public.both reads public.customers, which stays a local table: Citus creates the view on the coordinator only (a query sent to a worker does not find it); distribute or reference that table to have it on every node',
  ]);
  const referenced = planSchemaCopy({ ...model, views }, emptyDest({ citus: true }), { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: ['public.customers'] });
  assert.deepEqual(referenced.notes.filter((n) => /^view /.test(n)), []);
  const plain = planSchemaCopy({ ...model, views }, emptyDest(), opts);
  assert.deepEqual(plain.notes.filter((n) => /^view /.test(n)), []);
});

test('on Citus a view reading a Citus local table (in its metadata) is not noted: Citus creates it on every node', () => {
  const views: ViewDef[] = [{ schema: 'public', name: 'both', kind: 'v', definition: 'SELECT 1', options: [], reads: [{ schema: 'public', name: 'orders' }, { schema: 'public', name: 'customers' }] }];
  const dest = (citusLocal: boolean) =>
    emptyDest({ citus: true, tables: new Map([['public.customers', { constraints: [], citus: 'local' as const, distributionColumn: null, ...(citusLocal ? { citusLocal } : {}) }]]) });
  const distribute = { ...opts, distribute: [{ table: 'public.orders', column: 'region' }], reference: [] };
  assert.deepEqual(planSchemaCopy({ ...model, views }, dest(true), distribute).notes.filter((n) => /^view /.test(n)), []);
  assert.deepEqual(planSchemaCopy({ ...model, views }, dest(false), distribute).notes.filter((n) => /^view /.test(n)), [
    'view public.both reads public.customers, which stays a local table: Citus creates the view on the coordinator only (a query sent to a worker does not find it); distribute or reference that table to have it on every node',
  ]);
});

test('resolveDistribution checks table and column names', () => {
  const r = resolveDistribution(['orders=region', 'public.customers=email', 'bad', 'orders=nope', 'x.orders=id'], ['customers', 'nosuch'], [customers, orders]);
  assert.deepEqual(r.distribute, [{ table: 'public.orders', column: 'region' }, { table: 'public.customers', column: 'email' }]);
  assert.deepEqual(r.reference, []);
  assert.deepEqual(r.errors, [
    '--distribute bad: expected TABLE=COLUMN',
    '--distribute orders=nope: public.orders has no column nope',
    '--distribute x.orders=id: x.orders is not among the selected source tables',
    '--reference customers: also given to --distribute',
    '--reference nosuch: nosuch is not among the selected source tables',
  ]);
  const twice = resolveDistribution(['orders=id'], [], [orders, { ...orders, schema: 'other' }]);
  assert.match(twice.errors[0], /ambiguous \(public\.orders, other\.orders\)/);
});

test('resolveDistribution: a table or column named in the wrong case is refused, naming the one meant', () => {
  const r = resolveDistribution(['public.Orders=region', 'orders=Region', 'ORDERS=id'], ['Customers'], [customers, orders]);
  assert.deepEqual(r.errors, [
    '--distribute public.Orders=region: public.Orders is not among the selected source tables (names are case-sensitive: did you mean public.orders?)',
    '--distribute orders=Region: public.orders has no column Region (names are case-sensitive: did you mean region?)',
    '--distribute ORDERS=id: ORDERS is not among the selected source tables (names are case-sensitive: did you mean public.orders?)',
    '--reference Customers: Customers is not among the selected source tables (names are case-sensitive: did you mean public.customers?)',
  ]);
});

test('partitions on Citus: what Citus refuses of a partitioned table stops the copy before anything runs; partitions in their own schema get it created', () => {
  const part = (name: string, parent: string, over: Partial<PartitionDef> = {}): PartitionDef => ({
    schema: 'public', name, parent: { schema: 'public', name: parent }, bound: 'DEFAULT', partitionKey: null, unlogged: false, ...over,
  });
  const events = (partitions: PartitionDef[]): TableDef => ({
    schema: 'public', name: 'events', printed: 'public.events', kind: 'p', unlogged: false, partitionKey: 'RANGE (at)',
    columns: [col('id', 'bigint', { notNull: true }), col('at', 'date', { notNull: true })],
    constraints: [{ name: 'events_pkey', type: 'p', definition: 'PRIMARY KEY (id, at)', columns: ['id', 'at'] }],
    indexes: [], partitions,
  });
  const one = events([part('events_2025', 'events', { bound: "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')" })]);
  const two = events([part('events_2025', 'events', { partitionKey: 'LIST (id)' }), part('events_2025_1', 'events_2025', { bound: 'FOR VALUES IN (1)' })]);
  const m = (t: TableDef) => ({ tables: [t], types: [], sequences: [] });
  const citus = emptyDest({ citus: true });

  // One level, hash-distributed: what Citus supports.
  const ok = planSchemaCopy(m(one), citus, { ...opts, distribute: [{ table: 'public.events', column: 'id' }] });
  assert.deepEqual(ok.problems, []);
  assert.deepEqual(summary(ok), ['ddl create partitioned table (1 partitions) public.events', 'distribute distribute by id public.events']);

  const ref = planSchemaCopy(m(one), citus, { ...opts, reference: ['public.events'] });
  assert.match(ref.problems.join('\n'), /public\.events is partitioned, and Citus makes no partitioned reference table .*--distribute public\.events=<column>/);
  const multi = planSchemaCopy(m(two), citus, { ...opts, distribute: [{ table: 'public.events', column: 'id' }] });
  assert.match(multi.problems.join('\n'), /public\.events: its partition public\.events_2025 is partitioned in turn, and Citus does not distribute multi-level partitioned tables/);
  const tenant = planSchemaCopy(m(two), emptyDest({ citus: true, distributedSchemas: new Map([['public', 4]]) }), opts);
  assert.match(tenant.problems.join('\n'), /multi-level .*create it outside distributed schema public/);
  const apart = events([part('events_2025', 'events', { schema: 'archive' })]);
  assert.match(
    planSchemaCopy(m(apart), emptyDest({ citus: true, distributedSchemas: new Map([['public', 4]]) }), opts).problems.join('\n'),
    /partition archive\.events_2025 is in another schema than public.*different schemas/,
  );

  // Plain PostgreSQL: none of these is refused (multi-level stays as it is); a partition's own schema is created.
  assert.deepEqual(planSchemaCopy(m(two), emptyDest(), { ...opts, reference: ['public.events'] }).problems, []);
  const plain = planSchemaCopy(m(apart), emptyDest(), opts);
  assert.deepEqual(summary(plain), ['ddl create schema archive', 'ddl create partitioned table (1 partitions) public.events']);

  // A partition named to --distribute / --reference: its table is named instead.
  const r = resolveDistribution(['events_2025=id'], ['public.events_2025_1'], [two]);
  assert.deepEqual(r.errors, [
    '--distribute events_2025=id: events_2025 is a partition of public.events: name public.events (its partitions go with it; Citus distributes no partition on its own)',
    '--reference public.events_2025_1: public.events_2025_1 is a partition of public.events: name public.events (its partitions go with it; Citus distributes no partition on its own)',
  ]);
});

test('a column of oid, or of a domain over it (lo), is noted: the migration carries the numbers, not the large objects', () => {
  const docs: TableDef = { ...customers, name: 'docs', printed: 'public.docs', columns: [col('id', 'integer', { notNull: true }), col('scan', 'oid'), col('body', 'public.lo'), col('ref', 'bigint')] };
  const withLo: SchemaModel = { ...model, tables: [docs], types: [{ kind: 'domain', schema: 'public', name: 'lo', baseType: 'oid', notNull: false, default: null, checks: [] }] };
  const notes = planSchemaCopy(withLo, emptyDest(), opts).notes.filter((n) => /large-object/.test(n));
  assert.equal(notes.length, 2, notes.join('\n'));
  assert.match(notes[0], /^public\.docs\.scan \(oid\) holds large-object references: the migration carries the numbers, not the objects; copy the large objects at cut-over/);
  assert.match(notes[1], /^public\.docs\.body \(public\.lo\)/);
  assert.deepEqual(planSchemaCopy(model, emptyDest(), opts).notes.filter((n) => /large-object/.test(n)), []);
});

test('identity ALWAYS outside the key is created BY DEFAULT (the sink sets it), with a note; in the key it stays ALWAYS', () => {
  const t: TableDef = { ...orders, columns: [...orders.columns, col('serial_no', 'bigint', { notNull: true, identity: 'a' })] };
  assert.deepEqual(identityDeferred(t), ['serial_no']);
  const sql = createTableSql(t, { schema: 'public', name: 'orders' });
  assert.match(sql, /"id" bigint GENERATED ALWAYS AS IDENTITY/);
  assert.match(sql, /"serial_no" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL/);
  const p = planSchemaCopy({ ...model, tables: model.tables.map((x) => (x.name === 'orders' ? t : x)) }, emptyDest(), opts);
  assert.ok(p.notes.some((n) => n.startsWith('public.orders.serial_no is GENERATED ALWAYS AS IDENTITY on the source: created GENERATED BY DEFAULT')), p.notes.join('\n'));
  assert.deepEqual(identityDeferred(orders), []);
});
