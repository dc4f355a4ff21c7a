import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LsnTracker } from '../../source-connector/lsn-tracker.ts';

test('nothing confirmable before any transaction completes; constructor position is kept', () => {
  assert.equal(new LsnTracker().confirmable(), null);
  const t = new LsnTracker(500n);
  assert.equal(t.confirmable(), 500n);
  t.register(600n, 1);
  assert.equal(t.confirmable(), 500n);
});

test('out-of-order acks confirm only the contiguous prefix', () => {
  const t = new LsnTracker();
  const a = t.register(100n, 2, 20);
  const b = t.register(200n, 1, 10);
  const c = t.register(300n, 3, 30);
  assert.equal(t.pendingRecords, 6);
  assert.equal(t.pendingBytes, 60);

  t.ack(c, 3, 30);
  assert.equal(t.confirmable(), null, 'c is done but a and b are not');
  t.ack(b, 1, 10);
  assert.equal(t.confirmable(), null);
  t.ack(a, 1, 10);
  assert.equal(t.confirmable(), null, 'a is half acknowledged');
  t.ack(a, 1, 10);
  assert.equal(t.confirmable(), 300n, 'all three at once');
  assert.equal(t.pendingRecords, 0);
  assert.equal(t.pendingBytes, 0);
  assert.equal(t.pendingTransactions, 0);
});

test('prefix advances step by step and never goes back', () => {
  const t = new LsnTracker();
  const txs = [10n, 20n, 30n, 40n].map((lsn) => t.register(lsn, 1));
  t.ack(txs[1]);
  t.ack(txs[0]);
  assert.equal(t.confirmable(), 20n);
  t.ack(txs[3]);
  assert.equal(t.confirmable(), 20n);
  t.ack(txs[2]);
  assert.equal(t.confirmable(), 40n);
  assert.equal(t.confirmable(), 40n);
});

test('an open transaction holds the confirm point until sealed, even when all its records are acked', () => {
  const t = new LsnTracker();
  const done = t.register(100n, 1);
  t.ack(done);
  const open = t.begin(150n);
  open.add(2, 8);
  t.ack(open, 2, 8); // records of a big transaction can be durable before its Commit is read
  const later = t.begin(250n);
  assert.equal(t.confirmable(), 100n);
  open.seal(200n);
  assert.equal(t.confirmable(), 200n);
  later.seal(300n); // zero records
  assert.equal(t.confirmable(), 300n);
  assert.equal(open.complete, true);
});

test('empty transactions (filtered tables) are confirmable as soon as earlier ones are', () => {
  const t = new LsnTracker();
  const a = t.register(100n, 1);
  t.register(200n, 0);
  t.register(300n, 0);
  assert.equal(t.confirmable(), null);
  t.ack(a);
  assert.equal(t.confirmable(), 300n);
  t.register(400n, 0);
  assert.equal(t.confirmable(), 400n);
});

test('a failed send blocks the confirm point before it until reset', () => {
  const t = new LsnTracker();
  const a = t.register(100n, 1);
  const b = t.register(200n, 2);
  const c = t.register(300n, 1);
  t.ack(a);
  t.ack(c);
  t.ack(b);
  t.fail(b, new Error('broker said no'));
  t.ack(b); // a later success of the other record does not undo the failure
  assert.equal(t.confirmable(), 100n);
  assert.equal(t.failed?.tx, b);
  assert.equal((t.failed?.cause as Error).message, 'broker said no');
  assert.equal(t.idleConfirm(10_000n), null, 'never idle while a failure is pending');
  assert.equal(t.confirmable(), 100n);
  assert.equal(t.pendingRecords, 0, 'counters still drain for in-flight limits');

  t.reset();
  assert.equal(t.failed, null);
  assert.equal(t.confirmable(), 100n, 'reset keeps the confirmed position');
  assert.equal(t.ack(b), false, 'acks of handles from before the reset are ignored');
  t.fail(c); // ignored as well
  assert.equal(t.failed, null);
  const d = t.register(200n, 1); // the stream replays from the confirmed position
  t.ack(d);
  assert.equal(t.confirmable(), 200n);
});

