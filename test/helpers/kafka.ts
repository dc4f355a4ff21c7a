/**
 * Kafka for integration tests: the run-wide broker named by SHARDBRIDGE_TEST_KAFKA when a
 * runner started one, otherwise a broker of this test file's own (started here, stopped by
 * release()).
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { startKafka } from '../../shared/devstack/kafka.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';

/** Test logs go to stderr at SHARDBRIDGE_TEST_LOG (default warn) so that failures show kafkajs's view. */
export function testLogger(): Logger {
  return pino({ level: process.env.SHARDBRIDGE_TEST_LOG ?? 'warn' }, pino.destination(2));
}

/** A logger whose lines (parsed) the test can read, and that still shows warnings on stderr. */
export function capturingLogger(): { logger: Logger; lines: () => Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, pino.multistream([{ stream, level: 'info' }, { stream: process.stderr, level: 'warn' }])), lines: () => lines };
}

export async function getTestKafka(): Promise<{ bootstrap: string; release(): Promise<void> }> {
  const shared = process.env.SHARDBRIDGE_TEST_KAFKA;
  if (shared) return { bootstrap: shared, release: async () => {} };
  const broker = await startKafka({ logger: testLogger() });
  return { bootstrap: broker.bootstrap, release: () => broker.stop() };
}

/** A topic (or group) name no other test or run uses, so a shared broker needs no cleanup between files. */
export function uniqueTopic(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export interface ReadRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  /** The producer id of the record batch it came in. */
  producerId?: string;
}

/** Every record of `topic` up to its current end offsets, read by a throw-away consumer group. */
export async function readTopic(kafka: KafkaClient, topic: string, timeoutMs = 30_000): Promise<ReadRecord[]> {
  const admin = kafka.admin();
  const ends = await admin.endOffsets(topic).finally(() => admin.disconnect());
  const next = new Map<number, bigint>();
  const records: ReadRecord[] = [];
  const consumer = kafka.consumer({ groupId: uniqueTopic('read'), maxWaitTimeMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = String(v);
          // kafkajs's message carries its record batch's producer id (not in our ConsumedMessage: only tests ask).
          const producerId = (m as { batchContext?: { producerId?: string } }).batchContext?.producerId;
          records.push({ partition: batch.partition, offset: m.offset, key: m.key?.toString() ?? null, value: m.value?.toString() ?? null, headers, producerId });
          next.set(batch.partition, BigInt(m.offset) + 1n);
        }
      },
    });
    await waitFor(`${topic} read up to ${JSON.stringify(ends)}`, () => ends.every((e) => (next.get(e.partition) ?? 0n) >= BigInt(e.offset)), { timeoutMs });
  } finally {
    await consumer.disconnect();
  }
  return records;
}
