import { test } from 'node:test';
import assert from 'node:assert/strict';
import { citusTableKind, describeCitusTable } from '../../shared/schema/citus-table-kind.ts';

test('Citus table kinds are told from partition method, replication model and colocation group', () => {
  assert.equal(citusTableKind(undefined), 'local', 'not in pg_dist_partition');
  assert.equal(citusTableKind({ partmethod: 'h', repmodel: 's', colocationid: 3 }), 'distributed');
  assert.equal(citusTableKind({ partmethod: 'r', repmodel: 'c', colocationid: 0 }), 'distributed', 'range');
  assert.equal(citusTableKind({ partmethod: 'a', repmodel: 'c', colocationid: 0 }), 'distributed', 'append');
  assert.equal(citusTableKind({ partmethod: 'n', repmodel: 't', colocationid: 1 }), 'reference');
  assert.equal(citusTableKind({ partmethod: 'n', repmodel: 's', colocationid: 0 }), 'local', 'a Citus local table keeps its rows on the coordinator');
  assert.equal(citusTableKind({ partmethod: 'n', repmodel: 's', colocationid: '7' }), 'single-shard', 'pg returns the oid-like column as text or number');
});

test('Citus table kinds are described for logs and check reports', () => {
  assert.equal(describeCitusTable('distributed', 'customer_id'), 'distributed by customer_id');
  assert.match(describeCitusTable('single-shard', null), /^a single-shard distributed table \(no distribution column/);
  assert.equal(describeCitusTable('reference', null), 'a reference table (a copy on every node)');
  assert.equal(describeCitusTable('local', null), 'local');
});
