import { test } from 'node:test';
import assert from 'node:assert/strict';
import { abortable, backoffDelay, errorSummary, retry, retryUntilAborted } from '../../shared/retry.ts';
import { ConfigError, RetriableError, SourceError, isRetriable, tlsTrustFailure, tlsTrustRemedy } from '../../shared/errors.ts';

const tiny = { initialMs: 1, maxMs: 4, jitter: false };

test('retries retriable errors until success, passing the attempt number', async () => {
  const seen: number[] = [];
  const delays: number[] = [];
  const result = await retry(
    async (attempt) => {
      seen.push(attempt);
      if (attempt < 3) throw new RetriableError('broker unavailable');
      return 'done';
    },
    { ...tiny, what: 'send', onRetry: (_e, _a, d) => delays.push(d) },
  );
  assert.equal(result, 'done');
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(delays, [1, 2]);
});

test('a non-retriable error is rethrown at once, unchanged', async () => {
  let calls = 0;
  const err = new ConfigError('bad');
  await assert.rejects(
    retry(async () => {
      calls++;
      throw err;
    }, { ...tiny, what: 'x' }),
    (e) => e === err,
  );
  assert.equal(calls, 1);
});

test('a retriable cause inside a non-retriable wrapper is retried; node socket codes too', async () => {
  let calls = 0;
  await retry(
    async () => {
      calls++;
      if (calls === 1) throw new SourceError('wrapped', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) });
      if (calls === 2) throw Object.assign(new Error('deadlock'), { code: '40P01' });
    },
    { ...tiny, what: 'x' },
  );
  assert.equal(calls, 3);
});

test('gives up after `retries` retries and rethrows the last error', async () => {
  let calls = 0;
  await assert.rejects(
    retry(async () => {
      calls++;
      throw new RetriableError(`fail ${calls}`);
    }, { ...tiny, retries: 2, what: 'x' }),
    /fail 3/,
  );
  assert.equal(calls, 3);
});

test('a server certificate that does not verify is never retried, whatever its wrapper says; its remedy names the CA setting', () => {
  const tls = Object.assign(new Error('Connection error: unable to verify the first certificate'), { retriable: true, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  const wrapped = new RetriableError('destination connection failed', { cause: tls });
  assert.equal(isRetriable(wrapped), false);
  assert.equal(isRetriable(Object.assign(new Error('x'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })), false);
  assert.equal(tlsTrustFailure(wrapped), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  assert.equal(tlsTrustFailure(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), null);
  assert.equal(isRetriable(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), true, 'an unreachable server still is');
  assert.equal(
    tlsTrustRemedy(wrapped, 'kafka.ssl.ca'),
    "the server's TLS certificate did not verify (UNABLE_TO_VERIFY_LEAF_SIGNATURE): give the CA that signed it as kafka.ssl.ca, and check that the certificate names the host connected to",
  );
  assert.equal(tlsTrustRemedy(new Error('other'), 'kafka.ssl.ca'), null);
});

test('retries: 0 means one attempt', async () => {
  let calls = 0;
  await assert.rejects(retry(async () => { calls++; throw new RetriableError('x'); }, { ...tiny, retries: 0, what: 'x' }));
  assert.equal(calls, 1);
});

test('abort during the backoff wait rejects with the abort reason promptly', async () => {
  const ac = new AbortController();
  let calls = 0;
  const started = Date.now();
  const p = retry(
    async () => {
      calls++;
      throw new RetriableError('down');
    },
    { retries: Infinity, initialMs: 60_000, jitter: false, signal: ac.signal, what: 'x', onRetry: () => ac.abort(new Error('stopping')) },
  );
  await assert.rejects(p, /stopping/);
  assert.equal(calls, 1);
  assert.ok(Date.now() - started < 5_000);
});

test('an already aborted signal means no attempt at all', async () => {
  let calls = 0;
  await assert.rejects(retry(async () => { calls++; }, { what: 'x', signal: AbortSignal.abort(new Error('gone')) }), /gone/);
  assert.equal(calls, 0);
});

test('retryUntilAborted rejects at the abort while an attempt hangs, and removes its abort listener once settled', async () => {
  const ac = new AbortController();
  let attempts = 0;
  const hung = retryUntilAborted(() => { attempts++; return new Promise<never>(() => {}); }, { what: 'x', signal: ac.signal });
  ac.abort(new Error('stopping'));
  await assert.rejects(hung, /stopping/);
  assert.equal(attempts, 1);

  const other = new AbortController();
  const added: unknown[] = [];
  const removed: unknown[] = [];
  const signal = other.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((type: string, l: EventListener, o?: AddEventListenerOptions) => (added.push(l), add(type, l, o))) as typeof signal.addEventListener;
  signal.removeEventListener = ((type: string, l: EventListener) => (removed.push(l), remove(type, l))) as typeof signal.removeEventListener;
  assert.equal(await retryUntilAborted(async () => 7, { what: 'x', signal }), 7);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(added.length, 1);
  assert.deepEqual(removed, added);
});

test('backoff grows by factor, is capped, and jitter stays within [d/2, d]', () => {
  assert.deepEqual([1, 2, 3, 4, 5].map((a) => backoffDelay(a, { initialMs: 100, factor: 3, maxMs: 1000, jitter: false })), [100, 300, 900, 1000, 1000]);
  assert.equal(backoffDelay(3, { initialMs: 100, random: () => 0 }), 200);
  assert.equal(backoffDelay(3, { initialMs: 100, random: () => 1 }), 400);
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(2, { initialMs: 100 });
    assert.ok(d >= 100 && d <= 200, String(d));
  }
});

test('errorSummary: type, code and messages down the cause chain, no stacks (retry warnings carry it below debug)', () => {
  const inner = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  const outer = new RetriableError('destination connection failed: connect ECONNREFUSED 127.0.0.1:1', { cause: inner });
  assert.deepEqual(errorSummary(outer), {
    type: 'RetriableError',
    message: 'destination connection failed: connect ECONNREFUSED 127.0.0.1:1',
    cause: { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:1', code: 'ECONNREFUSED' },
  });
  assert.deepEqual(errorSummary('plain'), { message: 'plain' });
  // Below debug the warning carries only this: our errors' context and remedy must stay in it.
  const ours = new RetriableError('no free replication slot', { context: { table: 'public.added' }, remedy: 'drop an unused slot' });
  assert.deepEqual(errorSummary(ours), { type: 'RetriableError', message: 'no free replication slot', context: { table: 'public.added' }, remedy: 'drop an unused slot' });
});

test('abortable: rejects with the reason as soon as the signal aborts, while the call is still under way; otherwise the call settles it', async () => {
  const stop = new AbortController();
  const never = new Promise<string>(() => {});
  const waiting = abortable(never, stop.signal);
  stop.abort(new Error('stopping'));
  await assert.rejects(waiting, /stopping/);
  await assert.rejects(abortable(Promise.resolve('late'), stop.signal), /stopping/, 'already aborted');
  const live = new AbortController();
  assert.equal(await abortable(Promise.resolve('done'), live.signal), 'done');
  await assert.rejects(abortable(Promise.reject(new Error('refused')), live.signal), /refused/);
});
