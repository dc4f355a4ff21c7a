import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { PgTypeInfo, TableInfo } from '../../shared/pg-types.ts';
import type { RelationMessage } from '../../source-connector/pgoutput-decoder.ts';
import type { AddedDefault } from '../../source-connector/relation-changes.ts';
import { TableVersions } from '../../source-connector/table-versions.ts';

const INT4: PgTypeInfo = { oid: 23, schema: 'pg_catalog', name: 'int4', kind: 'base' };
const INT8: PgTypeInfo = { oid: 20, schema: 'pg_catalog', name: 'int8', kind: 'base' };
const TEXT: PgTypeInfo = { oid: 25, schema: 'pg_catalog', name: 'text', kind: 'base' };

/** The WAL position the start-up catalog was read at: Relations of transactions before it are replayed WAL. */
const CATALOG_LSN = 1000n;
const BEFORE = 900n;
const AFTER = 1100n;

function catalogTable(amount: PgTypeInfo, name = 'orders'): TableInfo {
  return {
    relid: 16400,
    schema: 'public',
    name,
    columns: [
      { name: 'id', type: INT8, typmod: -1, isKey: true },
      { name: 'amount', type: amount, typmod: -1, isKey: false },
    ],
    keyColumns: ['id'],
    replicaIdentity: 'default',
  };
}

type Column = RelationMessage['columns'][number];

function relation(amountOid: number, name = 'orders', more: Partial<RelationMessage> = {}): RelationMessage {
  return {
    tag: 'relation',
    relid: 16400,
    namespace: 'public',
    name,
    replicaIdentity: 'default',
    columns: [
      { isKey: true, name: 'id', typeOid: 20, typmod: -1 },
      { isKey: false, name: 'amount', typeOid: amountOid, typmod: -1 },
    ],
    ...more,
  };
}

const col = (name: string, typeOid: number, isKey = false): Column => ({ isKey, name, typeOid, typmod: -1 });

function versions(opts: { primaryKey?: string[]; defaults?: AddedDefault[]; topics?: string[] } = {}) {
  const registered: string[] = [];
  const asked: string[] = [];
  const logs: { level: number; msg: string; [k: string]: unknown }[] = [];
  const dest = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(l));
      cb();
    },
  });
  const tv = new TableVersions({
    registry: { register: async (subject) => (registered.push(subject), registered.length) },
    topicPrefix: 'shop',
    connectorVersion: 'test',
    catalog: {
      loadTypes: async (oids) => new Map([INT4, INT8, TEXT].filter((t) => oids.includes(t.oid)).map((t) => [t.oid, t])),
      primaryKey: async () => opts.primaryKey ?? ['id'],
      columnDefaults: async (_relid, columns) => (opts.defaults ?? []).filter((d) => columns.includes(d.column)),
    },
    topicExists: async (topic) => (asked.push(topic), (opts.topics ?? []).includes(topic)),
    log: pino({ level: 'info' }, dest),
  });
  return { tv, registered, asked, logs };
}

/** A version for a selected table (never null). */
async function version(tv: TableVersions, msg: RelationMessage, lsn: bigint) {
  const v = await tv.onRelation(msg, lsn);
  assert.ok(v, 'a version');
  return v;
}

test('a type change made while stopped: the replayed old type, then the change the start-up catalog has, go on', async () => {
  const { tv, registered, logs } = versions();
  await tv.init([catalogTable(INT8)], CATALOG_LSN);
  // WAL written before the ALTER replays with the old type.
  assert.equal((await version(tv, relation(23), 800n)).table.columns[1].type.name, 'int4');
  // The ALTER itself, committed before the catalog was read: the connector carries on.
  assert.equal((await version(tv, relation(20), BEFORE)).table.columns[1].type.name, 'int8');
  assert.deepEqual(registered.filter((s) => s.endsWith('-value')), Array(3).fill('shop.public.orders-value'), 'start-up, replayed and new version');
  assert.ok(logs.some((l) => /schema change made while the connector was stopped/.test(l.msg)));
  // A change after the catalog read still stops it.
  await assert.rejects(tv.onRelation(relation(25), AFTER), /changed type from int8 to text/);
});

