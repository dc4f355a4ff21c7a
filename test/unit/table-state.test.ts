/**
 * A destination column missing (42703): what the sink knows of it (table-state.ts,
 * columnHistory) and the remedy it gives. A column dropped on the destination and added back
 * is NULL in every row not changed since: the remedy says to take the table's snapshot again
 * (docs/migration-runbook.md, "A stall"); a column the source just added has nothing to fill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import type { TableVersion } from '../../sink-connector/schema-compile.ts';
import { autoEvolveLine, columnHistory, foreignKeyNote, missingColumnError } from '../../sink-connector/table-state.ts';
import { describeStall, remedyFor } from '../../sink-connector/stall.ts';

const TABLE: ApplyTable = { schema: 'public', name: 'orders', columns: [{ name: 'id', type: 'bigint' }], sourceKey: ['id'], destKey: ['id'], citus: 'local' };
const AT = { topic: 'p.public.orders', partition: 0, offset: '783' };

function version(schemaId: number, columns: string[], source = 'orders'): TableVersion {
  return {
    schemaId,
    source: { schema: 'public', table: source },
    dest: { schema: 'public', name: 'orders' },
    destId: 'public\u0000orders',
    columns: columns.map((name) => ({ name, pgType: name === 'id' ? 'bigint' : 'text' })),
    sources: ['public.orders'],
    unmatchedRenames: [],
  };
}

test('columnHistory: on the destination before (dropped there), missing from an earlier version of the source table (added there), or not known', () => {
  const v2 = version(12, ['id', 'channel']);
  assert.equal(columnHistory(new Set(['id', 'channel']), [v2], v2, 'channel'), 'dropped', 'a catalog read found it');
  assert.equal(columnHistory(new Set(['id']), [version(7, ['id']), v2], v2, 'channel'), 'added');
  assert.equal(columnHistory(new Set(['id', 'channel']), [version(7, ['id']), v2], v2, 'channel'), 'dropped', 'added at the source once, then dropped on the destination');
  assert.equal(columnHistory(undefined, [v2], v2, 'channel'), 'unknown', 'a restart since: nothing seen before');
  assert.equal(columnHistory(undefined, [version(15, ['id']), v2], v2, 'channel'), 'unknown', 'a later version without it (the source dropped it since) says nothing of the rows before');
  assert.equal(columnHistory(undefined, [version(7, ['id'], 'orders_eu'), v2], v2, 'channel'), 'unknown', 'another source table merged into the same destination table');
});

test('the 42703 remedy: ADD COLUMN, then resnapshot the source table when the column was dropped on the destination; not for one the source just added; both said when not known', () => {
  const column = { name: 'channel', pgType: 'text' };
  const dropped = describeStall(missingColumnError(TABLE, column, { table: 'public.orders', history: 'dropped' }), AT, 'apply');
  assert.equal(dropped.sqlstate, '42703');
  assert.equal(
    dropped.remedy,
    'ALTER TABLE "public"."orders" ADD COLUMN "channel" text; or set autoEvolve: true; then, the stall gone, shardbridge resnapshot --source-config source.yaml --table public.orders: channel was on the destination before and was dropped there, and rows not changed since would keep NULL in it',
  );
  const added = missingColumnError(TABLE, column, { table: 'public.orders', history: 'added' }).remedy!;
  assert.equal(added, 'ALTER TABLE "public"."orders" ADD COLUMN "channel" text; or set autoEvolve: true (the source added channel: no older row to fill)');
  assert.doesNotMatch(added, /resnapshot/);
  const unknown = missingColumnError(TABLE, column, { table: 'shop.orders', history: 'unknown' }).remedy!;
  assert.match(unknown, /^ALTER TABLE "public"\."orders" ADD COLUMN "channel" text; or set autoEvolve: true; if channel was on the destination before \(dropped there, not just added at the source\), then also, the stall gone, shardbridge resnapshot --source-config source\.yaml --table shop\.orders: rows not changed since keep NULL in it$/);
  // PostgreSQL's own 42703 (a catalog read before the drop): both, the source table a placeholder.
  assert.match(remedyFor({ sqlstate: '42703', table: 'public.orders', column: 'channel', reason: 'apply' }), /ADD COLUMN channel <type>; or set autoEvolve: true; if channel was on the destination before .*resnapshot --source-config source\.yaml --table <source table>: rows not changed since keep NULL/);
});

test('autoEvolve adding back a column dropped on the destination says the rows not changed since are NULL in it until a resnapshot', () => {
  const sql = 'ALTER TABLE "public"."orders" ADD COLUMN IF NOT EXISTS "channel" text';
  assert.equal(
    autoEvolveLine(sql, 'channel', 'public.orders', 'dropped'),
    `autoEvolve: ${sql}; channel was on the destination before and was dropped there: rows not changed since are NULL in it until shardbridge resnapshot --source-config source.yaml --table public.orders`,
  );
  for (const history of ['added', 'unknown'] as const) assert.equal(autoEvolveLine(sql, 'channel', 'public.orders', history), `autoEvolve: ${sql}`, history);
});

test('foreign keys on a destination table: a warning to create them at cut-over, an info line when the sink applies as replica (they are not checked for its rows)', () => {
  assert.equal(foreignKeyNote([], false), null);
  const origin = foreignKeyNote(['orders_customer_fk'], false)!;
  assert.equal(origin.level, 'warn');
  assert.match(origin.message, /create foreign keys at cut-over, not before \(or set sessionReplicationRole: replica\)/);
  const replica = foreignKeyNote(['orders_customer_fk'], true)!;
  assert.equal(replica.level, 'info');
  assert.deepEqual(replica.foreignKeys, ['orders_customer_fk']);
  assert.match(replica.message, /not checked for the rows the sink applies \(sessionReplicationRole replica\)/);
});
