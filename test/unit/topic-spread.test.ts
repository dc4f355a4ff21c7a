import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TopicSpread } from '../../shared/kafka/topic-spread.ts';

interface Fake {
  id: number;
  connects: number;
  disconnects: number;
  failNext: boolean;
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

function fakes() {
  const made: Fake[] = [];
  const make = (): Fake => {
    const c: Fake = {
      id: made.length,
      connects: 0,
      disconnects: 0,
      failNext: false,
      async connect() {
        c.connects++;
        if (c.failNext) {
          c.failNext = false;
          throw new Error('refused');
        }
      },
      async disconnect() {
        c.disconnects++;
      },
    };
    made.push(c);
    return c;
  };
  return { made, make };
}

test('topic spread: 120 topics over clients of 50 each, a topic always to the same client, each connected once', async () => {
  const { made, make } = fakes();
  const spread = new TopicSpread(make, 50);
  const first = await Promise.all(Array.from({ length: 120 }, (_, i) => spread.for(`t${i}`)));
  assert.equal(spread.size, 3);
  assert.deepEqual(first.map((c) => c.id), Array.from({ length: 120 }, (_, i) => Math.floor(i / 50)));
  const again = await Promise.all(Array.from({ length: 120 }, (_, i) => spread.for(`t${119 - i}`)));
  assert.deepEqual(again.map((c) => c.id).reverse(), first.map((c) => c.id), 'the same client for a topic asked again');
  assert.deepEqual(made.map((c) => c.connects), [1, 1, 1]);
  await spread.disconnect();
  assert.deepEqual(made.map((c) => c.disconnects), [1, 1, 1]);
  assert.equal((await spread.for('t0')).id, 3, 'after disconnect, a new client');
});

test('topic spread: a failed connect is tried again by the next call', async () => {
  const { made, make } = fakes();
  const spread = new TopicSpread(make, 50);
  await spread.for('a');
  made[0].failNext = true;
  const fresh = new TopicSpread(() => made[0], 50);
  await assert.rejects(fresh.for('b'), /refused/);
  assert.equal((await fresh.for('b')).id, 0);
  assert.equal(made[0].connects, 3);
});
