/**
 * Retry with exponential backoff for transient failures. Which errors are transient is decided
 * by `isRetriable` (shared/errors.ts) only: anything else is rethrown at once, unchanged.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ShardBridgeError, isRetriable } from './errors.ts';
import type { Logger } from './logger.ts';

export interface RetryOptions {
  /** Retries after the first attempt; `Infinity` retries forever (until aborted). Default 5. */
  retries?: number;
  /** First delay. Default 200 ms. */
  initialMs?: number;
  /** Delay ceiling. Default 30 s. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Randomise each delay into [delay/2, delay] so that restarted workers do not retry in lockstep. Default true. */
  jitter?: boolean;
  /** Abort stops waiting at once and rejects with `signal.reason`. */
  signal?: AbortSignal;
  logger?: Logger;
  /** What is being tried, for the log line ("connect to source"). */
  what: string;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Which failures are tried again. Default `isRetriable`. */
  retryIf?: (err: unknown) => boolean;
  /** Source of randomness for jitter (tests). */
  random?: () => number;
}

/** The delay before retry number `attempt` (1 = after the first failure). Pure. */
export function backoffDelay(
  attempt: number,
  opts: Pick<RetryOptions, 'initialMs' | 'maxMs' | 'factor' | 'jitter' | 'random'> = {},
): number {
  const initial = opts.initialMs ?? 200;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const base = Math.min(max, initial * Math.pow(factor, attempt - 1));
  if (opts.jitter === false) return Math.round(base);
  const r = (opts.random ?? Math.random)();
  return Math.round(base / 2 + (base / 2) * r);
}

/**
 * Call `fn(attempt)` (attempt counts from 1) until it resolves, a non-retriable error is thrown,
 * the retries are used up (the last error is rethrown) or `signal` aborts (rejects with its reason).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const retries = opts.retries ?? 5;
  if (!(retries >= 0)) throw new RangeError(`retry(${opts.what}): retries must be >= 0, got ${retries}`);
  for (let attempt = 1; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (!(opts.retryIf ?? isRetriable)(err) || attempt > retries) throw err;
      const delayMs = backoffDelay(attempt, opts);
      opts.onRetry?.(err, attempt, delayMs);
      opts.logger?.warn(
        { err: opts.logger.isLevelEnabled('debug') ? err : errorSummary(err), attempt, retriesLeft: retries === Infinity ? 'unlimited' : retries - attempt + 1, delayMs },
        `${opts.what} failed, retrying in ${delayMs} ms`,
      );
      // timers/promises rejects with an AbortError carrying signal.reason as cause; surface the reason itself.
      await sleep(delayMs, undefined, { signal: opts.signal }).catch((e: unknown) => {
        throw opts.signal?.aborted ? opts.signal.reason : e;
      });
    }
  }
}

/**
 * retry() that rejects as soon as `signal` aborts, also while an attempt is under way (kafkajs's
 * own retries of a broker that is down take a while); the attempt is left to settle unobserved.
 */
export function retryUntilAborted<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions & { signal: AbortSignal }): Promise<T> {
  return abortable(retry(fn, opts), opts.signal);
}

/**
 * `p`, or `signal.reason` as soon as `signal` aborts, whichever comes first: for a call that has
 * no signal of its own (the registry client's, whose retries of a server that does not answer
 * take minutes), left to settle unobserved. The listener goes when `p` settles.
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  let onAbort = () => {};
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  stopped.catch(() => {});
  void p.catch(() => {}).finally(() => signal.removeEventListener('abort', onAbort));
  return Promise.race([p, stopped]);
}

/** `p`, or a rejection with `message` once `ms` pass first; the timer goes when `p` settles. */
export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * An error as its type, code and messages down the cause chain, without stacks: a failure that is
 * retried is expected, and a stack per attempt buries the message (stacks come at debug). Pure.
 */
export function errorSummary(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown; cause?: unknown };
  const out: Record<string, unknown> = { type: e.name, message: e.message };
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  // Ours name the table, topic or server, and what fixes it: the operator's part of the error.
  if (err instanceof ShardBridgeError) {
    if (Object.keys(err.context).length > 0) out.context = err.context;
    if (err.remedy !== undefined) out.remedy = err.remedy;
  }
  if (e.cause !== undefined) out.cause = errorSummary(e.cause);
  return out;
}
