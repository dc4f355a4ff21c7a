import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collapse, type ApplyPlan, type ApplySegment, type UpsertGroup } from '../../sink-connector/collapse.ts';
import type { ApplyTable, SinkChange } from '../../sink-connector/sink-change.ts';
import { DecodeError, SchemaError } from '../../shared/errors.ts';

type Row = Record<string, string | null>;

const users: ApplyTable = {
  schema: 'public',
  name: 'users',
  columns: [
    { name: 'id', type: 'bigint' },
    { name: 'name', type: 'text' },
    { name: 'bio', type: 'text' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  citus: 'local',
};

// Source key (id); destination key (customer_id, id), distributed by customer_id.
const orders: ApplyTable = {
  schema: 'public',
  name: 'orders',
  columns: [
    { name: 'id', type: 'bigint' },
    { name: 'customer_id', type: 'integer' },
    { name: 'amount', type: 'numeric(12,2)' },
    { name: 'note', type: 'text' },
  ],
  sourceKey: ['id'],
  destKey: ['customer_id', 'id'],
  distributionColumn: 'customer_id',
  citus: 'distributed',
};

// Source key already holds the distribution column.
const lines: ApplyTable = {
  schema: 'public',
  name: 'lines',
  columns: [
    { name: 'order_id', type: 'bigint' },
    { name: 'n', type: 'integer' },
    { name: 'sku', type: 'text' },
  ],
  sourceKey: ['order_id', 'n'],
  destKey: ['order_id', 'n'],
  distributionColumn: 'order_id',
  citus: 'distributed',
};

let offset = 0;
function change(op: SinkChange['op'], key: Record<string, string>, after: Row | null, before: Row | null = null, toast: string[] = []): SinkChange {
  return { op, topic: 't', partition: 0, offset: String(offset++), key, after, before, unchangedToast: toast };
}
const idOf = (row: Row) => ({ id: row.id as string });
const c = (after: Row) => change('c', idOf(after), after);
const r = (after: Row) => change('r', idOf(after), after);
const u = (after: Row, before: Row | null = null, toast: string[] = []) => change('u', idOf(after), after, before, toast);
const d = (id: string, before: Row | null = null) => change('d', { id }, null, before);
const trunc = (): SinkChange => change('t', {}, null);

function seg(table: ApplyTable, parts: Partial<Omit<ApplySegment, 'kind'>>): ApplySegment {
  const destOnly = table.destKey.filter((k) => !table.sourceKey.includes(k));
  return {
    kind: 'apply',
    upserts: parts.upserts ?? [],
    deletes: parts.deletes ?? { columns: table.sourceKey, rows: [] },
    exactDeletes: parts.exactDeletes ?? { columns: table.destKey, rows: [] },
    sparingDeletes: parts.sparingDeletes ?? { columns: [...table.sourceKey, ...destOnly], rows: [] },
  };
}
const group = (columns: string[], rows: (string | null)[][], fresh = 0): UpsertGroup => ({ columns, rows, fresh });
const inPlace = (columns: string[], rows: (string | null)[][], fresh = 0, unchangedToast = ['bio']): UpsertGroup => ({ columns, rows, fresh, inPlace: true, unchangedToast });
const allUsers = ['id', 'name', 'bio'];
const allOrders = ['id', 'customer_id', 'amount', 'note'];
const order = (id: string, customer: string, amount = '1.00', note: string | null = 'n') => ({ id, customer_id: customer, amount, note });

const cases: { name: string; table: ApplyTable; changes: SinkChange[]; want: ApplyPlan }[] = [
  { name: 'empty batch → empty plan', table: users, changes: [], want: [] },
  {
    name: 'inserts become one upsert group',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: 'x' }), c({ id: '2', name: 'b', bio: null })],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'a', 'x'], ['2', 'b', null]], 2)] })],
  },
  {
    name: 'last event per key wins',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: 'x' }), u({ id: '1', name: 'b', bio: 'y' }), u({ id: '1', name: 'c', bio: 'z' })],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'c', 'z']], 1)] })],
  },
  {
    name: 'unchanged TOAST merges from an earlier upsert of the key',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: 'long' }), u({ id: '1', name: 'b' }, null, ['bio'])],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'b', 'long']], 1)] })],
  },
  {
    name: 'unchanged TOAST without an earlier event: column left out, the row updated in place so the destination keeps it',
    table: users,
    changes: [u({ id: '1', name: 'b' }, null, ['bio']), c({ id: '2', name: 'c', bio: 'd' })],
    want: [seg(users, { upserts: [inPlace(['id', 'name'], [['1', 'b']]), group(allUsers, [['2', 'c', 'd']], 1)] })],
  },
  {
    name: 'a full update of another key with the same columns stays an upsert, apart from the in-place rows',
    table: users,
    changes: [u({ id: '1', name: 'b' }, null, ['bio']), u({ id: '2', name: 'c' })],
    want: [seg(users, { upserts: [inPlace(['id', 'name'], [['1', 'b']]), group(['id', 'name'], [['2', 'c']])] })],
  },
  {
    name: 'two unchanged-TOAST updates of a key: still in place, the later values win',
    table: users,
    changes: [u({ id: '1', name: 'b' }, null, ['bio']), u({ id: '1', name: 'c' }, null, ['bio'])],
    want: [seg(users, { upserts: [inPlace(['id', 'name'], [['1', 'c']])] })],
  },
  {
    name: 'a key change leaving TOAST unchanged without a before-image: the old key deleted, the new one in place and fresh (created)',
    table: users,
    changes: [d('1'), change('c', { id: '2' }, { id: '2', name: 'a' }, null, ['bio'])],
    want: [seg(users, { upserts: [inPlace(['id', 'name'], [['2', 'a']], 1)], deletes: { columns: ['id'], rows: [['1']] } })],
  },
  {
    name: 'an unchanged-TOAST update followed by a full one: the full row is upserted',
    table: users,
    changes: [u({ id: '1', name: 'b' }, null, ['bio']), u({ id: '1', name: 'c', bio: 'new' })],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'c', 'new']])] })],
  },
  {
    name: 'unchanged TOAST filled from a full before-image',
    table: users,
    changes: [u({ id: '1', name: 'b' }, { id: '1', name: 'a', bio: 'long' }, ['bio'])],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'b', 'long']])] })],
  },
  {
    name: 'a TOAST column present in after anyway is still treated as absent',
    table: users,
    changes: [u({ id: '1', name: 'b', bio: null }, null, ['bio'])],
    want: [seg(users, { upserts: [inPlace(['id', 'name'], [['1', 'b']])] })],
  },
  {
    name: 'delete then insert → the insert',
    table: users,
    changes: [d('1'), c({ id: '1', name: 'new', bio: null })],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'new', null]])] })],
  },
  {
    name: 'insert then delete → delete',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: null }), d('1')],
    want: [seg(users, { deletes: { columns: ['id'], rows: [['1']] } })],
  },
  {
    name: 'delete, re-insert, then TOAST update: merges only from the re-insert',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: 'old' }), d('1'), c({ id: '1', name: 'b', bio: 'new' }), u({ id: '1', name: 'c' }, null, ['bio'])],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'c', 'new']])] })],
  },
  {
    name: 'truncate drops earlier events and starts a new segment',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: null }), d('2'), trunc(), c({ id: '3', name: 'c', bio: null })],
    want: [{ kind: 'truncate' }, seg(users, { upserts: [group(allUsers, [['3', 'c', null]], 1)] })],
  },
  {
    name: 'truncate at the end of the batch',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: null }), trunc()],
    want: [{ kind: 'truncate' }],
  },
  {
    name: 'a key updated after a truncate does not merge with its pre-truncate row',
    table: users,
    changes: [c({ id: '1', name: 'a', bio: 'x' }), trunc(), c({ id: '1', name: 'b', bio: null }), trunc(), u({ id: '1', name: 'c' }, null, ['bio'])],
    want: [{ kind: 'truncate' }, seg(users, { upserts: [inPlace(['id', 'name'], [['1', 'c']])] })],
  },
  {
    name: 'keys first seen as a read or an insert are fresh (first), also after an update; an update alone or a delete first is not',
    table: users,
    changes: [
      u({ id: '3', name: 'c', bio: null }),
      r({ id: '1', name: 'a', bio: null }),
      d('4'),
      r({ id: '2', name: 'b', bio: null }),
      u({ id: '2', name: 'B', bio: null }),
      c({ id: '4', name: 'd', bio: null }),
    ],
    want: [seg(users, { upserts: [group(allUsers, [['1', 'a', null], ['2', 'B', null], ['3', 'c', null], ['4', 'd', null]], 2)] })],
  },
  {
    name: 'key columns missing from after are taken from the record key',
    table: users,
    changes: [change('u', { id: '7' }, { name: 'x' })],
    want: [seg(users, { upserts: [group(['id', 'name'], [['7', 'x']])] })],
  },
  {
    name: 'primary key change in a before-image: old key deleted, new key upserted',
    table: users,
    changes: [change('u', { id: '2' }, { id: '2', name: 'a', bio: null }, { id: '1', name: 'a', bio: null })],
    want: [seg(users, { upserts: [group(allUsers, [['2', 'a', null]])], deletes: { columns: ['id'], rows: [['1']] } })],
  },
  {
    name: 'primary key change with unchanged TOAST: the value comes from the before-image',
    table: users,
    changes: [change('u', { id: '2' }, { id: '2', name: 'a' }, { id: '1', name: 'a', bio: 'long' }, ['bio'])],
    want: [seg(users, { upserts: [group(allUsers, [['2', 'a', 'long']])], deletes: { columns: ['id'], rows: [['1']] } })],
  },
  {
    name: 'primary key change of a row that can move: the new key needs no extra delete',
    table: orders,
    changes: [change('u', { id: '6' }, order('6', '2'), order('5', '1'))],
    want: [seg(orders, { upserts: [group(allOrders, [['6', '2', '1.00', 'n']])], exactDeletes: { columns: ['customer_id', 'id'], rows: [['1', '5']] } })],
  },
  {
    name: 'composite source key holding the distribution column',
    table: lines,
    changes: [
      change('c', { order_id: '1', n: '1' }, { order_id: '1', n: '1', sku: 'a' }),
      change('d', { order_id: '1', n: '2' }, null),
      change('d', { order_id: '2', n: '1' }, null, { order_id: '2', n: '1', sku: 'z' }),
    ],
    want: [seg(lines, { upserts: [group(['order_id', 'n', 'sku'], [['1', '1', 'a']], 1)], deletes: { columns: ['order_id', 'n'], rows: [['1', '2'], ['2', '1']] } })],
  },
  // Rows that move between values of a destination-only key column (orders.customer_id).
  {
    name: 'move with a before-image: exact delete of the old destination key',
    table: orders,
    changes: [u(order('5', '2'), order('5', '1'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '2', '1.00', 'n']])], exactDeletes: { columns: ['customer_id', 'id'], rows: [['1', '5']] } })],
  },
  {
    name: 'update with a before-image that did not move: no delete',
    table: orders,
    changes: [u(order('5', '1', '2.00'), order('5', '1'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '1', '2.00', 'n']])] })],
  },
  {
    name: 'moved away and back within the batch: nothing to delete',
    table: orders,
    changes: [u(order('5', '2'), order('5', '1')), u(order('5', '1', '3.00'), order('5', '2'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '1', '3.00', 'n']])] })],
  },
  {
    name: 'update without a before-image: sparing delete with the new destination key',
    table: orders,
    changes: [u(order('5', '2'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '2', '1.00', 'n']])], sparingDeletes: { columns: ['id', 'customer_id'], rows: [['5', '2']] } })],
  },
  {
    name: 'insert needs no sparing delete',
    table: orders,
    changes: [c(order('5', '2')), u(order('5', '3'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '3', '1.00', 'n']], 1)] })],
  },
  {
    name: 'delete with a before-image: exact delete carrying the distribution column',
    table: orders,
    changes: [d('5', order('5', '4'))],
    want: [seg(orders, { exactDeletes: { columns: ['customer_id', 'id'], rows: [['4', '5']] } })],
  },
  {
    name: 'delete without a before-image: by source key',
    table: orders,
    changes: [d('5')],
    want: [seg(orders, { deletes: { columns: ['id'], rows: [['5']] } })],
  },
  {
    name: 'moved then deleted: delete where the row still is (the first before-image)',
    table: orders,
    changes: [u(order('5', '2'), order('5', '1')), d('5', order('5', '2'))],
    want: [seg(orders, { exactDeletes: { columns: ['customer_id', 'id'], rows: [['1', '5']] } })],
  },
  {
    name: 'inserted then deleted in the batch: by source key',
    table: orders,
    changes: [c(order('5', '2')), d('5', order('5', '2'))],
    want: [seg(orders, { deletes: { columns: ['id'], rows: [['5']] } })],
  },
  {
    name: 'delete (place unknown) then insert elsewhere: sparing delete keeps one row',
    table: orders,
    changes: [d('5'), c(order('5', '9'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '9', '1.00', 'n']])], sparingDeletes: { columns: ['id', 'customer_id'], rows: [['5', '9']] } })],
  },
  {
    name: 'delete (place known) then insert elsewhere: exact delete of the old place',
    table: orders,
    changes: [d('5', order('5', '1')), c(order('5', '9'))],
    want: [seg(orders, { upserts: [group(allOrders, [['5', '9', '1.00', 'n']])], exactDeletes: { columns: ['customer_id', 'id'], rows: [['1', '5']] } })],
  },
  // The record key carries the canonical text of a key (`1.5`, shared/type-mapping/key-text.ts),
  // the images the spelling PostgreSQL stored (`1.50`): one key, two spellings.
  {
    name: 'a key re-spelled (delete of 1.5, create of 1.50: one key): the delete runs, then the row is created with the new spelling',
    table: users,
    changes: [change('d', { id: '1.5' }, null, { id: '1.5', name: null, bio: null }), change('c', { id: '1.5' }, { id: '1.50', name: 'a', bio: 'x' })],
    want: [seg(users, { upserts: [group(allUsers, [['1.50', 'a', 'x']], 1)], deletes: { columns: ['id'], rows: [['1.5']] } })],
  },
  {
    name: 'a key deleted and created again under the same spelling: one upsert, no delete',
    table: users,
    changes: [change('d', { id: '1.5' }, null, { id: '1.50', name: null, bio: null }), change('c', { id: '1.5' }, { id: '1.50', name: 'a', bio: 'x' })],
    want: [seg(users, { upserts: [group(allUsers, [['1.50', 'a', 'x']])] })],
  },
  {
    name: 'an update under REPLICA IDENTITY FULL whose record key is the canonical text: no key change',
    table: users,
    changes: [change('u', { id: '1.5' }, { id: '1.50', name: 'b', bio: 'x' }, { id: '1.50', name: 'a', bio: 'x' })],
    want: [seg(users, { upserts: [group(allUsers, [['1.50', 'b', 'x']])] })],
  },
];

