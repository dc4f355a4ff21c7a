import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessagePump } from '../../source-connector/message-pump.ts';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** A pump whose handler records what it saw and waits on the deferreds queued in `waits` (by message text). */
function harness() {
  const seen: string[] = [];
  const events: string[] = [];
  const failures: unknown[] = [];
  const waits = new Map<string, Deferred>();
  const pump = new MessagePump({
    handle: (m) => {
      const text = m.toString();
      seen.push(text);
      if (text === 'boom') throw new Error('bad message');
      return waits.get(text)?.promise;
    },
    pause: () => events.push('pause'),
    resume: () => events.push('resume'),
    fail: (err) => failures.push(err),
  });
  return { pump, seen, events, failures, waits };
}

const settle = () => new Promise((r) => setImmediate(r));

test('synchronous handling: each message handled during push, the socket never paused', () => {
  const h = harness();
  for (const m of ['a', 'b', 'c']) {
    h.pump.push(Buffer.from(m));
    assert.equal(h.seen.at(-1), m);
  }
  assert.deepEqual(h.events, []);
  assert.equal(h.pump.received, 3);
  assert.equal(h.pump.handled, 3);
  assert.equal(h.pump.idle, true);
});

test('a waiting handler pauses the socket; later messages are copied, run in order after it, then the socket resumes', async () => {
  const h = harness();
  const wait = deferred();
  h.waits.set('wait', wait);
  h.pump.push(Buffer.from('a'));
  h.pump.push(Buffer.from('wait'));
  assert.deepEqual(h.events, ['pause']);
  // The connection reuses its read buffer: what waits must not change with it.
  const view = Buffer.from('b');
  h.pump.push(view);
  view.write('X');
  h.pump.push(Buffer.from('c'));
  assert.deepEqual(h.seen, ['a', 'wait']);
  assert.equal(h.pump.idle, false);
  wait.resolve();
  await settle();
  assert.deepEqual(h.seen, ['a', 'wait', 'b', 'c']);
  assert.deepEqual(h.events, ['pause', 'resume']);
  assert.equal(h.pump.idle, true);
});

test('a queued message that waits again keeps the rest queued and the socket paused until it settles', async () => {
  const h = harness();
  const first = deferred();
  const second = deferred();
  h.waits.set('w1', first);
  h.waits.set('w2', second);
  for (const m of ['w1', 'x', 'w2', 'y']) h.pump.push(Buffer.from(m));
  first.resolve();
  await settle();
  assert.deepEqual(h.seen, ['w1', 'x', 'w2']);
  assert.deepEqual(h.events, ['pause', 'pause']);
  h.pump.push(Buffer.from('z'));
  second.resolve();
  await settle();
  assert.deepEqual(h.seen, ['w1', 'x', 'w2', 'y', 'z']);
  assert.deepEqual(h.events, ['pause', 'pause', 'resume']);
});

test('a handler that throws or rejects fails the pump, which then takes nothing more', async () => {
  const h = harness();
  h.pump.push(Buffer.from('boom'));
  h.pump.push(Buffer.from('after'));
  assert.deepEqual(h.seen, ['boom']);
  assert.equal((h.failures[0] as Error).message, 'bad message');

  const g = harness();
  const wait = deferred();
  g.waits.set('wait', wait);
  g.pump.push(Buffer.from('wait'));
  g.pump.push(Buffer.from('queued'));
  wait.reject(new Error('kafka gone'));
  await settle();
  assert.deepEqual(g.seen, ['wait']);
  assert.equal((g.failures[0] as Error).message, 'kafka gone');
  assert.deepEqual(g.events, ['pause']);
});
