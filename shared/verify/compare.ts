/**
 * Pure comparison of what both sides returned: per-range statistics, then per-row digests
 * of a differing range. No I/O.
 */

export interface RangeStat {
  rows: number;
  /** numeric sum of row digests, as text (exact). */
  sum: string;
}

export type Difference = 'changed' | 'missing on destination' | 'only on destination';

export interface KeyDifference {
  /** Key values in text form, by source key column. */
  key: Record<string, string | null>;
  difference: Difference;
}

/** Indexes whose count or checksum differ (a range absent on one side counts as empty). */
export function differingIndexes(source: Map<number, RangeStat>, destination: Map<number, RangeStat>): number[] {
  const all = new Set([...source.keys(), ...destination.keys()]);
  const empty: RangeStat = { rows: 0, sum: '0' };
  return [...all]
    .filter((i) => {
      const s = source.get(i) ?? empty;
      const d = destination.get(i) ?? empty;
      return s.rows !== d.rows || normSum(s.sum) !== normSum(d.sum);
    })
    .sort((a, b) => a - b);
}

const normSum = (s: string | null) => (s === null || s === '' ? '0' : s);

export interface DigestRow {
  key: (string | null)[];
  digest: string;
}

/** Rows that differ between the sides, in key order, at most `limit`. */
export function diffDigests(source: DigestRow[], destination: DigestRow[], keyColumns: string[], limit: number): KeyDifference[] {
  const id = (k: (string | null)[]) => JSON.stringify(k);
  const dst = new Map(destination.map((r) => [id(r.key), r]));
  const out: { key: (string | null)[]; difference: Difference }[] = [];
  for (const s of source) {
    const d = dst.get(id(s.key));
    if (!d) out.push({ key: s.key, difference: 'missing on destination' });
    else {
      if (d.digest !== s.digest) out.push({ key: s.key, difference: 'changed' });
      dst.delete(id(s.key));
    }
  }
  for (const d of dst.values()) out.push({ key: d.key, difference: 'only on destination' });
  out.sort((a, b) => compareKeys(a.key, b.key));
  return out.slice(0, limit).map((r) => ({ key: Object.fromEntries(keyColumns.map((c, i) => [c, r.key[i]])), difference: r.difference }));
}

const INTEGER = /^-?\d+$/;

/** Key order for reports: integers numerically, everything else by code point; NULL last. */
export function compareKeys(a: (string | null)[], b: (string | null)[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? null;
    const y = b[i] ?? null;
    if (x === y) continue;
    if (x === null) return 1;
    if (y === null) return -1;
    if (INTEGER.test(x) && INTEGER.test(y)) {
      const bx = BigInt(x);
      const by = BigInt(y);
      if (bx !== by) return bx < by ? -1 : 1;
      continue;
    }
    return x < y ? -1 : 1;
  }
  return 0;
}