for (const tc of cases) {
  test(`collapse: ${tc.name}`, () => {
    assert.deepEqual(collapse(tc.changes, tc.table), tc.want);
  });
}

const failures: { name: string; table: ApplyTable; changes: SinkChange[]; error: new (...a: any[]) => Error; message: RegExp }[] = [
  { name: 'a column the destination lacks', table: users, changes: [c({ id: '1', name: 'a', bio: null, age: '3' })], error: SchemaError, message: /column age/ },
  { name: 'no value for a destination key column', table: orders, changes: [u({ id: '1', amount: '1' }, null)], error: SchemaError, message: /customer_id/ },
  { name: 'an upsert without after-image', table: users, changes: [change('c', { id: '1' }, null)], error: DecodeError, message: /after-image/ },
  { name: 'a record key without the source key', table: users, changes: [change('d', { other: '1' }, null)], error: DecodeError, message: /source key column id/ },
  {
    name: 'a destination key that lacks a source key column',
    table: { ...users, sourceKey: ['id', 'name'] },
    changes: [],
    error: SchemaError,
    message: /lacks source key column name/,
  },
];

for (const tc of failures) {
  test(`collapse refuses ${tc.name}`, () => {
    assert.throws(() => collapse(tc.changes, tc.table), (err: unknown) => err instanceof tc.error && tc.message.test((err as Error).message));
  });
}

