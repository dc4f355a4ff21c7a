/**
 * The sink's table and column mapping against what the destination really has: source tables
 * merged into one destination table, mappings that cannot be applied as written, destination
 * columns the source lacks (identity, generated), column names JavaScript objects hold dear.
 * Each refusal stalls its partition with a message naming the mapping, never guessing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const file = sinkTestFile('m');
const { ID, SRC, DST, log } = file;

async function sourceTable(name: string, ddl: string, prefix: string): Promise<ProducedTable> {
  const { db, admin, registry } = file.env();
  await db.query(`CREATE TABLE ${SRC}.${name} ${ddl}`);
  const topic = `${prefix}.${SRC}.${name}`;
  await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
  return registerTable(registry, await tableInfo(db, SRC, name), topic);
}

const insert = (...values: (string | null)[]) => ({ kind: 'insert' as const, new: values });

async function stallOf(groupId: string, topic: string): Promise<{ error: string; sqlstate: string | null; next_offset: string }> {
  const { db } = file.env();
  return waitFor(`stall of ${topic}`, async () => (await db.query('SELECT * FROM shardbridge.stalls WHERE group_id = $1 AND topic = $2', [groupId, topic])).rows[0]);
}

test('two source tables merged into one destination table: both apply; a truncate of one stalls its partition, naming both, and empties nothing', async () => {
  const { servers, db, admin, producer } = file.env();
  const prefix = uniqueTopic('sbmerge');
  const m1 = await sourceTable('m1', '(id int PRIMARY KEY, v text)', prefix);
  const m2 = await sourceTable('m2', '(id int PRIMARY KEY, v text)', prefix);
  await db.query(`CREATE TABLE ${DST}.merged (id int PRIMARY KEY, v text)`);
  await produceChanges(producer, m1, [insert('1', 'a'), insert('2', 'b'), { kind: 'truncate' }]);
  await produceChanges(producer, m2, [insert('101', 'x'), insert('102', 'y')]);
  const { logger, lines } = capturingLogger();
  const groupId = `g-${ID}-merge`;
  const target = { schema: DST, table: 'merged' };
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.m1`]: target, [`${SRC}.m2`]: target } }), logger, { topicRefreshMs: 500 });
  try {
    await waitApplied(db, admin, groupId, [m2.topic]);
    const stall = await stallOf(groupId, m1.topic);
    assert.equal(stall.next_offset, '2', 'the rows before the truncate are applied');
    assert.match(stall.error, new RegExp(`a truncate of ${SRC}\\.m1 would empty ${DST}\\.merged, which also holds the rows of ${SRC}\\.m2`));
    assert.match(stall.error, /truncate: ignore/);
    assert.deepEqual((await db.query(`SELECT id FROM ${DST}.merged ORDER BY id`)).rows.map((r) => r.id), [1, 2, 101, 102]);
    assert.ok(lines().some((l) => l.level === 40 && /all go to/.test(l.msg) && l.table === `${DST}.merged`), 'the merge is named at start');
  } finally {
    await sink.stop();
  }
});

test('mappings that cannot be applied stall, naming them, also in dead-letter mode: two source columns onto one, a renamed column the source lacks under autoEvolve, a generated destination column, a GENERATED ALWAYS identity outside the key (applied once BY DEFAULT)', async () => {
  const { servers, db, producer } = file.env();
  const prefix = uniqueTopic('sbmapbad');
  const coll = await sourceTable('coll', '(id int PRIMARY KEY, a text, b text)', prefix);
  await db.query(`CREATE TABLE ${DST}.coll (id int PRIMARY KEY, a text, b text)`);
  const typo = await sourceTable('typo', '(id int PRIMARY KEY, v text)', prefix);
  await db.query(`CREATE TABLE ${DST}.typo (id int PRIMARY KEY, val text)`);
  const gen = await sourceTable('gen', '(id int PRIMARY KEY, g int)', prefix);
  await db.query(`CREATE TABLE ${DST}.gen (id int PRIMARY KEY, g int GENERATED ALWAYS AS (id * 2) STORED)`);
  // As schema copy makes it from such a source table: every upsert naming seq failed ('can only be updated to DEFAULT').
  const always = await sourceTable('always', '(id int PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, v text)', prefix);
  await db.query(`CREATE TABLE ${DST}.always (id int PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, v text)`);
  await produceChanges(producer, coll, [insert('1', 'A', 'B')]);
  await produceChanges(producer, typo, [insert('1', 'v1')]);
  await produceChanges(producer, gen, [insert('1', '7')]);
  await produceChanges(producer, always, [insert('1', '41', 'a'), { kind: 'update', new: ['1', '41', 'b'] }]);
  const groupId = `g-${ID}-mapbad`;
  const sink = await startSinkConnector(
    sinkConfig(
      { ...servers, prefix, groupId },
      {
        autoEvolve: true,
        deadLetter: { enabled: true },
        tables: {
          [`${SRC}.coll`]: { schema: DST, columns: { a: 'b' } },
          [`${SRC}.typo`]: { schema: DST, columns: { V: 'val' } },
          [`${SRC}.gen`]: { schema: DST },
          [`${SRC}.always`]: { schema: DST },
        },
      },
    ),
    log,
    { topicRefreshMs: 500 },
  );
  try {
    const collided = await stallOf(groupId, coll.topic);
    assert.match(collided.error, new RegExp(`source columns a and b of ${SRC}\\.coll both go to destination column b`));
    assert.match(collided.error, /map one of them to another destination column/);
    const unmatched = await stallOf(groupId, typo.topic);
    assert.match(unmatched.error, /autoEvolve does not add it while the column mapping of .*typo names V, which .*typo lacks/);
    const generated = await stallOf(groupId, gen.topic);
    assert.match(generated.error, /column "g" of relation ".*gen" is a generated column/);
    assert.match(generated.error, /DROP EXPRESSION/);
    const identity = await stallOf(groupId, always.topic);
    assert.match(identity.error, /column "seq" of relation ".*always" is GENERATED ALWAYS AS IDENTITY outside the primary key/);
    assert.match(identity.error, /ALTER COLUMN "seq" SET GENERATED BY DEFAULT until cut-over/);
    await db.query(`ALTER TABLE ${DST}.always ALTER COLUMN seq SET GENERATED BY DEFAULT`);
    await waitFor('the identity row applied', async () => (await db.query(`SELECT v FROM ${DST}.always WHERE id = 1 AND seq = 41`)).rows[0]?.v === 'b');
    const cols = await db.query(`SELECT attname FROM pg_attribute WHERE attrelid = '${DST}.typo'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`);
    assert.deepEqual(cols.rows.map((r) => r.attname), ['id', 'val'], 'autoEvolve added no column under the source name');
    for (const t of ['coll', 'typo', 'gen']) assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.${t}`)).rows[0].n, 0);
  } finally {
    await sink.stop();
  }
});

test('destination columns of its own (an identity, "char" added by autoEvolve) and a column named constructor: staged rows apply; a value too long names its column', async () => {
  const { servers, db, admin, producer } = file.env();
  const prefix = uniqueTopic('sbmapok');
  const ident = await sourceTable('ident', '(id int PRIMARY KEY, v text)', prefix);
  await db.query(`CREATE TABLE ${DST}.ident (id int PRIMARY KEY, v text, n bigint GENERATED ALWAYS AS IDENTITY)`);
  const flags = await sourceTable('flags', `(id int PRIMARY KEY, f "char", "constructor" text)`, prefix);
  await db.query(`CREATE TABLE ${DST}.flags (id int PRIMARY KEY, "constructor" text)`);
  const short = await sourceTable('short', '(id int PRIMARY KEY, v text)', prefix);
  await db.query(`CREATE TABLE ${DST}.short (id int PRIMARY KEY, v varchar(3))`);
  await produceChanges(producer, ident, Array.from({ length: 20 }, (_, i) => insert(String(i + 1), `v${i + 1}`)));
  await produceChanges(producer, flags, [insert('1', 'x', 'made by'), insert('2', 'y', null)]);
  await produceChanges(producer, short, [insert('1', 'abc'), insert('2', 'abcdef')]);
  const { logger, lines } = capturingLogger();
  const groupId = `g-${ID}-mapok`;
  const tables = Object.fromEntries(['ident', 'flags', 'short'].map((t) => [`${SRC}.${t}`, { schema: DST }]));
  // Every batch through the staging table, none COPied straight into the target.
  const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { autoEvolve: true, tables }), logger, {
    topicRefreshMs: 500,
    stagingMinRows: 1,
    directCopyMinRows: Infinity,
  });
  try {
    await waitApplied(db, admin, groupId, [ident.topic, flags.topic]);
    const idents = await db.query(`SELECT id, v, n FROM ${DST}.ident ORDER BY id`);
    assert.equal(idents.rowCount, 20);
    assert.ok(idents.rows.every((r) => r.v === `v${r.id}` && r.n !== null), 'the identity column takes its own values');
    const type = await db.query(`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = '${DST}.flags'::regclass AND attname = 'f'`);
    assert.equal(type.rows[0].t, '"char"');
    assert.deepEqual((await db.query(`SELECT id, f, "constructor" FROM ${DST}.flags ORDER BY id`)).rows, [
      { id: 1, f: 'x', constructor: 'made by' },
      { id: 2, f: 'y', constructor: null },
    ]);
    const stall = await stallOf(groupId, short.topic);
    assert.equal(stall.sqlstate, '22001');
    const logged = await waitFor('stall logged', async () => lines().find((l) => l.level >= 50 && l.topic === short.topic));
    assert.equal(logged.column, 'v');
    assert.match(String(logged.remedy), /ALTER COLUMN v TYPE/);
  } finally {
    await sink.stop();
  }
});
