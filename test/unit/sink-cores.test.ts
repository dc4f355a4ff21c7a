/**
 * The sink runtime's pure parts: stall descriptions and remedies, control record parsing,
 * topic selection, replay planning, autoEvolve SQL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeError, SinkApplyError, isRetriable } from '../../shared/errors.ts';
import { planReplay } from '../../shared/cli/commands/replay.ts';
import { arrayLiterals } from '../../sink-connector/upsert-batch.ts';
import { classify, fieldsFromMessage, inHalves, relayedSqlState, tooBigForOneGo } from '../../sink-connector/destination-errors.ts';
import { isSinkTopic } from '../../sink-connector/control.ts';
import { knownTables } from '../../sink-connector/destination-start.ts';
import { createSinkMetrics, typeMismatchGauge } from '../../sink-connector/sink-metrics.ts';
import { controlTopicKind, parseControlRecord, splitTable } from '../../sink-connector/control.ts';
import type { TableVersion } from '../../sink-connector/schema-compile.ts';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import { copyColumnOf, describeStall, remedyFor } from '../../sink-connector/stall.ts';
import { addColumnSql, missingColumnError, missingColumns, typeMismatches } from '../../sink-connector/table-state.ts';
import { PositionTracker, tpKey } from '../../sink-connector/offsets.ts';
import { classifyGap, lostRecordsStall, pastEnd, pastEndStall } from '../../sink-connector/offset-gaps.ts';

const AT = { topic: 'p.public.orders', partition: 2, offset: '41' };

/** A pg DatabaseError's shape (pg sets these fields from the server's error message). */
function pgError(fields: Record<string, string | undefined>): Error {
  return Object.assign(new Error(fields.message ?? 'boom'), { severity: 'ERROR', ...fields });
}