test('a type change while running stops the connector naming table, column, both types and the remedy', async () => {
  const { tv } = versions();
  await tv.init([catalogTable(INT4)], CATALOG_LSN);
  await tv.onRelation(relation(23), AFTER);
  await assert.rejects(tv.onRelation(relation(20), AFTER + 10n), (err: Error & { remedy?: string; context?: Record<string, unknown> }) => {
    assert.match(err.message, /column amount of table public\.orders changed type from int4 to int8/);
    assert.deepEqual(err.context, { table: 'public.orders', column: 'amount', oldType: 'int4', newType: 'int8' });
    assert.match(err.remedy!, /stop the source and sink connectors, change the column type on the source and on the destination/);
    return true;
  });
});

test("a type change committed after the catalog read stops the connector, though more DDL came before the table's first Relation", async () => {
  // BEGIN; ALTER COLUMN amount TYPE int8; INSERT; ADD COLUMN w; COMMIT on a table idle since the start:
  // its first Relation (after a reconnect too) shows the type change and a column the catalog does not have.
  const { tv } = versions();
  await tv.init([catalogTable(INT4)], CATALOG_LSN);
  await assert.rejects(tv.onRelation(relation(20, 'orders', { columns: [...relation(20).columns, col('w', 23)] }), AFTER), /column amount of table public\.orders changed type from int4 to int8: the connector stops/);
});

