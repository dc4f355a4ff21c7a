/**
 * patches/kafkajs+2.2.4.patch (applied by `npm ci`'s postinstall) replaces kafkajs's
 * per-record produce encoding with one that writes every record of a partition into one
 * buffer. These tests pin that the patch is applied and that its bytes equal kafkajs's own
 * encoder's on the same records.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const produceV3 = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (args: object) => { encode(): Promise<{ buffer: Buffer }> };
const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition.js') as (args: object) => Record<string, unknown[]>;

type Msg = { key: Buffer | null; value: Buffer | null; timestamp?: string };

async function encode(messages: Msg[]): Promise<Buffer> {
  const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };
  const req = produceV3({
    acks: -1,
    timeout: 30000,
    producerId: Long.fromInt(42),
    producerEpoch: 3,
    topicData: [{ topic: 'shop.public.orders', partitions: [{ partition: 0, firstSequence: 7, messages }, { partition: 2, firstSequence: 0, messages: messages.slice(0, 1) }] }],
  });
  return (await req.encode()).buffer;
}

test('the kafkajs patch is applied', () => {
  for (const file of [
    'kafkajs/src/producer/groupMessagesPerPartition.js',
    'kafkajs/src/protocol/requests/produce/v3/request.js',
    'kafkajs/src/protocol/recordBatch/v0/index.js',
    'kafkajs/src/protocol/recordBatch/record/v0/decoder.js',
    'kafkajs/src/protocol/request.js',
    'kafkajs/src/protocol/recordBatch/v0/decoder.js',
    'kafkajs/src/protocol/recordBatch/crc32C/crc32C.js',
    'kafkajs/src/protocol/recordBatch/crc32C/index.js',
    'kafkajs/src/protocol/encoder.js',
    'kafkajs/src/consumer/batch.js',
    'kafkajs/src/consumer/consumerGroup.js',
    'kafkajs/src/consumer/runner.js',
    'kafkajs/src/network/requestQueue/index.js',
    'kafkajs/src/protocol/requests/fetch/v11/request.js',
    'kafkajs/src/protocol/requests/fetch/v11/response.js',
  ]) {
    assert.match(readFileSync(require.resolve(file), 'utf8'), /shardbridge patch/, `${file} is patched (npm ci runs patch-package)`);
  }
});

test('a request queue with nothing pending arms no timer; a throttled one with a queued request still checks it', () => {
  type Queue = { pending: unknown[]; throttledUntil: number; throttleCheckTimeoutId: NodeJS.Timeout | null; checkPendingRequests(): void; destroy(): void };
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (opts: object) => Queue;
  const quiet = () => {};
  const q = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 't', broker: 'b:9092', logger: { debug: quiet, info: quiet, warn: quiet, error: quiet } });
  try {
    // Unpatched, this re-armed itself every millisecond for as long as the connection lived.
    q.checkPendingRequests();
    assert.equal(q.throttleCheckTimeoutId, null, 'an idle connection schedules no check');
    q.throttledUntil = Date.now() + 60_000;
    q.pending.push({});
    q.checkPendingRequests();
    assert.notEqual(q.throttleCheckTimeoutId, null, 'a request held back by throttling is checked again when the throttle ends');
  } finally {
    q.destroy();
  }
});

test('the fast record encoding is byte-identical to kafkajs own encoder (null keys and values, large values)', async (t) => {
  t.mock.method(Date, 'now', () => 1_700_000_000_123);
  const messages: Msg[] = [];
  for (let i = 0; i < 2000; i++) {
    messages.push({ key: i % 17 === 0 ? null : randomBytes(1 + (i % 40)), value: i % 13 === 0 ? null : randomBytes(i % 500 === 0 ? 70_000 : (i * 7) % 300) });
  }
  const fast = await encode(messages);
  // A timestamp on every record sends kafkajs down its original per-record path; equal to
  // Date.now(), so every timestamp delta is 0 as on the fast path.
  const original = await encode(messages.map((m) => ({ ...m, timestamp: '1700000000123' })));
  assert.equal(fast.length, original.length);
  assert.equal(createHash('sha256').update(fast).digest('hex'), createHash('sha256').update(original).digest('hex'));
});

test('a produce request copies a large record once: into the request, whose header goes in front of it in place', async (t) => {
  t.mock.method(Date, 'now', () => 1_700_000_000_123);
  const createRequest = require('kafkajs/src/protocol/request.js') as (o: object) => Promise<{ buffer: Buffer }>;
  const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };
  const value = randomBytes(4_000_000);
  const messages = [{ key: Buffer.from('k1'), value }, { key: Buffer.from('k2'), value: Buffer.from('small') }];
  const request = produceV3({ acks: -1, timeout: 30000, producerId: Long.fromInt(42), producerEpoch: 3, topicData: [{ topic: 'shop.public.docs', partitions: [{ partition: 1, firstSequence: 5, messages }] }] });
  // Every buffer of the record's size made while the request is encoded (records, body and request were three).
  const allocUnsafe = Buffer.allocUnsafe;
  let large = 0;
  const spy = t.mock.method(Buffer, 'allocUnsafe', (n: number) => {
    if (n >= value.length) large++;
    return allocUnsafe(n);
  });
  const sent = (await createRequest({ correlationId: 9, clientId: 'shardbridge-source', request })).buffer;
  spy.mock.restore();
  assert.equal(large, 1, 'buffers of the record\'s size');
  // The same bytes as the size prefix and header written before a copy of the body.
  const body = await request.encode();
  const copied = (await createRequest({ correlationId: 9, clientId: 'shardbridge-source', request: { apiKey: 0, apiVersion: 3, encode: async () => {
    const Encoder = require('kafkajs/src/protocol/encoder.js') as new (n: number) => { writeBuffer(b: Buffer): unknown };
    const e = new Encoder(body.buffer.length);
    e.writeBuffer(Buffer.from(body.buffer));
    return e;
  } } })).buffer;
  assert.equal(sent.readInt32BE(0), sent.length - 4);
  assert.ok(sent.equals(copied), 'request bytes');
  assert.ok(sent.subarray(sent.length - body.buffer.length).equals(body.buffer), 'the body ends the request');
});

test('grouping per partition keeps each partition in send order', () => {
  const messages = Array.from({ length: 1000 }, (_, i) => ({ key: Buffer.from([i % 3]), value: Buffer.from(String(i)), partition: i % 3 }));
  const grouped = groupMessagesPerPartition({
    topic: 't',
    partitionMetadata: [{ partitionId: 0 }, { partitionId: 1 }, { partitionId: 2 }],
    messages,
    partitioner: ({ message }: { message: { partition: number } }) => message.partition,
  });
  assert.deepEqual(Object.keys(grouped).sort(), ['0', '1', '2']);
  for (const [p, list] of Object.entries(grouped)) {
    assert.deepEqual(list, messages.filter((m) => m.partition === Number(p)));
  }
});

test('record decoding: offsets and timestamps exact on the number path and beyond 2^53; headers kept', () => {
  const Encoder = require('kafkajs/src/protocol/encoder.js') as new () => {
    writeInt8(n: number): unknown;
    writeVarLong(v: unknown): unknown;
    writeVarInt(n: number): unknown;
    writeVarIntBytes(v: Buffer | string | null): unknown;
    buffer: Buffer;
  };
  const Decoder = require('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => unknown;
  const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: bigint | string): unknown };
  const decodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/decoder.js') as (
    d: unknown,
    ctx: object,
  ) => { offset: string; timestamp: string; key: Buffer; value: Buffer | null; headers: Record<string, unknown> };
  const contexts = [
    { firstOffset: '123', firstTimestamp: '1700000000000' },
    { firstOffset: '9007199254740990', firstTimestamp: '9223372036854775000' },
  ];
  for (const ctx of contexts) {
    for (const delta of [0n, 1n, -1n, 64n, -65n, 2n ** 40n, 2n ** 47n - 1n, 2n ** 48n, 2n ** 55n, -(2n ** 60n)]) {
      for (const headers of [[], [['a', 'x'], ['a', 'y'], ['b', 'z']]]) {
        const e = new Encoder();
        e.writeInt8(0);
        e.writeVarLong(Long.fromValue(delta));
        e.writeVarInt(9);
        e.writeVarIntBytes(Buffer.from('k'));
        e.writeVarIntBytes(null);
        e.writeVarInt(headers.length);
        for (const [k, v] of headers) {
          e.writeVarIntBytes(k);
          e.writeVarIntBytes(Buffer.from(v));
        }
        const r = decodeRecord(new Decoder(e.buffer), { ...ctx });
        assert.equal(r.offset, String(BigInt(ctx.firstOffset) + 9n));
        assert.equal(r.timestamp, String(BigInt(ctx.firstTimestamp) + delta)); // kafkajs does not wrap at 2^63 either
        assert.deepEqual(r.key, Buffer.from('k'));
        assert.equal(r.value, null);
        assert.deepEqual(r.headers, headers.length ? { a: [Buffer.from('x'), Buffer.from('y')], b: Buffer.from('z') } : {});
      }
    }
  }
});

test('record batch decoding in place: every field as kafkajs encoded it (keys, values, nulls, headers, offsets, timestamps)', async () => {
  const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };
  const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch(o: object): Promise<{ buffer: Buffer }> };
  const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: object) => unknown;
  const Decoder = require('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => unknown;
  const decodeBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (d: unknown) => Promise<{
    records: { key: Buffer | null; value: Buffer | null; offset: string; timestamp: string; headers: Record<string, Buffer>; magicByte: number; isControlRecord: boolean }[];
  }>;
  const messages = Array.from({ length: 300 }, (_, i) => ({
    key: i % 7 === 0 ? null : randomBytes(8),
    value: i % 11 === 0 ? null : randomBytes(i % 300),
    headers: i % 50 === 0 ? { h: Buffer.from(`x${i}`) } : undefined,
  }));
  const records = messages.map((m, i) => Record({ ...m, offsetDelta: i, timestampDelta: i * 3 }));
  const batch = await RecordBatch({ records, firstTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_897, lastOffsetDelta: 299, firstOffset: Long.fromInt(1234) });
  const decoded = await decodeBatch(new Decoder(batch.buffer));
  assert.equal(decoded.records.length, 300);
  decoded.records.forEach((r, i) => {
    assert.deepEqual(r.key, messages[i].key);
    // In place: the same bytes at the record's positions (length -1: null).
    const at = r as unknown as { bytes: Buffer; keyStart: number; keyLength: number; valueStart: number; valueLength: number };
    assert.deepEqual(at.keyLength < 0 ? null : at.bytes.subarray(at.keyStart, at.keyStart + at.keyLength), messages[i].key);
    assert.deepEqual(at.valueLength < 0 ? null : at.bytes.subarray(at.valueStart, at.valueStart + at.valueLength), messages[i].value);
    assert.deepEqual(r.value, messages[i].value);
    assert.equal(r.offset, String(1234 + i));
    assert.equal(r.timestamp, String(1_700_000_000_000 + i * 3));
    assert.deepEqual(r.headers, messages[i].headers ?? {});
    // Read from the batch, not kept per record.
    assert.equal(r.magicByte, 2);
    assert.equal(r.isControlRecord, false);
  });
});

test('a gzip-compressed batch: records keep their key and value as places in the decompressed bytes', async () => {
  const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };
  const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch(o: object): Promise<{ buffer: Buffer }> };
  const { Types } = require('kafkajs/src/protocol/message/compression/index.js') as { Types: { GZIP: number } };
  const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: object) => unknown;
  const Decoder = require('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => unknown;
  const decodeBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (d: unknown) => Promise<{
    records: { key: Buffer | null; value: Buffer | null; offset: string; bytes: Buffer; keyStart: number; keyLength: number; valueStart: number; valueLength: number }[];
  }>;
  const messages = Array.from({ length: 50 }, (_, i) => ({ key: i % 9 === 0 ? null : Buffer.from(`k${i}`), value: i % 10 === 3 ? null : randomBytes(20 + i) }));
  const records = messages.map((m, i) => Record({ ...m, offsetDelta: i, timestampDelta: 0 }));
  const batch = await RecordBatch({ compression: Types.GZIP, records, firstTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_000, lastOffsetDelta: 49, firstOffset: Long.fromInt(7) });
  const decoded = await decodeBatch(new Decoder(batch.buffer));
  assert.equal(decoded.records.length, 50);
  decoded.records.forEach((r, i) => {
    assert.equal(r.offset, String(7 + i));
    assert.notEqual(r.bytes.buffer, batch.buffer.buffer, 'the decompressed bytes, not the wire bytes');
    assert.deepEqual(r.keyLength < 0 ? null : r.bytes.subarray(r.keyStart, r.keyStart + r.keyLength), messages[i].key);
    assert.deepEqual(r.valueLength < 0 ? null : r.bytes.subarray(r.valueStart, r.valueStart + r.valueLength), messages[i].value);
    assert.deepEqual(r.key, messages[i].key);
    assert.deepEqual(r.value, messages[i].value);
  });
});

test('CRC-32C (slicing by 8): the standard check value and a bitwise reference on every length', () => {
  const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
  const reference = (b: Buffer): number => {
    let crc = 0xffffffff;
    for (const byte of b) {
      crc ^= byte;
      for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    }
    return (crc ^ 0xffffffff) >>> 0;
  };
  assert.equal(crc32C(Buffer.from('123456789')), 0xe3069283);
  for (let len = 0; len < 100; len++) {
    const b = randomBytes(len);
    assert.equal(crc32C(b), reference(b), b.toString('hex'));
  }
  const big = randomBytes(100_003);
  assert.equal(crc32C(big), reference(big));

  // What kafkajs calls: the native CRC-32C of @node-rs/crc32 when installed (it is a dependency).
  const { crc32c: native } = require('@node-rs/crc32') as { crc32c: (b: Buffer) => number };
  const used = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
  assert.equal(used(Buffer.from('123456789')), 0xe3069283);
  // Record batches are CRC'd as views into a larger request buffer: offsets must be honoured.
  const outer = randomBytes(4_096);
  for (const [start, end] of [[0, 0], [1, 2], [3, 100], [17, 4_000], [61, 4_096]]) {
    const view = outer.subarray(start, end);
    assert.equal(used(view), reference(view), `${start}..${end}`);
    assert.equal(native(view), reference(view));
  }
});

test('consumer batch: messages below the fetched offset dropped, control records hidden, the array kept when nothing is', () => {
  const Batch = require('kafkajs/src/consumer/batch.js') as new (
    topic: string,
    fetchedOffset: string,
    data: { partition: number; highWatermark: string; messages: { offset: string; isControlRecord?: boolean }[]; abortedTransactions?: unknown[] },
  ) => { messages: { offset: string }[] };
  const msgs = (...offsets: number[]) => offsets.map((o) => ({ offset: String(o), isControlRecord: false }));
  const all = msgs(10, 11, 12);
  const kept = new Batch('t', '10', { partition: 0, highWatermark: '13', messages: all });
  assert.equal(kept.messages, all, 'same array');
  assert.deepEqual(new Batch('t', '12', { partition: 0, highWatermark: '13', messages: msgs(10, 11, 12) }).messages.map((m) => m.offset), ['12']);
  assert.deepEqual(new Batch('t', '20', { partition: 0, highWatermark: '13', messages: msgs(10, 11, 12) }).messages, []);
  // Compacted: gaps in the offsets.
  assert.deepEqual(new Batch('t', '11', { partition: 0, highWatermark: '40', messages: msgs(5, 9, 30, 39) }).messages.map((m) => m.offset), ['30', '39']);
  // Beyond 2^53 the Long comparison of kafkajs decides.
  const big = ['9007199254740993', '9007199254740994'].map((offset) => ({ offset, isControlRecord: false }));
  assert.deepEqual(new Batch('t', '9007199254740994', { partition: 0, highWatermark: '9007199254740995', messages: big }).messages.map((m) => m.offset), ['9007199254740994']);
  assert.deepEqual(kept.messages.map((m) => [(m as { topic?: string }).topic, (m as { partition?: number }).partition]), [['t', 0], ['t', 0], ['t', 0]], 'each record names its topic and partition');
  const withControl = [...msgs(1, 2), { offset: '3', isControlRecord: true }];
  assert.deepEqual(new Batch('t', '0', { partition: 0, highWatermark: '4', messages: withControl }).messages.map((m) => m.offset), ['1', '2']);
});

test('whether the metadata has a topic, and its partitions, are Map lookups, not a scan of the metadata per topic (each produce request and fetch asks)', async () => {
  const BrokerPool = require('kafkajs/src/cluster/brokerPool.js') as { prototype: object };
  const topics = Array.from({ length: 2000 }, (_, i) => `t.tenant_${i}.orders`);
  let reads = 0;
  const listed = topics.map((topic) => ({ topic, partitionMetadata: [] }));
  const topicMetadata = new Proxy(listed, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver);
    },
  });
  const pool = Object.assign(Object.create(BrokerPool.prototype) as { refreshMetadataIfNecessary(t: string[]): Promise<void> }, {
    metadata: { topicMetadata },
    metadataExpireAt: Date.now() + 60_000,
    refreshMetadata: async () => assert.fail('every topic is in the metadata: no refresh'),
  });
  for (let i = 0; i < 3; i++) await pool.refreshMetadataIfNecessary(topics);
  // Before: up to 2,000 × 2,000 / 2 element reads per call.
  assert.ok(reads <= topics.length, `${reads} reads of the metadata's topics over three checks of ${topics.length} topics`);
  // A consumer looks up each of its topics' partitions at every fetch (checkForStaleAssignment, leaders).
  const Cluster = require('kafkajs/src/cluster/index.js') as { prototype: { findTopicPartitionMetadata(topic: string): unknown[] } };
  const cluster = Object.assign(Object.create(Cluster.prototype) as { findTopicPartitionMetadata(topic: string): unknown[] }, { brokerPool: pool });
  for (const topic of topics) assert.deepEqual(cluster.findTopicPartitionMetadata(topic), []);
  assert.ok(reads <= topics.length, `${reads} reads of the metadata's topics after looking up each topic's partitions`);
});
