import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupCommits, type GroupOffset } from '../../sink-connector/group-commits.ts';

function setup() {
  let now = 0;
  const commits: GroupOffset[][] = [];
  const g = new GroupCommits(async (o) => void commits.push(o), 1000, () => now);
  return { g, commits, at: (t: number) => (now = t) };
}

test('group commits: the first commit of a partition goes at once, then at most one per interval, the latest trailing', async () => {
  const { g, commits, at } = setup();
  g.offer('t', 0, 10n);
  assert.deepEqual(commits, [[{ topic: 't', partition: 0, next: 10n }]]);
  at(100);
  g.offer('t', 0, 20n);
  at(200);
  g.offer('t', 0, 30n);
  g.offer('t', 1, 5n); // another partition: its own first commit goes at once
  assert.equal(commits.length, 2);
  assert.deepEqual(commits[1], [{ topic: 't', partition: 1, next: 5n }]);
  at(1000);
  await g.flush();
  assert.deepEqual(commits[2], [{ topic: 't', partition: 0, next: 30n }], 'only the latest position of the interval');
  at(1100);
  g.offer('t', 0, 40n);
  assert.equal(commits.length, 3, 'within the interval after the flush: held');
  await g.flush();
  assert.deepEqual(commits[3], [{ topic: 't', partition: 0, next: 40n }]);
  await g.flush();
  assert.equal(commits.length, 4, 'nothing pending: no commit');
});

test('group commits: the trailing flush happens by itself after the interval', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 0;
  const commits: GroupOffset[][] = [];
  const g = new GroupCommits(async (o) => void commits.push(o), 1000, () => now);
  g.offer('t', 0, 1n);
  g.offer('t', 0, 2n);
  assert.equal(commits.length, 1);
  now = 1000;
  t.mock.timers.tick(1000);
  assert.deepEqual(commits[1], [{ topic: 't', partition: 0, next: 2n }]);
});
