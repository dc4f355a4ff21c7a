/**
 * The sink's metrics against what they stand for (Kafka's end offsets, the stored offsets) in
 * the moments they went wrong: a group join, where every series is dropped and a partition with
 * nothing to fetch was left without one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const { ID, SRC, DST, log, env, table } = sinkTestFile('mtruth');

/** consumer_lag of `topic`, by partition. */
async function lagOf(sink: SinkConnector, topic: string): Promise<Map<number, number>> {
  const values = (await sink.metrics.getSingleMetric('shardbridge_sink_consumer_lag')!.get()).values;
  return new Map(values.filter((v) => v.labels.topic === topic).map((v) => [Number(v.labels.partition), v.value]));
}

test('after a group join, consumer_lag shows every owned partition caught up as 0, not as no series until its next record', async () => {
  const { db, admin, producer, servers } = env();
  const prefix = uniqueTopic('sbmtruth');
  const t = await table(prefix, 'lagged', { partitions: 3 });
  const topic = t.topic;
  const groupId = `g-${ID}-lag`;
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.lagged`]: { schema: DST } } });
  await produceChanges(producer, t, Array.from({ length: 30 }, (_, i) => ({ kind: 'insert' as const, new: [String(i), `v${i}`] })));
  const first = await startSinkConnector(config, log, { topicRefreshMs: 60_000, controlPollMs: 60_000 });
  try {
    await waitApplied(db, admin, groupId, [topic]);
  } finally {
    await first.stop();
  }
  const ends = await admin.endOffsets(topic);
  assert.ok(ends.every((e) => Number(e.offset) > 0), 'records on every partition');

  // Restarted caught up: nothing is fetched, yet each partition is known to be at its end.
  const again = await startSinkConnector(config, log, { topicRefreshMs: 60_000, controlPollMs: 60_000 });
  try {
    const lag = await waitFor('consumer_lag of every partition', async () => {
      const l = await lagOf(again, topic);
      return l.size === 3 ? l : undefined;
    }, { timeoutMs: 8_000, intervalMs: 50 });
    assert.deepEqual([...lag.entries()].sort(), [[0, 0], [1, 0], [2, 0]]);
  } finally {
    await again.stop();
  }
});
