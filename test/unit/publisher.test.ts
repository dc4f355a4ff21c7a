import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { OutMessage, Producer, SentRecord } from '../../shared/kafka/client.ts';
import { decodeWireHeader, WIRE_HEADER_LENGTH } from '../../shared/registry/wire-format.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import type { ChangeEvent, Envelope } from '../../source-connector/envelope.ts';
import { LsnTracker } from '../../source-connector/lsn-tracker.ts';
import { Publisher, type PublishTarget } from '../../source-connector/publisher.ts';
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
