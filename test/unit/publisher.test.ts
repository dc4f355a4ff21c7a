import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { OutMessage, Producer, SentRecord } from '../../shared/kafka/client.ts';
import { decodeWireHeader, WIRE_HEADER_LENGTH } from '../../shared/registry/wire-format.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import type { ChangeEvent, Envelope } from '../../source-connector/envelope.ts';
import { LsnTracker } from '../../source-connector/lsn-tracker.ts';
import { Publisher, type PublishTarget } from '../../source-connector/publisher.ts';
import { CopyGuard } from '../../source-connector/copy-guard.ts';
import { buildRecordSchemas } from '../../source-connector/record-schema.ts';
import { changeToEvents } from '../../source-connector/envelope.ts';
import { compileRowTranscoder, TupleRef, type RowTranscoder } from '../../source-connector/row-transcode.ts';
import { EVERY_TYPE_TABLE, column, pgType } from '../helpers/pg-fixtures.ts';
import { parseTruncateKey, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';

/** Our Producer interface, in memory: what the publisher hands to Kafka. */
function memoryProducer(): Producer & { sent: OutMessage[] } {
  const sent: OutMessage[] = [];
  return {
    sent,
    connect: async () => {},
    disconnect: async () => {},
    sendBatch: async (messages: OutMessage[]): Promise<SentRecord[]> => {
      sent.push(...messages);
      return [];
    },
    prepare: async () => {},
    pin: () => {},
  };
}

test('encoded records are views of shared slabs: every one intact after many more, records bigger than a slab included', async () => {
  const producer = memoryProducer();
  const publisher = new Publisher({ producer, tracker: new LsnTracker(null), maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }) });
  const keyType = createAvroType({ type: 'record', name: 'K', fields: [{ name: 'id', type: 'long' }] });
  const envelopeType = createAvroType({ type: 'record', name: 'V', fields: [{ name: 'body', type: 'string' }] });
  const target: PublishTarget = { topic: 't', qualified: 'public.t', keySchemaId: 7, valueSchemaId: 8, schemas: { keyType, envelopeType } };
  const sizes = [0, 1, 100, 250, 300_000, 5, 700_000, 1000, 262_000, 10];
  const events: ChangeEvent[] = [];
  for (let i = 0; i < 3000; i++) events.push({ key: { id: i }, value: { body: String(i % 10).repeat(sizes[i % sizes.length]) } as unknown as ChangeEvent['value'] });
  publisher.publish(target, events, null);
  assert.equal(await publisher.flush(10_000), true);
  assert.equal(producer.sent.length, events.length);
  producer.sent.forEach((m, i) => {
    assert.equal(decodeWireHeader(m.key!).schemaId, 7);
    assert.equal(decodeWireHeader(m.value!).schemaId, 8);
    assert.equal(keyType.fromBuffer(m.key!.subarray(WIRE_HEADER_LENGTH)).id, BigInt(i));
    assert.equal((envelopeType.fromBuffer(m.value!.subarray(WIRE_HEADER_LENGTH)) as { body: string }).body, String(i % 10).repeat(sizes[i % sizes.length]));
  });
});

