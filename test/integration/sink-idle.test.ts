/**
 * An idle sink: how often it fetches, and how soon a change after a quiet spell is applied.
 * Each fetch names every partition the sink owns, so the idle fetch rate is what an idle sink
 * over thousands of partitions costs itself and the broker; the held fetch must still answer
 * at the first record.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges, registerTable, tableInfo } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const { ID, SRC, DST, log, env } = sinkTestFile('idle');

test('an idle sink fetches once per consumer.idleMaxWaitMs, and applies a change after a quiet spell at once, not when the held fetch expires', async () => {
  const { db, admin, producer, registry, servers } = env();
  await db.query(`CREATE TABLE ${SRC}.quiet (id int PRIMARY KEY, v text); CREATE TABLE ${DST}.quiet (id int PRIMARY KEY, v text)`);
  const prefix = uniqueTopic('sbidle');
  const topic = `${prefix}.${SRC}.quiet`;
  await admin.ensureTopics([{ topic, partitions: 3, replicationFactor: 1 }]);
  const t = await registerTable(registry, await tableInfo(db, SRC, 'quiet'), topic);
  const groupId = `g-${ID}-idle`;
  // Longer than the default (500), so that a change waiting for the held fetch to expire shows.
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.quiet`]: { schema: DST } }, consumer: { idleMaxWaitMs: 3000 } });
  const idleMs = config.consumer.idleMaxWaitMs;
  const sink = await startSinkConnector(config, log, { topicRefreshMs: 60_000, controlPollMs: 60_000 });
  const emptyFetches = async () =>
    (await sink.metrics.getSingleMetric('shardbridge_sink_fetches_total')!.get()).values.filter((v) => v.labels.result === 'empty').reduce((n, v) => n + v.value, 0);
  try {
    await produceChanges(producer, t, [{ kind: 'insert', new: ['1', 'one'] }]);
    await waitApplied(db, admin, groupId, [topic]);

    // Quiet: from one empty fetch to the third after it, the broker held each for idleMaxWaitMs.
    const first = await waitFor('an empty fetch', async () => {
      const n = await emptyFetches();
      return n > 0 ? { n, at: Date.now() } : undefined;
    }, { timeoutMs: 20_000, intervalMs: 20 });
    await waitFor('three more empty fetches', async () => (await emptyFetches()) >= first.n + 3, { timeoutMs: 20_000, intervalMs: 20 });
    const perFetch = (Date.now() - first.at) / 3;
    assert.ok(perFetch >= idleMs * 0.75, `an idle fetch every ${Math.round(perFetch)} ms (idleMaxWaitMs ${idleMs}): each names every partition the sink owns`);

    // A change now is applied long before the held fetch would have expired.
    const sent = Date.now();
    await produceChanges(producer, t, [{ kind: 'insert', new: ['2', 'two'] }]);
    await waitFor('the change applied', async () => (await db.query(`SELECT 1 FROM ${DST}.quiet WHERE id = 2`)).rowCount === 1, { timeoutMs: 20_000, intervalMs: 10 });
    const latency = Date.now() - sent;
    assert.ok(latency < idleMs / 2, `a change after a quiet spell applied ${latency} ms after it was sent (idleMaxWaitMs ${idleMs})`);
  } finally {
    await sink.stop();
  }
});
