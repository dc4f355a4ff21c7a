/**
 * What operators do to a Citus cluster while the sink writes into it (shard moves, rebalancing,
 * a table distributed anew), as far as one destination shows it. On plain PostgreSQL the same
 * sink code runs on local tables; the Citus part runs wherever SHARDBRIDGE_TEST_DESTINATION
 * is a Citus coordinator with two workers (docs/sink-connector.md, "Checked on a real Citus
 * cluster", for what needs a cluster's processes).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { getTestDestination, hasCitus } from '../helpers/postgres.ts';
import { queryWith } from '../../sink-connector/destination-errors.ts';
import { ensureStaging, upsertViaStaging } from '../../sink-connector/staging.ts';
import { CREATE_SINK_TABLES_SQL } from '../../sink-connector/offsets.ts';
import { stagingTableName } from '../../sink-connector/staging-sql.ts';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import { qualifiedName } from '../../sink-connector/upsert-batch.ts';
import { catalogDriftSql } from '../../sink-connector/catalog-drift.ts';
import { readDestinationTables, type DestinationTable } from '../../sink-connector/destination-catalog.ts';
import { detectCitus } from '../../shared/schema/citus-catalog.ts';

const SCHEMA = `sb_citusops_${process.pid}_${Date.now().toString(36)}`;
let release: () => Promise<void> = async () => {};
let db: pg.Client;
let citus = false;

before(async () => {
  const dest = await getTestDestination();
  release = dest.release;
  db = new pg.Client({ connectionString: dest.url });
  await db.connect();
  citus = (await hasCitus(db));
  await db.query(`CREATE SCHEMA ${pg.escapeIdentifier(SCHEMA)}`);
  await db.query(CREATE_SINK_TABLES_SQL);
});

after(async () => {
  if (db) {
    const staged = await db.query(`SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = 'shardbridge_staging' AND tablename LIKE $1`, [`${SCHEMA}%`]);
    for (const r of staged.rows) await db.query(`DROP TABLE IF EXISTS ${r.t}`);
    await db.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(SCHEMA)} CASCADE`);
    await db.end();
  }
  await release();
});

const table = (name: string): ApplyTable => ({
  schema: SCHEMA,
  name,
  columns: [
    { name: 'id', type: 'integer' },
    { name: 'v', type: 'text' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  staging: 'shared',
  ...(citus ? { citus: 'distributed', distributionColumn: 'id' } : { citus: 'local' }),
});

const replident = async (rel: string): Promise<string> => (await db.query(`SELECT relreplident::text AS r FROM pg_class WHERE oid = $1::regclass`, [rel])).rows[0].r;

test("a distributed target's staging table has REPLICA IDENTITY FULL, also one an older sink made: the target's shards move by logical replication", async () => {
  const fresh = table('moved');
  const older = table('moved_older');
  for (const t of [fresh, older]) {
    await db.query(`CREATE TABLE ${qualifiedName(t)} (id integer PRIMARY KEY, v text)`);
    if (citus) await db.query(`SELECT create_distributed_table($1, 'id', shard_count => 4)`, [qualifiedName(t)]);
  }
  // As an older sink left it: distributed colocated with its target, no replica identity.
  await db.query(`CREATE TABLE ${stagingTableName(older)} (LIKE ${qualifiedName(older)})`);
  if (citus) await db.query(`SELECT create_distributed_table($1, 'id', colocate_with => $2)`, [stagingTableName(older), qualifiedName(older)]);
  for (const t of [fresh, older]) {
    await ensureStaging(db, queryWith(db), t);
    await upsertViaStaging(db, queryWith(db), t, ['id', 'v'], { rows: [['1', 'a'], ['2', 'b']] }, new Set());
    assert.deepEqual((await db.query(`SELECT id, v FROM ${qualifiedName(t)} ORDER BY id`)).rows, [{ id: 1, v: 'a' }, { id: 2, v: 'b' }]);
  }
  // A coordinator (or plain PostgreSQL) staging table is never moved: left as made.
  if (!citus) return assert.equal(await replident(stagingTableName(fresh)), 'd');

  for (const t of [fresh, older]) {
    assert.equal(await replident(stagingTableName(t)), 'f', stagingTableName(t));
    const shards = await db.query(`SELECT result FROM run_command_on_placements($1, $$SELECT relreplident FROM pg_class WHERE oid = '%s'::regclass$$)`, [stagingTableName(t)]);
    assert.ok(shards.rows.length > 0 && shards.rows.every((r) => r.result === 'f'), `every shard of ${stagingTableName(t)}: ${JSON.stringify(shards.rows)}`);
  }
  const workers = await db.query(`SELECT nodename, nodeport FROM pg_dist_node WHERE shouldhaveshards AND noderole = 'primary' AND isactive ORDER BY nodeid`);
  if (workers.rows.length < 2) return;
  // Citus moves the colocation group together: the staging table's shard with its target's.
  for (const t of [fresh, older]) {
    const { rows } = await db.query(
      `SELECT s.shardid, n.nodename, n.nodeport FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = $1::regclass ORDER BY s.shardid LIMIT 1`,
      [qualifiedName(t)],
    );
    const to = workers.rows.find((w) => !(w.nodename === rows[0].nodename && w.nodeport === rows[0].nodeport));
    await db.query(`SELECT citus_move_shard_placement($1, $2, $3, $4, $5)`, [rows[0].shardid, rows[0].nodename, rows[0].nodeport, to.nodename, to.nodeport]);
    await upsertViaStaging(db, queryWith(db), t, ['id', 'v'], { rows: [['1', 'c'], ['3', 'd']] }, new Set());
    assert.deepEqual((await db.query(`SELECT id, v FROM ${qualifiedName(t)} ORDER BY id`)).rows, [{ id: 1, v: 'c' }, { id: 2, v: 'b' }, { id: 3, v: 'd' }]);
  }
});

test('a table distributed anew while the sink writes to it (create_distributed_table, alter_distributed_table, undistribute_table) is a catalog change: read afresh, its staging table follows', async () => {
  const info = await detectCitus(db);
  const name = 'relaid';
  const rel = `${pg.escapeIdentifier(SCHEMA)}.${name}`;
  await db.query(`CREATE TABLE ${rel} (id integer PRIMARY KEY, v text)`);
  // As table-state.ts builds it from the catalog read.
  const read = async (): Promise<ApplyTable> => {
    const [d]: DestinationTable[] = await readDestinationTables(db, [{ schema: SCHEMA, name }], info);
    return { ...table(name), citus: d.citus, distributionColumn: d.distributionColumn ?? undefined, digest: d.digest, staging: info.present ? 'shared' : 'session' };
  };
  const drift = async (t: ApplyTable) => (await db.query(catalogDriftSql([t])!)).rows.map((r) => r.name as string);
  let n = 0;
  const write = async (t: ApplyTable) => {
    await ensureStaging(db, queryWith(db), t);
    n++;
    // In the batch's transaction, as the sink does (session staging is emptied by each commit).
    await db.query('BEGIN');
    await upsertViaStaging(db, queryWith(db), t, ['id', 'v'], { rows: [[String(n), `v${n}`]] }, new Set());
    await db.query('COMMIT');
    assert.equal((await db.query(`SELECT count(*)::int AS c FROM ${rel}`)).rows[0].c, n);
  };
  const colocated = async (t: ApplyTable) =>
    (await db.query(`SELECT s.colocationid = g.colocationid AS ok FROM pg_dist_partition s, pg_dist_partition g WHERE s.logicalrelid = $1::regclass AND g.logicalrelid = $2::regclass`, [stagingTableName(t), rel])).rows[0]?.ok === true;

  let t = await read();
  await write(t);
  assert.deepEqual(await drift(t), [], 'nothing changed');
  if (!citus) return;

  await db.query(`SELECT create_distributed_table($1, 'id', shard_count => 4)`, [rel]);
  assert.deepEqual(await drift(t), [`${SCHEMA}.${name}`], 'distributed: its layout changed, not its columns');
  t = await read();
  assert.equal(t.citus, 'distributed');
  await write(t);
  assert.ok(await colocated(t), 'the staging table, a coordinator table before, distributed colocated with it');

  // Another shard count: another colocation group (the staging table is left in the old one).
  await db.query(`SELECT alter_distributed_table($1, shard_count => 2, cascade_to_colocated => false)`, [rel]);
  assert.deepEqual(await drift(t), [`${SCHEMA}.${name}`], 'another shard count');
  t = await read();
  await write(t);
  assert.ok(await colocated(t), 'the staging table made anew in the new group');

  await db.query(`SELECT undistribute_table($1, cascade_via_foreign_keys => false)`, [rel]);
  assert.deepEqual(await drift(t), [`${SCHEMA}.${name}`], 'undistributed');
  t = await read();
  assert.equal(t.citus, 'local');
  await write(t);
});
