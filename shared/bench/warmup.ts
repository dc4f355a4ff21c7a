/**
 * Warming the Kafka broker's JIT before the timed phases (docs/benchmark.md). The bench starts
 * its broker seconds before the ShardBridge snapshot, so without this the snapshot pays for
 * the JVM compiling the broker's produce and fetch paths (a flight recording showed the C1/C2
 * compiler threads as most of the broker's CPU in that phase), while the peers run against
 * warm native code (PostgreSQL, pg_recvlogical). A broker in production is warm: like a JMH
 * warm-up, a throwaway topic is produced and read back once through our own client with
 * records shaped like the workload's, then deleted. Not timed.
 * Pure parts (the plan, its batches and messages): test/unit/bench-setup.test.ts.
 */
import type { Logger } from '../logger.ts';
import { createKafka, type OutMessage } from '../kafka/client.ts';
import { CONSUMER_DEFAULTS } from '../../sink-connector/config.ts';

export interface WarmupPlan {
  topic: string;
  records: number;
  partitions: number;
  keyBytes: number;
  valueBytes: number;
  /** Key + value bytes per sendBatch (the source connector's batches are ~800 kB). */
  batchBytes: number;
}

/** ~250-byte Avro values and 8-byte keys over 6 partitions: the bench's `orders` topic. */
export const WARMUP: WarmupPlan = {
  topic: 'shardbridge-bench-warmup',
  records: 300_000,
  partitions: 6,
  keyBytes: 8,
  valueBytes: 250,
  batchBytes: 800_000,
};

/** Records per sendBatch: as many as fit in batchBytes (at least one), the last batch the rest. Pure. */
export function warmupBatches(p: Pick<WarmupPlan, 'records' | 'keyBytes' | 'valueBytes' | 'batchBytes'>): number[] {
  const per = Math.max(1, Math.floor(p.batchBytes / (p.keyBytes + p.valueBytes)));
  const out: number[] = [];
  for (let left = p.records; left > 0; left -= per) out.push(Math.min(per, left));
  return out;
}

/**
 * Records `first` … `first + count - 1`: the key is the record number (big-endian, so keys are
 * distinct and murmur2 spreads them over the partitions as the workload's ids are), the value
 * the same filler with the number in front (content does not matter: nothing is compressed). Pure.
 */
export function warmupMessages(p: Pick<WarmupPlan, 'topic' | 'keyBytes' | 'valueBytes'>, first: number, count: number): OutMessage[] {
  const out: OutMessage[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const key = Buffer.alloc(p.keyBytes);
    key.writeUIntBE(first + i, Math.max(0, p.keyBytes - 6), Math.min(6, p.keyBytes));
    const value = Buffer.alloc(p.valueBytes, 0x61);
    value.writeUInt32BE((first + i) >>> 0, 0);
    out[i] = { topic: p.topic, key, value };
  }
  return out;
}

export interface WarmupResult {
  ms: number;
  records: number;
  bytes: number;
}

/**
 * Produces the plan's records (idempotent producer, acks=all, as the source connector) and
 * reads them back once with a consumer group that commits after every batch (as the sink),
 * then deletes the topic. Resolves when the consumer has seen every record.
 */
export async function warmUpBroker(o: { bootstrap: string; log: Logger; plan?: WarmupPlan; timeoutMs?: number; signal: AbortSignal }): Promise<WarmupResult> {
  const p = o.plan ?? WARMUP;
  const t0 = performance.now();
  const kafka = createKafka({ brokers: [o.bootstrap], clientId: 'shardbridge-bench-warmup' }, o.log);
  const admin = kafka.admin();
  const producer = kafka.producer();
  // The sink's default fetch sizes, so that the broker compiles the fetches the sink makes.
  const consumer = kafka.consumer({ groupId: p.topic, ...CONSUMER_DEFAULTS, maxWaitTimeMs: 100 });
  let timer: NodeJS.Timeout | undefined;
  try {
    await admin.connect();
    await admin.ensureTopics([{ topic: p.topic, partitions: p.partitions, replicationFactor: 1 }]);
    await producer.connect();
    let sent = 0;
    for (const n of warmupBatches(p)) {
      if (o.signal.aborted) throw new Error('interrupted');
      await producer.sendBatch(warmupMessages(p, sent, n), { signal: o.signal });
      sent += n;
    }
    await consumer.connect();
    await consumer.subscribe({ topics: [p.topic], fromBeginning: true });
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      const timeoutMs = o.timeoutMs ?? 300_000;
      timer = setTimeout(() => reject(new Error(`warm-up: read ${seen} of ${p.records} records within ${timeoutMs / 1000} s`)), timeoutMs);
      o.signal.addEventListener('abort', () => reject(new Error('interrupted')), { once: true });
      consumer.onCrash(({ error, restart }) => {
        if (!restart) reject(error);
      });
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (batch.isEmpty()) return;
            seen += batch.messages.length;
            await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(batch.lastOffset()) + 1n).toString() }]);
            if (seen >= p.records) resolve();
          },
        })
        .catch(reject);
    });
    return { ms: performance.now() - t0, records: p.records, bytes: p.records * (p.keyBytes + p.valueBytes) };
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics([p.topic]).catch((err: unknown) => o.log.warn({ err }, 'warm-up: could not delete the topic'));
    await admin.disconnect().catch(() => {});
  }
}