test('a batch with truncate copies offers them again at a later delivery for a re-send; a batch without copies does not', async () => {
  const offered: (() => OutMessage[])[] = [];
  let batches = 0;
  const producer: Producer = {
    connect: async () => {},
    disconnect: async () => {},
    sendBatch: async (_messages, opts = {}) => {
      batches++;
      if (opts.resend) offered.push(opts.resend);
      return [];
    },
    prepare: async () => {},
    pin: () => {},
  };
  let delivery = 1_000;
  const publisher = new Publisher({
    producer, tracker: new LsnTracker(null), maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }), redeliver: () => ++delivery,
  });
  const keyType = createAvroType({ type: 'record', name: 'K', fields: [{ name: 'id', type: 'long' }] });
  const envelopeType = createAvroType({ type: 'record', name: 'V', fields: [{ name: 'body', type: 'string' }] });
  const target: PublishTarget = { topic: 't', qualified: 'public.t', keySchemaId: 7, valueSchemaId: 8, schemas: { keyType, envelopeType } };
  const row = (id: number): ChangeEvent => ({ key: { id }, value: { body: `r${id}` } as unknown as ChangeEvent['value'] });

  publisher.publish(target, [row(1)], null);
  assert.equal(await publisher.flush(10_000), true);
  assert.equal(batches, 1);
  assert.equal(offered.length, 0, 'rows alone are retried as they are');

  const copies = truncateKeys(9, '0/1A/0', 3, 1_000);
  publisher.publish(target, [row(2)], null);
  publisher.publishFanout(target, { body: 't' } as unknown as Envelope, copies, null);
  publisher.publish(target, [row(3)], null);
  assert.equal(await publisher.flush(10_000), true);
  assert.equal(offered.length, 1);

  for (const expected of [1_001, 1_002]) {
    const again = offered[0]();
    assert.equal(again.length, 5);
    assert.equal(keyType.fromBuffer(again[0].key!.subarray(WIRE_HEADER_LENGTH)).id, 2n);
    assert.equal(keyType.fromBuffer(again[4].key!.subarray(WIRE_HEADER_LENGTH)).id, 3n);
    again.slice(1, 4).forEach((m, p) => {
      assert.deepEqual(parseTruncateKey(m.key), { id: '0/1A/0', partitions: 3, partition: p, delivery: expected });
      assert.equal(partitionForKey(m.key!, 3), p);
      assert.equal(decodeWireHeader(m.key!).schemaId, 9);
    });
  }
});

test('a transcoded record larger than a slab is written at most twice, into a slab little larger than itself', async () => {
  const table = { ...EVERY_TYPE_TABLE, columns: [column('id', pgType('int8'), -1, true), column('bin', pgType('bytea')), column('body', pgType('text'))], keyColumns: ['id'] };
  const schemas = buildRecordSchemas(table, 'p.public.big', '1.0.0');
  const tc = compileRowTranscoder(schemas)!;
  let writes = 0;
  const counting: RowTranscoder = { ...tc, writeEnvelope: (...args) => (writes++, tc.writeEnvelope(...args)) };
  const producer = memoryProducer();
  const publisher = new Publisher({ producer, tracker: new LsnTracker(null), maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }) });
  const target: PublishTarget = { topic: 'p.public.big', qualified: 'public.big', keySchemaId: 7, valueSchemaId: 8, schemas };
  const info = schemas.sourceFor({ db: 'd', tsMs: 1, txId: 2, lsn: 3n });
  const source = tc.sourceBytes(info);
  for (const row of [['1', `\\x${Buffer.alloc(3_000_000, 0x5a).toString('hex')}`, null], ['2', null, 'y'.repeat(5_000_000)]]) {
    // A pgoutput Insert: 'I', relid, 'N', then the tuple.
    const cols = row.map((v) => (v === null ? Buffer.from('n') : Buffer.concat([Buffer.from('t'), Buffer.from([0, 0, 0, 0]), Buffer.from(v)])));
    for (const c of cols) if (c.length > 1) c.writeUInt32BE(c.length - 5, 1);
    const raw = Buffer.concat([Buffer.from('I'), Buffer.alloc(4), Buffer.from('N'), Buffer.from([0, 3]), ...cols]);
    const tuple = new TupleRef();
    assert.equal(tuple.scan(raw, 6), raw.length);
    writes = 0;
    assert.equal(publisher.publishTranscoded(target, counting, 'c', raw, tuple, source, 1, null, false), true);
    assert.equal(await publisher.flush(10_000), true);
    const value = producer.sent.at(-1)!.value!;
    // Doubling the slab from 256 kB wrote a 3 MB bytea (a hex decode of 6 MB each time) seven times.
    assert.ok(writes <= 2, `row ${row[0]} written ${writes} times`);
    assert.ok(value.buffer.byteLength <= 1.25 * raw.length, `row ${row[0]}: a slab of ${value.buffer.byteLength} bytes for a ${value.length}-byte record`);
    const [ev] = changeToEvents({ kind: 'insert', new: row }, { schemas, source: info, tsMs: 1, tombstones: false });
    assert.deepEqual(value.subarray(WIRE_HEADER_LENGTH), schemas.envelopeType.toBuffer(ev.value));
  }
});

