import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ColumnInfo, PgTypeInfo, TableInfo, TextTuple } from '../../shared/pg-types.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { buildEnvelope, changeToEvents, truncateRecords, type ChangeContext, type ChangeEvent, type DecodedChange } from '../../source-connector/envelope.ts';
import { parseTruncateKey } from '../../source-connector/truncate-fanout.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';

const T = (name: string): PgTypeInfo => ({ oid: 0, schema: 'pg_catalog', name, kind: 'base' });
const col = (name: string, type: string, isKey = false): ColumnInfo => ({ name, type: T(type), typmod: -1, isKey });

function table(replicaIdentity: TableInfo['replicaIdentity'] = 'default', keyColumns = ['id']): TableInfo {
  return {
    relid: 16384,
    schema: 'public',
    name: 'docs',
    columns: [col('id', 'int8', keyColumns.includes('id')), col('title', 'text'), col('body', 'text')],
    keyColumns,
    replicaIdentity,
  };
}

function context(tombstones: boolean, t: TableInfo = table()): ChangeContext {
  const schemas = buildRecordSchemas(t, 'shop.public.docs', '0.1.0');
  return { schemas, source: schemas.sourceFor({ db: 'shop', tsMs: 1700000000000, lsn: 42n, txId: 7n }), tsMs: 1700000000123, tombstones };
}

/** op / key / before / after / unchanged_toast of each event, `tombstone` for null values. */
function summary(events: ChangeEvent[]): unknown[] {
  return events.map((e) =>
    e.value === null
      ? { tombstone: e.key }
      : { op: e.value.op, key: e.key, before: e.value.before, after: e.value.after, toast: e.value.unchanged_toast },
  );
}

/** Every event must encode with the table's avsc types. */
function assertEncodes(events: ChangeEvent[], t: TableInfo = table()): void {
  const schemas = buildRecordSchemas(t, 'shop.public.docs', '0.1.0');
  for (const e of events) {
    if (e.key !== null) {
      // int8 values are numbers up to 15 digits, BigInts beyond; they decode as BigInts: compare bytes.
      const bytes = schemas.keyType!.toBuffer(e.key);
      assert.deepEqual(schemas.keyType!.toBuffer(schemas.keyType!.fromBuffer(bytes)), bytes);
    }
    if (e.value !== null) {
      const back = schemas.envelopeType.fromBuffer(schemas.envelopeType.toBuffer(e.value)) as { op: string; unchanged_toast: string[] };
      assert.equal(back.op, e.value.op);
      assert.deepEqual(back.unchanged_toast, e.value.unchanged_toast);
    }
  }
}

const row = (id: number, title: string | null, body: string | null): Record<string, unknown> => ({ id, title, body });

interface Case {
  name: string;
  change: DecodedChange;
  tombstones: boolean;
  table?: TableInfo;
  expected: unknown[];
}

const t1 = (id: string, title: string | null, body: string | null | undefined): TextTuple => [id, title, body];

const CASES: Case[] = [
  {
    name: 'insert',
    change: { kind: 'insert', new: t1('1', 'a', 'x') },
    tombstones: true,
    expected: [{ op: 'c', key: { id: 1 }, before: null, after: row(1, 'a', 'x'), toast: [] }],
  },
  {
    name: 'snapshot read',
    change: { kind: 'read', new: t1('1', 'a', null) },
    tombstones: true,
    expected: [{ op: 'r', key: { id: 1 }, before: null, after: row(1, 'a', null), toast: [] }],
  },
  {
    name: 'update, key unchanged, default identity: no before, unchanged TOAST listed',
    change: { kind: 'update', new: t1('1', 'b', undefined) },
    tombstones: true,
    expected: [{ op: 'u', key: { id: 1 }, before: null, after: row(1, 'b', null), toast: ['body'] }],
  },
  {
    name: 'update under REPLICA IDENTITY FULL: before is the old row, TOAST gaps filled from it',
    change: { kind: 'update', old: t1('1', 'a', 'big'), new: t1('1', 'b', undefined) },
    tombstones: true,
    table: table('full'),
    expected: [{ op: 'u', key: { id: 1 }, before: row(1, 'a', 'big'), after: row(1, 'b', 'big'), toast: [] }],
  },
  {
    name: 'key change with tombstones: delete, tombstone, create',
    change: { kind: 'update', key: t1('1', null, null), new: t1('2', 'b', 'y') },
    tombstones: true,
    expected: [
      { op: 'd', key: { id: 1 }, before: row(1, null, null), after: null, toast: [] },
      { tombstone: { id: 1 } },
      { op: 'c', key: { id: 2 }, before: null, after: row(2, 'b', 'y'), toast: [] },
    ],
  },
  {
    name: 'key change without tombstones; unchanged TOAST stays listed on the create',
    change: { kind: 'update', key: t1('1', null, null), new: t1('2', 'b', undefined) },
    tombstones: false,
    expected: [
      { op: 'd', key: { id: 1 }, before: row(1, null, null), after: null, toast: [] },
      { op: 'c', key: { id: 2 }, before: null, after: row(2, 'b', null), toast: ['body'] },
    ],
  },
  {
    name: 'key change under FULL: the delete carries the old row, the create is complete',
    change: { kind: 'update', old: t1('1', 'a', 'big'), new: t1('2', 'a', undefined) },
    tombstones: true,
    table: table('full'),
    expected: [
      { op: 'd', key: { id: 1 }, before: row(1, 'a', 'big'), after: null, toast: [] },
      { tombstone: { id: 1 } },
      { op: 'c', key: { id: 2 }, before: null, after: row(2, 'a', 'big'), toast: [] },
    ],
  },
  {
    // A partition left at DEFAULT under a FULL parent logs only its key, yet pgoutput flags the
    // old row as full (the root's identity): its non-key columns come as NULL. A value sent as
    // unchanged TOAST is never NULL, so such a NULL is not the old value.
    name: 'key change under FULL with an old row that lacks the unchanged TOAST value: listed, not NULL',
    change: { kind: 'update', old: t1('1', null, null), new: t1('2', 'a', undefined) },
    tombstones: false,
    table: table('full'),
    expected: [
      { op: 'd', key: { id: 1 }, before: row(1, null, null), after: null, toast: [] },
      { op: 'c', key: { id: 2 }, before: null, after: row(2, 'a', null), toast: ['body'] },
    ],
  },
  {
    name: 'update under FULL with an old row that lacks the unchanged TOAST value: listed, not NULL',
    change: { kind: 'update', old: t1('1', null, null), new: t1('1', 'b', undefined) },
    tombstones: true,
    table: table('full'),
    expected: [{ op: 'u', key: { id: 1 }, before: row(1, null, null), after: row(1, 'b', null), toast: ['body'] }],
  },
  {
    name: 'delete, default identity, tombstones on',
    change: { kind: 'delete', key: t1('1', null, null) },
    tombstones: true,
    expected: [{ op: 'd', key: { id: 1 }, before: row(1, null, null), after: null, toast: [] }, { tombstone: { id: 1 } }],
  },
  {
    name: 'delete, tombstones off',
    change: { kind: 'delete', key: t1('1', null, null) },
    tombstones: false,
    expected: [{ op: 'd', key: { id: 1 }, before: row(1, null, null), after: null, toast: [] }],
  },
  {
    name: 'delete under REPLICA IDENTITY FULL carries the whole old row',
    change: { kind: 'delete', old: t1('1', 'a', 'x') },
    tombstones: true,
    table: table('full'),
    expected: [{ op: 'd', key: { id: 1 }, before: row(1, 'a', 'x'), after: null, toast: [] }, { tombstone: { id: 1 } }],
  },
  {
    name: 'keyless FULL table: null key, no tombstone, no key-change split',
    change: { kind: 'delete', old: t1('1', 'a', 'x') },
    tombstones: true,
    table: table('full', []),
    expected: [{ op: 'd', key: null, before: row(1, 'a', 'x'), after: null, toast: [] }],
  },
  {
    name: 'truncate',
    change: { kind: 'truncate' },
    tombstones: true,
    expected: [{ op: 't', key: null, before: null, after: null, toast: [] }],
  },
];

