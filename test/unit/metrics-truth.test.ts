/** Metrics against what they stand for, in the corner cases that left them stale. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import type { Producer, SentRecord } from '../../shared/kafka/client.ts';
import { createMetrics } from '../../shared/metrics.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import type { ChangeEvent } from '../../source-connector/envelope.ts';
import { LsnTracker } from '../../source-connector/lsn-tracker.ts';
import { Publisher, type PublishTarget } from '../../source-connector/publisher.ts';

async function gaugeValue(m: ReturnType<typeof createMetrics>, name: string): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  return metric ? (await metric.get()).values[0]?.value : undefined;
}

test('inflight_records counts the records queued behind a send Kafka does not answer', async () => {
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  let sends = 0;
  const producer: Producer = {
    connect: async () => {},
    disconnect: async () => {},
    sendBatch: async (): Promise<SentRecord[]> => {
      sends++;
      await hung;
      return [];
    },
    prepare: async () => {},
    pin: () => {},
  };
  const metrics = createMetrics({ prefix: 'shardbridge_source_' });
  const publisher = new Publisher({ producer, tracker: new LsnTracker(null), maxRecords: 1e9, maxBytes: 1e12, log: pino({ level: 'silent' }), metrics });
  const keyType = createAvroType({ type: 'record', name: 'K', fields: [{ name: 'id', type: 'long' }] });
  const envelopeType = createAvroType({ type: 'record', name: 'V', fields: [{ name: 'body', type: 'string' }] });
  const target: PublishTarget = { topic: 't', qualified: 'public.t', keySchemaId: 7, valueSchemaId: 8, schemas: { keyType, envelopeType } };
  const row = (id: number): ChangeEvent => ({ key: { id }, value: { body: `r${id}` } as unknown as ChangeEvent['value'] });

  publisher.publish(target, [row(0)], null);
  while (sends === 0) await new Promise((r) => setImmediate(r));
  // The first batch is in flight and stuck; the stream goes on reading meanwhile.
  publisher.publish(target, Array.from({ length: 50 }, (_, i) => row(i + 1)), null);
  assert.equal(await gaugeValue(metrics, 'shardbridge_source_inflight_records'), 51);
  assert.ok((await gaugeValue(metrics, 'shardbridge_source_inflight_bytes'))! > 50 * 5);
  release();
  assert.equal(await publisher.flush(10_000), true);
  assert.equal(await gaugeValue(metrics, 'shardbridge_source_inflight_records'), 0);
  assert.equal(await gaugeValue(metrics, 'shardbridge_source_inflight_bytes'), 0);
});