test('idleConfirm: the keep-alive position only when nothing is pending', () => {
  const t = new LsnTracker(50n);
  assert.equal(t.idleConfirm(80n), 80n, 'nothing registered: idle');
  assert.equal(t.idleConfirm(70n), 80n, 'never moves back');

  const open = t.begin(90n);
  assert.equal(t.idleConfirm(1000n), null, 'open transaction');
  open.add(1);
  open.seal(100n);
  assert.equal(t.idleConfirm(1000n), null, 'sealed but unacknowledged');
  t.ack(open);
  assert.equal(t.idleConfirm(1000n), 1000n, 'acknowledged: idle again');
  assert.equal(t.confirmable(), 1000n);

  const u = t.register(1100n, 1);
  assert.equal(t.idleConfirm(2000n), null);
  assert.equal(t.confirmable(), 1000n);
  t.ack(u);
  assert.equal(t.confirmable(), 1100n);
  assert.equal(t.idleConfirm(2000n), 2000n);
});

test('in-flight counters add on register and subtract on ack, across transactions', () => {
  const t = new LsnTracker();
  const a = t.begin(1n);
  a.add(1, 100);
  a.add(1, 50);
  const b = t.register(10n, 3, 300);
  assert.deepEqual([t.pendingRecords, t.pendingBytes], [5, 450]);
  t.ack(b, 2, 200);
  t.ack(a, 1, 100);
  assert.deepEqual([t.pendingRecords, t.pendingBytes], [2, 150]);
  assert.deepEqual([a.records, a.acked, a.bytes], [2, 1, 50]);
});

test('large counts: millions of records acknowledged in batches, many transactions', () => {
  const t = new LsnTracker();
  const big = t.begin(1n);
  big.add(10_000_000, 740_000_000);
  big.add(5_000_000_000, 0);
  big.seal(2n);
  const txs = [];
  for (let i = 0; i < 50_000; i++) txs.push(t.register(10n + BigInt(i), 2, 148));
  assert.equal(t.pendingRecords, 5_010_000_000 + 100_000);
  for (let i = txs.length - 1; i >= 0; i--) t.ack(txs[i], 2, 148);
  assert.equal(t.confirmable(), null);
  for (let i = 0; i < 10_000; i++) t.ack(big, 1000, 74_000);
  t.ack(big, 5_000_000_000, 0);
  assert.equal(t.confirmable(), 10n + 49_999n);
  assert.equal(t.pendingRecords, 0);
  assert.equal(t.pendingBytes, 0);
  assert.equal(t.pendingTransactions, 0);
});

test('long runs keep the queue compact and the prefix exact', () => {
  const t = new LsnTracker();
  let lsn = 0n;
  const open: ReturnType<LsnTracker['register']>[] = [];
  for (let round = 0; round < 20_000; round++) {
    open.push(t.register((lsn += 8n), 1));
    if (round % 3 === 2) {
      for (const tx of open.splice(0)) t.ack(tx);
      assert.equal(t.confirmable(), lsn);
    }
  }
  assert.ok(t.pendingTransactions <= 2);
});

test('misuse is refused: over-acknowledging, out-of-order registration, adding after seal', () => {
  const t = new LsnTracker();
  const a = t.register(100n, 1, 10);
  assert.throws(() => t.ack(a, 2), RangeError);
  assert.throws(() => t.ack(a, 1, 11), RangeError);
  assert.throws(() => t.ack(a, -1), RangeError);
  assert.throws(() => t.ack(a, 0.5), RangeError);
  assert.throws(() => a.add(1), /sealed/);
  assert.throws(() => a.seal(200n), /twice/);
  assert.throws(() => t.register(90n, 0), /commit order/);
  const b = t.begin(150n);
  assert.throws(() => b.seal(100n), /commit order/);
  t.reset();
  assert.throws(() => b.add(1), /before reset/);
  assert.equal(t.pendingRecords, 0);
});
