/**
 * The demo's source schema on a real cluster, read as `schema copy` reads it: the foreign keys
 * come with their referenced table, columns and actions, and in the demo's Citus layout
 * (customers and products reference tables, orders and order_items distributed and
 * colocated) Citus would accept every one of them at cut-over, while the layout the demo had
 * before (customers distributed, ON UPDATE CASCADE on the items' key) is flagged. The burst's
 * primary-key change moves the order's items with it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { BURST, DEMO_TABLES, MOVED_ORDER_OFFSET, SEED_SQL, SOURCE_DDL, schemaCopyArgs } from '../../shared/demo/workload.ts';
import { readSchemaModel } from '../../shared/schema/read.ts';
import { planSchemaCopy, resolveDistribution, type DestinationState } from '../../shared/schema/plan.ts';
import type { SchemaModel } from '../../shared/schema/model.ts';
import { startTestSource } from '../helpers/postgres.ts';

let source: PgCluster;
let client: pg.Client;
let model: SchemaModel;

before(async () => {
  source = await startTestSource();
  client = new pg.Client({ connectionString: source.url() });
  await client.connect();
  for (const sql of [...SOURCE_DDL, ...SEED_SQL]) await client.query(sql);
  model = await readModel();
});

/** The demo tables as `schema copy` reads them. */
async function readModel(): Promise<SchemaModel> {
  const relids = (await client.query(`SELECT ('public.' || t)::regclass::oid::int AS oid FROM unnest($1::text[]) t`, [DEMO_TABLES.map((t) => t.name)])).rows.map((r) => r.oid);
  return readSchemaModel(client, relids);
}

after(async () => {
  await client?.end().catch(() => {});
  await source?.destroy();
});

const citusDest = (): DestinationState => ({
  citus: true, schemas: new Set(['public']), types: new Set(), sequences: new Set(), tables: new Map(), deferredTableExists: false, deferred: new Set(),
});

function plan(args: string[]) {
  const pick = (flag: string) => args.flatMap((a, i) => (args[i - 1] === flag ? [a] : []));
  const dist = resolveDistribution(pick('--distribute'), pick('--reference'), model.tables);
  assert.deepEqual(dist.errors, []);
  return planSchemaCopy(model, citusDest(), { distribute: dist.distribute, reference: dist.reference, colocate: args.includes('--colocate'), extendKeys: false });
}

test('foreign keys are read with their referenced table, columns and actions', () => {
  const items = model.tables.find((t) => t.name === 'order_items')!;
  const fk = items.constraints.find((c) => c.name === 'order_items_order_fk')!;
  assert.deepEqual(fk.references, { schema: 'public', table: 'orders', columns: ['id'], onUpdate: 'a', onDelete: 'c' });
  assert.deepEqual(fk.columns, ['order_id']);
  assert.equal(items.constraints.find((c) => c.type === 'p')!.references, undefined);
});

test("the demo's Citus layout: colocation and every foreign key Citus accepts", () => {
  const p = plan(schemaCopyArgs());
  assert.deepEqual(p.problems, [], 'colocation Citus accepts (the distribution columns orders.id and order_items.order_id are both bigint)');
  assert.deepEqual(p.notes.filter((n) => /Citus will refuse/.test(n)), []);
  assert.ok(p.steps.some((s) => s.action === 'keep foreign key aside' && s.object === 'public.orders.orders_customer_fk'));
});

test('a layout Citus would refuse foreign keys in is named in the plan, with the remedy', async () => {
  const args = schemaCopyArgs([
    { name: 'customers', citus: { column: 'id' } },
    { name: 'products', citus: 'reference' },
    { name: 'orders', citus: { column: 'id' } },
    { name: 'order_items', citus: { column: 'order_id' } },
  ]);
  await client.query(`ALTER TABLE public.order_items DROP CONSTRAINT order_items_order_fk,
                        ADD CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES public.orders (id) ON UPDATE CASCADE ON DELETE CASCADE`);
  const saved = model;
  try {
    model = await readModel();
    const refused = plan(args).notes.filter((n) => /Citus will refuse/.test(n));
    assert.equal(refused.length, 2, refused.join('\n'));
    assert.match(refused[0], /^foreign key orders_customer_fk on public\.orders: Citus will refuse it at cut-over: .*must pair the distribution columns \(id with id\); change the layout/);
    assert.match(refused[1], /^foreign key order_items_order_fk on public\.order_items: .*ON UPDATE CASCADE is not supported when the key includes the distribution column order_id/);
  } finally {
    model = saved;
    await client.query(`ALTER TABLE public.order_items DROP CONSTRAINT order_items_order_fk,
                          ADD CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES public.orders (id) ON DELETE CASCADE`);
  }
});

test("the burst's primary-key change moves the order's items with it", async () => {
  const step = BURST.find((s) => s.label.startsWith('primary-key change'))!;
  const before = (await client.query(`SELECT count(*)::int AS n FROM public.order_items WHERE order_id > $1`, [MOVED_ORDER_OFFSET])).rows[0].n;
  await client.query('BEGIN');
  for (const sql of step.statements) await client.query(sql);
  await client.query('COMMIT');
  const moved = (await client.query(`SELECT id FROM public.orders WHERE id > $1`, [MOVED_ORDER_OFFSET])).rows;
  assert.equal(moved.length, 1);
  const items = (await client.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE order_id = $1)::int AS mine FROM public.order_items WHERE order_id > $2`, [moved[0].id, MOVED_ORDER_OFFSET])).rows[0];
  assert.equal(before, 0);
  assert.ok(items.mine >= 2, `the moved order has its items (${items.mine})`);
  assert.equal(items.n, items.mine);
  const orphans = (await client.query(`SELECT count(*)::int AS n FROM public.order_items i WHERE NOT EXISTS (SELECT 1 FROM public.orders o WHERE o.id = i.order_id)`)).rows[0].n;
  assert.equal(orphans, 0);
});
