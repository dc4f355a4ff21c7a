/**
 * The fast-row plan: which records of a chunk skip the general decode, and how their COPY
 * lines are handed to COPY. Records are built with the source's own schema and envelope
 * modules; the decoder's schemas come from a registry stand-in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TableInfo, TextTuple } from '../../shared/pg-types.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { RecordDecoder, type RawRecord } from '../../sink-connector/decode.ts';
import { byVersion, FastRowPlanner, lineChunks, type FastRow } from '../../sink-connector/fast-rows.ts';
import { FirstIndex } from '../../sink-connector/key-index.ts';

const table = (name: string): TableInfo => ({
  relid: 1,
  schema: 'public',
  name,
  columns: [column('id', pgType('int8'), -1, true), column('body', pgType('text')), column('big', pgType('text'))],
  keyColumns: ['id'],
  replicaIdentity: 'default',
});
const ORDERS = buildRecordSchemas(table('orders'), 'p.public.orders', '1');
const NOTES = buildRecordSchemas(table('notes'), 'p.public.notes', '1');
// ids: orders key 1, value 2, a second key schema 5 (same shape, another id); notes key 3, value 4.
const byId = new Map<number, object>([
  [1, ORDERS.keySchema!],
  [2, ORDERS.envelopeSchema],
  [5, ORDERS.keySchema!],
  [3, NOTES.keySchema!],
  [4, NOTES.envelopeSchema],
]);

function decoder(): RecordDecoder {
  return new RecordDecoder({ getSchema: async (id) => byId.get(id)! }, (schema, t) => ({ schema, table: t, columns: {}, sources: [] }), 'p');
}

let offset = 0;
function recs(change: DecodedChange, opts: { notes?: boolean; keyId?: number } = {}): RawRecord[] {
  const s = opts.notes ? NOTES : ORDERS;
  const [keyId, valueId] = opts.notes ? [3, 4] : [opts.keyId ?? 1, 2];
  const source = s.sourceFor({ db: 'd', tsMs: 1 });
  return changeToEvents(change, { schemas: s, source, tsMs: 1, tombstones: true }).map((ev) => ({
    topic: s === NOTES ? 'p.public.notes' : 'p.public.orders',
    partition: 0,
    offset: String(offset++),
    key: ev.key ? encodeWire(keyId, s.keyType!.toBuffer(ev.key)) : null,
    value: ev.value ? encodeWire(valueId, s.envelopeType.toBuffer(ev.value)) : null,
  }));
}

const row = (id: number, body = `b${id}`): TextTuple => [String(id), body, 'x'];
const ins = (id: number, o = {}) => recs({ kind: 'insert', new: row(id) }, o);
const read = (id: number, o = {}) => recs({ kind: 'read', new: row(id) } as DecodedChange, o);

async function plan(raws: RawRecord[]): Promise<(FastRow | null)[]> {
  const d = decoder();
  await d.prepare(raws);
  return new FastRowPlanner().plan(raws, (r) => d.describe(r));
}

const text = (f: FastRow | null) => (f === null ? null : f.lines.buf.toString('utf8', f.start, f.end));

test('single whole-row events are fast rows with their COPY line; deletes, tombstones and shared keys are not', async () => {
  const raws = [
    ...read(1),
    ...ins(2),
    ...recs({ kind: 'update', new: row(3, 'three') }),
    ...recs({ kind: 'delete', key: ['4', null, null] }), // delete + tombstone
    ...ins(5),
    ...recs({ kind: 'update', new: row(5, 'five again') }), // key 5 twice
    ...recs({ kind: 'update', new: [...row(6).slice(0, 2), undefined] }), // unchanged TOAST
  ];
  const out = await plan(raws);
  assert.deepEqual(out.map((f) => f?.op ?? null), ['r', 'c', 'u', null, null, null, null, null]);
  assert.deepEqual(out.slice(0, 3).map(text), ['1\tb1\tx\n', '2\tb2\tx\n', '3\tthree\tx\n']);
  assert.deepEqual(out[0]!.keyColumns, ['id']);
  assert.equal(out[0]!.table.dest.name, 'orders');
  assert.equal(out[0]!.raw, raws[0]);
});

test("a tombstone deletes its key (on a compacted topic its delete may be gone): that key's row in the chunk is not a fast row", async () => {
  const [, tombstone] = recs({ kind: 'delete', key: ['7', null, null] });
  const out = await plan([tombstone, ...ins(7), ...ins(8)]);
  assert.deepEqual(out.map((f) => f?.op ?? null), [null, null, 'c']);
});

test("a tombstone counts as its key's event, before or after that key's row: the row goes the general way, other keys' rows stay fast", async () => {
  const tomb = (id: number, o = {}) => recs({ kind: 'delete', key: [String(id), null, null] }, o)[1];
  const before = await plan([tomb(7), ...ins(7), ...ins(8)]);
  assert.deepEqual(before.map((f) => f?.op ?? null), [null, null, 'c']);
  const after = await plan([...ins(7), tomb(7), ...ins(8), tomb(9)]);
  assert.deepEqual(after.map((f) => f?.op ?? null), [null, null, 'c', null]);
  // The same id in another table's topic is another key.
  assert.deepEqual((await plan([...ins(1, { notes: true }), tomb(7, { notes: true }), ...ins(7)])).map((f) => f?.op ?? null), ['c', null, 'c']);
  // A tombstone whose topic's value schema is not known (its table unknown): the general decode reports it, the chunk goes with it.
  assert.deepEqual((await plan([tomb(7, { notes: true }), ...ins(8)])).map((f) => f?.op ?? null), [null, null]);
  // A tombstone under another key schema id: keys of two schemas, the table goes the general way.
  assert.deepEqual((await plan([...ins(7), ...ins(8), tomb(9, { keyId: 5 })])).map((f) => f?.op ?? null), [null, null, null]);
  // A keyless tombstone decodes to nothing: no key's event.
  assert.deepEqual((await plan([{ ...tomb(7), key: null }, ...ins(7)])).map((f) => f?.op ?? null), [null, 'c']);
});

test('a table with a truncate or with keys of two key schemas takes the general path; other tables keep their fast rows', async () => {
  const truncated = await plan([...ins(1), ...recs({ kind: 'truncate' }), ...ins(2, { notes: true })]);
  assert.deepEqual(truncated.map((f) => f?.op ?? null), [null, null, 'c']);
  const mixed = await plan([...ins(1), ...ins(2, { keyId: 5 }), ...ins(3, { notes: true })]);
  assert.deepEqual(mixed.map((f) => f?.op ?? null), [null, null, 'c']);
  // Keys are per table: the same id in two tables is two keys.
  const two = await plan([...ins(7), ...ins(7, { notes: true })]);
  assert.deepEqual(two.map((f) => f?.table.dest.name ?? null), ['orders', 'notes']);
});

test('records the decoder cannot place are left to the general decode, which reports them; one of unknown schemas takes the whole chunk with it', async () => {
  const [good] = ins(1);
  const corrupt = { ...ins(2)[0], value: good.value!.subarray(0, 12) };
  assert.deepEqual((await plan([corrupt, ...ins(3)])).map((f) => f?.op ?? null), [null, 'c'], 'a corrupt value: only itself');
  const unknown = { ...good, offset: '99', value: encodeWire(77, good.value!.subarray(5)) };
  assert.deepEqual((await plan([unknown, corrupt, ...ins(3)])).map((f) => f?.op ?? null), [null, null, null]);
  // A truncate whose key schema the registry lacks: the plan cannot tell it is one, and an insert
  // after it must not be applied before it (fast rows go first) and then be truncated away.
  const truncate = recs({ kind: 'truncate' }, { keyId: 77 });
  assert.deepEqual((await plan([...truncate, ...ins(7)])).map((f) => f?.op ?? null), [...truncate.map(() => null), null]);
});

test('lineChunks: back-to-back lines are one view, scattered ones are gathered, large sets are cut near 1 MB', async () => {
  const raws = [...ins(1), ...ins(2), ...ins(3)];
  const rows = (await plan(raws)) as FastRow[];
  const whole = [...lineChunks(rows)];
  assert.equal(whole.length, 1);
  assert.equal(whole[0].buffer, rows[0].lines.buf.buffer, 'a view, not a copy');
  assert.equal(whole[0].toString(), '1\tb1\tx\n2\tb2\tx\n3\tb3\tx\n');
  const scattered = [...lineChunks([rows[2], rows[0]])];
  assert.deepEqual(scattered.map((b) => b.toString()), ['3\tb3\tx\n1\tb1\tx\n']);

  const big: RawRecord[] = [];
  for (let i = 0; i < 3000; i++) big.push(...recs({ kind: 'insert', new: row(1000 + i, 'y'.repeat(1000)) }));
  const many = (await plan(big)) as FastRow[];
  const chunks = [...lineChunks(many)];
  assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
  for (const c of chunks.slice(0, -1)) assert.ok(c.length >= 1 << 20 && c.length < (1 << 20) + 2000);
  assert.equal(Buffer.concat(chunks).toString(), many.map(text).join(''));
});

test('inserts interleaved with updates keep their lines back to back: one view each for COPY, no gathering', async () => {
  const raws = [...ins(1), ...recs({ kind: 'update', new: row(50, 'u50') }), ...ins(2), ...recs({ kind: 'update', new: row(51, 'u51') }), ...ins(3)];
  const out = (await plan(raws)) as FastRow[];
  const fresh = out.filter((f) => f.op === 'c');
  const updates = out.filter((f) => f.op === 'u');
  const [f] = [...lineChunks(fresh)];
  assert.equal(f.buffer, fresh[0].lines.buf.buffer, 'a view, not a copy');
  assert.equal(f.toString(), '1\tb1\tx\n2\tb2\tx\n3\tb3\tx\n');
  const [u] = [...lineChunks(updates)];
  assert.equal(u.buffer, updates[0].lines.buf.buffer, 'a view, not a copy');
  assert.equal(u.toString(), '50\tu50\tx\n51\tu51\tx\n');
});

test('one planner over several chunks: a key seen in an earlier chunk does not make a later one shared', async () => {
  const d = decoder();
  const first = ins(1);
  const second = [...ins(1), ...ins(2), ...ins(2)];
  await d.prepare([...first, ...second]);
  const planner = new FastRowPlanner();
  assert.deepEqual(planner.plan(first, (r) => d.describe(r)).map((f) => f?.op ?? null), ['c']);
  assert.deepEqual(planner.plan(second, (r) => d.describe(r)).map((f) => f?.op ?? null), ['c', null, null]);
});

test('FirstIndex: first index per (table, key), across growth, string keys, and reset between chunks', () => {
  const idx = new FirstIndex();
  idx.reset(4);
  const n = 50_000; // far beyond the initial capacity: grows while keeping what it holds
  for (let i = 0; i < n; i++) assert.equal(idx.firstOr(0, i * 2 ** 32 + 7, i), -1);
  for (let i = 0; i < n; i += 997) assert.equal(idx.firstOr(0, i * 2 ** 32 + 7, n + i), i);
  assert.equal(idx.firstOr(1, 7, 1), -1, 'another table is another key');
  assert.equal(idx.firstOr(0, 'long key bytes', 3), -1);
  assert.equal(idx.firstOr(0, 'long key bytes', 9), 3);
  assert.equal(idx.firstOr(1, 'long key bytes', 4), -1);
  idx.reset(10);
  assert.equal(idx.firstOr(0, 7, 5), -1, 'a reset forgets numeric keys');
  assert.equal(idx.firstOr(0, 'long key bytes', 6), -1, 'and string keys');
  assert.equal(idx.firstOr(0, 7, 8), 5);
});

/** The records as the consumer hands them: key and value as places in one shared buffer. */
function inPlace(raws: RawRecord[]): RawRecord[] {
  const parts: Buffer[] = [Buffer.from('junk')];
  let at = 4;
  const places = raws.map((r) => {
    const place = { keyStart: at, keyLength: r.key?.length ?? -1, valueStart: at + (r.key?.length ?? 0), valueLength: r.value?.length ?? -1 };
    for (const b of [r.key, r.value]) {
      if (!b) continue;
      parts.push(b);
      at += b.length;
    }
    return place;
  });
  const bytes = Buffer.concat([...parts, Buffer.from('more junk')]);
  return raws.map((r, i) => ({ ...r, bytes, ...places[i], key: Buffer.from('wrong'), value: Buffer.from('wrong') }));
}