// ---- Model check: applying the plan to an in-memory destination gives the source's final state.

type DestRow = Row & { id: string; customer_id: string };
type Dest = Map<string, DestRow>; // by `${customer_id}/${id}`
const placeOf = (row: { id: string | null; customer_id: string | null }) => `${row.customer_id}/${row.id}`;

/** Mimics the SQL the writer runs; `deletesFirst` flips the statement order, which must not matter. */
function applyPlan(dest: Dest, plan: ApplyPlan, deletesFirst: boolean): void {
  for (const step of plan) {
    if (step.kind === 'truncate') {
      dest.clear();
      continue;
    }
    const deletes = () => {
      for (const [id] of step.deletes.rows) for (const [k, row] of dest) if (row.id === id) dest.delete(k);
      for (const [customer, id] of step.exactDeletes.rows) dest.delete(`${customer}/${id}`);
      for (const [id, customer] of step.sparingDeletes.rows) {
        for (const [k, row] of dest) if (row.id === id && row.customer_id !== customer) dest.delete(k);
      }
    };
    const upserts = () => {
      const seen = new Set<string>();
      for (const g of step.upserts) {
        g.rows.forEach((values, n) => {
          const row = Object.fromEntries(g.columns.map((col, i) => [col, values[i]])) as DestRow;
          const k = placeOf(row);
          // A fresh row goes in by plain COPY: no row of its source key may be there.
          if (n < g.fresh && !g.inPlace) assert.ok(![...dest.values()].some((r) => r.id === row.id), `fresh row for source key ${row.id} meets an existing row`);
          assert.ok(!seen.has(row.id), `two upserts for source key ${row.id}`);
          seen.add(row.id);
          const old = dest.get(k);
          // In place: an UPDATE, which finds the row or leaves the key without one (but a key
          // created without its TOASTed values, a leading fresh row, is upserted).
          const update = g.inPlace && n >= g.fresh;
          if (update) assert.ok(old, `in-place update of ${k} finds no row`);
          if (old || !update) dest.set(k, old ? { ...old, ...row } : ({ amount: null, note: null, ...row } as DestRow));
        });
      }
    };
    if (deletesFirst) {
      deletes();
      upserts();
    } else {
      upserts();
      deletes();
    }
  }
}

