/**
 * Adaptive batch size for the sink (pure). Live traffic wants small batches (latency);
 * a backlog wants big ones (on Citus every batch pays ~250 ms of worker connections, so
 * rows/s grows with batch size). The size follows the lag, is held under a latency target
 * measured from recent applies, and grows at most by doubling so one guess cannot make a
 * batch that runs for minutes.
 */
import { ConfigError } from '../shared/errors.ts';

export interface BatchSizing {
  /** Smallest batch the sink asks for (e.g. 500). */
  floor: number;
  /** Largest batch (memory, Kafka fetch size, statement size). */
  maxRows: number;
  /** Keep one apply under this many milliseconds (offsets commit, rebalances are served). */
  targetMs: number;
}

export interface ApplySample {
  rows: number;
  ms: number;
}

export interface BatchSizeInput {
  /** The size chosen last time. */
  current: number;
  /** Records behind the log end, summed over the partitions this worker owns. */
  lag: number;
  /** Recent applies, oldest first (a few are enough). */
  recent: readonly ApplySample[];
  /** At most this many: what fit of a batch found too big for one go (TooBigSizes), below the floor too. */
  ceiling?: number;
}

export const DEFAULT_BATCH_SIZING: BatchSizing = { floor: 500, maxRows: 50_000, targetMs: 2_000 };

export function checkBatchSizing(s: BatchSizing): BatchSizing {
  const bad = (key: string, why: string): never => {
    throw new ConfigError(`batch sizing: ${key} ${why}`, { context: { key } });
  };
  if (!Number.isInteger(s.floor) || s.floor < 1) bad('floor', 'must be a positive integer');
  if (!Number.isInteger(s.maxRows) || s.maxRows < s.floor) bad('maxRows', 'must be an integer at least floor');
  if (!(s.targetMs > 0)) bad('targetMs', 'must be positive');
  return s;
}

/**
 * Latency model `ms = fixedMs + perRowMs × rows` fitted by least squares over recent
 * applies. The fixed part matters: on Citus a batch pays for worker connections whatever
 * its size, so a plain ms/row ratio would keep batches smaller than the target allows.
 * With one batch size only (or a fit that makes no sense) it falls back to that ratio.
 */
export function fitLatency(recent: readonly ApplySample[]): { fixedMs: number; perRowMs: number } | null {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of recent) {
    if (s.rows > 0 && s.ms >= 0) {
      xs.push(s.rows);
      ys.push(s.ms);
    }
  }
  if (xs.length === 0) return null;
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
  }
  if (sxx > 0) {
    const perRowMs = sxy / sxx;
    const fixedMs = my - perRowMs * mx;
    if (perRowMs > 0 && fixedMs >= 0) return { fixedMs, perRowMs };
  }
  return { fixedMs: 0, perRowMs: my / mx };
}

export function nextBatchRows(input: BatchSizeInput, sizing: BatchSizing = DEFAULT_BATCH_SIZING): number {
  return underCeiling(sized(input, sizing), input.ceiling);
}

function sized(input: BatchSizeInput, sizing: BatchSizing): number {
  const { floor, maxRows, targetMs } = sizing;
  const lag = Math.max(0, input.lag);
  if (lag <= floor) return floor; // live: take what is there, keep latency low
  const fit = fitLatency(input.recent);
  const byLatency = fit === null || fit.perRowMs === 0 ? Infinity : (targetMs - fit.fixedMs) / fit.perRowMs;
  const grown = Math.max(floor, input.current) * 2;
  const want = Math.min(lag, maxRows, byLatency, grown);
  return Math.max(floor, Math.min(maxRows, Math.floor(want)));
}

/** `rows`, at most `ceiling` (at least one). Pure. */
export function underCeiling(rows: number, ceiling: number | undefined): number {
  return ceiling === undefined ? rows : Math.max(1, Math.min(rows, Math.floor(ceiling)));
}

/** Applies near a ceiling without a failure after which it doubles (TooBigSizes). */
export const FITS_TO_GROW = 16;

/**
 * Per key (a topic: one source table), the size a batch may have after one was too big for one
 * go (a statement_timeout, out of memory, max_locks_per_transaction: destination-errors.ts) and
 * went in halves. The latency model learns from applies that succeeded only, so under a
 * statement_timeout shorter than its target it grew the next batches straight back into the
 * timeout: every batch of a catch-up timed out three times, then went in halves again.
 *
 * The ceiling is the largest piece of the failed batch that then applied in one go (what fits,
 * not a guess); a batch whose pieces all failed down to one record (a lock held past the
 * timeout, one slow row) says nothing about size and sets none. It doubles after FITS_TO_GROW
 * applies of at least half of it without a failure (a raised statement_timeout, a quieter
 * destination), and is forgotten once it reaches maxRows. Pure.
 */
export class TooBigSizes {
  private readonly sizes = new Map<string, { rows: number; fits: number }>();

  constructor(
    private readonly maxRows: number,
    private readonly fitsToGrow = FITS_TO_GROW,
  ) {}

  /** The most rows a batch of `key` may have now; undefined: no limit. */
  ceiling(key: string): number | undefined {
    return this.sizes.get(key)?.rows;
  }

  /** A batch of `key` was too big for one go; of its pieces, at most `fitRows` applied in one (0: none). */
  tooBig(key: string, rows: number, fitRows: number): void {
    if (fitRows <= 0 || fitRows >= rows) return;
    this.sizes.set(key, { rows: fitRows, fits: 0 });
  }

  /** A batch of `rows` of `key` applied in one go. */
  applied(key: string, rows: number): void {
    const s = this.sizes.get(key);
    // A batch far under the ceiling (live traffic) says nothing about the ceiling.
    if (!s || rows * 2 < s.rows) return;
    if (++s.fits < this.fitsToGrow) return;
    s.rows *= 2;
    s.fits = 0;
    if (s.rows >= this.maxRows) this.sizes.delete(key);
  }
}
