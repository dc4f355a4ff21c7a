/**
 * RecordDecoder on records built with the source's own record-schema and envelope modules:
 * destination names from the table mapping, text forms, unchanged TOAST, delete
 * before-images, tombstones, schema caching by id, and DecodeErrors with their position.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeError, SchemaError } from '../../shared/errors.ts';
import type { TableInfo } from '../../shared/pg-types.ts';
import { encodeWire, WIRE_HEADER_LENGTH } from '../../shared/registry/wire-format.ts';
import { column, pgType } from '../helpers/pg-fixtures.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { RecordDecoder, WARM_TOPICS_AT_MOST, type RawRecord, type SchemaSource } from '../../sink-connector/decode.ts';
import { compileValue, namedSourceTable, pgTypeOf, tableFromTopic, targetsFrom, type TableTarget } from '../../sink-connector/schema-compile.ts';


const TABLE: TableInfo = {
  relid: 1,
  schema: 'shop',
  name: 'orders',
  columns: [
    column('id', pgType('int8'), -1, true),
    column('amount', pgType('numeric'), ((12 << 16) | 2) + 4),
    column('placed at', pgType('timestamptz')),
    column('tags', pgType('_text', 'array', { elem: pgType('text') })),
    column('body', pgType('text')),
  ],
  keyColumns: ['id'],
  replicaIdentity: 'default',
};
const TOPIC = 'pfx.shop.orders';
const KEY_ID = 7;
const VALUE_ID = 8;
const schemas = buildRecordSchemas(TABLE, TOPIC, '1.0.0');

/** A registry stand-in holding the two schemas; counts fetches to show the cache. */
function registry(): SchemaSource & { fetches: number[] } {
  const byId = new Map<number, object>([
    [KEY_ID, schemas.keySchema!],
    [VALUE_ID, schemas.envelopeSchema],
  ]);
  const fetches: number[] = [];
  return {
    fetches,
    async getSchema(id) {
      fetches.push(id);
      const s = byId.get(id);
      // As the registry answers an id it does not have (RegistryClient: status and error code).
      if (!s) throw new SchemaError(`Schema ${id} not found`, { retriable: false, context: { status: 404, errorCode: 40403 } });
      return s;
    },
  };
}

const target = (t: Partial<TableTarget> = {}) => () => ({ schema: 'dest', table: 'orders_copy', columns: { 'placed at': 'placed_at', id: 'order_id' }, sources: ['shop.orders'], ...t });

function records(change: DecodedChange, tombstones = true): RawRecord[] {
  const source = schemas.sourceFor({ db: 'shop', tsMs: 1 });
  return changeToEvents(change, { schemas, source, tsMs: 1, tombstones }).map((ev, i) => ({
    topic: TOPIC,
    partition: 3,
    offset: String(10 + i),
    key: ev.key ? encodeWire(KEY_ID, schemas.keyType!.toBuffer(ev.key)) : null,
    value: ev.value ? encodeWire(VALUE_ID, schemas.envelopeType.toBuffer(ev.value)) : null,
  }));
}

test('an update decodes to destination names and PostgreSQL text; unchanged TOAST columns are absent', async () => {
  const reg = registry();
  const d = new RecordDecoder(reg, target(), 'pfx');
  const raws = records({ kind: 'update', new: ['9007199254740993', '12.50', '2024-01-02 03:04:05.000006+00', '{a,"b c",NULL}', undefined] });
  await d.prepare(raws);
  const out = d.decode(raws[0])!;
  assert.deepEqual(out.change, {
    op: 'u',
    topic: TOPIC,
    partition: 3,
    offset: '10',
    key: { order_id: '9007199254740993' },
    after: { order_id: '9007199254740993', amount: '12.50', placed_at: '2024-01-02 03:04:05.000006+00', tags: '{a,"b c",NULL}' },
    before: null,
    unchangedToast: ['body'],
  });
  assert.deepEqual(out.keyColumns, ['order_id']);
  assert.equal(out.table.destId, 'dest\u0000orders_copy');
  assert.deepEqual(out.table.source, { schema: 'shop', table: 'orders' });
  assert.deepEqual(
    out.table.columns.map((c) => [c.name, c.pgType]),
    [
      // The source's pg.type: names PostgreSQL accepts in ALTER TABLE … ADD COLUMN (autoEvolve).
      ['order_id', 'int8'],
      ['amount', 'numeric(12,2)'],
      ['placed_at', 'timestamptz'],
      ['tags', '_text'],
      ['body', 'text'],
    ],
  );
  // Schemas are fetched once per id, then served from the cache.
  await d.prepare(raws);
  assert.deepEqual(reg.fetches.sort(), [KEY_ID, VALUE_ID]);
});

