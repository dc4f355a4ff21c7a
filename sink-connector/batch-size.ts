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
  const { floor, maxRows, targetMs } = sizing;
  const lag = Math.max(0, input.lag);
  if (lag <= floor) return floor; // live: take what is there, keep latency low
  const fit = fitLatency(input.recent);
  const byLatency = fit === null || fit.perRowMs === 0 ? Infinity : (targetMs - fit.fixedMs) / fit.perRowMs;
  const grown = Math.max(floor, input.current) * 2;
  const want = Math.min(lag, maxRows, byLatency, grown);
  return Math.max(floor, Math.min(maxRows, Math.floor(want)));
}
