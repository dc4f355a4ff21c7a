/**
 * shapeKey: equal exactly when two schemas differ in their top-level namespace and table labels
 * only (then one compiled type reads and writes both); sharedAvroType hands out one type per shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shapeKey, sharedAvroType, writeCached } from '../../shared/type-mapping/index.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { tenantTables } from '../helpers/tenant-tables.ts';

const record = (ns: string, fields: object[], extra: object = {}): object => ({ type: 'record', name: 'Value', namespace: ns, fields, 'connect.name': `${ns}.Value`, ...extra });

test('tenants’ copies of a table have one shape; their key and envelope types are shared', () => {
  const [a, , , , b] = tenantTables(2);
  assert.equal(a.name, b.name);
  const sa = buildRecordSchemas(a, `p.${a.schema}.${a.name}`, '1');
  const sb = buildRecordSchemas(b, `p.${b.schema}.${b.name}`, '1');
  assert.notDeepEqual(sa.envelopeSchema, sb.envelopeSchema);
  assert.equal(shapeKey(sa.envelopeSchema), shapeKey(sb.envelopeSchema));
  assert.equal(sa.envelopeType, sb.envelopeType);
  assert.equal(sa.keyType, sb.keyType);
  const other = buildRecordSchemas(tenantTables(1)[1], 'p.tenant_0000.orders', '1');
  assert.notEqual(other.envelopeType, sa.envelopeType);
});

test('shapeKey keeps field names, types, defaults and other namespaces; renames the namespace only where a type name is', () => {
  const f = (name: string, type: unknown = 'int') => ({ name, type });
  const base = shapeKey(record('a.b', [f('x')]));
  assert.equal(shapeKey(record('c.d', [f('x')], { 'pg.schema': 'c', 'pg.table': 'd' })), base);
  assert.notEqual(shapeKey(record('c.d', [f('y')])), base);
  assert.notEqual(shapeKey(record('c.d', [f('x', 'long')])), base);
  assert.notEqual(shapeKey(record('c.d', [{ ...f('x'), default: 1 }])), base);
  assert.notEqual(shapeKey(record('c.d', [f('x', { type: 'int', 'pg.type': 'int2' })])), shapeKey(record('c.d', [f('x', { type: 'int', 'pg.type': 'int4' })])));
  // A namespace without a dot, and a field of that name: the field's name stays.
  assert.notEqual(shapeKey(record('t1', [f('t1')])), shapeKey(record('t2', [f('t2')])));
  assert.equal(shapeKey(record('t1', [f('x')])), shapeKey(record('t2', [f('x')])));
  // References to a type of the namespace are renamed with it; another namespace's are kept.
  const refs = (ns: string, ref: string) => ({ type: 'record', name: 'E', namespace: ns, fields: [f('v', ['null', record(ns, [f('x')])]), f('w', ['null', ref])] });
  assert.equal(shapeKey(refs('a.b', 'a.b.Value')), shapeKey(refs('c.d', 'c.d.Value')));
  assert.notEqual(shapeKey(refs('a.b', 'a.b.Value')), shapeKey(refs('c.d', 'a.b.Value')));
  // A write-cached record (the source block) compiles to another type.
  assert.notEqual(shapeKey(writeCached(record('a.b', [f('x')]))), base);
});

test('sharedAvroType: one type per shape', () => {
  const t = sharedAvroType(record('s1.t', [{ name: 'n', type: 'string' }]));
  assert.equal(sharedAvroType(record('s2.t', [{ name: 'n', type: 'string' }])), t);
  assert.equal((t.fromBuffer(t.toBuffer({ n: 'x' })) as { n: string }).n, 'x');
});
