/**
 * The destination changed while the sink runs (docs/sink-connector.md, "Changing the destination
 * while the sink runs"): the sink's statements come from a catalog read once per table, so each
 * batch checks that the tables it wrote still have that catalog. A column narrowed under a cached
 * plan stalls instead of rounding, one widened is used at once, and a primary key dropped never
 * lets a direct COPY commit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets, waitApplied } from '../helpers/sink.ts';
import { catalogDigestSql } from '../../sink-connector/catalog-drift.ts';

const { ID, SRC, DST, env, table: fileTable } = sinkTestFile('ddl');

const table = (prefix: string, name: string, ddl: string, destDdl = ddl) => fileTable(prefix, name, { ddl, destDdl });

const rows = (from: number, to: number, value: (i: number) => string, kind: 'insert' | 'update' = 'insert') =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ kind, new: [String(from + i), value(from + i)] }));

/** A sink over `names`; stall retries far apart, so that only the sink's own check can notice a change in time. */
async function sink(prefix: string, groupId: string, names: string[]): Promise<{ sink: SinkConnector; lines: ReturnType<typeof capturingLogger>['lines'] }> {
  const { logger, lines } = capturingLogger();
  const tables = Object.fromEntries(names.map((n) => [`${SRC}.${n}`, { schema: DST }]));
  const s = await startSinkConnector(sinkConfig({ ...env().servers, prefix, groupId }, { tables, stallRetryMs: 60_000 }), logger, { topicRefreshMs: 500 });
  return { sink: s, lines };
}

const stallOf = async (groupId: string) => (await env().db.query('SELECT next_offset, sqlstate, table_name, error FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0];

test('a column narrowed to integer under the cached plan stalls (unnest and staging paths) instead of rounding the source values', async () => {
  const { db, admin, producer } = env();
  const prefix = uniqueTopic('sbddlnarrow');
  const few = await table(prefix, 'few', '(id int PRIMARY KEY, v numeric(12,4))');
  const many = await table(prefix, 'many', '(id int PRIMARY KEY, v numeric(12,4))');
  const groupId = `g-${ID}-narrow`;
  const { sink: s } = await sink(prefix, groupId, ['few', 'many']);
  try {
    await produceChanges(producer, few, rows(1, 5, (i) => `${i}.1234`));
    await produceChanges(producer, many, rows(1, 300, (i) => `${i}.1234`));
    await waitApplied(db, admin, groupId, [few.topic, many.topic]);
    // Both tables' catalogs are cached now (their statements cast to numeric(12,4)).
    // One statement each: Citus takes no multi-statement string of DDL on distributed tables.
    await db.query(`ALTER TABLE ${DST}.few ALTER COLUMN v TYPE integer`);
    await db.query(`ALTER TABLE ${DST}.many ALTER COLUMN v TYPE integer`);
    await produceChanges(producer, few, rows(1, 5, (i) => `${i}.5678`, 'update'));
    await produceChanges(producer, many, rows(1, 300, (i) => `${i}.5678`, 'update'));
    await waitFor('both partitions stalled', async () => (await db.query('SELECT count(*)::int AS n FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0].n === 2, {
      timeoutMs: 20_000,
    });
    const stalls = (await db.query('SELECT table_name, sqlstate, next_offset, error FROM shardbridge.stalls WHERE group_id = $1 ORDER BY table_name', [groupId])).rows;
    assert.deepEqual(
      stalls.map((r) => [r.table_name, r.sqlstate, r.next_offset]),
      [
        [`${DST}.few`, '22P02', '5'],
        [`${DST}.many`, '22P02', '300'],
      ],
    );
    assert.match(stalls[0].error, /invalid input syntax for type integer: "1\.5678"/);
    const { rows: kept } = await db.query(`SELECT v FROM ${DST}.few UNION ALL SELECT v FROM ${DST}.many`);
    assert.ok(kept.every((r) => r.v < 1000 && Number.isInteger(r.v)), 'nothing was rounded in');
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.few WHERE v = id + 1`)).rows[0].n, 0, 'no 1.5678 became 2');
    // The remedy: the source's type back; the partitions resume by themselves.
    await db.query(`ALTER TABLE ${DST}.few ALTER COLUMN v TYPE numeric(12,4)`);
    await db.query(`ALTER TABLE ${DST}.many ALTER COLUMN v TYPE numeric(12,4)`);
  } finally {
    await s.stop();
  }
  const { sink: again } = await sink(prefix, groupId, ['few', 'many']);
  try {
    await waitApplied(db, admin, groupId, [few.topic, many.topic]);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.many WHERE v::text <> id || '.5678'`)).rows[0].n, 0);
  } finally {
    await again.stop();
  }
});