test("a delete's before-image keeps only values (the key tuple's nulls are unknowns); its tombstone decodes to a delete of the key", async () => {
  const d = new RecordDecoder(registry(), target(), 'pfx');
  const raws = records({ kind: 'delete', key: ['5', null, null, null, null] });
  assert.equal(raws.length, 2);
  await d.prepare(raws);
  const del = d.decode(raws[0])!;
  assert.equal(del.change.op, 'd');
  assert.deepEqual(del.change.before, { order_id: '5' });
  assert.deepEqual(del.change.key, { order_id: '5' });
  assert.equal(del.change.after, null);
  // On a compacted topic the tombstone may be all that is left of the delete: its key, in destination names.
  const tomb = d.decode(raws[1])!;
  assert.deepEqual(tomb.change, { op: 'd', topic: TOPIC, partition: 3, offset: '11', key: { order_id: '5' }, after: null, before: null, unchangedToast: [], tombstone: true });
  assert.deepEqual(tomb.keyColumns, ['order_id']);
  assert.equal(tomb.table.dest.name, 'orders_copy');
  assert.equal(d.decode({ ...raws[1], key: null }), null, 'a keyless tombstone is nothing to apply');
});

test("a tombstone before any value of its topic (a replay of a compacted topic): its key is named through the topic's latest value schema", async () => {
  const reg = registry();
  const subjects: string[] = [];
  const withLatest: SchemaSource = { ...reg, getSchema: (id) => reg.getSchema(id), latestSchema: async (subject) => (subjects.push(subject), { id: VALUE_ID, schema: schemas.envelopeSchema }) };
  const d = new RecordDecoder(withLatest, target(), 'pfx');
  const [, tombstone] = records({ kind: 'delete', key: ['9', null, null, null, null] });
  await d.prepare([tombstone]);
  assert.deepEqual(subjects, [`${TOPIC}-value`]);
  assert.deepEqual(d.decode(tombstone)!.change.key, { order_id: '9' });
  // Without a value schema to name its key columns, it is not skipped: it is reported.
  const none = new RecordDecoder({ ...reg, getSchema: (id) => reg.getSchema(id), latestSchema: async () => null }, target(), 'pfx');
  await none.prepare([tombstone]);
  assert.throws(() => none.decode(tombstone), (e: unknown) => e instanceof DecodeError && /tombstone on a topic whose value schema is not known/.test(e.message) && e.context.offset === '11');
});

test('a truncate carries no key', async () => {
  const d = new RecordDecoder(registry(), target(), 'pfx');
  const raws = records({ kind: 'truncate' });
  await d.prepare(raws);
  const out = d.decode(raws[0])!;
  assert.equal(out.change.op, 't');
  assert.deepEqual(out.change.key, {});
  assert.equal(out.keyColumns, null);
});

