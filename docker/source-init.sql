-- The demo source database of docker-compose.yml, run once by the postgres image on first
-- start (/docker-entrypoint-initdb.d, as the superuser, in POSTGRES_DB = app).
--
-- A small shop: four related tables with sequences and varied types (numeric, timestamptz,
-- jsonb, arrays, a large TOASTed text), the replication role the source connector logs in
-- as, and the publication it reuses. Replace this file with your own schema, or point
-- docker/source.yaml at your own database (see docs/docker-compose.md).

-- The role's password comes from the container's environment (psql's \getenv, 15+), so it is
-- written in docker-compose.yml once, next to the connector's SHARDBRIDGE_SOURCE_SOURCE__PASSWORD.
\getenv shardbridge_password SHARDBRIDGE_PASSWORD

-- The guide: "the connecting role has REPLICATION" (on RDS: GRANT rds_replication).
CREATE ROLE shardbridge WITH LOGIN REPLICATION PASSWORD :'shardbridge_password';
-- CREATE on the database lets the role own the publication, so `shardbridge cleanup` may drop it.
GRANT CREATE ON DATABASE app TO shardbridge;

CREATE TABLE products (
  id          serial PRIMARY KEY,
  sku         text NOT NULL,
  name        text NOT NULL,
  price       numeric(12,2) NOT NULL,
  tags        text[] NOT NULL DEFAULT '{}',
  description text           -- long enough to be TOASTed
);

CREATE TABLE customers (
  id         bigserial PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL,
  country    char(2),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- On Citus, orders is distributed by customer_id (colocated with customers), so the
-- destination key becomes (id, customer_id): the guide's "composite key containing the
-- distribution column". REPLICA IDENTITY FULL makes updates and deletes carry customer_id
-- too, which lets the sink prune to one shard and move a row whose customer changes
-- (`shardbridge check` recommends exactly this).
CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  amount      numeric(12,2) NOT NULL,
  status      text NOT NULL DEFAULT 'new',
  created_at  timestamptz NOT NULL DEFAULT now(),
  payload     jsonb
);
ALTER TABLE orders REPLICA IDENTITY FULL;

CREATE TABLE order_items (
  order_id   bigint NOT NULL,
  line_no    int NOT NULL,
  product_id int NOT NULL REFERENCES products (id),
  quantity   int NOT NULL CHECK (quantity > 0),
  unit_price numeric(12,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);

INSERT INTO products (sku, name, price, tags, description)
SELECT 'SKU-' || lpad(g::text, 5, '0'),
       'Product ' || g,
       round((1 + random() * 499)::numeric, 2),
       ARRAY['tag' || (g % 7), 'tag' || (g % 11)],
       CASE WHEN g % 10 = 0
            THEN (SELECT string_agg(md5(g || ':' || i), '') FROM generate_series(1, 200) AS i)
            ELSE 'short description ' || g END
FROM generate_series(1, 200) AS g;

INSERT INTO customers (name, email, country, created_at)
SELECT 'Customer ' || g,
       'customer' || g || '@example.com',
       (ARRAY['DE', 'FR', 'NL', 'US', 'JP'])[1 + g % 5],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes 0.000123 seconds'
FROM generate_series(1, 1000) AS g;

INSERT INTO orders (customer_id, amount, status, created_at, payload)
SELECT 1 + (g * 7919) % 1000,
       round((5 + random() * 995)::numeric, 2),
       (ARRAY['new', 'paid', 'shipped', 'delivered'])[1 + g % 4],
       timestamptz '2024-02-01 00:00:00+00' + g * interval '11 minutes',
       jsonb_build_object('channel', (ARRAY['web', 'app', 'phone'])[1 + g % 3], 'gift', g % 13 = 0)
FROM generate_series(1, 5000) AS g;

INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT o.id, l, 1 + (o.id * 31 + l) % 200, 1 + (o.id + l) % 4, p.price
FROM orders o
CROSS JOIN generate_series(1, 3) AS l
JOIN products p ON p.id = 1 + (o.id * 31 + l) % 200
WHERE l <= 1 + o.id % 3;

-- Read access for the snapshot and the sequence values used at cut-over.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO shardbridge;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO shardbridge;

-- The publication the source connector reuses (docker/source.yaml: publicationName and
-- tables.include). Creating a FOR TABLE publication needs ownership of the tables, which the
-- replication role does not have; the superuser creates it here and hands it over.
CREATE PUBLICATION shardbridge_pub FOR TABLE products, customers, orders, order_items WITH (publish_via_partition_root = true);
ALTER PUBLICATION shardbridge_pub OWNER TO shardbridge;
