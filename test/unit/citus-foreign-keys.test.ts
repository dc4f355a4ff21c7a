import { test } from 'node:test';
import assert from 'node:assert/strict';
import { citusForeignKeyRefusal, type CitusLayout } from '../../shared/schema/citus-foreign-keys.ts';
import type { ConstraintDef, ForeignKeyAction, TableDef } from '../../shared/schema/model.ts';

const fk = (columns: string[], refColumns: string[], onUpdate: ForeignKeyAction = 'a', onDelete: ForeignKeyAction = 'a'): ConstraintDef => ({
  name: 'fk', type: 'f', definition: '', columns,
  references: { schema: 'public', table: 't', columns: refColumns, onUpdate, onDelete },
});
const local: CitusLayout = { kind: 'local' };
const reference: CitusLayout = { kind: 'reference' };
const dist = (column: string, group: string | null = 'with:public.orders'): CitusLayout => ({ kind: 'distributed', column, group });

test('Citus foreign keys: distributed to reference, reference to reference, local to reference are accepted', () => {
  assert.equal(citusForeignKeyRefusal(fk(['customer_id'], ['id']), dist('id'), reference), null);
  assert.equal(citusForeignKeyRefusal(fk(['customer_id'], ['id'], 'c', 'c'), dist('id'), reference), null, 'actions allowed when the key lacks the distribution column');
  assert.equal(citusForeignKeyRefusal(fk(['a'], ['id'], 'c', 'n'), reference, reference), null);
  assert.equal(citusForeignKeyRefusal(fk(['a'], ['id']), local, reference), null);
  assert.equal(citusForeignKeyRefusal(fk(['a'], ['id']), local, local), null);
  assert.equal(citusForeignKeyRefusal(fk(['a'], ['id'], 'r', 'a'), reference, local), null, 'reference to local: NO ACTION and RESTRICT only');
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id'], 'a', 'c'), reference, local)!, /reference table can reference a local table only with NO ACTION or RESTRICT, not ON DELETE CASCADE/);
  assert.equal(citusForeignKeyRefusal(fk(['a'], ['id'], 'c', 'c'), local, reference), null, 'local to reference: any action');
});

test('Citus foreign keys: between colocated distributed tables only on the paired distribution columns', () => {
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'a', 'c'), dist('order_id'), dist('id')), null);
  assert.equal(citusForeignKeyRefusal(fk(['tenant', 'order_id'], ['tenant', 'id']), dist('tenant'), dist('tenant')), null);
  assert.match(citusForeignKeyRefusal(fk(['customer_id'], ['id']), dist('id'), dist('id'))!, /must pair the distribution columns \(id with id\)/);
  assert.match(citusForeignKeyRefusal(fk(['tenant', 'order_id'], ['id', 'tenant']), dist('tenant'), dist('tenant'))!, /must pair/);
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id']), dist('order_id', 'id:3'), dist('id', 'id:4'))!, /not colocated/);
  // Groups of different kinds cannot be compared: only the column rule is applied.
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id']), dist('order_id', 'type:bigint'), dist('id', 'id:4')), null);
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id']), dist('order_id', null), dist('id', 'id:4')), null);
});

test('Citus foreign keys: actions refused when the key includes the distribution column', () => {
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'c'), dist('order_id'), dist('id'))!, /ON UPDATE CASCADE is not supported when the key includes the distribution column order_id/);
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'n'), dist('order_id'), reference)!, /ON UPDATE SET NULL/);
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'a', 'd'), dist('order_id'), dist('id'))!, /ON DELETE SET DEFAULT/);
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'r', 'c'), dist('order_id'), dist('id')), null, 'RESTRICT on update, CASCADE on delete');
});

test('Citus foreign keys: reference or local tables cannot reference distributed ones, nor distributed tables local ones', () => {
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), reference, dist('id'))!, /reference table cannot reference a distributed table/);
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), local, dist('id'))!, /local table cannot reference a distributed table/);
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), dist('a'), local)!, /referenced table stays local/);
  assert.equal(citusForeignKeyRefusal({ name: 'c', type: 'c', definition: 'CHECK (a > 0)', columns: ['a'] }, reference, dist('id')), null, 'not a foreign key');
});

test('Citus foreign keys: a single-shard table references reference tables and single-shard tables of its colocation group only', () => {
  const single = (group: string | null = 'id:7'): CitusLayout => ({ kind: 'single-shard', group });
  assert.equal(citusForeignKeyRefusal(fk(['customer_id'], ['id'], 'c', 'n'), single(), reference), null, 'no distribution column: any action');
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id'], 'c', 'c'), single(), single()), null);
  assert.equal(citusForeignKeyRefusal(fk(['order_id'], ['id']), single('id:7'), single(null)), null, 'group unknown: cannot tell');
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id']), single('id:7'), single('id:8'))!, /two single-shard tables are not colocated/);
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id']), single(), dist('id'))!, /colocated only with single-shard tables/);
  assert.match(citusForeignKeyRefusal(fk(['order_id'], ['id']), dist('order_id'), single())!, /colocated only with single-shard tables/);
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), single(), local)!, /referenced table stays local/);
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), reference, single())!, /reference table cannot reference a distributed table/);
  assert.match(citusForeignKeyRefusal(fk(['a'], ['id']), local, single())!, /local table cannot reference a distributed table/);
});

test('Citus foreign keys: SET DEFAULT refused on a column whose default is a sequence, wherever a Citus table takes part', () => {
  const table = (defaults: Record<string, string | null>): TableDef => ({
    schema: 'public', name: 'items', printed: 'public.items', kind: 'r', unlogged: false, constraints: [], indexes: [],
    columns: Object.entries(defaults).map(([name, d]) => ({ name, type: 'bigint', notNull: false, default: d, identity: '', generated: null, collation: null })),
  });
  const seqDefault = table({ order_id: "nextval('public.s'::regclass)", 'B c': '0' });
  const onDelete = (definition: string): ConstraintDef => ({ ...fk(['order_id', 'B c'], ['id', 'x'], 'a', 'd'), definition });
  const all = onDelete('FOREIGN KEY (order_id, "B c") REFERENCES public.t(id, x) ON DELETE SET DEFAULT');
  assert.match(citusForeignKeyRefusal(all, dist('x'), reference, seqDefault)!, /SET DEFAULT is not supported on order_id, whose default is a sequence's nextval/);
  assert.match(citusForeignKeyRefusal(all, reference, reference, seqDefault)!, /on order_id/, 'reference tables too');
  assert.equal(citusForeignKeyRefusal(all, local, local, seqDefault), null, 'no Citus table: PostgreSQL alone');
  // PostgreSQL 15's column list: only the columns named are set to their default.
  assert.equal(citusForeignKeyRefusal(onDelete('FOREIGN KEY (order_id, "B c") REFERENCES public.t(id, x) ON DELETE SET DEFAULT ("B c")'), dist('x'), reference, seqDefault), null);
  assert.match(citusForeignKeyRefusal({ ...fk(['order_id'], ['id'], 'd'), definition: 'ON UPDATE SET DEFAULT' }, reference, reference, seqDefault)!, /on order_id/, 'ON UPDATE: every key column');
  assert.equal(citusForeignKeyRefusal(all, dist('x'), reference, table({ order_id: '0', 'B c': null })), null, 'no sequence default');
});
