/**
 * Pure: the migration guide's disk rule ("100 GB free or 20 % of the disk, whichever is
 * greater") applied to what SQL can see — the database size and the sampled WAL write rate —
 * and a `max_slot_wal_keep_size` recommendation so a stalled slot is invalidated before it
 * fills the disk. Free disk space itself is invisible to SQL, so the findings say what to keep.
 */
import type { Finding } from '../../source-connector/checks.ts';

export interface CapacityFacts {
  database: string;
  databaseBytes: number;
  /** Bytes of WAL written per second over the sample; null when not sampled. */
  walBytesPerSecond: number | null;
  sampleSeconds: number;
  /** `current_setting('max_slot_wal_keep_size')`: `-1` or a size such as `10GB`, `1024MB`. */
  maxSlotWalKeepSize: string;
}

const GB = 1024 ** 3;
/** The guide's minimum free space. */
export const GUIDE_MIN_FREE_BYTES = 100 * GB;
/** A stall the minimum free space should survive: a night or a weekend day without attention. */
const STALL_HOURS_TO_SURVIVE = 24;
/** Share of the guide's free space to give the slot, leaving room for everything else on the disk. */
const KEEP_SHARE = 0.8;
/**
 * A snapshot rate to plan with, on the low side: the benchmark's whole pipeline reads ~25 MB/s
 * on two shared cores (docs/benchmark.md). The slot holds WAL from before the snapshot until
 * the stream starts after it, so the keep size must outlast the snapshot too (the guide's
 * warning about WAL growing through the initial dump).
 */
const PLANNING_SNAPSHOT_BYTES_PER_SECOND = 20 * 1024 ** 2;
const RECOMMENDED_KEEP_GB = Math.round((GUIDE_MIN_FREE_BYTES * KEEP_SHARE) / GB);
/** The keep size to set; the source's own start-up check gives it too (one figure for both). */
export const WAL_KEEP_SIZE_REMEDY = `set max_slot_wal_keep_size to about ${KEEP_SHARE * 100} % of the free WAL disk space (${RECOMMENDED_KEEP_GB}GB with the guide's 100 GB free)`;
export const WAL_KEEP_UNLIMITED = 'unlimited (-1): a stalled slot can fill the source disk and stop the server';

