import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TableInfo } from '../../shared/pg-types.ts';
import { describeChange, describeColumnRenames } from '../../source-connector/relation-changes.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';

const table = (...cols: [string, string][]): TableInfo => ({
  relid: 1,
  schema: 'public',
  name: 't',
  columns: cols.map(([n, t], i) => column(n, pgType(t), -1, i === 0)),
  keyColumns: [cols[0][0]],
  replicaIdentity: 'default',
});

test('describeColumnRenames: a new name at the position of a gone one, same type; positions shifted by a drop are no rename', () => {
  const v1 = table(['id', 'int8'], ['a', 'text'], ['b', 'int4']);
  assert.deepEqual(describeColumnRenames(v1, table(['id', 'int8'], ['x', 'text'], ['b', 'int4'])), [{ from: 'a', to: 'x', type: 'text' }]);
  // Renamed, plus a column added at the end.
  assert.deepEqual(describeColumnRenames(v1, table(['id', 'int8'], ['a', 'text'], ['y', 'int4'], ['c', 'text'])), [{ from: 'b', to: 'y', type: 'int4' }]);
  // a dropped, c added: b moved into a's position.
  assert.deepEqual(describeColumnRenames(v1, table(['id', 'int8'], ['b', 'int4'], ['c', 'text'])), []);
  // Another type at the position: a drop and an add.
  assert.deepEqual(describeColumnRenames(v1, table(['id', 'int8'], ['a', 'text'], ['n', 'numeric'])), []);
  // Fewer columns: a drop.
  assert.deepEqual(describeColumnRenames(v1, table(['id', 'int8'], ['a', 'text'])), []);
  assert.deepEqual(describeColumnRenames(v1, v1), []);
});

test('describeChange: renamed columns are not counted as added and dropped; a changed key set is', () => {
  const v1 = table(['id', 'int8'], ['a', 'text']);
  const c = describeChange(v1, table(['id', 'int8'], ['b', 'text'], ['c', 'int4']));
  assert.deepEqual([c.added, c.dropped, c.renamedColumns.map((r) => r.to), c.keyChanged, c.renamedTable], [['c'], [], ['b'], false, false]);
  assert.equal(describeChange(v1, { ...v1, keyColumns: ['a'] }).keyChanged, true);
  assert.equal(describeChange(v1, { ...v1, keyColumns: [] }).keyChanged, true);
  assert.equal(describeChange(v1, { ...v1, name: 'u' }).renamedTable, true);
});