test("while a copy guard is set: a stream record's key leaves out that key's later snapshot row; earlier snapshot rows, other keys and other topics go; released, nothing is left out", async () => {
  const producer = memoryProducer();
  const tracker = new LsnTracker(null);
  const publisher = new Publisher({ producer, tracker, maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }) });
  const keyType = createAvroType({ type: 'record', name: 'K', fields: [{ name: 'id', type: 'long' }] });
  const envelopeType = createAvroType({ type: 'record', name: 'V', fields: [{ name: 'body', type: 'string' }] });
  const added: PublishTarget = { topic: 'added', qualified: 'public.added', keySchemaId: 7, valueSchemaId: 8, schemas: { keyType, envelopeType } };
  const other: PublishTarget = { ...added, topic: 'other', qualified: 'public.other' };
  const row = (id: number, body: string): ChangeEvent => ({ key: { id }, value: { body } as unknown as ChangeEvent['value'] });
  const release = publisher.guardKeys(new CopyGuard(['added']));
  assert.equal(publisher.guardRoom, true);
  publisher.publish(added, [row(1, 'snapshot, before the stream')], null);
  const tx = tracker.begin(1n);
  publisher.publish(added, [row(1, 'stream'), row(2, 'stream')], tx);
  publisher.publish(other, [row(3, 'stream')], tx);
  publisher.publish(added, [row(2, 'snapshot, after the stream'), row(4, 'snapshot')], null);
  publisher.publish(other, [row(3, 'snapshot of a table not copied')], null);
  release();
  assert.equal(publisher.guardRoom, false);
  publisher.publish(added, [row(2, 'after the release')], null);
  assert.equal(await publisher.flush(10_000), true);
  const sent = producer.sent.map((m) => `${m.topic}:${keyType.fromBuffer(m.key!.subarray(WIRE_HEADER_LENGTH)).id}:${(envelopeType.fromBuffer(m.value!.subarray(WIRE_HEADER_LENGTH)) as { body: string }).body}`);
  assert.deepEqual(sent, ['added:1:snapshot, before the stream', 'added:1:stream', 'added:2:stream', 'other:3:stream', 'added:4:snapshot', 'other:3:snapshot of a table not copied', 'added:2:after the release']);
});

test('a stop with Kafka gone: flush gives up once the send in flight went 1.5 s unanswered (not its 10 s deadline), and nothing of it is confirmed', async () => {
  let answer: (() => void) | undefined;
  const producer: Producer = {
    ...memoryProducer(),
    // Kafka gone: the send is retried inside the producer and never answers; a slow Kafka answers in time.
    sendBatch: (messages) => new Promise<SentRecord[]>((resolve) => (answer = () => resolve(messages.map(() => ({ topic: 't', partition: 0, baseOffset: '0' }))))),
  };
  const tracker = new LsnTracker(null);
  const publisher = new Publisher({ producer, tracker, maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }) });
  const tx = tracker.begin(100n);
  publisher.publishRaw('t', Buffer.from('k'), Buffer.from('v'), tx);
  tx.seal(200n);
  const started = Date.now();
  assert.equal(await publisher.flush(10_000), false);
  const ms = Date.now() - started;
  assert.ok(ms >= 1_400 && ms < 5_000, `flush ended after ${ms} ms`);
  assert.equal(tracker.confirmable(), null, 'a transaction Kafka did not acknowledge was confirmed');
  // A send that answers within the stall window is waited for: the flush is a success.
  publisher.publishRaw('t', Buffer.from('k2'), Buffer.from('v2'));
  const slow = publisher.flush(10_000, 2_000);
  answer!();
  setTimeout(() => answer!(), 300);
  assert.equal(await slow, true);
});