for (const c of CASES) {
  test(`changeToEvents: ${c.name}`, () => {
    const ctx = context(c.tombstones, c.table);
    const events = changeToEvents(c.change, ctx);
    assert.deepEqual(summary(events), c.expected);
    assertEncodes(events, c.table);
  });
}

test('every envelope carries source, ts_ms and a null transaction', () => {
  const ctx = context(true);
  const [e] = changeToEvents({ kind: 'insert', new: t1('1', 'a', 'x') }, ctx);
  assert.deepEqual(e.value!.source, {
    version: '0.1.0',
    connector: 'postgresql',
    name: 'shop',
    ts_ms: 1700000000000,
    snapshot: 'false',
    db: 'shop',
    schema: 'public',
    table: 'docs',
    txId: 7n,
    lsn: 42n,
    xmin: null,
  });
  assert.equal(e.value!.ts_ms, 1700000000123);
  assert.equal(e.value!.transaction, null);
});

test('a toasted key column that did not change takes its value from the old key tuple', () => {
  const ctx = context(true);
  const events = changeToEvents({ kind: 'update', key: ['1', null, null], new: [undefined, 'b', 'y'] }, ctx);
  assert.deepEqual(summary(events), [{ op: 'u', key: { id: 1 }, before: null, after: row(1, 'b', 'y'), toast: [] }]);
});

test('errors: delete without old tuple, key value not sent and no old tuple', () => {
  const ctx = context(true);
  assert.throws(() => changeToEvents({ kind: 'delete' }, ctx), /REPLICA IDENTITY NOTHING/);
  assert.throws(() => changeToEvents({ kind: 'update', new: [undefined, 'a', 'b'] }, ctx), /key column id has no value/);
});

test('buildEnvelope keeps the schema field order', () => {
  const ctx = context(false);
  const env = buildEnvelope({ op: 'c', before: null, after: row(1, 'a', 'b'), unchangedToast: [], source: ctx.source, tsMs: 5 });
  assert.deepEqual(Object.keys(env), ['before', 'after', 'source', 'op', 'ts_ms', 'transaction', 'unchanged_toast']);
  assert.equal(env.ts_ms, 5);
});

test("truncateRecords: one t envelope, and a key per partition that hashes to it and names the truncate and the session's delivery", () => {
  const ctx = context(true);
  const { value, keys } = truncateRecords(ctx, { keySchemaId: 12, partitions: 4, delivery: 1_800_000_000_123 }, '0/16B3748/1');
  assert.equal(value.op, 't');
  assert.equal(value.before, null);
  assert.equal(value.after, null);
  assert.deepEqual(value.source, ctx.source);
  assert.deepEqual(
    keys.map((k) => [partitionForKey(k, 4), parseTruncateKey(k)]),
    [0, 1, 2, 3].map((p) => [p, { id: '0/16B3748/1', partitions: 4, partition: p, delivery: 1_800_000_000_123 }]),
  );
  assertEncodes([{ key: null, value }]);
});
