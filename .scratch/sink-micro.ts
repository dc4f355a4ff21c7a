import { performance } from 'node:perf_hooks';
import type { ColumnInfo, PgTypeInfo, TableInfo } from '../shared/pg-types.ts';
import { encodeWire } from '../shared/registry/wire-format.ts';
import { buildRecordSchemas } from '../source-connector/record-schema.ts';
import { changeToEvents } from '../source-connector/envelope.ts';
import { RecordDecoder, type RawRecord } from '../sink-connector/decode.ts';
import { collapse } from '../sink-connector/collapse.ts';
import { copyTextChunks } from '../sink-connector/upsert-batch.ts';
import type { ApplyTable } from '../sink-connector/sink-change.ts';

const T = (name: string): PgTypeInfo => ({ oid: 0, schema: 'pg_catalog', name, kind: 'base' });
const col = (name: string, type: PgTypeInfo, typmod = -1, isKey = false): ColumnInfo => ({ name, type, typmod, isKey });
const TABLE: TableInfo = {
  relid: 1, schema: 'public', name: 'orders',
  columns: [col('id', T('int8'), -1, true), col('customer_id', T('int4')), col('amount', T('numeric'), ((12 << 16) | 2) + 4), col('status', T('text')), col('created_at', T('timestamptz')), col('payload', T('jsonb'))],
  keyColumns: ['id'], replicaIdentity: 'default',
};
const TOPIC = 'bench.public.orders';
const schemas = buildRecordSchemas(TABLE, TOPIC, '1.0.0');
const source = schemas.sourceFor({ db: 'shop', tsMs: 1 });
const N = 100_000;
const raws: RawRecord[] = [];
for (let i = 1; i <= N; i++) {
  const [ev] = changeToEvents({ kind: 'read', new: [String(i), String(i % 5000), `${i % 1000}.${String(i % 100).padStart(2, '0')}`, 'new', '2024-01-02 03:04:05.123456+00', `{"sku": "SKU-${i % 977}", "qty": ${i % 7}, "note": "n"}`] } as never, { schemas, source, tsMs: 1, tombstones: true });
  raws.push({ topic: TOPIC, partition: 0, offset: String(i), key: encodeWire(1, schemas.keyType!.toBuffer(ev.key)), value: encodeWire(2, schemas.envelopeType.toBuffer(ev.value)) });
}
const reg = { getSchema: async (id: number) => (id === 1 ? schemas.keySchema! : schemas.envelopeSchema) };
const table: ApplyTable = { schema: 'public', name: 'orders', columns: ['id', 'customer_id', 'amount', 'status', 'created_at', 'payload'].map((name) => ({ name, type: 'text' })), sourceKey: ['id'], destKey: ['id'], citus: 'local' };
const d = new RecordDecoder(reg, () => ({ schema: 'public', table: 'orders', columns: {} }), 'bench');
await d.prepare(raws);
for (let round = 0; round < 6; round++) {
  const t0 = performance.now();
  const decoded = raws.map((r) => d.decode(r)!);
  const t1 = performance.now();
  let bytes = 0;
  for (let i = 0; i < N; i += 10_000) {
    const plan = collapse(decoded.slice(i, i + 10_000).map((x) => x.change), table);
    const seg = plan[0] as { upserts: { rows: (string | null)[][]; columns: string[] }[] };
    for (const s of copyTextChunks(seg.upserts[0].rows)) bytes += Buffer.byteLength(s);
  }
  const t2 = performance.now();
  console.log(`decode ${(((t1 - t0) * 1000) / N).toFixed(2)} µs/rec, collapse+copy ${(((t2 - t1) * 1000) / N).toFixed(2)} µs/rec, bytes ${bytes}, value ${raws[0].value!.length}B`);
}
import { compileEnvelope, LineWriter } from '../sink-connector/copy-transcode.ts';
import { createAvroType } from '../shared/type-mapping/index.ts';
const tc = compileEnvelope(createAvroType(schemas.envelopeSchema), schemas.envelopeSchema, new Set(['id']))!;
const into = { op: 0, hasBefore: false, toast: false, line: false, lineStart: 0, nullKey: false };
for (let round = 0; round < 6; round++) {
  const t0 = performance.now();
  let out = new LineWriter();
  const keys = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    if (i % 10_000 === 0) { out = new LineWriter(); keys.clear(); }
    const r = raws[i];
    tc.scan(r.value!, 5, r.value!.length, out, into);
    keys.set(r.key!.latin1Slice(5, r.key!.length), i);
  }
  const t1 = performance.now();
  console.log(`transcode+key ${(((t1 - t0) * 1000) / N).toFixed(2)} µs/rec`);
}
import { planFastRows } from '../sink-connector/fast-rows.ts';
for (let round = 0; round < 8; round++) {
  const t0 = performance.now();
  let n = 0;
  for (let i = 0; i < N; i += 5000) {
    const out = planFastRows(raws.slice(i, i + 5000), (r) => d.describe(r));
    n += out.length;
  }
  const t1 = performance.now();
  console.log(`planFastRows ${(((t1 - t0) * 1000) / N).toFixed(2)} µs/rec`);
}
