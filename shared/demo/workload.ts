/**
 * The demo's data, as pure SQL: a small shop schema (customers, products, orders with a few
 * large out-of-line `notes`, order_items), deterministic seed rows, the burst of changes applied
 * while the connectors run, and the Citus layout. No I/O here; shared/demo/run-demo.ts runs it.
 *
 * Every value is derived from generate_series, so two runs produce the same rows (except
 * nothing: no now(), no random()), which keeps the demo's numbers stable from run to run.
 */

export const DEMO_DATABASE = 'shop';
export const DEMO_SCHEMA = 'public';

export interface DemoTable {
  name: string;
  /** Distribution on Citus: a column (co-located with `colocateWith`), or a reference table. */
  citus: { column: string; colocateWith?: string } | 'reference';
}

/** In dependency order (a table after the tables it references). */
export const DEMO_TABLES: readonly DemoTable[] = [
  // A reference table, so that orders can keep their foreign key to it: Citus accepts a key
  // between distributed tables only on their distribution columns (schema/citus-foreign-keys.ts).
  { name: 'customers', citus: 'reference' },
  { name: 'products', citus: 'reference' },
  { name: 'orders', citus: { column: 'id' } },
  { name: 'order_items', citus: { column: 'order_id', colocateWith: 'orders' } },
];

/** Table definitions without foreign keys: what the destination gets when `schema copy` is not available. */
export const TABLE_DDL: readonly string[] = [
  `CREATE TABLE public.customers (
     id         bigserial PRIMARY KEY,
     name       text NOT NULL,
     email      text NOT NULL,
     tier       smallint NOT NULL DEFAULT 1,
     birthday   date,
     avatar     bytea,
     created_at timestamptz NOT NULL
   )`,
  `CREATE TABLE public.products (
     id        serial PRIMARY KEY,
     sku       text NOT NULL UNIQUE,
     name      text NOT NULL,
     price     numeric(12,2) NOT NULL,
     weight_kg real,
     active    boolean NOT NULL DEFAULT true,
     tags      text[] NOT NULL DEFAULT '{}',
     attrs     jsonb NOT NULL DEFAULT '{}'
   )`,
  `CREATE TABLE public.orders (
     id          bigserial PRIMARY KEY,
     customer_id bigint NOT NULL,
     status      text NOT NULL,
     total       numeric(12,2) NOT NULL DEFAULT 0,
     placed_at   timestamptz NOT NULL,
     ship_by     interval,
     notes       text
   )`,
  // Out of line and uncompressed: a 100 kB value is TOASTed, so an update that does not touch
  // it reaches the replication stream as "unchanged TOAST" and the sink has to keep its value.
  `ALTER TABLE public.orders ALTER COLUMN notes SET STORAGE EXTERNAL`,
  `CREATE INDEX orders_customer_id_idx ON public.orders (customer_id)`,
  `CREATE TABLE public.order_items (
     order_id   bigint NOT NULL,
     line       int NOT NULL,
     product_id int NOT NULL,
     qty        int NOT NULL,
     price      numeric(12,2) NOT NULL,
     discount   numeric,
     PRIMARY KEY (order_id, line)
   )`,
];

/**
 * Foreign keys of the source, all of which Citus accepts in the demo's layout at cut-over. No
 * ON UPDATE CASCADE: Citus refuses it on a key that includes the distribution column, so the
 * burst moves an order's items itself.
 */
export const FOREIGN_KEY_DDL: readonly string[] = [
  `ALTER TABLE public.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES public.customers (id)`,
  `ALTER TABLE public.order_items ADD CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES public.orders (id) ON DELETE CASCADE`,
  `ALTER TABLE public.order_items ADD CONSTRAINT order_items_product_fk FOREIGN KEY (product_id) REFERENCES public.products (id)`,
];

export const SOURCE_DDL: readonly string[] = [...TABLE_DDL, ...FOREIGN_KEY_DDL];

/** Seed sizes: a few thousand rows in all. */
export const SEED = { customers: 1000, products: 200, orders: 2000, largeNotesEvery: 400 } as const;

/** `bytes` of hex text that does not repeat: md5 of a counter, chained. */
export function largeTextSql(seedExpr: string, bytes = 100_000): string {
  const blocks = Math.ceil(bytes / 32);
  return `(SELECT left(string_agg(md5(${seedExpr} || ':' || i), '' ORDER BY i), ${bytes}) FROM generate_series(1, ${blocks}) i)`;
}

const NAMES = `ARRAY['Ana','Zoë','Łukasz','O''Brien','Renée','Jürgen','Mei 美','Ola','Søren','Nadia']`;
const STATUSES = `ARRAY['new','paid','packed','shipped','cancelled']`;

