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

function relation(amountOid: number): RelationMessage {
  return {
    tag: 'relation',
    relid: 16400,
    namespace: 'public',
    name: 'orders',
    replicaIdentity: 'default',
    columns: [
      { isKey: true, name: 'id', typeOid: 20, typmod: -1 },
      { isKey: false, name: 'amount', typeOid: amountOid, typmod: -1 },
    ],
  };
}

/** `amountNow`: the type oid the source catalog shows for `amount` now. */
function versions(amountNow = 20): { tv: TableVersions; registered: string[] } {
  const registered: string[] = [];
  const tv = new TableVersions({
    registry: { register: async (subject) => (registered.push(subject), registered.length) },
    topicPrefix: 'shop',
    connectorVersion: 'test',
    catalog: {
      loadTypes: async (oids) => new Map([INT4, INT8, TEXT].filter((t) => oids.includes(t.oid)).map((t) => [t.oid, t])),
      primaryKey: async () => ['id'],
      currentColumns: async () => [
        { name: 'id', typeOid: 20, typmod: -1 },
        { name: 'amount', typeOid: amountNow, typmod: -1 },
      ],
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
