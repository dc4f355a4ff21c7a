import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalSchemaText } from '../../shared/registry/canonical.ts';

test('key order does not change the canonical text', () => {
  const a = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'int' }] };
  const b = { fields: [{ type: 'int', name: 'a' }], name: 'R', type: 'record' };
  assert.equal(canonicalSchemaText(a), canonicalSchemaText(b));
});

test('field order and enum symbol order are significant', () => {
  const f = (names: string[]) => ({ type: 'record', name: 'R', fields: names.map((n) => ({ name: n, type: 'int' })) });
  assert.notEqual(canonicalSchemaText(f(['a', 'b'])), canonicalSchemaText(f(['b', 'a'])));
  const e = (symbols: string[]) => ({ type: 'enum', name: 'E', symbols });
  assert.notEqual(canonicalSchemaText(e(['X', 'Y'])), canonicalSchemaText(e(['Y', 'X'])));
});

test('a bare primitive wrapper equals the primitive name', () => {
  const a = { type: 'record', name: 'R', fields: [{ name: 'a', type: { type: 'long' } }] };
  const b = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'long' }] };
  assert.equal(canonicalSchemaText(a), canonicalSchemaText(b));
  // With a logical type it is not a bare wrapper any more.
  const c = { type: 'record', name: 'R', fields: [{ name: 'a', type: { type: 'long', logicalType: 'timestamp-micros' } }] };
  assert.notEqual(canonicalSchemaText(c), canonicalSchemaText(b));
});

test('docs and defaults are kept', () => {
  const a = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'int', default: 1 }] };
  const b = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'int', default: 2 }] };
  assert.notEqual(canonicalSchemaText(a), canonicalSchemaText(b));
  assert.match(canonicalSchemaText({ ...a, doc: 'd' }), /"doc":"d"/);
});
