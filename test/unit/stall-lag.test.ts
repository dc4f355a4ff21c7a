/**
 * A stalled partition's consumer_lag follows Kafka's end offsets while it stays stalled (the
 * source keeps producing): read on a timer, one request a stalled topic, no timer while nothing
 * is stalled or after stop. Timers mocked: each period is a tick.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { createSinkMetrics } from '../../sink-connector/sink-metrics.ts';
import { Stalls, stalledLag, STALLED_LAG_MS, type StallInfo } from '../../sink-connector/stall.ts';

test('stalledLag: records from the stalled one to the end; 0 past it; none for an offset not known', () => {
  assert.equal(stalledLag(25n, '4'), 21);
  assert.equal(stalledLag(4n, '4'), 0);
  assert.equal(stalledLag(3n, '9'), 0, 'a stall past the end (a recreated topic)');
  assert.equal(stalledLag(25n, ''), undefined, 'a stall known only from shardbridge.stalls');
});

const stall = (topic: string, partition: number, offset: string): StallInfo => ({ topic, partition, offset, reason: 'apply', message: 'x', remedy: 'y' });
/** The reads a tick started, answered (their promises settle within a few turns). */
const settled = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

test("Stalls: a stalled partition's lag is read from its topic's end offsets each period while it stays stalled; one request a topic; no timer without a stall or after stop", async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'setTimeout'] });
  const m = createSinkMetrics('unit');
  const ends = new Map<string, { partition: number; end: string }[]>([
    ['a', [{ partition: 0, end: '10' }, { partition: 1, end: '7' }, { partition: 2, end: '50' }]],
    ['b', [{ partition: 0, end: '3' }]],
  ]);
  const asked: string[] = [];
  const stalls = new Stalls({
    groupId: 'g',
    retryMs: 600_000, // no retry here: the figures come from the timer alone
    logger: pino({ level: 'silent' }),
    metrics: m,
    query: async () => ({ rows: [], rowCount: 0 }) as never,
    onRetry: () => {},
    lag: {
      gauge: m.lag,
      ends: async (topic) => {
        asked.push(topic);
        const found = ends.get(topic);
        if (!found) throw new Error(`no answer for ${topic}`);
        return found;
      },
    },
  });
  const lagOf = async (topic: string, partition: number) => (await m.lag.get()).values.find((v) => v.labels.topic === topic && v.labels.partition === String(partition))?.value;
  const period = async () => {
    asked.length = 0;
    t.mock.timers.tick(STALLED_LAG_MS);
    await settled();
  };

  stalls.report(stall('a', 0, '4'));
  stalls.report(stall('a', 1, '2'));
  stalls.report(stall('b', 0, '1'));
  await period();
  assert.deepEqual(asked.sort(), ['a', 'b'], 'one request a stalled topic');
  assert.deepEqual([await lagOf('a', 0), await lagOf('a', 1), await lagOf('b', 0)], [6, 5, 2]);
  assert.equal(await lagOf('a', 2), undefined, "a partition that is not stalled is the batches' to set");

  // The source goes on producing: the figure follows, with no retry of the stall.
  ends.set('a', [{ partition: 0, end: '30' }, { partition: 1, end: '7' }]);
  await period();
  assert.equal(await lagOf('a', 0), 26);

  // Kafka not answering: logged at debug, the other topic still read, nothing thrown.
  const bEnds = ends.get('b')!;
  ends.delete('b');
  ends.set('a', [{ partition: 0, end: '31' }]);
  await period();
  assert.deepEqual(asked.sort(), ['a', 'b']);
  assert.equal(await lagOf('a', 0), 27);
  ends.set('b', bEnds);

  // Nothing stalled: no timer, no requests.
  for (const [topic, partition] of [['a', 0], ['a', 1], ['b', 0]] as const) stalls.resolved(topic, partition);
  await period();
  assert.deepEqual(asked, []);

  stalls.report(stall('b', 0, '1'));
  await period();
  assert.deepEqual(asked, ['b']);
  stalls.stop();
  await period();
  assert.deepEqual(asked, [], 'no request after stop');
});