test('undecodable records throw DecodeError with topic, partition and offset', async () => {
  const d = new RecordDecoder(registry(), target(), 'pfx');
  const [good] = records({ kind: 'insert', new: ['1', '1.00', null, null, 'x'] });
  const cases: [string, RawRecord, RegExp][] = [
    ['unknown schema id', { ...good, value: encodeWire(99, Buffer.from('x')) }, /schema id 99, which cannot be used: Schema 99 not found/],
    ['bad magic byte', { ...good, value: Buffer.from([1, 0, 0, 0, 8, 0]) }, /unknown magic byte 1/],
    ['too short', { ...good, value: Buffer.from([0, 0]) }, /too short/],
    ['corrupt body', { ...good, value: encodeWire(VALUE_ID, Buffer.from([0xff, 0xff, 0xff])) }, /does not decode with schema 8/],
    ['trailing bytes', { ...good, value: Buffer.concat([good.value!, Buffer.from([0])]) }, /does not decode/],
    ['corrupt key', { ...good, key: encodeWire(KEY_ID, Buffer.from([0xff])) }, /record key does not decode/],
  ];
  for (const [name, raw, message] of cases) {
    await d.prepare([raw]);
    assert.throws(
      () => d.decode(raw),
      (err: unknown) => {
        assert.ok(err instanceof DecodeError, name);
        assert.match(err.message, message, name);
        assert.deepEqual([err.context.topic, err.context.partition, err.context.offset], [TOPIC, 3, '10'], name);
        return true;
      },
    );
  }
});

test('a registry that cannot be reached fails prepare (for the retry loop), not the record', async () => {
  const failing: SchemaSource = {
    async getSchema() {
      throw new SchemaError('cannot reach the registry', { retriable: true });
    },
  };
  const d = new RecordDecoder(failing, target(), 'pfx');
  await assert.rejects(d.prepare(records({ kind: 'insert', new: ['1', '1.00', null, null, 'x'] })), /cannot reach/);
});

test("a registry that refuses the sink (401) fails prepare, for a stall: the records stay readable, never reported undecodable", async () => {
  const refusing: SchemaSource = {
    async getSchema() {
      throw new SchemaError('schema registry GET /schemas/ids/1 failed: Unauthorized', { retriable: false, context: { status: 401 }, remedy: 'check the registry username and password' });
    },
  };
  const d = new RecordDecoder(refusing, target(), 'pfx');
  const raws = records({ kind: 'insert', new: ['1', '1.00', null, null, 'x'] });
  await assert.rejects(d.prepare(raws), /Unauthorized/);
});

test('prepare fetches the schemas it lacks a few at once, not one after another; an unreachable one fails it, the others are kept', async () => {
  const [base] = records({ kind: 'insert', new: ['1', '1.00', null, null, 'x'] });
  // Ten tables' worth of schema ids (the same schemas under other ids).
  const raws = Array.from({ length: 10 }, (_, i) => ({ ...base, key: encodeWire(100 + i, base.key!.subarray(WIRE_HEADER_LENGTH)), value: encodeWire(200 + i, base.value!.subarray(WIRE_HEADER_LENGTH)) }));
  let inFlight = 0;
  let most = 0;
  const fetched: number[] = [];
  let down = new Set([205]);
  const source: SchemaSource = {
    async getSchema(id) {
      fetched.push(id);
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      if (down.has(id)) throw new SchemaError('cannot reach the registry', { retriable: true });
      return id < 200 ? schemas.keySchema! : schemas.envelopeSchema;
    },
  };
  const d = new RecordDecoder(source, target(), 'pfx');
  await assert.rejects(d.prepare(raws), /cannot reach/);
  assert.equal(fetched.length, 20);
  assert.equal(most, 8, 'eight requests in flight at most, and that many used');
  down = new Set();
  fetched.length = 0;
  await d.prepare(raws);
  assert.deepEqual(fetched, [205], 'only the schema that could not be fetched is fetched again');
  for (const r of raws) assert.equal(d.decode(r)!.change.op, 'c');
});