/** mulberry32: small seeded PRNG, so a failing history can be replayed by its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

test('collapse: random histories applied as a plan equal the source, in any statement order', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const rnd = prng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
    const full = rnd() < 0.5; // REPLICA IDENTITY FULL for this history
    const source = new Map<string, DestRow>();
    for (let id = 1; id <= 4; id++) source.set(String(id), order(String(id), pick(['1', '2', '3']), `${id}.00`, `note${id}`) as DestRow);
    const initial: Dest = new Map([...source.values()].map((row) => [placeOf(row), { ...row }]));
    const changes: SinkChange[] = [];
    for (let n = 0; n < 12; n++) {
      const id = pick(['1', '2', '3', '4', '5']);
      const cur = source.get(id);
      const x = rnd();
      if (x < 0.05) {
        source.clear();
        changes.push(trunc());
      } else if (!cur) {
        const row = order(id, pick(['1', '2', '3']), `${n}.00`, `new${n}`) as DestRow;
        source.set(id, row);
        changes.push(c(row));
      } else if (x < 0.3) {
        source.delete(id);
        changes.push(d(id, full ? { ...cur } : null));
      } else {
        const moved = rnd() < 0.4;
        const next = { ...cur, amount: `${n}.50`, customer_id: moved ? pick(['1', '2', '3']) : cur.customer_id } as DestRow;
        source.set(id, next);
        // An unchanged TOAST value is only recoverable when the row stays or the before-image has it.
        const toast = rnd() < 0.4 && (full || next.customer_id === cur.customer_id);
        const after: Row = { ...next };
        if (toast) delete after.note;
        changes.push(u(after, full ? { ...cur } : null, toast ? ['note'] : []));
      }
    }
    const plan = collapse(changes, orders);
    const want = new Map([...source.values()].map((row) => [placeOf(row), row]));
    for (const deletesFirst of [true, false]) {
      const dest: Dest = new Map([...initial].map(([k, v]) => [k, { ...v }]));
      applyPlan(dest, plan, deletesFirst);
      assert.deepEqual(
        new Map([...dest].sort()),
        new Map([...want].sort()),
        `seed ${seed} (full=${full}, deletesFirst=${deletesFirst}): ${JSON.stringify(changes.map((ch) => [ch.op, ch.after ?? ch.key]))}`,
      );
    }
  }
});

// A tombstone read as a delete (decode.ts): no before-image, so where the row sits is unknown.
const tomb = (id: string): SinkChange => ({ ...change('d', { id }, null), tombstone: true });
/** The plan's one apply segment. */
function only(plan: ApplyPlan): ApplySegment {
  assert.equal(plan.length, 1);
  assert.equal(plan[0].kind, 'apply');
  return plan[0] as ApplySegment;
}

