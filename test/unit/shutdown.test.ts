import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShutdownCoordinator, onShutdown } from '../../shared/shutdown.ts';
import { waitFor } from '../../shared/devstack/ports.ts';

test('handlers run once, newest first, and a failing one does not stop the rest', async () => {
  const exits: number[] = [];
  const c = new ShutdownCoordinator({ exit: (code) => exits.push(code) });
  const order: string[] = [];
  c.register(async (sig) => { order.push(`first:${sig}`); });
  c.register(() => { throw new Error('boom'); });
  c.register(async () => { order.push('third'); });
  const off = c.register(() => { order.push('removed'); });
  off();
  off();
  await c.signal('SIGTERM');
  await c.run('SIGTERM');
  assert.deepEqual(order, ['third', 'first:SIGTERM']);
  assert.deepEqual(exits, []);
  c.disarm();
});

test('a second signal forces the exit with 128 + signal number', async () => {
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const exits: number[] = [];
    const c = new ShutdownCoordinator({ exit: (n) => exits.push(n) });
    let release!: () => void;
    c.register(() => new Promise<void>((r) => (release = r)));
    const done = c.signal(sig);
    void c.signal(sig);
    assert.deepEqual(exits, [code]);
    release();
    await done;
    c.disarm();
  }
});

test('a handler that hangs is cut off by the timeout', async () => {
  const exits: number[] = [];
  const c = new ShutdownCoordinator({ timeoutMs: 20, exit: (n) => exits.push(n) });
  c.register(() => new Promise<void>(() => {}));
  void c.signal('SIGINT');
  await waitFor('forced exit', () => exits.length > 0, { timeoutMs: 5_000, intervalMs: 5 });
  assert.deepEqual(exits, [130]);
});

test('onShutdown installs signal listeners and removes them with the last handler', () => {
  const before = process.listenerCount('SIGTERM');
  const offA = onShutdown(async () => {});
  const offB = onShutdown(async () => {});
  assert.equal(process.listenerCount('SIGTERM'), before + 1);
  assert.equal(process.listenerCount('SIGINT') >= 1, true);
  offA();
  assert.equal(process.listenerCount('SIGTERM'), before + 1);
  offB();
  assert.equal(process.listenerCount('SIGTERM'), before);
});
