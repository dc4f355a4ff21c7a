/**
 * CPU time spent per component during a phase, from /proc: each PostgreSQL cluster (the
 * postmaster, its live children, and — through the postmaster's cutime/cstime — the
 * backends that exited meanwhile), the Kafka broker's JVM, the connector processes, and the
 * programs this process ran and reaped (pg_dump, psql, pg_recvlogical, the bare reader:
 * our own cutime/cstime). On a shared 2-core machine wall time drifts with the neighbours'
 * load; CPU seconds per row say what each side costs.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux). */
const HZ = 100;

export interface StatTimes {
  /** utime + stime of the process itself (all its threads), seconds. */
  self: number;
  /** cutime + cstime: reaped children, seconds. */
  children: number;
  ppid: number;
}

/** Parses /proc/<pid>/stat text. Pure. The command may contain spaces and parentheses: fields count from the last ')'. */
export function parseStat(text: string): StatTimes | null {
  const end = text.lastIndexOf(')');
  if (end < 0) return null;
  const f = text.slice(end + 2).trim().split(/\s+/);
  // f[0] is field 3 (state): utime is field 14 → f[11], stime f[12], cutime f[13], cstime f[14]; ppid field 4 → f[1].
  const n = (i: number) => Number(f[i]);
  if (f.length < 15 || [1, 11, 12, 13, 14].some((i) => !Number.isFinite(n(i)))) return null;
  return { self: (n(11) + n(12)) / HZ, children: (n(13) + n(14)) / HZ, ppid: n(1) };
}

function stat(pid: number | string): StatTimes | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Every live process as pid → stat, one pass over /proc. */
function allStats(): Map<number, StatTimes> {
  const out = new Map<number, StatTimes>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(name);
    if (s) out.set(Number(name), s);
  }
  return out;
}

/** CPU seconds of a process tree: the root (with its reaped children) plus its live descendants (with theirs). */
export function treeSeconds(root: number, stats: Map<number, StatTimes>): number | null {
  const r = stats.get(root);
  if (!r) return null;
  let total = r.self + r.children;
  const kids = new Map<number, number[]>();
  for (const [pid, s] of stats) {
    const list = kids.get(s.ppid);
    if (list) list.push(pid);
    else kids.set(s.ppid, [pid]);
  }
  const stack = [...(kids.get(root) ?? [])];
  while (stack.length) {
    const pid = stack.pop()!;
    const s = stats.get(pid)!;
    total += s.self + s.children;
    stack.push(...(kids.get(pid) ?? []));
  }
  return total;
}

export type CpuMeter = (stats: Map<number, StatTimes>) => number | null;

export type CpuReading = Record<string, number | null>;

/** Reads every meter now (one /proc pass shared by the tree meters). */
export function readMeters(meters: Record<string, CpuMeter>): CpuReading {
  const stats = allStats();
  return Object.fromEntries(Object.entries(meters).map(([k, m]) => [k, m(stats)]));
}

/**
 * Seconds used between two readings, per meter of `after`. A meter absent from `before` (a
 * process started during the phase) counts from 0; null when unreadable on either side. Pure.
 */
export function cpuDelta(before: CpuReading, after: CpuReading): CpuReading {
  const out: CpuReading = {};
  for (const k of Object.keys(after)) {
    const a = k in before ? before[k] : 0;
    const b = after[k];
    out[k] = a === null || b === null ? null : Math.max(0, Math.round((b - a) * 100) / 100);
  }
  return out;
}

/** The pid whose command line contains `needle` (e.g. the Kafka broker's data dir); the lowest when several. */
export function findPid(needle: string): number | null {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found.length ? Math.min(...found) : null;
}

/** This process's reaped children (the programs it ran), seconds. */
export function reapedChildrenSeconds(stats: Map<number, StatTimes>): number | null {
  return stats.get(process.pid)?.children ?? null;
}

export interface PhaseCpu {
  phase: string;
  wallMs: number;
  /** Rows or changes the phase moved (for CPU µs per unit). */
  units: number;
  /** CPU seconds per component. */
  seconds: CpuReading;
  /** CPU seconds processes spent starting up (before rebase()), not in `seconds`. */
  startup?: CpuReading;
}

/**
 * One phase's CPU accounting: the fixed meters are read at start(), processes started during
 * the phase are added with watch() (counted from that moment), end() reads everything once.
 */
export class PhaseMeter {
  private readonly before: CpuReading;
  private readonly meters: Record<string, CpuMeter>;
  private readonly t0 = performance.now();
  private readonly startup: CpuReading = {};
  private result?: PhaseCpu;

  constructor(
    base: Record<string, CpuMeter>,
    private readonly phase: string,
    private readonly units: number,
    private readonly sink: PhaseCpu[],
  ) {
    this.meters = { ...base };
    this.before = readMeters(this.meters);
  }

  /** Count a process (tree) from now on under `key`. */
  watch(key: string, pid: number): void {
    const meter: CpuMeter = (stats) => treeSeconds(pid, stats);
    this.meters[key] = meter;
    this.before[key] = meter(allStats());
  }

  /** From now on count `key` afresh: what it used so far was its start-up (node, module loading, connecting). */
  rebase(key: string): void {
    const meter = this.meters[key];
    if (this.result || !meter) return;
    const now = meter(allStats());
    const was = this.before[key];
    if (now === null || was === null || was === undefined) return;
    this.startup[key] = Math.round((now - was) * 100) / 100;
    this.before[key] = now;
  }

  end(): PhaseCpu {
    if (!this.result) {
      this.result = { phase: this.phase, wallMs: performance.now() - this.t0, units: this.units, seconds: cpuDelta(this.before, readMeters(this.meters)) };
      if (Object.keys(this.startup).length) this.result.startup = { ...this.startup };
      this.sink.push(this.result);
    }
    return this.result;
  }
}
