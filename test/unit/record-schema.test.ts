import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TableInfo } from '../../shared/pg-types.ts';
import { createAvroType, textEncoderFor } from '../../shared/type-mapping/index.ts';
import {
  buildRecordSchemas,
  describeTypeChanges,
  namespaceForTopic,
  sanitizeAvroName,
  typeSignature,
} from '../../source-connector/record-schema.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';

const ORDERS: TableInfo = {
  relid: 1,
  schema: 'public',
  name: 'order-lines',
  columns: [
    column('tenant id', pgType('int4'), -1, true),
    column('id', pgType('int8'), -1, true),
    column('2nd', pgType('numeric'), ((12 << 16) | 2) + 4),
    column('tags', pgType('_text', 'array', { elem: pgType('text') })),
    column('a-b', pgType('text')),
    column('a_b', pgType('text')),
    column('at', pgType('timestamptz')),
  ],
  keyColumns: ['tenant id', 'id'],
  replicaIdentity: 'default',
};

/** `a-b` sanitizes to `a_b`, which a real column holds: the hash of 'a-b' tells them apart. */
const A_B_FIELD = 'a_b_2a89df63';

interface AvroField {
  name: string;
  type: unknown;
  default?: unknown;
  'pg.column': string;
}

test('sanitizeAvroName / namespaceForTopic (field.name.adjustment.mode=avro)', () => {
  const cases: [string, string][] = [
    ['ok_name', 'ok_name'],
    ['tenant id', 'tenant_id'],
    ['2nd', '_2nd'],
    ['', '_'],
    ['ünï', '_n_'],
    ['a-b.c', 'a_b_c'],
  ];
  for (const [s, expected] of cases) assert.equal(sanitizeAvroName(s), expected);
  assert.equal(namespaceForTopic('shop.public.order-lines'), 'shop.public.order_lines');
  assert.equal(namespaceForTopic('1x..y'), '_1x._.y');
});

test('value fields: sanitized, unique, nullable with default null, pg.column kept', () => {
  const s = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  assert.equal(s.namespace, 'shop.public.order_lines');
  const value = s.valueSchema as { name: string; namespace: string; fields: AvroField[] };
  assert.equal(`${value.namespace}.${value.name}`, 'shop.public.order_lines.Value');
  assert.deepEqual(
    value.fields.map((f) => [f.name, f['pg.column']]),
    [['tenant_id', 'tenant id'], ['id', 'id'], ['_2nd', '2nd'], ['tags', 'tags'], [A_B_FIELD, 'a-b'], ['a_b', 'a_b'], ['at', 'at']],
  );
  for (const f of value.fields) {
    assert.equal(f.default, null);
    assert.ok(Array.isArray(f.type) && f.type[0] === 'null', f.name);
  }
  // Array columns: the union is flattened, never nested.
  assert.deepEqual((value.fields[3].type as unknown[]).map((b) => (typeof b === 'string' ? b : (b as { type: string }).type)), ['null', 'array', 'string']);
});

test('key schema: key columns in key order, non-null', () => {
  const s = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  const key = s.keySchema as { name: string; fields: AvroField[] };
  assert.equal(key.name, 'Key');
  assert.deepEqual(key.fields, [
    { name: 'tenant_id', type: { type: 'int', 'pg.type': 'int4' }, 'pg.column': 'tenant id' },
    { name: 'id', type: { type: 'long', 'pg.type': 'int8' }, 'pg.column': 'id' },
  ]);
  assert.deepEqual(s.keyFromTuple(['7', '9223372036854775807', null, null, null, null, null]), { tenant_id: 7, id: 9223372036854775807n });
});

test('envelope schema has the Debezium shape', () => {
  const s = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  const env = s.envelopeSchema as { name: string; fields: { name: string; type: unknown; default?: unknown }[]; 'connect.name': string };
  assert.equal(env['connect.name'], 'shop.public.order_lines.Envelope');
  assert.deepEqual(env.fields.map((f) => f.name), ['before', 'after', 'source', 'op', 'ts_ms', 'transaction', 'unchanged_toast']);
  assert.deepEqual(env.fields[1].type, ['null', 'shop.public.order_lines.Value']);
  const source = env.fields[2].type as { name: string; namespace: string; fields: { name: string }[] };
  assert.equal(`${source.namespace}.${source.name}`, 'io.debezium.connector.postgresql.Source');
  assert.deepEqual(source.fields.map((f) => f.name), ['version', 'connector', 'name', 'ts_ms', 'snapshot', 'db', 'schema', 'table', 'txId', 'lsn', 'xmin']);
  assert.deepEqual(env.fields[6], { name: 'unchanged_toast', type: { type: 'array', items: 'string' }, default: [] });
  assert.equal(env.fields[5].default, null);
});

