/**
 * Pure comparison of what both sides returned: per-range statistics, then per-row digests
 * of a differing range. No I/O.
 */

export interface RangeStat {
  rows: number;
  /** numeric sum of row digests, as text (exact). */
  sum: string;
}

export type Difference = 'changed' | 'missing on destination' | 'only on destination' | 'duplicated on destination' | 'duplicated on source';

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

/**
 * Rows that differ between the sides, in key order, at most `limit`. A key held more often on
 * one side (a table without a primary key) is reported as duplicated there; equal counts
 * compare the digests as multisets.
 */
export function diffDigests(source: DigestRow[], destination: DigestRow[], keyColumns: string[], limit: number): KeyDifference[] {
  const byKey = new Map<string, { key: (string | null)[]; source: string[]; destination: string[] }>();
  const add = (r: DigestRow, side: 'source' | 'destination') => {
    const id = JSON.stringify(r.key);
    let e = byKey.get(id);
    if (!e) byKey.set(id, (e = { key: r.key, source: [], destination: [] }));
    e[side].push(r.digest);
  };
  for (const r of source) add(r, 'source');
  for (const r of destination) add(r, 'destination');
  const out: { key: (string | null)[]; difference: Difference }[] = [];
  for (const { key, source: s, destination: d } of byKey.values()) {
    const difference = keyDifference(s, d);
    if (difference) out.push({ key, difference });
  }
  out.sort((a, b) => compareKeys(a.key, b.key));
  return out.slice(0, limit).map((r) => ({ key: Object.fromEntries(keyColumns.map((c, i) => [c, r.key[i]])), difference: r.difference }));
}

function keyDifference(s: string[], d: string[]): Difference | null {
  if (d.length === 0) return 'missing on destination';
  if (s.length === 0) return 'only on destination';
  if (d.length > s.length) return 'duplicated on destination';
  if (s.length > d.length) return 'duplicated on source';
  const sorted = (x: string[]) => [...x].sort().join();
  return sorted(s) === sorted(d) ? null : 'changed';
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
