/**
 * What a connector keeps per table when a database has a schema per tenant: hundreds of copies
 * of a few table shapes. Counted in this process with the registry in another (its own avsc
 * types would count too): live avsc record types, and heap per table after a full collection,
 * between 50 and 300 tables. Each connector used to compile every table's types (source: key
 * and envelope; sink: key, writer, reader, resolver and COPY transcoders), and the registry
 * library kept every schema it registered compiled as well: 2,000 tables cost the source
 * 130 MB of heap and the sink 90 MB.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import vm from 'node:vm';
import avro from 'avsc';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import { encodeWire } from '../../shared/registry/wire-format.ts';
import { RecordDecoder, type RawRecord } from '../../sink-connector/decode.ts';
import { changeToEvents, type DecodedChange } from '../../source-connector/envelope.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { transcoderFor } from '../../source-connector/row-transcode.ts';
import { TableVersions } from '../../source-connector/table-versions.ts';
import { tenantTables } from '../helpers/tenant-tables.ts';
import { testLogger } from '../helpers/kafka.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let registryUrl = process.env.SHARDBRIDGE_TEST_SCHEMA_REGISTRY ?? '';
let child: ChildProcess | null = null;

before(async () => {
  if (registryUrl) return;
  // A registry of this file's own, in a child process: what it keeps is not ours to count.
  const code = `import('${new URL('../../shared/devstack/schema-registry-server.ts', import.meta.url).href}').then(async (m) => { const r = await m.startSchemaRegistry(); console.log(r.url); })`;
  child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  registryUrl = line.trim();
});

after(() => {
  child?.kill();
});

/** Live avsc record types, and the heap, after full collections. */
async function measure(): Promise<{ recordTypes: number; heap: number }> {
  await new Promise((r) => setImmediate(r));
  gc();
  gc();
  const recordTypes = (await v8.queryObjects(avro.types.RecordType, { format: 'count' })) as number;
  return { recordTypes, heap: process.memoryUsage().heapUsed };
}

/** Per table between the first 50 (after, so that shapes and code are warm) and 300 tables. */
async function perTable(grow: (tenants: number, from: number) => Promise<void>): Promise<{ types: number; bytes: number }> {
  await grow(13, 0); // 52 tables: 13 tenants of 4 shapes
  const a = await measure();
  await grow(75, 13); // 300
  const b = await measure();
  const n = (75 - 13) * 4;
  return { types: (b.recordTypes - a.recordTypes) / n, bytes: Math.round((b.heap - a.heap) / n) };
}

test('source: table versions of tenants’ tables share their compiled types, and registering keeps no compiled schema', async () => {
  const registry = new RegistryClient({ url: registryUrl });
  const versions = new TableVersions({
    registry,
    topicPrefix: `mem${process.pid}`,
    connectorVersion: 'test',
    catalog: { loadTypes: async () => new Map(), primaryKey: async () => [], columnDefaults: async () => [] },
    topicExists: async () => true,
    log: testLogger(),
  });
  const all = tenantTables(75);
  const keep: unknown[] = [];
  const cost = await perTable(async (tenants, from) => {
    const tables = all.slice(from * 4, tenants * 4);
    await versions.init(tables, 0n); // init adds to what is there
    // The snapshot compiles each table's row transcoder.
    for (const t of tables) keep.push(transcoderFor(versions.get(t.relid)!.schemas));
  });
  // 4 shapes: no new type after the first tenants (40 kB of types per table before, and 37 kB in the registry library).
  assert.equal(cost.types, 0, `${cost.types} avsc record types per table`);
  // 16–22 kB measured (HTTP clients' buffers vary), 77 kB before.
  assert.ok(cost.bytes < 40_000, `${cost.bytes} bytes of heap per table`);
});

test('sink: decoders of tenants’ tables share their compiled types and COPY transcoders', async () => {
  const byId = new Map<number, object>();
  const decoder = new RecordDecoder({ getSchema: async (id) => byId.get(id)! }, (schema, table) => ({ schema, table, columns: {}, sources: [] }), 'tn');
  const all = tenantTables(75);
  let nextId = 1;
  const cost = await perTable(async (tenants, from) => {
    for (const t of all.slice(from * 4, tenants * 4)) {
      const topic = `tn.${t.schema}.${t.name}`;
      const s = buildRecordSchemas(t, topic, 'test');
      const [keyId, valueId] = [nextId++, nextId++];
      // As the registry answers: plain JSON, one object per id.
      byId.set(keyId, JSON.parse(JSON.stringify(s.keySchema)) as object);
      byId.set(valueId, JSON.parse(JSON.stringify(s.envelopeSchema)) as object);
      const row = t.columns.map((_, i) => (i === 0 ? '1' : null));
      const [ev] = changeToEvents({ kind: 'insert', new: row } as DecodedChange, { schemas: s, source: s.sourceFor({ db: 'db', tsMs: 1 }), tsMs: 1, tombstones: false });
      const raw: RawRecord = { topic, partition: 0, offset: '0', key: encodeWire(keyId, s.keyType!.toBuffer(ev.key)), value: encodeWire(valueId, s.envelopeType.toBuffer(ev.value)) } as RawRecord;
      await decoder.prepare([raw]);
      assert.equal(decoder.decode(raw)!.change.key.id, '1');
      assert.ok(decoder.describe(raw)!.transcoder, `${topic}: a COPY transcoder`);
    }
  });
  assert.equal(cost.types, 0, `${cost.types} avsc record types per table`);
  // What is left per table: its field converters, column map and table version (61 kB before).
  assert.ok(cost.bytes < 15_000, `${cost.bytes} bytes of heap per table`);
});

test('source: a table’s row transcoder keeps no pooled Buffer (each pinned an 8 kB slab of Node’s pool)', async () => {
  const keep: unknown[] = [];
  const tables = tenantTables(75, 100_000);
  await measure();
  const before = process.memoryUsage().arrayBuffers;
  for (const t of tables) {
    keep.push(transcoderFor(buildRecordSchemas(t, `tn.${t.schema}.${t.name}`, 'test')));
    Buffer.from('x'.repeat(3000)); // what else the connector does meanwhile: the pool moves on
  }
  await measure();
  const perTable = (process.memoryUsage().arrayBuffers - before) / tables.length;
  assert.ok(perTable < 500, `${Math.round(perTable)} bytes of array buffers per table`);
});