test("warm compiles the topics' latest schemas ahead, for the first topics only; prepare then fetches nothing; a failed warm-up leaves the fetch to prepare", async () => {
  const raws = records({ kind: 'insert', new: ['1', '1.00', null, null, 'x'] });
  const asked: string[] = [];
  const reg = registry();
  const source: SchemaSource = {
    getSchema: (id) => reg.getSchema(id),
    async latestSchema(subject) {
      asked.push(subject);
      if (subject === `${TOPIC}-key`) return { id: KEY_ID, schema: schemas.keySchema! };
      if (subject === `${TOPIC}-value`) return { id: VALUE_ID, schema: schemas.envelopeSchema };
      return null;
    },
  };
  const d = new RecordDecoder(source, target(), 'pfx');
  const idle = Array.from({ length: 100 }, (_, i) => `pfx.shop.idle${i}`);
  assert.equal(await d.warm([TOPIC, ...idle]), 1, 'one topic has schemas');
  assert.equal(asked.length, 2 * WARM_TOPICS_AT_MOST, 'the first topics only');
  await d.prepare(raws);
  assert.deepEqual(reg.fetches, [], 'prepare found both schemas compiled');
  assert.ok(d.describe(raws[0])?.transcoder, 'the COPY transcoder is compiled too');
  assert.equal(d.decode(raws[0])!.change.after!.order_id, '1');

  const down = new RecordDecoder(
    {
      getSchema: (id) => reg.getSchema(id),
      latestSchema: async () => {
        throw new SchemaError('cannot reach the registry', { retriable: true });
      },
    },
    target(),
    'pfx',
  );
  assert.equal(await down.warm([TOPIC]), 0);
  await down.prepare(raws);
  assert.deepEqual(reg.fetches.sort(), [KEY_ID, VALUE_ID]);
  assert.equal(down.decode(raws[0])!.change.op, 'c');
});

test('pgTypeOf finds the type on the non-null branch or on an array union; tableFromTopic splits after the prefix', () => {
  assert.equal(pgTypeOf(['null', { type: 'string', 'pg.type': 'numeric(5,1)' }]), 'numeric(5,1)');
  assert.equal(pgTypeOf(['null', { type: 'array', items: 'string', 'pg.type': 'text[]' }, { type: 'string', 'pg.type': 'text[]' }]), 'text[]');
  assert.equal(pgTypeOf(['null', 'string']), null);
  assert.deepEqual(tableFromTopic('my.pfx.sales.order.items', 'my.pfx'), { schema: 'sales', table: 'order.items' });
  assert.deepEqual(tableFromTopic('pfx.orders', 'pfx'), { schema: 'public', table: 'orders' });
});

test('targetsFrom: mapped and unmapped tables, column lookups that no prototype answers, and the source tables merged into one destination table', () => {
  const targetFor = targetsFrom({ 'a.one': { schema: 'd', table: 'all' }, 'a.two': { schema: 'd', table: 'all', columns: { x: 'y' } } });
  const plain = targetFor('a', 'three');
  assert.deepEqual([plain.schema, plain.table, plain.sources], ['a', 'three', ['a.three']]);
  assert.equal(plain.columns['constructor'], undefined);
  assert.equal(plain.columns['toString'], undefined);
  assert.equal(targetsFrom({})('a', 'constructor').table, 'constructor');
  const one = targetFor('a', 'one');
  assert.deepEqual(one.sources, ['a.one']);
  const two = targetFor('a', 'two');
  assert.equal(two.columns.x, 'y');
  assert.equal(one.sources, two.sources, 'one list for both');
  assert.deepEqual(two.sources, ['a.one', 'a.two']);
  assert.equal(targetFor('a', 'one'), one, 'made once per source table');
});

test('targetsFrom reads mapping keys as check and schema copy do: quoted parts, dots inside quotes', () => {
  const targetFor = targetsFrom({ '"My Shop"."Order Items"': { table: 'order_items' }, 'sales."a.b"': { schema: 'x' }, 'Plain.T': { table: 't2' } });
  assert.equal(targetFor('My Shop', 'Order Items').table, 'order_items');
  assert.deepEqual([targetFor('sales', 'a.b').schema, targetFor('sales', 'a.b').table], ['x', 'a.b']);
  assert.equal(targetFor('Plain', 'T').table, 't2');
  assert.equal(targetFor('sales.a', 'b').schema, 'sales.a', 'another table, not the mapped sales."a.b"');
});