test('a column widened while the sink runs takes values the cached plan refused, without a stall; a table made anew with its columns in another order too', async () => {
  const { db, admin, producer } = env();
  const prefix = uniqueTopic('sbddlwide');
  // Narrower at the destination first (bigint at the source), as a DBA may have made it.
  const t = await table(prefix, 'widened', '(id int PRIMARY KEY, v bigint)', '(id int PRIMARY KEY, v int)');
  const groupId = `g-${ID}-wide`;
  const { sink: s, lines } = await sink(prefix, groupId, ['widened']);
  try {
    await produceChanges(producer, t, rows(1, 5, (i) => String(i)));
    await waitApplied(db, admin, groupId, [t.topic]);
    await db.query(`ALTER TABLE ${DST}.widened ALTER COLUMN v TYPE bigint`);
    await produceChanges(producer, t, rows(1, 5, (i) => String(5_000_000_000 + i), 'update'));
    await waitApplied(db, admin, groupId, [t.topic], 15_000);
    assert.equal(await stallOf(groupId), undefined, 'no stall');
    assert.equal((await db.query(`SELECT sum(v)::text AS s FROM ${DST}.widened`)).rows[0].s, String(5 * 5_000_000_000 + 15));
    assert.ok(lines().some((l) => /changed since the sink read its catalog/.test(l.msg)));

    await db.query(`DROP TABLE ${DST}.widened; CREATE TABLE ${DST}.widened (v text, id int PRIMARY KEY)`);
    await produceChanges(producer, t, rows(6, 10, (i) => String(i)));
    await waitApplied(db, admin, groupId, [t.topic], 15_000);
    assert.deepEqual((await db.query(`SELECT id, v FROM ${DST}.widened ORDER BY id`)).rows.map((r) => [r.id, r.v]), [6, 7, 8, 9, 10].map((i) => [i, String(i)]));
  } finally {
    await s.stop();
  }
});

test('a primary key dropped while the sink runs: fresh rows are not COPied in without it, the partition stalls naming the table', async () => {
  const { db, admin, producer } = env();
  const prefix = uniqueTopic('sbddlpk');
  const t = await table(prefix, 'keyless', '(id int PRIMARY KEY, v text)');
  const groupId = `g-${ID}-pk`;
  const { sink: s } = await sink(prefix, groupId, ['keyless']);
  try {
    await produceChanges(producer, t, rows(1, 5, (i) => `v${i}`));
    await waitApplied(db, admin, groupId, [t.topic]);
    await db.query(`ALTER TABLE ${DST}.keyless DROP CONSTRAINT keyless_pkey`);
    // Enough new rows for a direct COPY, which has no ON CONFLICT to fail without the key.
    await produceChanges(producer, t, rows(6, 1505, (i) => `v${i}`));
    const stall = await waitFor('stall', () => stallOf(groupId), { timeoutMs: 20_000 });
    assert.equal(stall.table_name, `${DST}.keyless`);
    assert.equal(stall.next_offset, '5');
    assert.match(stall.error, /has no primary key/);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.keyless`)).rows[0].n, 5, 'nothing committed past the change');
    assert.equal((await storedOffsets(db, groupId)).get(`${t.topic}:0`), 5n);
  } finally {
    await s.stop();
  }
});

test("a table's catalog digest is the same in every session: a column of a type outside the search_path digests alike whatever the search_path", async () => {
  const { db } = env();
  await db.query(`CREATE TYPE ${DST}.mood AS ENUM ('calm', 'glad'); CREATE TABLE ${DST}.moods (id int PRIMARY KEY, m ${DST}.mood, n numeric(12, 4))`);
  const digest = async (searchPath: string) => {
    await db.query(`SET search_path = ${searchPath}`);
    try {
      return (await db.query(`SELECT ${catalogDigestSql(`'${DST}.moods'::regclass`)} AS d`)).rows[0].d as string;
    } finally {
      await db.query('RESET search_path');
    }
  };
  const outside = await digest('public');
  assert.equal(typeof outside, 'string');
  assert.equal(await digest(`${DST}, public`), outside);
  await db.query(`ALTER TABLE ${DST}.moods ALTER COLUMN n TYPE numeric(12, 2)`);
  assert.notEqual(await digest('public'), outside, 'a typmod change is a change');
});