test('a table renamed while streaming stops the connector, also with more DDL first; renamed while stopped, it goes on', async () => {
  const running = versions({ topics: ['shop.public.purchases'] }).tv;
  await running.init([catalogTable(INT8)], CATALOG_LSN);
  await running.onRelation(relation(20), AFTER);
  await assert.rejects(running.onRelation(relation(20, 'purchases'), AFTER + 10n), (err: Error & { remedy?: string }) => {
    assert.match(err.message, /table public\.orders was renamed to public\.purchases while streaming: the connector stops/);
    assert.match(err.remedy!, /rename it back; or stop both connectors, map public\.purchases in the sink's tables/);
    return true;
  });
  // Idle until a transaction that renamed it and added a column.
  const idle = versions().tv;
  await idle.init([catalogTable(INT8)], CATALOG_LSN);
  await assert.rejects(idle.onRelation(relation(20, 'purchases', { columns: [...relation(20).columns, col('w', 23)] }), AFTER), /was renamed to public\.purchases/);
  // Renamed while stopped: the start-up catalog has the new name; WAL from before it replays under the old one, whose topic Kafka has.
  const stopped = versions({ topics: ['shop.public.orders'] });
  await stopped.tv.init([catalogTable(INT8, 'purchases')], CATALOG_LSN);
  assert.equal((await version(stopped.tv, relation(20, 'orders'), 800n)).topic, 'shop.public.orders');
  assert.equal((await version(stopped.tv, relation(20, 'purchases'), BEFORE)).topic, 'shop.public.purchases');
  assert.deepEqual(stopped.asked, ['shop.public.orders'], 'Kafka asked only about the topic start-up did not make');
});

test('a version whose topic Kafka does not have stops the connector instead of publishing into nothing', async () => {
  // Renamed twice while stopped: the replay meets the name in between, which never had a topic.
  const { tv, registered } = versions();
  await tv.init([catalogTable(INT8, 'purchases')], CATALOG_LSN);
  const before = registered.length;
  await assert.rejects(tv.onRelation(relation(20, 'tmp'), BEFORE), (err: Error & { remedy?: string; context?: Record<string, unknown> }) => {
    assert.match(err.message, /the changes of table public\.tmp would go to topic shop\.public\.tmp, which does not exist/);
    assert.equal(err.context!.topic, 'shop.public.tmp');
    assert.match(err.remedy!, /create the topic \(with the partition count and settings of shop\.public\.purchases\)/);
    return true;
  });
  assert.equal(registered.length, before, 'nothing registered for it');
});

test('a column renamed while streaming stops the connector with the destination rename; with columns added too; renamed while stopped, it goes on', async () => {
  const { tv } = versions();
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  const renamed = relation(25, 'orders', { columns: [col('id', 20, true), col('total', 25)] });
  await assert.rejects(tv.onRelation(renamed, AFTER), (err: Error & { remedy?: string; context?: Record<string, unknown> }) => {
    assert.match(err.message, /column amount of table public\.orders was renamed to total while streaming: the connector stops/);
    assert.deepEqual(err.context, { table: 'public.orders', column: 'amount', renamedTo: 'total' });
    assert.match(err.remedy!, /ALTER TABLE "public"\."orders" RENAME COLUMN "amount" TO "total";/);
    assert.match(err.remedy!, /the source goes on from the transaction that met the rename, under the new name/);
    return true;
  });
  const withAdd = versions().tv;
  await withAdd.init([catalogTable(TEXT)], CATALOG_LSN);
  await assert.rejects(withAdd.onRelation(relation(25, 'orders', { columns: [col('id', 20, true), col('total', 25), col('w', 23)] }), AFTER), /renamed to total/);
  // Made while stopped: replayed under the old name, then the new one.
  const stopped = versions();
  await stopped.tv.init([{ ...catalogTable(TEXT), columns: [catalogTable(TEXT).columns[0], { name: 'total', type: TEXT, typmod: -1, isKey: false }] }], CATALOG_LSN);
  await stopped.tv.onRelation(relation(25), 800n);
  assert.deepEqual((await version(stopped.tv, renamed, BEFORE)).table.columns.map((c) => c.name), ['id', 'total']);
});

test('a drop and an add of another type, or a drop in the middle, are no rename', async () => {
  const { tv, logs } = versions();
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  const v = await version(tv, relation(25, 'orders', { columns: [col('id', 20, true), col('n', 23)] }), AFTER);
  assert.deepEqual(v.table.columns.map((c) => c.name), ['id', 'n']);
  const line = logs.find((l) => l.msg === 'new table version');
  assert.deepEqual([line?.added, line?.dropped], [['n'], ['amount']]);
});

test('an added column with a default: a warning naming table, column and the destination statement', async () => {
  const { tv, logs } = versions({ defaults: [{ column: 'c', type: 'integer', default: '7', notNull: true }] });
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await tv.onRelation(relation(25, 'orders', { columns: [...relation(25).columns, col('c', 23), col('plain', 25)] }), AFTER);
  const warned = logs.filter((l) => l.level === 40);
  assert.equal(warned.length, 1, JSON.stringify(logs));
  assert.equal(warned[0].table, 'public.orders');
  assert.equal(warned[0].column, 'c');
  assert.match(warned[0].msg, /column c was added to table public\.orders with DEFAULT 7: .*the destination rows would keep NULL/);
  assert.match(String(warned[0].remedy), /before the sink applies the new version, add the column on the destination the same way: ALTER TABLE <destination table> ADD COLUMN "c" integer NOT NULL DEFAULT 7/);
});

test('an added column whose default differs per side (a sequence, the time): the remedy adds it without the default and streams the source values', async () => {
  const { tv, logs } = versions({ defaults: [{ column: 'at', type: 'timestamp with time zone', default: 'now()', notNull: false, reproducible: false }] });
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await tv.onRelation(relation(25, 'orders', { columns: [...relation(25).columns, col('at', 25)] }), AFTER);
  const warned = logs.filter((l) => l.level === 40);
  assert.equal(warned.length, 1, JSON.stringify(logs));
  assert.equal(
    warned[0].remedy,
    'DEFAULT now() gives each side its own values (a sequence, the time, randomness): add the column on the destination without it (ALTER TABLE <destination table> ADD COLUMN "at" timestamp with time zone), or let the sink add it, then bring the source\'s values for the rows that existed before it across (on the source, in batches: UPDATE public.orders SET "at" = "at" WHERE …, which streams them); shardbridge cutover --verify-only shows what still differs',
  );
});

test('REPLICA IDENTITY USING INDEX on other columns than the primary key, set while streaming: the start-up check stops the connector', async () => {
  const { tv } = versions({ primaryKey: ['tenant', 'id'] });
  const table: TableInfo = {
    ...catalogTable(TEXT),
    columns: [{ name: 'tenant', type: INT4, typmod: -1, isKey: true }, ...catalogTable(TEXT).columns],
    keyColumns: ['tenant', 'id'],
  };
  await tv.init([table], CATALOG_LSN);
  const byIndex = relation(25, 'orders', { replicaIdentity: 'index', columns: [col('tenant', 23), col('id', 20, true), col('amount', 25)] });
  await assert.rejects(tv.onRelation(byIndex, AFTER), (err: Error & { remedy?: string }) => {
    assert.match(err.message, /table public\.orders has REPLICA IDENTITY USING INDEX on \(id\), not its primary key \(tenant, id\).*set while streaming: the connector stops/);
    assert.match(err.remedy!, /ALTER TABLE "public"\."orders" REPLICA IDENTITY DEFAULT/);
    return true;
  });
  // NOTHING: the source would refuse the application's updates and deletes.
  const nothing = versions();
  await nothing.tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await assert.rejects(nothing.tv.onRelation(relation(25, 'orders', { replicaIdentity: 'nothing', columns: [col('id', 20), col('amount', 25)] }), AFTER), /REPLICA IDENTITY NOTHING/);
  // On the primary key's columns, or FULL: the same key, nothing to stop for.
  const same = versions();
  await same.tv.init([catalogTable(TEXT)], CATALOG_LSN);
  assert.deepEqual((await version(same.tv, relation(25, 'orders', { replicaIdentity: 'index' }), AFTER)).table.keyColumns, ['id']);
  assert.deepEqual((await version(same.tv, relation(25, 'orders', { replicaIdentity: 'full', columns: [col('id', 20, true), col('amount', 25, true)] }), AFTER)).table.keyColumns, ['id']);
});

test('a primary key changed or dropped while streaming stops the connector; in WAL from before the start, a warning', async () => {
  const { tv } = versions({ primaryKey: ['id', 'amount'] });
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await assert.rejects(tv.onRelation(relation(25, 'orders', { columns: [col('id', 20, true), col('amount', 25, true)] }), AFTER), (err: Error & { remedy?: string }) => {
    assert.match(err.message, /the key columns of table public\.orders changed from \(id\) to \(id, amount\) while streaming: the connector stops/);
    assert.match(err.remedy!, /change the primary key on the destination the same way/);
    return true;
  });
  const dropped = versions({ primaryKey: [] });
  await dropped.tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await assert.rejects(dropped.tv.onRelation(relation(25, 'orders', { columns: [col('id', 20), col('amount', 25)] }), AFTER), /changed from \(id\) to none/);
  const replayed = versions();
  await replayed.tv.init([catalogTable(TEXT)], CATALOG_LSN);
  await replayed.tv.onRelation(relation(25, 'orders', { columns: [col('id', 20, true), col('amount', 25, true)] }), BEFORE);
  assert.ok(replayed.logs.some((l) => l.level === 40 && /the key columns changed in WAL written before the connector started/.test(l.msg)));
});

test("a partition's own Relation (after its root's, publish_via_partition_root) gets no version, topic or schemas", async () => {
  const { tv, registered, asked } = versions();
  await tv.init([catalogTable(TEXT)], CATALOG_LSN);
  const before = registered.length;
  assert.equal(await tv.onRelation({ ...relation(25, 'orders_eu'), relid: 16500 }, AFTER), null);
  assert.deepEqual([registered.length, asked], [before, []]);
  assert.match(tv.unknownRelation(16500).message, /a change of public\.orders_eu, which is none of the selected tables/);
});

test('init: 150 tables register a bounded number at once, with one info line for all of them', async () => {
  let running = 0;
  let most = 0;
  const subjects: string[] = [];
  const logs: { level: number; msg: string }[] = [];
  const tv = new TableVersions({
    registry: {
      register: async (subject) => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 1));
        running--;
        return subjects.push(subject);
      },
    },
    topicPrefix: 'shop',
    connectorVersion: 'test',
    catalog: { loadTypes: async () => new Map(), primaryKey: async () => ['id'], columnDefaults: async () => [] },
    topicExists: async () => true,
    log: pino({ level: 'info' }, new Writable({ write: (chunk, _e, cb) => (logs.push(...String(chunk).split('\n').filter(Boolean).map((l) => JSON.parse(l))), cb()) })),
  });
  const tables = Array.from({ length: 150 }, (_, i) => ({ ...catalogTable(INT4, `t${i}`), relid: 20000 + i }));
  await tv.init(tables, CATALOG_LSN);
  assert.equal(subjects.length, 300, 'a key and a value subject per table');
  assert.deepEqual(tv.all().map((v) => v.topic), tables.map((t) => `shop.public.${t.name}`));
  assert.ok(most <= 32, `${most} registrations at once`);
  assert.ok(logs.length <= 1, `${logs.length} log lines at info`);
});

test('init: a registration that fails fails the init, and no more are started', async () => {
  let calls = 0;
  const tv = new TableVersions({
    registry: { register: async () => (++calls === 5 ? Promise.reject(new Error('registry down')) : calls) },
    topicPrefix: 'shop',
    connectorVersion: 'test',
    catalog: { loadTypes: async () => new Map(), primaryKey: async () => ['id'], columnDefaults: async () => [] },
    topicExists: async () => true,
    log: pino({ level: 'silent' }),
  });
  const tables = Array.from({ length: 150 }, (_, i) => ({ ...catalogTable(INT4, `t${i}`), relid: 20000 + i }));
  await assert.rejects(tv.init(tables, CATALOG_LSN), /registry down/);
  assert.ok(calls < 100, `${calls} registrations after the failure`);
});