test('compileValue: two source columns mapped onto one destination column are refused (SchemaError, naming both); mapping keys the source lacks are listed', () => {
  const clash = targetsFrom({ 'shop.orders': { columns: { body: 'tags' } } });
  assert.throws(
    () => compileValue(VALUE_ID, schemas.envelopeSchema, TOPIC, clash, 'pfx'),
    (e: unknown) => e instanceof SchemaError && /source columns tags and body of shop\.orders both go to destination column tags/.test(e.message) && e.context.column === 'tags',
  );
  const typo = targetsFrom({ 'shop.orders': { columns: { Body: 'text', id: 'order_id' } } });
  const v = compileValue(VALUE_ID, schemas.envelopeSchema, TOPIC, typo, 'pfx');
  assert.deepEqual(v.version.unmatchedRenames, ['Body']);
  assert.deepEqual(v.version.sources, ['shop.orders']);
});

test('compileValue: a column whose Avro type has no PostgreSQL text form is refused naming its table and column', () => {
  const edited = JSON.parse(JSON.stringify(schemas.envelopeSchema));
  const value = edited.fields.find((f: { name: string }) => f.name === 'before').type[1];
  value.fields.find((f: { name: string }) => f.name === 'tags').type = ['null', { type: 'fixed', name: 'F', size: 2 }];
  assert.throws(
    () => compileValue(VALUE_ID, edited, TOPIC, targetsFrom({}), 'pfx'),
    (e: unknown) => e instanceof SchemaError && /no PostgreSQL text form .* \(column tags of shop\.orders\)$/.test(e.message) && e.context.column === 'tags' && e.context.schemaId === VALUE_ID,
  );
});

test('namedSourceTable: the real source name from an envelope schema, where its topic has characters replaced; null for a schema naming none', () => {
  const spaced = buildRecordSchemas({ ...TABLE, schema: 'my shop', name: 'Order Items' }, 'pfx.my_shop.Order_Items', '1.0.0');
  assert.deepEqual(namedSourceTable(spaced.envelopeSchema), { schema: 'my shop', table: 'Order Items' });
  assert.deepEqual(namedSourceTable(schemas.envelopeSchema), { schema: 'shop', table: 'orders' });
  assert.equal(namedSourceTable({ type: 'record', name: 'x', fields: [{ name: 'id', type: 'long' }] }), null);
});

test('a column named constructor, toString or valueOf decodes (avsc resolves record fields without an object prototype)', async () => {
  const odd: TableInfo = { ...TABLE, columns: [column('id', pgType('int8'), -1, true), column('constructor', pgType('text')), column('toString', pgType('text')), column('valueOf', pgType('int4'))] };
  const s = buildRecordSchemas(odd, TOPIC, '1.0.0');
  const d = new RecordDecoder({ getSchema: async (id) => (id === KEY_ID ? s.keySchema! : s.envelopeSchema) }, targetsFrom({}), 'pfx');
  const source = s.sourceFor({ db: 'shop', tsMs: 1 });
  const raws = changeToEvents({ kind: 'insert', new: ['5', 'made', 'str', '7'] }, { schemas: s, source, tsMs: 1, tombstones: false }).map((ev, i) => ({
    topic: TOPIC,
    partition: 0,
    offset: String(i),
    key: ev.key ? encodeWire(KEY_ID, s.keyType!.toBuffer(ev.key)) : null,
    value: ev.value ? encodeWire(VALUE_ID, s.envelopeType.toBuffer(ev.value)) : null,
  }));
  await d.prepare(raws);
  const got = d.decode(raws[0])!;
  assert.deepEqual({ ...got.change.after }, { id: '5', constructor: 'made', toString: 'str', valueOf: '7' });
});
