/**
 * The catalog reads that tell how Citus holds each table (the sink's destination catalog,
 * `schema copy`'s destination state, the sink's start-up check under requireDistributed), run
 * against PostgreSQL with a stand-in for Citus's `pg_dist_partition`, `pg_dist_schema` and
 * `column_to_column_name` (same columns and types as Citus's, first on the search path), since
 * Citus cannot be installed here. One row per kind: hash-distributed, reference, single-shard
 * (Citus 12's schema-based sharding) and Citus local (its rows stay on the coordinator), which
 * share partition method `n` and were all once taken for reference tables.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { readCitusTables } from '../../shared/schema/citus-catalog.ts';
import { readDestinationState } from '../../shared/schema/read.ts';
import { readDestinationTable, readDestinationTables } from '../../sink-connector/destination-catalog.ts';
import { TableStates } from '../../sink-connector/table-state.ts';
import { testLogger } from '../helpers/kafka.ts';
import { startTestSource } from '../helpers/postgres.ts';

const CITUS = { present: true, version: '13.2-1' };
const TABLES = ['hashed', 'ref', 'single', 'citus_local', 'plain'];
let cluster: PgCluster;
let client: pg.Client;

before(async () => {
  // A cluster of this file's own, never SHARDBRIDGE_TEST_DESTINATION: the stand-in must not meet a real Citus.
  cluster = await startTestSource();
  client = new pg.Client({ connectionString: cluster.url(), options: '-c search_path=citus_standin,public' });
  await client.connect();
  await client.query(`CREATE SCHEMA citus_standin`);
  await client.query(`CREATE TABLE citus_standin.pg_dist_partition (
    logicalrelid regclass NOT NULL, partmethod "char" NOT NULL, partkey text, colocationid integer NOT NULL, repmodel "char" NOT NULL, autoconverted boolean NOT NULL DEFAULT false)`);
  // partkey is a serialized Var node; Citus reads its varattno.
  await client.query(`CREATE FUNCTION citus_standin.column_to_column_name(table_name regclass, column_var_text text) RETURNS text LANGUAGE sql STABLE AS
    $$ SELECT attname::text FROM pg_attribute WHERE attrelid = table_name AND attnum = substring(column_var_text FROM ':varattno (\\d+)')::int $$`);
  for (const t of TABLES) await client.query(`CREATE TABLE public.${t} (id bigint, region text, PRIMARY KEY (id, region))`);
  const row = (t: string, method: string, key: string | null, colocation: number, repmodel: string) =>
    client.query(`INSERT INTO citus_standin.pg_dist_partition (logicalrelid, partmethod, partkey, colocationid, repmodel) VALUES ($1::regclass, $2, $3, $4, $5)`, [`public.${t}`, method, key, colocation, repmodel]);
  await row('hashed', 'h', '{VAR :varno 1 :varattno 2 :vartype 25 :vartypmod -1 :varcollid 100 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location -1}', 3, 's');
  await row('ref', 'n', null, 1, 't');
  await row('single', 'n', null, 7, 's');
  await row('citus_local', 'n', null, 0, 's');
  // Citus 12's distributed schemas: tenant_a with one table (single-shard, in the schema's colocation group).
  await client.query(`CREATE TABLE citus_standin.pg_dist_schema (schemaid oid PRIMARY KEY, colocationid int NOT NULL UNIQUE)`);
  await client.query(`CREATE SCHEMA tenant_a; CREATE TABLE tenant_a.t (id bigint PRIMARY KEY)`);
  await client.query(`INSERT INTO citus_standin.pg_dist_schema VALUES ('tenant_a'::regnamespace, 9)`);
  await client.query(`INSERT INTO citus_standin.pg_dist_partition (logicalrelid, partmethod, partkey, colocationid, repmodel) VALUES ('tenant_a.t'::regclass, 'n', NULL, 9, 's')`);
});

after(async () => {
  await client?.end().catch(() => {});
  await cluster?.destroy();
});

test('each kind of Citus table is told apart: distributed, reference, single-shard, Citus local, plain', async () => {
  const kinds: Record<string, [string, string | null]> = {};
  for (const t of TABLES) {
    const d = await readDestinationTable(client, 'public', t, CITUS);
    kinds[t] = [d.citus, d.distributionColumn];
  }
  assert.deepEqual(kinds, {
    hashed: ['distributed', 'region'],
    ref: ['reference', null],
    single: ['single-shard', null],
    citus_local: ['local', null],
    plain: ['local', null],
  });
  const oids = (await client.query(`SELECT t, ('public.' || t)::regclass::oid::int AS oid FROM unnest($1::text[]) t`, [TABLES])).rows;
  const byOid = await readCitusTables(client, oids.map((r) => r.oid));
  const groups = Object.fromEntries(oids.map((r) => [r.t, byOid.get(r.oid)?.colocationId ?? null]));
  assert.deepEqual(groups, { hashed: 3, ref: null, single: 7, citus_local: null, plain: null }, 'colocation groups of the tables that have one');
});

test('the catalogs of many tables read at once equal each read alone: columns, keys, unique keys, foreign keys, generated columns, missing tables, in order', async () => {
  await client.query(`CREATE TABLE public.parent (id int PRIMARY KEY);
    CREATE UNLOGGED TABLE public.rich (id int, sub int, code text UNIQUE, n numeric(9,2) NOT NULL, g int GENERATED ALWAYS AS (id * 2) STORED,
      p int REFERENCES public.parent, PRIMARY KEY (id, sub) INCLUDE (code))`);
  const names = [{ schema: 'public', name: 'rich' }, { schema: 'public', name: 'nowhere' }, { schema: 'nowhere', name: 'rich' }, ...TABLES.map((name) => ({ schema: 'public', name })), { schema: 'public', name: 'parent' }];
  const together = await readDestinationTables(client, names, CITUS);
  const alone = [];
  for (const n of names) alone.push(await readDestinationTable(client, n.schema, n.name, CITUS));
  assert.deepEqual(together, alone);
  assert.deepEqual(together.map((d) => `${d.schema}.${d.name} ${d.exists}`), names.map((n) => `${n.schema}.${n.name} ${!n.name.startsWith('nowhere') && n.schema !== 'nowhere'}`));
  const rich = together[0];
  assert.deepEqual(rich.columns.map((c) => `${c.name} ${c.type}${c.notNull ? ' not null' : ''}`), ['id integer not null', 'sub integer not null', 'code text', 'n numeric(9,2) not null', 'p integer']);
  assert.deepEqual(rich.generatedColumns, ['g']);
  assert.deepEqual(rich.primaryKey, ['id', 'sub'], 'key columns only, not INCLUDE ones');
  assert.deepEqual(rich.uniqueKeys.map((k) => k.join(',')).sort(), ['code', 'id,sub']);
  assert.deepEqual(rich.foreignKeys.map((f) => f.definition), ['FOREIGN KEY (p) REFERENCES parent(id)']);
  assert.equal(rich.unlogged, true);
  assert.deepEqual(await readDestinationTables(client, [], CITUS), []);
});

test('the sink refuses under requireDistributed the Citus local and plain tables, not the single-shard one', async () => {
  const states = new TableStates({ citus: CITUS, requireDistributed: true, logger: testLogger() });
  const found = await states.readAtStart(client, TABLES.map((table) => ({ schema: 'public', table })));
  assert.deepEqual(found, { missing: [], local: ['public.citus_local', 'public.plain'] });
});

test('schema copy reads the same kinds, and the distributed schemas with their colocation groups', async () => {
  const model = { tables: [], types: [], sequences: [] };
  const names = [...TABLES.map((name) => ({ schema: 'public', name })), { schema: 'tenant_a', name: 't' }];
  await client.query(`SET citus.enable_schema_based_sharding = on`);
  const state = await readDestinationState(client, model, names, true);
  await client.query(`RESET citus.enable_schema_based_sharding`);
  const kinds = Object.fromEntries([...state.tables].map(([k, t]) => [k, `${t.citus} ${t.distributionColumn ?? '-'} ${t.colocationId ?? '-'}`]));
  assert.deepEqual(kinds, {
    'public.hashed': 'distributed region 3',
    'public.ref': 'reference - -',
    'public.single': 'single-shard - 7',
    'public.citus_local': 'local - -',
    'public.plain': 'local - -',
    'tenant_a.t': 'single-shard - 9',
  });
  assert.deepEqual([...state.distributedSchemas!], [['tenant_a', 9]]);
  assert.equal(state.schemaBasedSharding, true, 'citus.enable_schema_based_sharding read from the session');
  assert.equal((await readDestinationState(client, model, names, true)).schemaBasedSharding, false);
});