test('rowFromTuple: unchanged TOAST -> null and listed by column name; values round trip', () => {
  const s = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  const { row, unchangedToast } = s.rowFromTuple(['1', '2', '10.50', '{"a b",NULL}', undefined, 'x', '2000-01-01 00:00:00.000001+00']);
  assert.deepEqual(unchangedToast, ['a-b']);
  assert.deepEqual(row, { tenant_id: 1, id: 2, _2nd: '10.50', tags: ['a b', null], [A_B_FIELD]: null, a_b: 'x', at: '2000-01-01T00:00:00.000001Z' });
  const env = { before: null, after: row, source: s.sourceFor({ db: 'shop', tsMs: 1n }), op: 'c', ts_ms: null, transaction: null, unchanged_toast: unchangedToast };
  const back = s.envelopeType.fromBuffer(s.envelopeType.toBuffer(env)) as { after: Record<string, unknown> };
  // The sink side: text back from the schema as the registry returns it (JSON).
  const value = JSON.parse(JSON.stringify(s.valueSchema)) as { fields: AvroField[] };
  const texts = value.fields.map((f) => (back.after[f.name] === null ? null : textEncoderFor(f.type as object)(back.after[f.name])));
  assert.deepEqual(texts, ['1', '2', '10.50', '{"a b",NULL}', null, 'x', '2000-01-01 00:00:00.000001+00']);
});

test('a wrong tuple width and an unconvertible value are errors with context', () => {
  const s = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  assert.throws(() => s.rowFromTuple(['1']), /tuple has 1 columns/);
  assert.throws(() => s.rowFromTuple(['1', 'x', null, null, null, null, null]), (err: Error & { context?: Record<string, unknown> }) => {
    assert.equal(err.context?.column, 'id');
    return true;
  });
});

test('adding and dropping a column are compatible evolutions of the envelope', () => {
  const v1 = buildRecordSchemas(ORDERS, 'shop.public.order-lines', '0.1.0');
  const v2Table: TableInfo = { ...ORDERS, columns: [...ORDERS.columns.filter((c) => c.name !== 'at'), column('note', pgType('text'))] };
  const v2 = buildRecordSchemas(v2Table, 'shop.public.order-lines', '0.1.0');
  const row1 = v1.rowFromTuple(['1', '2', null, null, 'p', 'q', '2000-01-01 00:00:00+00']).row;
  const env1 = { before: null, after: row1, source: v1.sourceFor({ db: 'shop', tsMs: 1 }), op: 'c', ts_ms: null, transaction: null, unchanged_toast: [] };
  // Old writer, new reader and the reverse.
  const reader2 = createAvroType(v2.envelopeSchema);
  const read = reader2.fromBuffer(v1.envelopeType.toBuffer(env1), reader2.createResolver(v1.envelopeType)) as { after: Record<string, unknown> };
  assert.equal(read.after.note, null);
  assert.equal(read.after.a_b, 'q');
  const row2 = v2.rowFromTuple(['1', '2', null, null, 'p', 'q', 'n']).row;
  const env2 = { ...env1, after: row2 };
  const reader1 = createAvroType(v1.envelopeSchema);
  const old = reader1.fromBuffer(v2.envelopeType.toBuffer(env2), reader1.createResolver(v2.envelopeType)) as { after: Record<string, unknown> };
  assert.equal(old.after.at, null);
  assert.equal(old.after[A_B_FIELD], 'p');
});

test('colliding sanitized names get a suffix that does not depend on column order', () => {
  const reversed = buildRecordSchemas({ ...ORDERS, columns: [...ORDERS.columns].reverse() }, 'shop.public.order-lines', '0.1.0');
  assert.equal(reversed.fields.find((f) => f.column === 'a-b')?.field, A_B_FIELD);
  const alone = buildRecordSchemas({ ...ORDERS, columns: ORDERS.columns.filter((c) => c.name !== 'a_b') }, 'shop.public.order-lines', '0.1.0');
  assert.equal(alone.fields.find((f) => f.column === 'a-b')?.field, 'a_b');
});

