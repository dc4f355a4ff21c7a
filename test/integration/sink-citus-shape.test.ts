/**
 * The Citus key shape on plain PostgreSQL: source `orders(id)`, destination
 * `orders(customer_id, id)` (the distribution column added to the key, as the migration
 * guide allows). Updates that move a row to another customer_id must leave exactly one
 * row per source key: with before-images (REPLICA IDENTITY FULL) by an exact delete, and
 * without them by a delete on the source key that spares the new row.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { type Admin, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import type { TextTuple } from '../../shared/pg-types.ts';
import type { DecodedChange } from '../../source-connector/envelope.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { keyTuple, produceChanges, registerTable, tableInfo, textRows } from '../helpers/produce-changes.ts';
import { sinkConfig, tableText, waitApplied } from '../helpers/sink.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_ksrc_${ID}`;
const DST = `sb_kdst_${ID}`;
const log = testLogger();
let env: SinkTestEnv | undefined;
let servers: { kafka: string; registry: string; destination: string };
let db: pg.Client;
let admin: Admin;
let producer: Producer;
let registry: RegistryClient;

before(async () => {
  env = await openSinkTestEnv([SRC, DST], log);
  ({ servers, db, admin, producer, registry } = env);
});

after(async () => {
  await env?.close();
});

for (const identity of ['default', 'full'] as const) {
  test(`rows moving between customer_id values leave one row per source key (REPLICA IDENTITY ${identity.toUpperCase()})`, async () => {
    const name = `orders_${identity}`;
    await db.query(`CREATE TABLE ${SRC}.${name} (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2), status text)`);
    if (identity === 'full') await db.query(`ALTER TABLE ${SRC}.${name} REPLICA IDENTITY FULL`);
    await db.query(`CREATE TABLE ${DST}.${name} (customer_id int, id bigint, amount numeric(12,2), status text, PRIMARY KEY (customer_id, id))`);
    const prefix = uniqueTopic(`sbshape${identity}`);
    const topic = `${prefix}.${SRC}.${name}`;
    await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1 }]);
    const info = await tableInfo(db, SRC, name);
    const t = await registerTable(registry, info, topic);
    const row = async (id: number): Promise<TextTuple> => (await textRows(db, `SELECT * FROM ${SRC}.${name} WHERE id = $1`, [id]))[0];

    /** Run SQL on the source and return the change pgoutput would send for it. */
    const update = async (id: number, set: string, newId = id): Promise<DecodedChange> => {
      const old = await row(id);
      await db.query(`UPDATE ${SRC}.${name} SET ${set} WHERE id = ${id}`);
      const now = await row(newId);
      if (identity === 'full') return { kind: 'update', old, new: now };
      // Default identity: the old key only when the key changed, no old row otherwise.
      return newId !== id ? { kind: 'update', key: keyTuple(info, old), new: now } : { kind: 'update', new: now };
    };
    const remove = async (id: number): Promise<DecodedChange> => {
      const old = await row(id);
      await db.query(`DELETE FROM ${SRC}.${name} WHERE id = ${id}`);
      return identity === 'full' ? { kind: 'delete', old } : { kind: 'delete', key: keyTuple(info, old) };
    };

    await db.query(`INSERT INTO ${SRC}.${name} SELECT i, i % 3, i * 1.5, 'new' FROM generate_series(1, 30) i`);
    const first: DecodedChange[] = (await textRows(db, `SELECT * FROM ${SRC}.${name} ORDER BY id`)).map((r) => ({ kind: 'insert', new: r }));
    first.push(await update(1, 'customer_id = 2, amount = 99')); // moves in the same batch as its insert
    first.push(await update(2, 'customer_id = 0'));
    first.push(await update(2, 'customer_id = 1, status = $$twice$$')); // moves twice within one batch
    first.push(await update(3, 'customer_id = 1'));
    await produceChanges(producer, t, first);

    const groupId = `g-${ID}-${identity}`;
    const sink = await startSinkConnector(sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.${name}`]: { schema: DST } } }), log, { topicRefreshMs: 500 });
    try {
      await waitApplied(db, admin, groupId, [topic]);
      // Later batches: moves of rows the destination already holds, a move back, deletes, a key change.
      const second: DecodedChange[] = [];
      second.push(await update(3, 'customer_id = 0')); // back where it started
      second.push(await update(4, 'customer_id = 5, status = $$moved$$'));
      second.push(await update(5, 'amount = 0.01')); // no move
      second.push(await remove(6));
      second.push(await remove(1)); // a moved row, deleted: its current place is only known from the key
      second.push(await update(7, 'id = 700, customer_id = 9', 700)); // key change: delete + create
      second.push(await update(8, 'customer_id = 8'));
      second.push(await update(8, 'customer_id = 9'));
      await produceChanges(producer, t, second);
      await waitApplied(db, admin, groupId, [topic]);

      const perKey = await db.query(`SELECT id, count(*)::int AS n FROM ${DST}.${name} GROUP BY id HAVING count(*) > 1`);
      assert.deepEqual(perKey.rows, [], 'one row per source key');
      const cols = ['id', 'customer_id', 'amount', 'status'];
      assert.deepEqual(await tableText(db, `${DST}.${name}`, cols, 'id'), await tableText(db, `${SRC}.${name}`, cols, 'id'));
    } finally {
      await sink.stop();
    }
  });
}
