import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planResnapshot } from '../../shared/cli/commands/resnapshot.ts';
import { reduceSnapshotTopic, snapshotCompleted, snapshotStarted } from '../../source-connector/control-topics.ts';
import type { TableInfo } from '../../shared/pg-types.ts';
import { parseSignal, requestedMarkers, signalContent } from '../../source-connector/resnapshot-signal.ts';
import type { TableVersion } from '../../source-connector/table-versions.ts';

const table = (schema: string, name: string, relid: number): TableInfo => ({ relid, schema, name, columns: [], keyColumns: ['id'], replicaIdentity: 'default' });
const selected = [table('public', 'orders', 1), table('public', 'items', 2), table('sales', 'items', 3), table('sales', 'notes', 4)];
const done = (t: string) => snapshotCompleted({ table: t, topic: `p.${t}`, slot: 's', consistentPoint: 1n, rows: 1, endOffsets: [] });
const state = reduceSnapshotTopic([...selected.map((t) => done(`${t.schema}.${t.name}`)), snapshotStarted({ table: 'sales.notes', topic: 'p.sales.notes', slot: 's', consistentPoint: 1n, estimatedRows: 0 })]);
const names = (ts: TableInfo[]) => ts.map((t) => `${t.schema}.${t.name}`);

test('resnapshot plan: tables by schema.table or a unique name alone; unknown and ambiguous names refused; a started one left as is', () => {
  const p = planResnapshot(['public.orders', 'notes', 'items', 'public.nope'], selected, state);
  assert.deepEqual(p.unknown, ['public.nope']);
  assert.deepEqual(p.ambiguous, [{ name: 'items', tables: ['"public"."items"', '"sales"."items"'] }], 'items names two selected tables');
  assert.deepEqual(names(p.mark), ['public.orders']);
  assert.deepEqual(names(p.pending), ['sales.notes']);
  assert.equal(p.all, false);
  assert.deepEqual(names(planResnapshot(['public.orders', 'public.orders'], selected, state).mark), ['public.orders'], 'named twice, marked once');
});

test('resnapshot plan: a dot inside a name: the quoted form names the one meant, the printed text of two tables is refused naming both', () => {
  const dotted = [table('a.b', 'c', 1), table('a', 'b.c', 2), table('x.y', 'z', 3)];
  const st = reduceSnapshotTopic([]);
  assert.deepEqual(names(planResnapshot(['"a.b".c'], dotted, st).mark), ['a.b.c']);
  assert.deepEqual(planResnapshot(['"a"."b.c"'], dotted, st).mark.map((t) => t.relid), [2]);
  assert.deepEqual(planResnapshot(['x.y.z', 'z'], dotted, st).mark.map((t) => t.relid), [3], 'printed text of one table, or its name alone');
  const p = planResnapshot(['a.b.c'], dotted, st);
  assert.deepEqual([p.mark, p.unknown], [[], []]);
  assert.deepEqual(p.ambiguous, [{ name: 'a.b.c', tables: ['"a.b"."c"', '"a"."b.c"'] }]);
  assert.deepEqual(planResnapshot(['"a.b".nope'], dotted, st).unknown, ['"a.b".nope']);
});

test('resnapshot plan: every selected table asked for or already started means a whole new snapshot', () => {
  assert.equal(planResnapshot(['public.orders', 'public.items', 'sales.items'], selected, state).all, true);
  assert.equal(planResnapshot(['public.orders'], selected, state).all, false);
  assert.equal(planResnapshot(['public.orders'], [selected[0]], reduceSnapshotTopic([])).all, true);
});

test('resnapshot signal: read only for its slot; requested markers for the selected tables named, the rest returned as not selected', () => {
  const content = Buffer.from(signalContent({ slot: 's1', tables: ['public.orders', 'public.nope'] }));
  assert.deepEqual(parseSignal(content, 's1'), ['public.orders', 'public.nope']);
  assert.equal(parseSignal(content, 's2'), null, "another connector's request");
  assert.equal(parseSignal(Buffer.from('not json'), 's1'), null);
  assert.equal(parseSignal(Buffer.from('{"slot":"s1","tables":"public.orders"}'), 's1'), null);
  const version = (schema: string, name: string) => ({ qualified: `${schema}.${name}`, topic: `p.${schema}.${name}`, table: table(schema, name, 1) }) as unknown as TableVersion;
  const r = requestedMarkers(['public.orders', 'public.nope'], [version('public', 'orders'), version('public', 'items')], 's1', 0x10n);
  assert.deepEqual([r.tables, r.unknown], [['public.orders'], ['public.nope']]);
  const m = JSON.parse(r.markers[0].value!.toString());
  assert.deepEqual([m.kind, m.table, m.topic, m.slot, m.consistentPoint, m.requested], ['started', 'public.orders', 'p.public.orders', 's1', '0/10', true]);
});
