/**
 * Edges of patches/kafkajs+2.2.4.patch found in review: a produce request's header written into
 * the room in front of its body (client ids around the room's size, multi-byte ones, a retry
 * encoding the request again), and the fetch path's offsets written and read without a Long
 * (negative values, the limits of exact numbers, non-canonical strings), against references
 * written here from the protocol.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
type Enc = { buffer: Buffer };
const produceV3 = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (args: object) => { apiKey: number; apiVersion: number; encode(): Promise<Enc> };
const createRequest = require('kafkajs/src/protocol/request.js') as (o: object) => Promise<Enc>;
const fetchV11 = require('kafkajs/src/protocol/requests/fetch/v11/request.js') as (args: object) => { encode(): Promise<Enc> };
const fetchV11Response = require('kafkajs/src/protocol/requests/fetch/v11/response.js') as { decode(b: Buffer): Promise<{ responses: { partitions: Record<string, unknown>[] }[] }> };
const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };

function produceRequest(transactionalId: string | null = null) {
  const messages = [{ key: Buffer.from('k'), value: Buffer.from('v'.repeat(300)) }, { key: null, value: null }];
  return produceV3({ acks: -1, timeout: 30000, transactionalId, producerId: Long.fromInt(42), producerEpoch: 3, topicData: [{ topic: 'shop.public.orders', partitions: [{ partition: 0, firstSequence: 7, messages }] }] });
}

/** Request header v1 (size, api key, version, correlation id, nullable client id) then the body, as the protocol lays it out. */
function reference(apiKey: number, apiVersion: number, correlationId: number, clientId: string | null, body: Buffer): Buffer {
  const id = clientId === null ? null : Buffer.from(clientId, 'utf8');
  const head = Buffer.alloc(14);
  head.writeInt32BE(10 + (id?.length ?? 0) + body.length, 0);
  head.writeInt16BE(apiKey, 4);
  head.writeInt16BE(apiVersion, 6);
  head.writeInt32BE(correlationId, 8);
  head.writeInt16BE(id === null ? -1 : id.length, 12);
  return Buffer.concat([head, id ?? Buffer.alloc(0), body]);
}

test('produce request: client ids around the room in front of the body (242 bytes fit it), multi-byte ones and none', async (t) => {
  t.mock.method(Date, 'now', () => 1_700_000_000_123);
  const ids: (string | null)[] = [null, '', 'x', 'a'.repeat(241), 'a'.repeat(242), 'a'.repeat(243), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(257), 'é'.repeat(121), 'é'.repeat(122), '€'.repeat(81), '😀'.repeat(60), '😀'.repeat(61), 'ü'.repeat(200)];
  for (const transactionalId of [null, 'tx-ünï']) {
    for (const clientId of ids) {
      const request = produceRequest(transactionalId);
      const body = (await request.encode()).buffer;
      const sent = (await createRequest({ correlationId: 0x01020304, clientId, request })).buffer;
      assert.ok(sent.equals(reference(0, 3, 0x01020304, clientId, Buffer.from(body))), `client id of ${clientId === null ? 'null' : Buffer.byteLength(clientId) + ' bytes'}, transactional id ${transactionalId}`);
    }
  }
});

test('produce request: a retry encodes it again and leaves the bytes of the first attempt (possibly still queued on the socket) as they were', async (t) => {
  t.mock.method(Date, 'now', () => 1_700_000_000_123);
  const request = produceRequest();
  const first = (await createRequest({ correlationId: 1, clientId: 'shardbridge-source', request })).buffer;
  const firstCopy = Buffer.from(first);
  const second = (await createRequest({ correlationId: 2, clientId: 'shardbridge-source', request })).buffer;
  assert.ok(first.equals(firstCopy), 'the first attempt unchanged');
  assert.equal(second.readInt32BE(8), 2);
  assert.ok(second.subarray(12).equals(first.subarray(12)) && second.subarray(0, 8).equals(first.subarray(0, 8)), 'the same request but its correlation id');
  assert.notEqual(first.buffer === second.buffer && first.byteOffset === second.byteOffset, true, 'not the same memory');
});

test('fetch v11 request: offsets as numbers or strings, negative, at the limits of exact numbers, non-canonical', async () => {
  const offsets: (string | number)[] = [0, -1, '-1', 4294967295, 4294967296, 2 ** 53 - 1, String(2 ** 53 - 1), -(2 ** 40) - 5, String(-(2 ** 40) - 5), '9007199254740992', '9007199254740993', '-9007199254740993', '9223372036854775807', '007', '+5'];
  const partitions = offsets.map((fetchOffset, partition) => ({ partition, fetchOffset, logStartOffset: fetchOffset, maxBytes: 10 }));
  const got = (await fetchV11({ replicaId: -1, maxWaitTime: 1, minBytes: 1, maxBytes: 2, isolationLevel: 1, topics: [{ topic: 't', partitions }], forgottenTopics: [], rackId: '' }).encode()).buffer;
  let at = 4 * 4 + 1 + 4 * 2 + 4 + 2 + 1 + 4; // header, topics array, topic 't', partitions array
  for (const [i, offset] of offsets.entries()) {
    const expected = BigInt(typeof offset === 'string' ? offset.replace(/^\+/, '') : offset);
    assert.equal(got.readInt32BE(at), i);
    assert.equal(got.readBigInt64BE(at + 8), expected, `fetch offset ${offset}`);
    assert.equal(got.readBigInt64BE(at + 16), expected, `log start offset ${offset}`);
    at += 28;
  }
});

test('fetch v11 response: int64 fields exact when negative and around 2^53; an error code, aborted transactions and a preferred read replica as sent', async () => {
  const values = [0n, -1n, -(2n ** 40n) - 5n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n), -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n), 4294967295n, 4294967296n];
  const parts: Buffer[] = [];
  const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); parts.push(b); };
  const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); parts.push(b); };
  const i64 = (n: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64BE(n); parts.push(b); };
  i32(0); i16(0); i32(5); i32(1); i16(1); parts.push(Buffer.from('t')); i32(values.length);
  for (const [i, v] of values.entries()) {
    i32(i); i16(i === 1 ? 6 : 0); i64(v); i64(-v - 1n); i64(v); // 6: NOT_LEADER_FOR_PARTITION
    if (i === 2) { i32(1); i64(9n); i64(v); } else i32(0);
    i32(i === 3 ? 2 : -1); i32(i % 2 ? -1 : 0);
  }
  const res = await fetchV11Response.decode(Buffer.concat(parts));
  const got = res.responses[0].partitions.map((p) => [p.partition, p.errorCode, p.highWatermark, p.lastStableOffset, p.lastStartOffset, p.abortedTransactions, p.preferredReadReplica, (p.messages as unknown[]).length]);
  assert.deepEqual(got, values.map((v, i) => [i, i === 1 ? 6 : 0, String(v), String(-v - 1n), String(v), i === 2 ? [{ producerId: '9', firstOffset: String(v) }] : [], i === 3 ? 2 : -1, 0]));
});
