import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { PgTypeInfo, TableInfo } from '../../shared/pg-types.ts';
import type { RelationMessage } from '../../source-connector/pgoutput-decoder.ts';
import { TableVersions } from '../../source-connector/table-versions.ts';

const INT4: PgTypeInfo = { oid: 23, schema: 'pg_catalog', name: 'int4', kind: 'base' };
const INT8: PgTypeInfo = { oid: 20, schema: 'pg_catalog', name: 'int8', kind: 'base' };
const TEXT: PgTypeInfo = { oid: 25, schema: 'pg_catalog', name: 'text', kind: 'base' };

function catalogTable(amount: PgTypeInfo): TableInfo {
  return {
    relid: 16400,
    schema: 'public',
    name: 'orders',
    columns: [
      { name: 'id', type: INT8, typmod: -1, isKey: true },
      { name: 'amount', type: amount, typmod: -1, isKey: false },
    ],
    keyColumns: ['id'],
    replicaIdentity: 'default',
  };
}

function relation(amountOid: number, name = 'orders'): RelationMessage {
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
  };
}

/** `amountNow`, `nameNow`: the type oid of `amount` and the table's name the source catalog shows now. */
function versions(amountNow = 20, nameNow = 'orders'): { tv: TableVersions; registered: string[] } {
  const registered: string[] = [];
  const tv = new TableVersions({
    registry: { register: async (subject) => (registered.push(subject), registered.length) },
    topicPrefix: 'shop',
    connectorVersion: 'test',
    catalog: {
      loadTypes: async (oids) => new Map([INT4, INT8, TEXT].filter((t) => oids.includes(t.oid)).map((t) => [t.oid, t])),
      primaryKey: async () => ['id'],
      currentTable: async () => ({
        schema: 'public',
        name: nameNow,
        columns: [
          { name: 'id', typeoid: 20, typmod: -1 },
          { name: 'amount', typeoid: amountNow, typmod: -1 },
        ],
      }),
    },
    log: pino({ level: 'silent' }),
  });
  return { tv, registered };
}

test('a type change made while stopped: the replayed old type, then the change the start-up catalog has, in one session', async () => {
  const { tv, registered } = versions();
  await tv.init([catalogTable(INT8)]);
  // WAL written before the ALTER replays with the old type: the session's first Relation is taken as it is.
  assert.equal((await tv.onRelation(relation(23))).table.columns[1].type.name, 'int4');
  // The ALTER itself: the start-up catalog already has int8, so the connector carries on.
  assert.equal((await tv.onRelation(relation(20))).table.columns[1].type.name, 'int8');
  assert.deepEqual(registered.filter((s) => s.endsWith('-value')), Array(3).fill('shop.public.orders-value'), 'start-up, replayed and new version');
});

test('a type change while running stops the connector naming table, column, both types and the remedy', async () => {
  const { tv } = versions();
  await tv.init([catalogTable(INT4)]);
  await tv.onRelation(relation(23));
  await assert.rejects(tv.onRelation(relation(20)), (err: Error & { remedy?: string; context?: Record<string, unknown> }) => {
    assert.match(err.message, /column amount of table public\.orders changed type from int4 to int8/);
    assert.deepEqual(err.context, { table: 'public.orders', column: 'amount', oldType: 'int4', newType: 'int8' });
    assert.match(err.remedy!, /stop the source and sink connectors, change the column type on the source and on the destination/);
    return true;
  });
});

test('after a change made while stopped, a further change while running still stops the connector', async () => {
  const { tv } = versions();
  await tv.init([catalogTable(INT8)]);
  await tv.onRelation(relation(23));
  await tv.onRelation(relation(20));
  await assert.rejects(tv.onRelation(relation(25)), /changed type from int8 to text/);
});

test('a table idle since start-up whose type changed while running: its first Relation, as the catalog is now, stops the connector', async () => {
  const { tv } = versions(20);
  await tv.init([catalogTable(INT4)]);
  await assert.rejects(tv.onRelation(relation(20)), /column amount of table public\.orders changed type from int4 to int8: the connector stops/);
  // The same after a reconnect: a new session's first Relation is checked the same way.
  const again = versions(20).tv;
  await again.init([catalogTable(INT4)]);
  await again.onRelation(relation(23));
  again.newSession();
  await assert.rejects(again.onRelation(relation(20)), /changed type from int4 to int8/);
});

test('a table renamed while streaming stops the connector (its new name has no topic); renamed while stopped, it goes on', async () => {
  const running = versions(20, 'purchases').tv;
  await running.init([catalogTable(INT8)]);
  await running.onRelation(relation(20));
  await assert.rejects(running.onRelation(relation(20, 'purchases')), (err: Error & { remedy?: string }) => {
    assert.match(err.message, /table public\.orders was renamed to public\.purchases while streaming: the connector stops/);
    assert.match(err.remedy!, /rename it back; or stop both connectors, map public\.purchases in the sink's tables/);
    return true;
  });
  // Idle until the rename: its first Relation of the session, under the name the catalog has now.
  const idle = versions(20, 'purchases').tv;
  await idle.init([catalogTable(INT8)]);
  await assert.rejects(idle.onRelation(relation(20, 'purchases')), /was renamed to public\.purchases/);
  // Renamed while stopped: the start-up catalog has the new name; WAL from before it replays under the old one.
  const stopped = versions(20, 'purchases').tv;
  await stopped.init([{ ...catalogTable(INT8), name: 'purchases' }]);
  assert.equal((await stopped.onRelation(relation(20, 'orders'))).topic, 'shop.public.orders');
  assert.equal((await stopped.onRelation(relation(20, 'purchases'))).topic, 'shop.public.purchases');
});
