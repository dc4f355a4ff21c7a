import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TableInfo } from '../../shared/pg-types.ts';
import { describeChange } from '../../source-connector/relation-changes.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';

const table = (...cols: [string, string][]): TableInfo => ({
  relid: 1,
  schema: 'public',
  name: 't',
  columns: cols.map(([n, t], i) => column(n, pgType(t), -1, i === 0)),
  keyColumns: [cols[0][0]],
  replicaIdentity: 'default',
});

test('describeChange: a changed key set', () => {
  const v1 = table(['id', 'int8'], ['a', 'text']);
  const c = describeChange(v1, table(['id', 'int8'], ['b', 'text'], ['c', 'int4']));
  assert.deepEqual([c.added, c.dropped, c.keyChanged, c.renamedTable], [['b', 'c'], ['a'], false, false]);
  assert.equal(describeChange(v1, { ...v1, keyColumns: ['a'] }).keyChanged, true);
  assert.equal(describeChange(v1, { ...v1, keyColumns: [] }).keyChanged, true);
  assert.equal(describeChange(v1, { ...v1, name: 'u' }).renamedTable, true);
});
