import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplyLanes } from '../../sink-connector/apply-lanes.ts';

/** A unit of lane work that ends when the test says so. */
function gate() {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { done, open, fail };
}

/** Let every pending promise continuation run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('apply lanes: a batch is taken at once while there is room, and applied only once its partition\'s batch before it ends', async () => {
  const lanes = new ApplyLanes(3);
  const log: string[] = [];
  const a = gate();
  await lanes.handOver('t|0', async () => {
    log.push('a start');
    await a.done;
    log.push('a end');
  });
  // The handler returns at once, so that kafkajs fetches on, but b waits for a.
  await lanes.handOver('t|0', async () => void log.push('b'));
  await settle();
  assert.deepEqual(log, ['a start'], 'b waits while its partition applies a, slots free or not');
  a.open();
  await lanes.drain();
  assert.deepEqual(log, ['a start', 'a end', 'b']);
});

test('apply lanes: batches queued behind their partition count as taken, and a seek drops them', async () => {
  const lanes = new ApplyLanes(1);
  const a = gate();
  const ran: string[] = [];
  await lanes.handOver('t|0', async () => void (await a.done));
  await lanes.handOver('t|0', async () => void ran.push('b'));
  let cTaken = false;
  const c = lanes.handOver('t|0', async () => void ran.push('c')).then(() => (cTaken = true));
  await settle();
  assert.equal(cTaken, false, 'two batches taken (twice the one slot): the third handler waits for room');
  lanes.invalidate('t|0');
  a.open();
  await c;
  await lanes.drain();
  assert.deepEqual(ran, [], 'batches handed over before the seek are not applied');
});

test('apply lanes: at most `slots` batches apply at once, across partitions', async () => {
  const lanes = new ApplyLanes(2);
  const gates = [gate(), gate(), gate()];
  let running = 0;
  let most = 0;
  for (let p = 0; p < 3; p++) {
    await lanes.handOver(`t|${p}`, async () => {
      most = Math.max(most, ++running);
      await gates[p].done;
      running--;
    });
  }
  await settle();
  assert.equal(running, 2, 'the third partition waits for a slot');
  gates[0].open();
  await settle();
  assert.equal(running, 2, 'it takes the freed slot');
  gates[1].open();
  gates[2].open();
  await lanes.drain();
  assert.equal(most, 2);
  assert.equal(running, 0);
});

test('apply lanes: invalidating a partition drops what was handed over before, not what comes after', async () => {
  const lanes = new ApplyLanes(1);
  const first = gate();
  const ran: string[] = [];
  await lanes.handOver('t|1', async () => void (await first.done));
  // A batch of another partition waits for the only slot; then its partition is seeked.
  await lanes.handOver('t|0', async (w) => void ran.push(`stale ${w.current()}`));
  lanes.invalidate('t|0');
  first.open();
  await lanes.drain();
  assert.equal(ran.length, 0, 'the batch handed over before the seek is not applied');
  await lanes.handOver('t|0', async (w) => void ran.push(`fresh ${w.current()}`));
  await lanes.drain();
  assert.deepEqual(ran, ['fresh true']);
});

test('apply lanes: a running batch sees itself superseded; invalidateAll reaches every lane', async () => {
  const lanes = new ApplyLanes(2);
  const g = gate();
  const seen: boolean[] = [];
  for (const key of ['a|0', 'b|0']) {
    await lanes.handOver(key, async (w) => {
      await g.done;
      seen.push(w.current());
    });
  }
  lanes.invalidateAll();
  g.open();
  await lanes.drain();
  assert.deepEqual(seen, [false, false]);
});

test('apply lanes: a failed batch frees its slot and its lane; drain waits for all', async () => {
  const lanes = new ApplyLanes(1);
  const g = gate();
  await lanes.handOver('t|0', async () => void (await g.done));
  let after = false;
  const next = lanes.handOver('t|0', async () => void (after = true));
  g.fail(new Error('apply failed'));
  await next;
  await lanes.drain();
  assert.equal(after, true);
});

test('apply lanes: at most twice `slots` batches are taken, however many partitions wait', async () => {
  const lanes = new ApplyLanes(1);
  const gates = [gate(), gate(), gate()];
  const taken: number[] = [];
  for (let p = 0; p < 2; p++) await lanes.handOver(`t|${p}`, async () => void (await gates[p].done));
  void lanes.handOver('t|2', async () => void (await gates[2].done)).then(() => taken.push(2));
  await settle();
  assert.deepEqual(taken, [], 'one applying and one waiting for the slot: the third handler waits');
  gates[0].open();
  await settle();
  assert.deepEqual(taken, [2]);
  gates[1].open();
  gates[2].open();
  await lanes.drain();
});

test('apply lanes: invalidateAll also drops a batch still waiting for room', async () => {
  const lanes = new ApplyLanes(1);
  const gates = [gate(), gate()];
  for (let p = 0; p < 2; p++) await lanes.handOver(`t|${p}`, async () => void (await gates[p].done));
  let applied = false;
  const waiting = lanes.handOver('t|2', async () => void (applied = true));
  lanes.invalidateAll();
  gates[0].open();
  gates[1].open();
  await waiting;
  await lanes.drain();
  assert.equal(applied, false);
});

test('apply lanes: report batches applying and waiting for a slot as they change', async () => {
  const seen: string[] = [];
  const lanes = new ApplyLanes(1, (applying, waiting) => seen.push(`${applying}/${waiting}`));
  const gates = [gate(), gate()];
  for (let p = 0; p < 2; p++) await lanes.handOver(`t|${p}`, async () => void (await gates[p].done));
  gates[0].open();
  await settle();
  gates[1].open();
  await lanes.drain();
  assert.deepEqual(seen, ['1/0', '1/1', '1/0', '0/0']);
});
