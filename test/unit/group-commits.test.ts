import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupCommits, type GroupOffset } from '../../sink-connector/group-commits.ts';

function setup() {
  let now = 0;
  const commits: GroupOffset[][] = [];
  const g = new GroupCommits(async (o) => void commits.push(o), 1000, () => now);
  return { g, commits, at: (t: number) => (now = t) };
}

test('group commits: the first commit goes at once, then at most one request per interval, the latest position trailing', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { g, commits, at } = setup();
  g.offer('t', 0, 10n);
  assert.deepEqual(commits, [[{ topic: 't', partition: 0, next: 10n }]]);
  at(100);
  g.offer('t', 0, 20n);
  at(200);
  g.offer('t', 0, 30n);
  g.offer('t', 1, 5n); // another partition: held with the first, for the same request
  assert.equal(commits.length, 1);
  at(1000);
  await g.flush();
  assert.deepEqual(commits[1], [{ topic: 't', partition: 0, next: 30n }, { topic: 't', partition: 1, next: 5n }], 'only the latest position of the interval');
  at(1100);
  g.offer('t', 0, 40n);
  assert.equal(commits.length, 2, 'within the interval after the flush: held');
  await g.flush();
  assert.deepEqual(commits[2], [{ topic: 't', partition: 0, next: 40n }]);
  await g.flush();
  assert.equal(commits.length, 3, 'nothing pending: no commit');
});

test('group commits: the trailing flush happens by itself after the interval', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { g, commits, at } = setup();
  g.offer('t', 0, 1n);
  at(400);
  g.offer('t', 0, 2n);
  assert.equal(commits.length, 1);
  at(1000);
  t.mock.timers.tick(600);
  assert.deepEqual(commits[1], [{ topic: 't', partition: 0, next: 2n }]);
});

test('group commits: 150 partitions applied within an interval cost one request each interval, not one each', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { g, commits, at } = setup();
  for (let second = 0; second < 3; second++) {
    for (let i = 0; i < 150; i++) {
      at(second * 1000 + i);
      g.offer(`shardbridge.public.t${i}`, i % 6, BigInt(second * 10 + 1));
    }
  }
  at(3000);
  t.mock.timers.tick(3000);
  assert.ok(commits.length <= 4, `${commits.length} commit requests for 150 partitions over 3 intervals`);
  const last = new Map(commits.flat().map((o) => [`${o.topic}/${o.partition}`, o.next]));
  assert.equal(last.size, 150);
  assert.ok([...last.values()].every((n) => n === 21n), 'every partition ends at its latest position');
});