test('a database error keeps its fields through classify and describeStall, with a remedy by SQLSTATE', () => {
  const fk = classify(
    pgError({
      code: '23503',
      message: 'insert or update on table "orders" violates foreign key constraint "orders_customer_fk"',
      detail: 'Key (customer_id)=(7) is not present in table "customers".',
      schema: 'public',
      table: 'orders',
      constraint: 'orders_customer_fk',
    }),
    { table: 'public.orders' },
  );
  assert.ok(fk instanceof SinkApplyError);
  assert.equal(fk.retriable, false);
  const info = describeStall(fk, AT, 'apply');
  assert.equal(info.sqlstate, '23503');
  assert.equal(info.table, 'public.orders');
  assert.equal(info.constraint, 'orders_customer_fk');
  assert.match(info.detail!, /customer_id/);
  assert.match(info.remedy, /drop orders_customer_fk on public\.orders now and create foreign keys at cut-over, not before/);
  assert.deepEqual([info.topic, info.partition, info.offset], [AT.topic, AT.partition, AT.offset]);

  const notNull = describeStall(classify(pgError({ code: '23502', message: 'null value in column "note" violates not-null constraint', column: 'note', table: 't', schema: 's' }), {}), AT, 'apply');
  assert.equal(notNull.column, 'note');
  assert.match(notNull.remedy, /ALTER TABLE s\.t ALTER COLUMN note DROP NOT NULL/);
  const badType = describeStall(classify(pgError({ code: '22P02', message: 'invalid input syntax for type integer: "x"' }), { table: 's.t' }), AT, 'apply');
  assert.match(badType.remedy, /ALTER TABLE s\.t ALTER COLUMN … TYPE/);
  assert.match(remedyFor({ sqlstate: '42501', table: 's.t', reason: 'apply' }), /grant the sink's role INSERT, UPDATE, DELETE and TRUNCATE on s\.t/);
  assert.match(remedyFor({ sqlstate: 'XX000', reason: 'apply' }), /retries by itself/);
  // TRUNCATE of a table another's foreign key references: 0A000 too, but the foreign-key advice.
  assert.match(
    remedyFor({ sqlstate: '0A000', table: 's.parents', reason: 'apply', message: 'cannot truncate a table referenced in a foreign key constraint' }),
    /drop the foreign keys referencing s\.parents now and create foreign keys at cut-over/,
  );
  assert.match(remedyFor({ sqlstate: '0A000', reason: 'apply', message: 'modifying the partition value of rows is not allowed', table: 'public.orders' }), /Citus refuses to change the distribution column of a row of public\.orders/);
  assert.match(
    remedyFor({ sqlstate: '0A000', reason: 'apply', message: 'STABLE functions used in UPDATE queries cannot be called with column references', table: 'public.orders' }),
    /does not support a statement the sink sends for public\.orders .*shardbridge check.*ShardBridge defect/,
  );
});

test("Citus's relayed COPY errors (XX000, 58030 without the worker's code) classify by the worker's message", () => {
  const dup = classify(pgError({ code: 'XX000', message: 'duplicate key value violates unique constraint "orders_pkey_102008"', detail: 'Key (id)=(7) already exists.' }), { table: 'public.orders' }) as SinkApplyError;
  assert.equal(dup.context.sqlstate, '23505', 'a direct COPY meeting an existing row is a conflict, as on PostgreSQL');
  assert.equal(dup.context.reportedSqlstate, 'XX000');
  assert.equal(dup.retriable, false);
  assert.equal(relayedSqlState('XX000', 'null value in column "note" of relation "orders_102008" violates not-null constraint'), '23502');
  assert.equal(relayedSqlState('XX000', 'invalid input syntax for type integer: "x"'), '22P02');
  assert.equal(relayedSqlState('XX000', 'value too long for type character varying(3)'), '22001');
  assert.equal(relayedSqlState('XX000', 'numeric field overflow'), 'XX000', 'unknown messages keep their code');
  const lost = classify(pgError({ code: '58030', message: 'failed to complete COPY on 10.0.0.5:5432' }), {}) as SinkApplyError;
  assert.equal(lost.retriable, true, 'a worker gone mid-COPY is retried with backoff');
  // Only relays are reinterpreted: PostgreSQL's own codes stand.
  assert.equal(relayedSqlState('23505', 'anything'), '23505');
  assert.equal(relayedSqlState('0A000', 'duplicate key value violates unique constraint "x"'), '0A000');
});

test('a statement timeout, out of memory or a configured limit: retried, then applied in halves (no longer retriable), with a remedy', () => {
  const timeout = classify(pgError({ code: '57014', message: 'canceling statement due to statement timeout' }), { table: 's.t' }) as SinkApplyError;
  assert.equal(timeout.retriable, true);
  assert.equal(tooBigForOneGo(timeout), true);
  assert.equal(tooBigForOneGo(classify(pgError({ code: '53200', message: 'out of shared memory' }), {})), true);
  assert.equal(tooBigForOneGo(classify(pgError({ code: '40P01', message: 'deadlock detected' }), {})), false, 'a deadlock is only retried');
  assert.equal(tooBigForOneGo(classify(new Error('Connection terminated unexpectedly'), {})), false);
  const halves = inHalves(timeout);
  assert.equal(isRetriable(halves), false);
  assert.deepEqual([halves.message, halves.context.table, halves.context.sqlstate], [timeout.message, 's.t', '57014']);
  assert.match(halves.remedy!, /applied in halves; at one record it stalls: raise the sink role's statement_timeout/);
});

test('transient failures classify as retriable: deadlock, serialization, shutdown, a lost connection', () => {
  for (const code of ['40P01', '40001', '57P01', '08006', '53300']) assert.equal((classify(pgError({ code }), {}) as SinkApplyError).retriable, true, code);
  const lost = classify(new Error('Connection terminated unexpectedly'), { table: 's.t' });
  assert.equal((lost as SinkApplyError).retriable, true);
  assert.match(lost.message, /destination connection failed/);
  const ours = new DecodeError('bad record');
  assert.equal(classify(ours, {}), ours);
});

test('our own errors carry their remedy into the stall; decode stalls get the decode remedy', () => {
  const table: ApplyTable = { schema: 's', name: 't', columns: [{ name: 'id', type: 'bigint' }], sourceKey: ['id'], destKey: ['id'], citus: 'local' };
  const missing = describeStall(missingColumnError(table, { name: 'extra', pgType: 'numeric(10,3)' }), AT, 'apply');
  assert.equal(missing.sqlstate, '42703');
  assert.equal(missing.column, 'extra');
  assert.equal(missing.message, 'column "extra" of relation "s.t" does not exist');
  assert.match(missing.remedy, /^ALTER TABLE "s"."t" ADD COLUMN "extra" numeric\(10,3\); or set autoEvolve: true; if extra was on the destination before/);
  const decode = describeStall(new DecodeError('record value too short'), AT, 'decode');
  assert.equal(decode.reason, 'decode');
  assert.match(decode.remedy, /enable deadLetter/);
});

test('missingColumns and the autoEvolve statement', () => {
  const table: ApplyTable = { schema: 's', name: 'T x', columns: [{ name: 'id', type: 'bigint' }], sourceKey: ['id'], destKey: ['id'], citus: 'local' };
  const version = { columns: [{ name: 'id', pgType: 'int8' }, { name: 'New "col"', pgType: 'character varying(20)' }] } as unknown as TableVersion;
  assert.deepEqual(missingColumns(table, version), [{ name: 'New "col"', pgType: 'character varying(20)' }]);
  assert.equal(addColumnSql(table, { name: 'New "col"', pgType: 'character varying(20)' }), 'ALTER TABLE "s"."T x" ADD COLUMN IF NOT EXISTS "New ""col""" character varying(20)');
});

test('column_type_mismatches follows each table\'s latest catalog read: set for what it found, removed once gone', async () => {
  const m = createSinkMetrics('t');
  const update = typeMismatchGauge(m.typeMismatches);
  const series = async () => (await m.typeMismatches.get()).values.map((v) => `${v.labels.table}.${v.labels.column} ${v.labels.source_type}->${v.labels.destination_type}=${v.value}`).sort();
  update('s.orders', [{ column: 'amount', source: 'numeric(12,2)', destination: 'numeric(12,0)' }, { column: 'id', source: 'bigint', destination: 'integer' }]);
  update('s.items', [{ column: 'at', source: 'timestamp with time zone', destination: 'timestamp without time zone' }]);
  assert.deepEqual(await series(), [
    's.items.at timestamp with time zone->timestamp without time zone=1',
    's.orders.amount numeric(12,2)->numeric(12,0)=1',
    's.orders.id bigint->integer=1',
  ]);
  update('s.orders', [{ column: 'amount', source: 'numeric(12,2)', destination: 'numeric(12,1)' }]);
  assert.deepEqual(await series(), ['s.items.at timestamp with time zone->timestamp without time zone=1', 's.orders.amount numeric(12,2)->numeric(12,1)=1']);
  update('s.items', []);
  assert.deepEqual(await series(), ['s.orders.amount numeric(12,2)->numeric(12,1)=1']);
});

test('knownTables: tables mapped in the config and tables with a topic (carrying it), once each, never a control topic', () => {
  const config = { topicPrefix: 'shop', tables: { 'public.orders': { schema: 'sales' }, 'billing.invoices': {} } };
  const topics = ['shop.public.orders', 'shop.public.items', 'shop.__snapshot', 'shop.__sequences', 'shop.__transactions'];
  assert.deepEqual(knownTables(config, topics), [
    { schema: 'public', table: 'orders' },
    { schema: 'billing', table: 'invoices' },
    { schema: 'public', table: 'items', topic: 'shop.public.items' },
  ]);
  // A quoted key names the same table as its topic: once, as the mapping's.
  const quoted = { topicPrefix: 'shop', tables: { '"My Shop"."Order Items"': {} } };
  assert.deepEqual(knownTables(quoted, ['shop.My_Shop.Order_Items', 'shop.public.items']), [
    { schema: 'My Shop', table: 'Order Items' },
    { schema: 'My_Shop', table: 'Order_Items', topic: 'shop.My_Shop.Order_Items' },
    { schema: 'public', table: 'items', topic: 'shop.public.items' },
  ]);
});

test('typeMismatches: a destination type that cannot take every source value as it is; widenings, domains and non-catalog types pass', () => {
  const version = {
    columns: [
      { name: 'id', pgType: 'int8' },
      { name: 'amount', pgType: 'numeric(12,2)' },
      { name: 'at', pgType: 'timestamptz' },
      { name: 'qty', pgType: 'int4' },
      { name: 'note', pgType: 'varchar(20)' },
      { name: 'tags', pgType: '_text' },
      { name: 'mood', pgType: 'public.mood' },
      { name: 'score', pgType: 'int4' },
      { name: 'extra', pgType: 'text' },
      { name: 'blob', pgType: null },
    ],
  } as unknown as TableVersion;
  const col = (name: string, type: string, domain = false) => ({ name, type, notNull: false, domain });
  const dest = {
    columns: [
      col('id', 'integer'),
      col('amount', 'numeric(10,0)'),
      col('at', 'timestamp without time zone'),
      col('qty', 'bigint'),
      col('note', 'text'),
      col('tags', 'text[]'),
      col('mood', 'text'),
      col('score', 'posint', true),
      col('blob', 'bytea'),
    ],
  };
  assert.deepEqual(typeMismatches(version, dest), [
    { column: 'id', source: 'bigint', destination: 'integer' },
    { column: 'amount', source: 'numeric(12,2)', destination: 'numeric(10,0)' },
    { column: 'at', source: 'timestamp with time zone', destination: 'timestamp without time zone' },
  ]);
});

test('topics: table topics and known control topics under the prefix, never the dead-letter topic', () => {
  const dlq = 'shop.__dlq';
  assert.equal(isSinkTopic('shop.public.orders', 'shop', dlq), true);
  assert.equal(isSinkTopic('shop.__snapshot', 'shop', dlq), true);
  assert.equal(isSinkTopic('shop.__sequences', 'shop', dlq), true);
  assert.equal(isSinkTopic('shop.__transactions', 'shop', dlq), true);
  assert.equal(isSinkTopic('shop.__dlq', 'shop', dlq), false);
  assert.equal(isSinkTopic('shop.__other', 'shop', dlq), false);
  assert.equal(isSinkTopic('shopx.public.orders', 'shop', dlq), false);
  assert.equal(isSinkTopic('shop.public.mydlq', 'shop', 'shop.public.mydlq'), false);
  assert.equal(controlTopicKind('shop.__snapshot', 'shop'), 'snapshot');
  assert.deepEqual(splitTable('public.order.items'), { schema: 'public', table: 'order.items' });
});

test('control records: the source shapes, tolerant of unknown kinds, bad JSON and never-used sequences', () => {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  assert.deepEqual(parseControlRecord('snapshot', json({ kind: 'completed', table: 'public.o', topic: 'p.public.o', rows: 3, endOffsets: [{ partition: 0, offset: '7' }] })), {
    kind: 'snapshot-completed',
    topic: 'p.public.o',
    sourceTable: { schema: 'public', table: 'o' },
    rows: 3,
    endOffsets: [{ partition: 0, offset: '7' }],
  });
  assert.deepEqual(parseControlRecord('snapshot', json({ kind: 'completed', table: 't', topic: 'x', endOffsets: { 0: 5, 1: '6' } }))!, {
    kind: 'snapshot-completed',
    topic: 'x',
    sourceTable: { schema: 'public', table: 't' },
    rows: null,
    endOffsets: [
      { partition: 0, offset: '5' },
      { partition: 1, offset: '6' },
    ],
  });
  assert.equal((parseControlRecord('snapshot', json({ kind: 'started', table: 'public.o', topic: 'x', estimatedRows: 9 })) as { kind: string }).kind, 'snapshot-started');
  assert.equal(parseControlRecord('snapshot', json({ kind: 'slot-created', slot: 's' })), null);
  assert.equal(parseControlRecord('snapshot', null), null);
  assert.match((parseControlRecord('snapshot', Buffer.from('{nope')) as { invalid: string }).invalid, /not JSON/);
  assert.match((parseControlRecord('snapshot', json({ kind: 'completed', table: 't', topic: 'x' })) as { invalid: string }).invalid, /endOffsets/);
  // A record of an older source carries only the `schema.name` texts: split at the first dot.
  assert.deepEqual(parseControlRecord('sequences', json({ sequence: 'public.o_id_seq', table: 'public.o', column: 'id', value: '42' })), {
    kind: 'sequence',
    sequence: 'public.o_id_seq',
    sequenceId: { schema: 'public', name: 'o_id_seq' },
    sourceTable: { schema: 'public', table: 'o' },
    column: 'id',
    value: '42',
  });
  // The names themselves when the record carries them: a schema holding a dot is not split there.
  const named = { sequence: '"Shop.EU"."odd.seq"', table: 'Shop.EU.o', column: 'n', value: '7', sequenceSchema: 'Shop.EU', sequenceName: 'odd.seq', tableSchema: 'Shop.EU', tableName: 'o' };
  assert.deepEqual(parseControlRecord('sequences', json(named)), {
    kind: 'sequence',
    sequence: '"Shop.EU"."odd.seq"',
    sequenceId: { schema: 'Shop.EU', name: 'odd.seq' },
    sourceTable: { schema: 'Shop.EU', table: 'o' },
    column: 'n',
    value: '7',
  });
  const marker = parseControlRecord('snapshot', json({ kind: 'started', table: 'Shop.EU.o', tableSchema: 'Shop.EU', tableName: 'o', topic: 'x', estimatedRows: 1 }));
  assert.deepEqual((marker as { sourceTable: unknown }).sourceTable, { schema: 'Shop.EU', table: 'o' });
  assert.equal(parseControlRecord('sequences', json({ sequence: 'public.o_id_seq', value: null })), null);
  assert.match((parseControlRecord('sequences', json({ sequence: 's', value: 'x1' })) as { invalid: string }).invalid, /not an integer/);
  assert.equal(parseControlRecord('transactions', json({ status: 'BEGIN' })), null);
});

test('planReplay rewinds to the target clamped to the log end, never forward, and leaves empty partitions alone', () => {
  const plan = planReplay(
    [0, 1, 2, 3],
    new Map([
      [0, 5n],
      [1, 50n],
      [2, 5n],
      [3, 500n],
    ]),
    new Map([
      [0, 100n],
      [1, 100n],
      [2, 100n],
      [3, 200n],
    ]),
    new Map([
      [0, 100n],
      [1, 20n],
      [3, 300n],
    ]),
  );
  assert.deepEqual(plan, [
    { partition: 0, stored: 100n, next: 5n },
    { partition: 1, stored: 20n, next: null },
    { partition: 2, stored: null, next: null },
    { partition: 3, stored: 300n, next: 200n, note: 'the partition ends at 200' },
  ]);
});

test('planReplay clamps the target to the offsets Kafka has, and moves a stored offset below the log start up to it', () => {
  const plan = planReplay(
    [0, 1, 2, 3, 4],
    new Map([
      [0, 0n], // below the log start: from the log start
      [1, 15n], // the remedy of a gap stall: forward to the log start
      [2, 40n], // forward past records Kafka has: only to the log start
      [3, 20n], // within range, a rewind
      [4, 0n], // nothing stored yet, log start above 0
    ]),
    new Map([
      [0, 100n],
      [1, 100n],
      [2, 100n],
      [3, 100n],
      [4, 100n],
    ]),
    new Map([
      [0, 50n],
      [1, 10n],
      [2, 10n],
      [3, 30n],
    ]),
    new Map([
      [0, 15n],
      [1, 15n],
      [2, 15n],
      [3, 15n],
      [4, 15n],
    ]),
  );
  assert.deepEqual(
    plan.map((r) => [r.partition, r.stored, r.next]),
    [
      [0, 50n, 15n],
      [1, 10n, 15n],
      [2, 10n, 15n],
      [3, 30n, 20n],
      [4, null, 15n],
    ],
  );
  assert.match(plan[0].note!, /offsets below 15 are gone from Kafka/);
  assert.match(plan[1].note!, /moved forward to Kafka's first offset 15: offsets 10\.\.14 are gone from Kafka/);
  assert.match(plan[4].note!, /offsets 0\.\.14 are gone/);
  assert.equal(plan[3].note, undefined);
});

test('PositionTracker: a gap is looked at only the second time for the same stored offset', () => {
  const t = new PositionTracker();
  t.reset([['x', 5n]]);
  assert.equal(t.gapSeekedBefore('t', 0, 5n), false);
  assert.equal(t.gapSeekedBefore('t', 0, 5n), true);
  assert.equal(t.gapSeekedBefore('t', 0, 6n), false);
});

test('PositionTracker: a partition found past its end stays so while it stores that offset, also across a join that reads it back', () => {
  const t = new PositionTracker();
  const k = tpKey('t', 0);
  t.reset([[k, 10n]]);
  const info = pastEndStall({ topic: 't', partition: 0, stored: 10n, end: 3n }, {});
  t.markPastEnd('t', 0, 10n, info);
  assert.equal(t.pastEndOf('t', 0)?.info, info);
  t.set('t', 0, 0n); // replayed
  assert.equal(t.pastEndOf('t', 0), undefined);
  t.reset([[k, 10n]], [[k, { stored: 10n }]]);
  assert.deepEqual(t.pastEndOf('t', 0), { stored: 10n });
  t.reset([[k, 0n]], [[k, { stored: 10n }]]);
  assert.equal(t.pastEndOf('t', 0), undefined, 'the stored offset moved since: no longer past the end');
});

test('classifyGap: records are lost only when Kafka starts above the stored offset', () => {
  assert.equal(classifyGap(10n, 15n), 'lost');
  assert.equal(classifyGap(10n, 11n), 'lost');
  assert.equal(classifyGap(10n, 10n), 'empty');
  assert.equal(classifyGap(10n, 0n), 'empty');
  assert.equal(pastEnd(11n, 10n), true);
  assert.equal(pastEnd(10n, 10n), false);
  assert.equal(pastEnd(undefined, 0n), false);
});

test('the gap stalls name topic, partition, table, the offsets, how many are gone, and the remedy', () => {
  const lost = lostRecordsStall({ topic: 'p.public.orders', partition: 2, stored: 10n, logStart: 15n }, { source: 'public.orders', dest: 'app.orders' });
  assert.equal(lost.reason, 'gap');
  assert.equal(lost.offset, '10');
  assert.equal(lost.table, 'app.orders');
  assert.match(lost.message, /p\.public\.orders\[2\] has stored offset 10 but the first offset Kafka has is 15: 5 offsets are gone/);
  assert.match(lost.remedy, /^the destination table app\.orders misses those changes/);
  assert.match(lost.remedy, /`shardbridge resnapshot --source-config source\.yaml --table public\.orders`/);
  assert.match(lost.remedy, /`shardbridge replay --sink-config sink\.yaml --topic p\.public\.orders --partition 2 --to-offset 15`/);
  assert.match(lostRecordsStall({ topic: 't', partition: 0, stored: 1n, logStart: 2n }, {}).message, /1 offset is gone/);
  const end = pastEndStall({ topic: 't', partition: 1, stored: 10n, end: 3n }, {});
  assert.equal(end.reason, 'past-end');
  assert.match(end.message, /stored offset 10 is past the end of the partition \(Kafka's end offset is 3\)/);
  assert.match(end.remedy, /--topic t --partition 1 --to-offset 0/);
  assert.match(end.remedy, /cleanup --drop-control-tables/);
});

test('arrayLiterals: every element quoted, only quotes and backslashes escaped, NULL for null', () => {
  assert.deepEqual(arrayLiterals([[null, '', 'NULL', 'a"b', 'back\\slash', '{x,y}', ' sp ', 'zürich'], []]), [
    '{NULL,"","NULL","a\\"b","back\\\\slash","{x,y}"," sp ","zürich"}',
    '{}',
  ]);
});

test('autoEvolve quotes the one-byte "char" (unquoted, char is character(1))', () => {
  const table: ApplyTable = { schema: 's', name: 't', columns: [{ name: 'id', type: 'bigint' }], sourceKey: ['id'], destKey: ['id'], citus: 'local' };
  assert.equal(addColumnSql(table, { name: 'f', pgType: 'char' }), 'ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS "f" "char"');
  assert.equal(addColumnSql(table, { name: 'f', pgType: '_char' }), 'ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS "f" _char');
});

test("a value COPY refuses names its column in the error's context only: the stall takes it from there", () => {
  assert.equal(copyColumnOf('COPY tt, line 1, column b c: "abc"'), 'b c');
  assert.equal(copyColumnOf('COPY "Odd, Table", line 12, column amount: "x"'), 'amount');
  assert.equal(copyColumnOf('COPY tt, line 3, column v'), 'v');
  assert.equal(copyColumnOf('SQL statement "SELECT 1"'), undefined);
  assert.equal(copyColumnOf(undefined), undefined);
  const err = Object.assign(new Error('value too long for type character varying(3)'), { code: '22001', severity: 'ERROR', where: 'COPY short, line 2, column v: "abcdef"' });
  const info = describeStall(new SinkApplyError('x', { cause: err, context: { table: 's.short' } }), { topic: 't', partition: 0, offset: '1' }, 'apply');
  assert.equal(info.column, 'v');
  assert.match(info.remedy, /ALTER TABLE s\.short ALTER COLUMN v TYPE/);
});

test("a worker's error relayed by Citus without its fields: the constraint and column are read from its text", () => {
  assert.deepEqual(fieldsFromMessage('new row for relation "big_104818" violates check constraint "qty_positive"'), { constraint: 'qty_positive' });
  assert.deepEqual(fieldsFromMessage('null value in column "a""b" of relation "orders_102008" violates not-null constraint'), { column: 'a"b' });
  assert.deepEqual(fieldsFromMessage('duplicate key value violates unique constraint "orders_code_key_102008"'), { constraint: 'orders_code_key_102008' });
  assert.deepEqual(fieldsFromMessage('insert or update on table "items_102040" violates foreign key constraint "items_order_fk_102040"'), { constraint: 'items_order_fk_102040' });
  assert.deepEqual(fieldsFromMessage('value too long for type character varying(5)'), {});
  // As Citus relays it: SQLSTATE and message, no constraint field; fields a server sends win.
  const relayed = classify({ severity: 'ERROR', code: '23514', message: 'new row for relation "big_104818" violates check constraint "qty_positive"' }, { table: 'app.big' });
  assert.equal((relayed as SinkApplyError).context.constraint, 'qty_positive');
  const own = classify({ severity: 'ERROR', code: '23502', message: 'null value in column "qty" of relation "big" violates not-null constraint', column: 'qty2' }, { table: 'app.big' });
  assert.equal((own as SinkApplyError).context.column, 'qty2');
});