test("a tombstone right after its key's delete adds nothing: the delete's exact place and spelling are kept", () => {
  const del = change('d', { id: '5' }, null, { id: '5', customer_id: '42' });
  const seg = only(collapse([del, tomb('5')], orders));
  assert.deepEqual(seg.exactDeletes.rows, [['42', '5']]);
  assert.deepEqual(seg.deletes.rows, [], 'no delete by source key: on Citus it would visit every shard');
  assert.deepEqual(seg.sparingDeletes.rows, []);
});

test('a tombstone alone (compaction removed its delete) deletes every row of its source key, whatever the distribution column', () => {
  assert.deepEqual(only(collapse([tomb('5')], orders)).deletes.rows, [['5']]);
  assert.deepEqual(only(collapse([tomb('5')], users)).deletes.rows, [['5']]);
  // A row created again after the tombstone: upserted, and any row of its key elsewhere deleted.
  const s = only(collapse([tomb('6'), c({ id: '6', customer_id: '1', amount: '1.00', note: null })], orders));
  assert.equal(s.upserts[0].rows.length, 1);
  assert.deepEqual(s.sparingDeletes.rows, [['6', '1']]);
  assert.deepEqual([...s.deletes.rows, ...s.exactDeletes.rows], []);
});

test("a tombstone between a key's delete and its creation under another spelling keeps the delete's spelling: the row is created anew", () => {
  const del = change('d', { id: '1.5' }, null, { id: '1.5', name: null, bio: null });
  const s = only(collapse([del, { ...change('d', { id: '1.5' }, null), tombstone: true }, change('c', { id: '1.5' }, { id: '1.50', name: 'a', bio: 'x' })], users));
  assert.deepEqual(s.deletes.rows, [['1.5']]);
  assert.equal(s.upserts[0].fresh, 1);
});
