/**
 * What a table topic takes (record-limits.ts), and the publisher's stop for a record above it:
 * table, key and size named, the remedy for the limit that refuses it, nothing queued.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { OutMessage, Producer, SentRecord } from '../../shared/kafka/client.ts';
import { ConfigError } from '../../shared/errors.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import type { ChangeEvent } from '../../source-connector/envelope.ts';
import { LsnTracker } from '../../source-connector/lsn-tracker.ts';
import { Publisher, type PublishTarget } from '../../source-connector/publisher.ts';
import { batchBytesFor, describeKey, largestRecord, LONE_RECORD_OVERHEAD, recordTooLarge, suggestedLimit } from '../../source-connector/record-limits.ts';

test('the largest record: the topic limit less a lone batch\'s overhead, and under the brokers\' request limit', () => {
  assert.equal(largestRecord({}), Infinity);
  assert.equal(largestRecord({ topic: 1_048_588 }), 1_048_588 - LONE_RECORD_OVERHEAD);
  assert.ok(largestRecord({ topic: 268_435_456, request: 104_857_600 }) < 104_857_600 - LONE_RECORD_OVERHEAD);
  assert.equal(batchBytesFor([{ topic: 200_000 }, {}, { topic: 1_048_588 }]), 200_000 - LONE_RECORD_OVERHEAD);
  assert.equal(batchBytesFor([{}, { request: 5 }]), Infinity);
  assert.equal(suggestedLimit(300_000), 524_288);
});

test('the stop names table, key, size and the limit, with the setting that lets the record through', () => {
  const byTopic = recordTooLarge({ table: 'public.big', topic: 'p.public.big', key: '{"id":7}', bytes: 300_000, limits: { topic: 200_000, request: 104_857_600 } });
  assert.ok(byTopic instanceof ConfigError);
  assert.equal(byTopic.message, 'a row of public.big (key {"id":7}) makes a record of 300000 bytes, more than topic p.public.big takes (max.message.bytes 200000)');
  assert.match(byTopic.remedy!, /--entity-name p\.public\.big --add-config max\.message\.bytes=524288 \(topics\.maxMessageBytes for topics the source creates\), then start the connector again/);
  assert.doesNotMatch(byTopic.remedy!, /socket\.request/);
  // A limit that would pass the brokers' request limit: that one is named too.
  const both = recordTooLarge({ table: 'public.big', topic: 'p.public.big', key: '{"id":7}', bytes: 90_000_000, limits: { topic: 1_048_588, request: 104_857_600 } });
  assert.match(both.remedy!, /max\.message\.bytes=134217728 .* and socket\.request\.max\.bytes on every broker .* to at least \d+/);
  // Above the request limit with the topic's raised: the broker would close the connection, kafkajs retry without end.
  const byRequest = recordTooLarge({ table: 'public.big', topic: 'p.public.big', key: '{"id":7}', bytes: 120_000_000, limits: { topic: 268_435_456, request: 104_857_600 } });
  assert.match(byRequest.message, /more than the Kafka brokers take in one request \(socket\.request\.max\.bytes 104857600\)/);
  assert.match(byRequest.remedy!, /^raise socket\.request\.max\.bytes on every broker to at least \d+ \(server\.properties, a restart\), then start/);
  assert.equal(describeKey({ id: 5n, tenant: 'x'.repeat(300) }).length, 201);
  assert.equal(describeKey({ b: Buffer.alloc(3) }), '{"b":"<3 bytes>"}');
});

function memoryProducer(): Producer & { sends: OutMessage[][] } {
  const sends: OutMessage[][] = [];
  return {
    sends,
    connect: async () => {},
    disconnect: async () => {},
    prepare: async () => {},
    pin: () => {},
    sendBatch: async (messages: OutMessage[]): Promise<SentRecord[]> => {
      sends.push(messages);
      return [];
    },
  };
}

test('the publisher refuses a record above its topic\'s limit before queueing it, and sends no batch above the smallest topic limit', async () => {
  const producer = memoryProducer();
  const publisher = new Publisher({
    producer, tracker: new LsnTracker(null), maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }),
    limits: (topic) => (topic === 'p.public.big' ? { topic: 200_000, request: 104_857_600 } : undefined),
  });
  publisher.capBatchBytes(batchBytesFor([{ topic: 200_000 }]));
  const keyType = createAvroType({ type: 'record', name: 'K', fields: [{ name: 'id', type: 'long' }] });
  const envelopeType = createAvroType({ type: 'record', name: 'V', fields: [{ name: 'body', type: 'string' }] });
  const target: PublishTarget = { topic: 'p.public.big', qualified: 'public.big', keySchemaId: 7, valueSchemaId: 8, schemas: { keyType, envelopeType } };
  const event = (id: number, bytes: number): ChangeEvent => ({ key: { id }, value: { body: 'x'.repeat(bytes) } as unknown as ChangeEvent['value'] });
  // 40 records of 10 kB: every one fits, 400 kB together do not.
  publisher.publish(target, Array.from({ length: 40 }, (_, i) => event(i, 10_000)), null);
  assert.throws(() => publisher.publish(target, [event(41, 300_000)], null), (err: ConfigError) => {
    assert.equal(err.kind, 'config');
    assert.match(err.message, /^a row of public\.big \(key \{"id":41\}\) makes a record of 3000\d\d bytes, more than topic p\.public\.big takes \(max\.message\.bytes 200000\)$/);
    return true;
  });
  assert.equal(await publisher.flush(10_000), true);
  assert.equal(publisher.acknowledged, 40, 'the large record was not queued');
  for (const send of producer.sends) {
    const bytes = send.reduce((n, m) => n + m.key!.length + m.value!.length, 0);
    assert.ok(bytes < 200_000, `a send of ${bytes} bytes`);
  }
});

test("Kafka refusing a send whose records each fit (the topic's limit lowered since the start): the stop says so, and never suggests a lower limit", async () => {
  const { tooLarge } = await import('../../shared/kafka/client.ts');
  const refused = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' });
  const small = (i: number): OutMessage => ({ topic: 'p.public.docs', key: Buffer.alloc(8, i), value: Buffer.alloc(400) });
  const err = tooLarge(refused, Array.from({ length: 100 }, (_, i) => small(i)))!;
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /^Kafka refused a send of 100 records \(40800 bytes in all, the largest 408 bytes\) to p\.public\.docs \(MESSAGE_TOO_LARGE\)/);
  assert.match(err.remedy ?? '', /start the connector again: it reads each topic's max\.message\.bytes at start/);
  assert.match(err.remedy ?? '', /max\.message\.bytes=65536/);
  // One record alone: as before.
  const lone = tooLarge(refused, [{ topic: 'p.public.docs', key: null, value: Buffer.alloc(20_000) }])!;
  assert.match(lone.message, /^Kafka refused a record of 20000 bytes for p\.public\.docs/);
});
