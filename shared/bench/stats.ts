/**
 * The benchmark's arithmetic, pure: percentiles, rates, ratios, the workload's sizes at a
 * scale, and LSN comparison. Everything that turns measurements into figures lives here so
 * that it is unit-tested (test/unit/bench-stats.test.ts).
 */

/**
 * The p-th percentile (0..100) of `values` by the nearest-rank method: the smallest value
 * such that at least p % of the values are at or below it. null for no values.
 */
export function percentile(values: readonly number[], p: number): number | null {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} outside 0..100`);
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export interface LatencySummary {
  samples: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

export function summarize(values: readonly number[]): LatencySummary {
  const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
  return {
    samples: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : null,
    mean,
  };
}

/** Items per second over `ms`; null when nothing was timed (ms <= 0 or missing). */
export function perSecond(count: number, ms: number | null | undefined): number | null {
  if (ms === null || ms === undefined || !(ms > 0) || !Number.isFinite(count)) return null;
  return count / (ms / 1000);
}

/** ours / peer; null when either is missing or the peer is 0. */
export function ratio(ours: number | null | undefined, peer: number | null | undefined): number | null {
  if (ours === null || ours === undefined || peer === null || peer === undefined || !(peer > 0)) return null;
  return ours / peer;
}

/** Rounded to `digits` decimals; null stays null. */
export function round(v: number | null | undefined, digits = 0): number | null {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

// ---------- workload sizes ----------

/** The full-scale workload of ../shared/README.md. */
export const FULL_WORKLOAD = { rows: 1_000_000, inserts: 300_000, updates: 100_000, deletes: 20_000 } as const;
/** Steady load for the latency measurement at scale 1, and its floor at small scales. */
export const LATENCY_RATE = { full: 5_000, floor: 500 } as const;

export interface WorkloadSize {
  scale: number;
  rows: number;
  inserts: number;
  updates: number;
  deletes: number;
  /** inserts + updates + deletes: the row changes of the backlog. */
  changes: number;
  /** Changes per second of the latency load. */
  latencyRate: number;
}

export function workloadSize(scale: number): WorkloadSize {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`scale must be a positive number, got ${scale}`);
  const n = (full: number) => Math.max(1, Math.round(full * scale));
  const rows = Math.max(100, n(FULL_WORKLOAD.rows));
  const inserts = n(FULL_WORKLOAD.inserts);
  // Updated and deleted ids are strided through the seeded rows (10k+1 and 50k+5): keep them inside.
  const updates = Math.min(n(FULL_WORKLOAD.updates), Math.floor(rows / 10));
  const deletes = Math.min(n(FULL_WORKLOAD.deletes), Math.floor(rows / 50));
  return {
    scale,
    rows,
    inserts,
    updates,
    deletes,
    changes: inserts + updates + deletes,
    latencyRate: Math.max(LATENCY_RATE.floor, Math.round(LATENCY_RATE.full * scale)),
  };
}

/**
 * Kafka records the source writes to a table topic for the backlog: one per insert and
 * update, one per delete plus its tombstone when tombstones are on.
 */
export function expectedBacklogRecords(w: Pick<WorkloadSize, 'inserts' | 'updates' | 'deletes'>, tombstones: boolean): number {
  return w.inserts + w.updates + w.deletes * (tombstones ? 2 : 1);
}

// ---------- LSNs ----------

/** "16/B374D848" → bigint. */
export function lsnToBigInt(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Bytes of WAL between two LSNs (b - a). */
export function lsnDiff(a: string, b: string): number {
  return Number(lsnToBigInt(b) - lsnToBigInt(a));
}

// ---------- Kafka progress ----------

/** Sum of the partitions' end offsets (decimal strings). */
export function sumOffsets(ends: readonly { offset: string }[]): number {
  return ends.reduce((a, e) => a + Number(e.offset), 0);
}

/**
 * True when the sink has applied every partition up to its end: the stored next offset of
 * each non-empty partition is at or past the partition's end offset.
 */
export function appliedToEnd(ends: readonly { partition: number; offset: string }[], stored: ReadonlyMap<number, bigint>): boolean {
  return ends.every((e) => BigInt(e.offset) === 0n || (stored.get(e.partition) ?? 0n) >= BigInt(e.offset));
}