/** The seed, in order; each statement is one transaction. */
export const SEED_SQL: readonly string[] = [
  `INSERT INTO public.customers (name, email, tier, birthday, avatar, created_at)
   SELECT (${NAMES})[1 + g % 10] || ' ' || g,
          'customer' || g || '@example.com',
          1 + g % 3,
          CASE WHEN g % 7 = 0 THEN NULL ELSE date '1950-01-01' + (g * 37) % 20000 END,
          CASE WHEN g % 5 = 0 THEN decode(md5(g::text), 'hex') END,
          timestamptz '2023-01-01 00:00:00+00' + g * interval '17 minutes 3.25 seconds'
     FROM generate_series(1, ${SEED.customers}) g`,
  `INSERT INTO public.products (sku, name, price, weight_kg, active, tags, attrs)
   SELECT 'SKU-' || lpad(g::text, 5, '0'),
          'Product ' || g,
          round((g * 7.31) % 500 + 0.99, 2),
          CASE WHEN g % 5 = 0 THEN NULL ELSE (g % 40) * 0.25 END,
          g % 10 <> 0,
          ARRAY['tag' || g % 5, 'color:' || (ARRAY['red','green','blue'])[1 + g % 3]] || CASE WHEN g % 6 = 0 THEN ARRAY['with space', 'quo"te', NULL] ELSE '{}'::text[] END,
          jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + g % 3], 'dims', jsonb_build_array(g % 10, g % 7, 1.5),
                             'fragile', g % 4 = 0, 'origin', CASE WHEN g % 9 = 0 THEN NULL ELSE 'EU' END)
     FROM generate_series(1, ${SEED.products}) g`,
  `INSERT INTO public.orders (customer_id, status, total, placed_at, ship_by, notes)
   SELECT 1 + (g * 7) % ${SEED.customers},
          (${STATUSES})[1 + g % 5],
          0,
          timestamptz '2024-01-01 08:00:00+00' + g * interval '2 hours 11 minutes 0.125 seconds',
          CASE WHEN g % 3 = 0 THEN make_interval(days => g % 5, hours => g % 24) END,
          CASE WHEN g % ${SEED.largeNotesEvery} = 0 THEN ${largeTextSql("'seed' || g")}
               WHEN g % 3 = 0 THEN 'leave at the door, ring twice' END
     FROM generate_series(1, ${SEED.orders}) g`,
  `INSERT INTO public.order_items (order_id, line, product_id, qty, price, discount)
   SELECT o.id, l, p.id, 1 + (o.id + l) % 5, p.price, CASE WHEN l = 2 THEN 0.1 END
     FROM public.orders o
     CROSS JOIN LATERAL generate_series(1, 1 + (o.id % 4)::int) l
     JOIN public.products p ON p.id = 1 + (o.id * 13 + l * 7) % ${SEED.products}`,
  `UPDATE public.orders o SET total = s.total
     FROM (SELECT order_id, sum(qty * price * (1 - coalesce(discount, 0)))::numeric(12,2) AS total FROM public.order_items GROUP BY order_id) s
    WHERE s.order_id = o.id`,
];

export interface BurstStep {
  /** What the step does, for the progress lines. */
  label: string;
  /** Run in one transaction. */
  statements: string[];
}

/** The key an order moves to in the burst's primary-key change. */
export const MOVED_ORDER_OFFSET = 1_000_000;

/**
 * Changes made while the connectors stream, one transaction each: inserts (one with a large
 * TOASTed value), updates (several leaving the TOASTed `notes` unchanged, one replacing it),
 * deletes (some cascading), a primary-key change (the order's items moved with it), and a
 * transaction that inserts and deletes the same row.
 */