test('records read in place (as consumed) plan exactly as the same records as Buffers', async () => {
  const raws = [
    ...read(1),
    ...ins(2),
    ...recs({ kind: 'update', new: row(3, 'three') }),
    ...recs({ kind: 'delete', key: ['4', null, null] }),
    ...ins(5),
    ...recs({ kind: 'update', new: row(5, 'five again') }),
    ...ins(6, { notes: true }),
    ...recs({ kind: 'truncate' }, { notes: true }),
  ];
  const placed = inPlace(raws);
  const a = await plan(raws);
  const b = await plan(placed);
  assert.deepEqual(b.map((f) => f?.op ?? null), a.map((f) => f?.op ?? null));
  assert.deepEqual(b.map(text), a.map(text));
  assert.deepEqual(b.map((f) => f?.table.dest.name ?? null), a.map((f) => f?.table.dest.name ?? null));
  assert.ok(b.some((f) => f !== null));
});

test('byVersion: rows of one table version stay the same array; several versions group in first-seen order', () => {
  const v1 = { destId: 't' };
  const v2 = { destId: 't' };
  const row = (table: object, offset: string) => ({ table, raw: { offset } }) as unknown as FastRow;
  const one = [row(v1, '1'), row(v1, '2')];
  assert.equal(byVersion(one).get(one[0].table), one);
  const mixed = [row(v2, '1'), row(v1, '2'), row(v2, '3')];
  assert.deepEqual(
    [...byVersion(mixed)].map(([v, rows]) => [v === (v2 as unknown), rows.map((r) => r.raw.offset)]),
    [
      [true, ['1', '3']],
      [false, ['2']],
    ],
  );
  assert.equal(byVersion([]).size, 0);
});