test('typeSignature and describeTypeChanges', () => {
  const v2: TableInfo = {
    ...ORDERS,
    columns: ORDERS.columns.map((c) =>
      c.name === '2nd' ? { ...c, typmod: ((14 << 16) | 2) + 4 } : c.name === 'tenant id' ? { ...c, type: pgType('int8') } : c,
    ),
  };
  assert.equal(typeSignature(ORDERS)['2nd'], 'numeric(12,2)');
  assert.equal(typeSignature(ORDERS).tags, '_text');
  assert.deepEqual(describeTypeChanges(ORDERS, v2), [
    { column: 'tenant id', oldType: 'int4', newType: 'int8', avroChanged: true },
    { column: '2nd', oldType: 'numeric(12,2)', newType: 'numeric(14,2)', avroChanged: false },
  ]);
  assert.deepEqual(describeTypeChanges(ORDERS, ORDERS), []);
});

test('a table without key columns has no key schema and null keys', () => {
  const s = buildRecordSchemas({ ...ORDERS, keyColumns: [], replicaIdentity: 'full' }, 'shop.public.order-lines', '0.1.0');
  assert.equal(s.keySchema, null);
  assert.equal(s.keyType, null);
  assert.equal(s.keyFromTuple(['1', '2', null, null, null, null, null]), null);
});

test('sourceFor: server name is the topic prefix', () => {
  const s = buildRecordSchemas(ORDERS, 'eu.shop.public.order-lines', '1.2.3');
  const src = s.sourceFor({ db: 'shop', tsMs: 5, snapshot: 'last', lsn: 99n });
  assert.equal(src.name, 'eu.shop');
  assert.equal(src.snapshot, 'last');
  assert.equal(src.version, '1.2.3');
  assert.equal(src.table, 'order-lines');
});

/**
 * What Java Avro enforces (Kafka Connect, ksqlDB, KafkaAvroDeserializer; the real decoder runs in
 * test/integration/avro-interop.test.ts): names, namespace parts and field names in the spec's
 * ASCII grammar, and a union field's default valid for the union's FIRST branch (Avro 1.11).
 */
test('schemas keep to what Java Avro checks: ASCII names in every part, union defaults of the first branch', () => {
  const AVRO = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const table: TableInfo = {
    ...ORDERS,
    schema: 'my-app',
    name: '2024-sales',
    columns: [...ORDERS.columns, column('prénom', pgType('text')), column('Mixed Case', pgType('text')), column('1st', pgType('int4')), column('type', pgType('bit'), 4)],
  };
  const s = buildRecordSchemas(table, 'x-1.my-app.2024-sales', '0.1.0');
  const problems: string[] = [];
  const firstBranchAccepts = (branch: unknown, v: unknown): boolean => {
    const t = typeof branch === 'string' ? branch : (branch as { type: string }).type;
    if (t === 'null') return v === null;
    if (t === 'string') return typeof v === 'string';
    if (t === 'array') return Array.isArray(v);
    if (t === 'long' || t === 'int') return Number.isInteger(v);
    return false;
  };
  const walk = (node: unknown, ns: string): void => {
    if (Array.isArray(node)) return node.forEach((b) => walk(b, ns));
    if (node === null || typeof node !== 'object') return;
    const o = node as Record<string, any>;
    if (o.type === 'record') {
      const space = o.namespace ?? ns;
      for (const part of [...space.split('.'), o.name]) if (!AVRO.test(part)) problems.push(`name part ${part} of ${space}.${o.name}`);
      for (const f of o.fields) {
        if (!AVRO.test(f.name)) problems.push(`field ${f.name}`);
        if (Array.isArray(f.type) && 'default' in f && !firstBranchAccepts(f.type[0], f.default)) problems.push(`default of ${f.name}`);
        walk(f.type, space);
      }
    } else if (o.type === 'array') walk(o.items, ns);
  };
  walk(s.envelopeSchema, '');
  walk(s.keySchema, '');
  assert.deepEqual(problems, []);
});