export const BURST: readonly BurstStep[] = [
  {
    label: 'insert 100 customers',
    statements: [`INSERT INTO public.customers (name, email, tier, created_at)
          SELECT 'New customer ' || g, 'new' || g || '@example.org', 1, timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second'
            FROM generate_series(1, 100) g`],
  },
  {
    label: 'insert 250 orders with their items, one with a 100 kB note',
    statements: [`WITH o AS (
            INSERT INTO public.orders (customer_id, status, total, placed_at, notes)
            SELECT 1 + (g * 11) % ${SEED.customers + 100}, 'new', 10 + g, timestamptz '2024-06-01 12:00:00+00' + g * interval '1 minute',
                   CASE WHEN g = 125 THEN ${largeTextSql("'burst' || g")} END
              FROM generate_series(1, 250) g
            RETURNING id)
          INSERT INTO public.order_items (order_id, line, product_id, qty, price)
          SELECT o.id, l, 1 + (o.id * 3 + l) % ${SEED.products}, l, 9.99
            FROM o CROSS JOIN LATERAL generate_series(1, 1 + (o.id % 3)::int) l`],
  },
  {
    label: 'update order statuses, the TOASTed notes left unchanged',
    statements: [`UPDATE public.orders SET status = 'shipped', total = total + 0.01
           WHERE (id % 7 = 0 AND status IN ('paid', 'packed')) OR length(notes) > 10000`],
  },
  {
    label: 'replace one large note',
    statements: [`UPDATE public.orders SET notes = ${largeTextSql("'replaced' || id")}
           WHERE id = (SELECT min(id) FROM public.orders WHERE length(notes) > 10000)`],
  },
  {
    label: 'reprice products (numeric, text[], jsonb)',
    statements: [`UPDATE public.products SET price = round(price * 1.05, 2), tags = tags || ARRAY['sale'], attrs = attrs || '{"discount": 0.05, "until": "2024-07-01"}'
           WHERE id % 4 = 0`],
  },
  {
    label: 'update customers (text, smallint, date)',
    statements: [`UPDATE public.customers SET email = upper(email), tier = tier + 1, birthday = NULL WHERE id % 10 = 0`],
  },
  {
    label: 'delete the last line of some orders',
    statements: [`DELETE FROM public.order_items
           WHERE (order_id, line) IN (SELECT order_id, max(line) FROM public.order_items WHERE order_id % 25 = 0 GROUP BY order_id HAVING max(line) > 1)`],
  },
  {
    label: 'delete 20 cancelled orders (their items cascade)',
    statements: [`DELETE FROM public.orders WHERE id IN (SELECT id FROM public.orders WHERE status = 'cancelled' ORDER BY id LIMIT 20)`],
  },
  {
    label: `primary-key change: an order moves to id + ${MOVED_ORDER_OFFSET}, its items with it`,
    // One statement: the foreign key is checked at its end, when order and items have both moved.
    statements: [`WITH moved AS (
             UPDATE public.orders SET id = id + ${MOVED_ORDER_OFFSET}
              WHERE id = (SELECT min(o.id) FROM public.orders o WHERE o.status = 'paid' AND o.id > 1000
                             AND EXISTS (SELECT 1 FROM public.order_items i WHERE i.order_id = o.id AND i.line = 2))
             RETURNING id - ${MOVED_ORDER_OFFSET} AS old_id)
           UPDATE public.order_items SET order_id = order_id + ${MOVED_ORDER_OFFSET} WHERE order_id IN (SELECT old_id FROM moved)`],
  },
  {
    label: 'insert and delete a customer in one transaction',
    statements: [
      `INSERT INTO public.customers (name, email, created_at) VALUES ('Ephemeral', 'gone@example.org', timestamptz '2024-06-02 00:00:00+00')`,
      `DELETE FROM public.customers WHERE email = 'gone@example.org'`,
    ],
  },
];

/** Citus layout as `schema copy` options. */
export function schemaCopyArgs(tables: readonly DemoTable[] = DEMO_TABLES): string[] {
  const args: string[] = [];
  for (const t of tables) {
    if (t.citus === 'reference') args.push('--reference', `${DEMO_SCHEMA}.${t.name}`);
    else args.push('--distribute', `${DEMO_SCHEMA}.${t.name}=${t.citus.column}`);
  }
  // Every distributed table has a bigint distribution column: co-locate them all.
  if (tables.some((t) => t.citus !== 'reference')) args.push('--colocate');
  return args;
}

/** Citus layout as SQL, for the fallback path (tables created from TABLE_DDL). */
export function citusLayoutSql(tables: readonly DemoTable[] = DEMO_TABLES): string[] {
  const lit = (name: string) => `'${DEMO_SCHEMA}.${name}'`;
  return tables.map((t) =>
    t.citus === 'reference'
      ? `SELECT create_reference_table(${lit(t.name)})`
      : `SELECT create_distributed_table(${lit(t.name)}, '${t.citus.column}'${t.citus.colocateWith ? `, colocate_with => ${lit(t.citus.colocateWith)}` : ''})`,
  );
}

/** Owned sequences of the demo tables with their last values (NULL when never used). */
export const SEQUENCES_SQL = `
SELECT s.schemaname || '.' || s.sequencename AS sequence, s.last_value::text AS last_value
  FROM pg_sequences s
 WHERE s.schemaname = '${DEMO_SCHEMA}'
 ORDER BY 1`;

/** Move a destination sequence up to at least `$2` (never down): the fallback when the sink did not. */
export const RAISE_SEQUENCE_SQL = `
SELECT setval($1::text::regclass, GREATEST($2::bigint, COALESCE(pg_sequence_last_value($1::text::regclass), $2::bigint)), true)::text AS value`;

/** The comparison of source and destination sequence values (`null`: never used). Pure. */
export function compareSequences(
  source: ReadonlyMap<string, string | null>,
  destination: ReadonlyMap<string, string | null>,
): { sequence: string; source: string | null; destination: string | null; ok: boolean }[] {
  return [...source.entries()].map(([sequence, src]) => {
    const dst = destination.has(sequence) ? destination.get(sequence)! : null;
    const ok = src === null ? destination.has(sequence) : dst !== null && BigInt(dst) >= BigInt(src);
    return { sequence, source: src, destination: dst, ok };
  });
}
