/**
 * The fetch path of patches/kafkajs+2.2.4.patch: each fetch names every assigned partition, so
 * what kafkajs does per partition per fetch is what an idle sink over thousands of partitions
 * spends its time on. These tests pin the bytes of the request and the fields of the response,
 * against references written here from the protocol (Fetch v11), and that a partition a fetch
 * brought nothing of becomes no batch.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
type Req = { encode(): Promise<{ buffer: Buffer }> };
const fetchV11 = require('kafkajs/src/protocol/requests/fetch/v11/request.js') as (args: object) => Req;
const fetchV11Response = require('kafkajs/src/protocol/requests/fetch/v11/response.js') as { decode(b: Buffer): Promise<{ errorCode: number; sessionId: number; responses: { topicName: string; partitions: Record<string, unknown>[] }[] }> };

/** Big-endian writer for the references. */
class W {
  parts: Buffer[] = [];
  i8(n: number) { const b = Buffer.alloc(1); b.writeInt8(n); this.parts.push(b); return this; }
  i16(n: number) { const b = Buffer.alloc(2); b.writeInt16BE(n); this.parts.push(b); return this; }
  i32(n: number) { const b = Buffer.alloc(4); b.writeInt32BE(n); this.parts.push(b); return this; }
  i64(n: bigint) { const b = Buffer.alloc(8); b.writeBigInt64BE(n); this.parts.push(b); return this; }
  str(s: string) { this.i16(Buffer.byteLength(s)); this.parts.push(Buffer.from(s)); return this; }
  bytes(b: Buffer) { this.parts.push(b); return this; }
  get buffer() { return Buffer.concat(this.parts); }
}

test('fetch v11 request: the bytes the protocol says, offsets exact beyond 2^53 and at -1', async () => {
  const topics = [
    { topic: 'idle.m.t0', partitions: [{ partition: 0, fetchOffset: '0', maxBytes: 1048576 }, { partition: 4, fetchOffset: '4294967296', maxBytes: 1 }] },
    { topic: 'idle.m.ünïcode', partitions: [{ partition: 2, fetchOffset: '9007199254740993', maxBytes: 7, logStartOffset: 5 }] },
    { topic: 'idle.m.t2', partitions: [{ partition: 1, fetchOffset: '123456789012', currentLeaderEpoch: 3, maxBytes: 65536 }] },
  ];
  const got = (await fetchV11({ replicaId: -1, maxWaitTime: 500, minBytes: 1, maxBytes: 3145728, isolationLevel: 1, topics, forgottenTopics: [{ topic: 'gone', partitions: [3] }], rackId: 'r1' }).encode()).buffer;
  const w = new W().i32(-1).i32(500).i32(1).i32(3145728).i8(1).i32(0).i32(-1).i32(topics.length);
  for (const t of topics) {
    w.str(t.topic).i32(t.partitions.length);
    for (const p of t.partitions as { partition: number; fetchOffset: string; maxBytes: number; currentLeaderEpoch?: number; logStartOffset?: number }[]) {
      w.i32(p.partition).i32(p.currentLeaderEpoch ?? -1).i64(BigInt(p.fetchOffset)).i64(BigInt(p.logStartOffset ?? -1)).i32(p.maxBytes);
    }
  }
  w.i32(1).str('gone').i32(1).i32(3).str('r1');
  assert.deepEqual(got, w.buffer);
});

test('fetch v11 response: empty partitions and one with records, every header field as sent', async () => {
  // A record batch as kafkajs itself encodes it (its produce path is patched and tested apart).
  const Long = require('kafkajs/src/utils/long.js') as { fromInt(n: number): unknown };
  const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch(o: object): Promise<{ buffer: Buffer }> };
  const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: object) => unknown;
  const records = [Record({ key: Buffer.from('k'), value: Buffer.from('v'), offsetDelta: 0, timestampDelta: 0 })];
  const batch = (await RecordBatch({ records, firstTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_000, lastOffsetDelta: 0, firstOffset: Long.fromInt(41) })).buffer;
  const header = (w: W, partition: number, hw: bigint) => w.i32(partition).i16(0).i64(hw).i64(hw).i64(0n).i32(0).i32(-1);
  const w = new W().i32(0).i16(0).i32(77).i32(2);
  w.str('a').i32(3);
  header(w, 0, 0n).i32(0); // empty record set
  header(w, 1, 9007199254740993n).i32(-1); // null record set, a high watermark beyond 2^53
  header(w, 2, 42n).i32(batch.length).bytes(batch);
  w.str('b').i32(-1); // null partitions array
  const res = await fetchV11Response.decode(w.buffer);
  assert.equal(res.sessionId, 77);
  const [a, b] = res.responses;
  assert.equal(a.topicName, 'a');
  assert.deepEqual(a.partitions.map((p) => [p.partition, p.errorCode, p.highWatermark, p.lastStableOffset, p.lastStartOffset, p.preferredReadReplica, (p.messages as unknown[]).length]), [
    [0, 0, '0', '0', '0', -1, 0],
    [1, 0, '9007199254740993', '9007199254740993', '0', -1, 0],
    [2, 0, '42', '42', '0', -1, 1],
  ]);
  const [m] = a.partitions[2].messages as { offset: string; key: Buffer; value: Buffer }[];
  assert.deepEqual([m.offset, m.key.toString(), m.value.toString()], ['41', 'k', 'v']);
  assert.deepEqual(b, { topicName: 'b', partitions: [] });
});