export function formatBytes(n: number): string {
  if (n >= GB) return `${(n / GB).toFixed(1)} GB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

/** Hours in words; past two weeks in days, past a year just that (an idle database's sampled rate is near zero). */
export const formatHours = (h: number): string =>
  h >= 24 * 365 ? 'more than a year' : h >= 24 * 14 ? `${Math.round(h / 24)} days` : h >= 100 ? `${Math.round(h)} hours` : h >= 1 ? `${h.toFixed(1)} hours` : `${Math.max(1, Math.round(h * 60))} minutes`;

/** `10GB`, `1024MB`, `512kB`, `1TB`, a bare number (MB, the setting's unit); `-1` → null (unlimited). */
export function parseWalKeepSize(text: string): number | null {
  const m = /^\s*(-?\d+)\s*(kB|MB|GB|TB)?\s*$/.exec(text);
  if (!m) throw new Error(`cannot read max_slot_wal_keep_size "${text}"`);
  const n = Number(m[1]);
  if (n < 0) return null;
  const unit = { kB: 1024, MB: 1024 ** 2, GB, TB: 1024 * GB }[m[2] ?? 'MB']!;
  return n * unit;
}

export function judgeCapacity(f: CapacityFacts): Finding[] {
  const out: Finding[] = [];
  out.push({
    level: 'PASS',
    check: 'database size',
    object: `database ${f.database}`,
    message: `${formatBytes(f.databaseBytes)}: the initial snapshot reads the selected tables while the slot holds back WAL`,
  });

  const hourly = f.walBytesPerSecond === null ? null : f.walBytesPerSecond * 3600;
  if (hourly === null) {
    out.push({
      level: 'WARN',
      check: 'disk space',
      object: 'server',
      message: 'WAL write rate not sampled: cannot tell how fast a stalled slot fills the disk',
      remedy: 'run check with --sample-seconds 3 (or more) while the usual write load runs; keep at least 100 GB or 20 % of the disk free, whichever is greater',
    });
  } else {
    const rate = `WAL written at ${formatBytes(f.walBytesPerSecond!)}/s (sampled over ${f.sampleSeconds} s): a stall of one hour retains about ${(hourly / GB).toFixed(1)} GB`;
    const lasts = hourly > 0 ? GUIDE_MIN_FREE_BYTES / hourly : Infinity;
    if (lasts >= STALL_HOURS_TO_SURVIVE) {
      out.push({
        level: 'PASS',
        check: 'disk space',
        object: 'server',
        message: `${rate}; the guide's 100 GB free (or 20 % of the disk, whichever is greater) outlasts a ${STALL_HOURS_TO_SURVIVE}-hour stall`,
        remedy: 'keep at least 100 GB or 20 % of the disk free on the source, whichever is greater, until the migration ends',
      });
    } else {
      out.push({
        level: 'WARN',
        check: 'disk space',
        object: 'server',
        message: `${rate}; 100 GB free would fill within ${formatHours(lasts)} of a stall`,
        remedy: `keep at least ${Math.ceil((hourly * STALL_HOURS_TO_SURVIVE) / GB)} GB (a ${STALL_HOURS_TO_SURVIVE}-hour stall) or 20 % of the disk free, whichever is greater`,
      });
    }
  }

  const keep = parseWalKeepSize(f.maxSlotWalKeepSize);
  const snapshotHours = f.databaseBytes / PLANNING_SNAPSHOT_BYTES_PER_SECOND / 3600;
  const recommended = RECOMMENDED_KEEP_GB;
  const covers = (bytes: number) => (hourly && hourly > 0 ? `; at the sampled rate that covers a stall of about ${formatHours(bytes / hourly)}` : '');
  if (keep === null) {
    out.push({
      level: 'WARN',
      check: 'max_slot_wal_keep_size',
      object: 'server',
      message: WAL_KEEP_UNLIMITED,
      remedy: `${WAL_KEEP_SIZE_REMEDY}${covers(recommended * GB)}; a reload is enough (SELECT pg_reload_conf())`,
    });
  } else if (keep === 0) {
    out.push({
      level: 'WARN',
      check: 'max_slot_wal_keep_size',
      object: 'server',
      message: '0: a slot keeps no WAL beyond max_wal_size, so any lag (the snapshot itself) can invalidate it and force a new snapshot',
      remedy: `set max_slot_wal_keep_size to about ${KEEP_SHARE * 100} % of the free WAL disk space (${recommended}GB with the guide's 100 GB free); a reload is enough (SELECT pg_reload_conf())`,
    });
  } else if (hourly === null) {
    out.push({
      level: 'WARN',
      check: 'max_slot_wal_keep_size',
      object: 'server',
      message: `${formatBytes(keep)}: not compared with the WAL write rate (not sampled), so whether it outlasts the snapshot and a stall is unknown`,
      remedy: 'run check with --sample-seconds 3 (or more) while the usual write load runs',
    });
  } else if (keep < hourly * (snapshotHours + 1)) {
    const needed = hourly * (snapshotHours + 1);
    out.push({
      level: 'WARN',
      check: 'max_slot_wal_keep_size',
      object: 'server',
      message:
        `${formatBytes(keep)}${covers(keep)}: the snapshot of ${formatBytes(f.databaseBytes)} (about ${formatHours(snapshotHours)} at a planning rate of ` +
        `${formatBytes(PLANNING_SNAPSHOT_BYTES_PER_SECOND)}/s) and a one-hour stall retain about ${formatBytes(needed)}; less, and the slot is invalidated, which forces a new snapshot`,
      remedy: `raise max_slot_wal_keep_size to at least ${Math.ceil(needed / GB)}GB, towards ${KEEP_SHARE * 100} % of the free WAL disk space (${recommended}GB with the guide's 100 GB free)`,
    });
  } else {
    out.push({ level: 'PASS', check: 'max_slot_wal_keep_size', object: 'server', message: `${formatBytes(keep)}${covers(keep)}` });
  }
  return out;
}
