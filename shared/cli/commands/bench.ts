/**
 * `shardbridge bench` (`npm run bench`): ShardBridge end to end, and its sink alone on the
 * backlog, against pg_dump, native logical replication and the raw pgoutput decode rate, on
 * one dev stack, in one run (docs/benchmark.md). Progress goes to stderr; the table to stdout;
 * the same as JSON to `--out` (default bench-results.json). `--cpu-prof [dir]` profiles the
 * connector processes and prints their top self-time functions. The Kafka broker is warmed up
 * first (`--no-warmup` skips it); `--connector-heap-mb N` runs the connectors with that
 * old-space cap (default none). The connectors run compiled (`npm run build`, as the image
 * runs them) unless `--from-sources`. Exit 0 when every phase ran (aims missed are figures,
 * not failures), 1 when a phase failed, 130/143 on signals.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { CommandContext } from '../main.ts';
import type { Logger } from '../../logger.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../../shutdown.ts';
import { Resources } from '../../demo/session.ts';
import { formatReport, toJson } from '../../bench/report.ts';
import { analyzeProfile, formatProfileSummary, profileFiles, readProfile } from '../../bench/profile.ts';
import { sourcePositionMapper } from '../../bench/profile-sources.ts';
import { runBench, type Spawned } from '../../bench/run-bench.ts';

interface BenchOpts {
  scale?: number;
  out?: string;
  sourceOnly?: boolean;
  cpuProf?: boolean | string;
  latencySeconds?: number;
  /** commander's --no-warmup: false; otherwise true or absent. */
  warmup?: boolean;
  connectorHeapMb?: number;
  fromSources?: boolean;
}

/** The connectors' old-space cap by default: what the image sets (Dockerfile, docs/configuration.md "Memory"). */
export const DEFAULT_CONNECTOR_HEAP_MB = 0;

/** The run's settings from the command's options, defaults filled in. Pure. */
export function benchSettings(opts: BenchOpts): { scale: number; sourceOnly: boolean; latencySeconds: number; warmup: boolean; connectorHeapMb: number; fromSources: boolean } {
  return {
    scale: opts.scale ?? 1,
    sourceOnly: Boolean(opts.sourceOnly),
    latencySeconds: opts.latencySeconds ?? 20,
    warmup: opts.warmup !== false,
    connectorHeapMb: opts.connectorHeapMb ?? DEFAULT_CONNECTOR_HEAP_MB,
    fromSources: Boolean(opts.fromSources),
  };
}

export async function run(opts: BenchOpts, ctx: CommandContext): Promise<number> {
  const t0 = Date.now();
  const progress = (text: string) => ctx.err(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
  const log = benchLogger(ctx);
  const resources = new Resources(log);
  const abort = new AbortController();
  const cpuProfDir = opts.cpuProf ? path.resolve(typeof opts.cpuProf === 'string' ? opts.cpuProf : 'bench-profiles') : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  let stoppedBy: ShutdownSignal | null = null;
  const unregister = ctx.onShutdown(async (signal) => {
    stoppedBy = signal;
    abort.abort();
    progress(`${signal}: stopping everything the benchmark started`);
    await resources.stopAll();
  });
  const spawned: Spawned = [];
  try {
    const results = await runBench(
      { ...benchSettings(opts), cpuProfDir, resources, log, progress, signal: abort.signal },
      spawned,
    );
    await resources.stopAll();
    if (stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy];
    if (cpuProfDir) {
      const files = spawned.flatMap((s) => profileFiles(cpuProfDir, s.pid).map((f) => f.file));
      results.profiles = { dir: cpuProfDir, files };
    }
    const json = toJson(results);
    const out = path.resolve(opts.out ?? 'bench-results.json');
    writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
    ctx.out(formatReport(results));
    ctx.out(`results written to ${out}\n`);
    if (cpuProfDir) ctx.out(await profileReport(cpuProfDir, spawned));
    return results.failures.length ? 1 : 0;
  } finally {
    await resources.stopAll();
    unregister();
  }
}

/**
 * The top self-time functions of each connector process's threads. Threads that were mostly
 * idle (tsx's module loader) get one line.
 */
export async function profileReport(dir: string, spawned: Spawned): Promise<string> {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
  const mapper = await sourcePositionMapper();
  const parts = [`\nCPU profiles (node --cpu-prof) in ${dir}:`];
  for (const s of spawned) {
    for (const f of profileFiles(dir, s.pid)) {
      const title = `${s.command} connector, ${s.phase}, ${f.thread === 0 ? 'main thread' : `worker thread ${f.thread}`} (${path.basename(f.file)})`;
      try {
        const summary = analyzeProfile(readProfile(f.file), root, mapper);
        if (f.thread !== 0 && summary.busyMs < 1000) parts.push(`${title}: ${Math.round(summary.busyMs)} ms busy`);
        else parts.push(formatProfileSummary(title, summary));
      } catch (err) {
        parts.push(`${title}: cannot read (${(err as Error).message})`);
      }
    }
  }
  if (parts.length === 1) parts.push('  (no profiles were written: did the connectors exit normally?)');
  return parts.join('\n') + '\n';
}

/** The stack's own logs at warn unless asked for: the progress lines are the benchmark's output. */
function benchLogger(ctx: CommandContext): Logger {
  const base = ctx.logger;
  const level = base.level === 'info' && !ctx.verbose && !process.env.LOG_LEVEL ? 'warn' : base.level;
  return base.child({ component: 'bench' }, { level });
}
