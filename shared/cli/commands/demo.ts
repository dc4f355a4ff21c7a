/**
 * `shardbridge demo` (`npm run demo`): the whole migration on the embedded dev stack — source
 * PostgreSQL with a small shop schema, real Kafka, the registry, destination PostgreSQL (or
 * Citus) — with both connectors in this process, a burst of changes while they run, catch-up,
 * sequences and a table-by-table verification. Progress goes to stderr, the report to stdout;
 * its last line is the verdict. Exit 0 when the destination equals the source, else 1.
 *
 * Everything started is stopped at the end, on failure, and on Ctrl-C (130) / SIGTERM (143).
 * `--keep` leaves it all running, prints how to look at it, and waits for Ctrl-C.
 */
import type { CommandContext } from '../main.ts';
import type { Logger } from '../../logger.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../../shutdown.ts';
import { formatReport, passed, progressLine } from '../../demo/report.ts';
import { runDemo, type DemoRunning } from '../../demo/run-demo.ts';
import { checkOwnDestination, DemoSetupError, lookAroundText, Resources } from '../../demo/session.ts';

export async function run(opts: { keep?: boolean; waitSeconds?: number; destination?: string }, ctx: CommandContext): Promise<number> {
  // A destination of the user's is checked before anything starts: refused, nothing to stop.
  if (opts.destination !== undefined) {
    try {
      await checkOwnDestination(opts.destination);
    } catch (err) {
      if (!(err instanceof DemoSetupError)) throw err;
      ctx.err(`shardbridge demo: ${err.message}\n`);
      return 2;
    }
  }
  const t0 = Date.now();
  const progress = (text: string) => ctx.err(progressLine(Date.now() - t0, text));
  const log = demoLogger(ctx);
  const resources = new Resources(log);
  const abort = new AbortController();
  let stoppedBy: ShutdownSignal | null = null;
  let markStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));
  const unregister = ctx.onShutdown(async (signal) => {
    stoppedBy = signal;
    abort.abort();
    progress(`${signal}: stopping everything the demo started`);
    const t = Date.now();
    await resources.stopAll();
    progress(`stopped the connectors and the dev stack in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    markStopped();
  });

  try {
    const running: DemoRunning = {};
    const wait = opts.waitSeconds === undefined ? undefined : Math.ceil(opts.waitSeconds * 1000);
    const limits = wait === undefined ? undefined : { snapshotMs: wait, catchUpMs: wait };
    // After Ctrl-C the phase under way may still finish a step: its lines would read as if the demo went on.
    const phaseProgress = (text: string) => void (abort.signal.aborted || progress(text));
    const outcome = await Promise.race([runDemo({ resources, log, progress: phaseProgress, signal: abort.signal, limits, destination: opts.destination }, running), stopped.then(() => null)]);
    if (outcome === null || stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy ?? 'SIGINT'];
    ctx.out(formatReport(outcome));
    const ok = passed(outcome);
    if (!ok && log.level === 'error') ctx.err('the connectors logged errors only: run again with --verbose or LOG_LEVEL=warn for their warnings\n');
    if (opts.keep && running.env) {
      ctx.out(lookAroundText(running.env, { source: running.source?.metricsPort ?? null, sink: running.sink?.metricsPort ?? null }));
      // With --keep, Ctrl-C is the normal way to end: the exit code stays the verdict's.
      await stopped;
      return ok ? 0 : 1;
    }
    const t = Date.now();
    await resources.stopAll();
    progress(`stopped the connectors and the dev stack in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return ok ? 0 : 1;
  } finally {
    await resources.stopAll();
    unregister();
  }
}

/**
 * Connector and stack logs at `error` unless asked for (--verbose, --log-level, LOG_LEVEL):
 * their warnings (retried Kafka calls, start-up check advice) would drown the progress lines,
 * and what matters for the demo is in its report.
 */
function demoLogger(ctx: CommandContext): Logger {
  const base = ctx.logger;
  const quiet = base.level === 'info' && !ctx.verbose && !process.env.LOG_LEVEL;
  // The CLI's own info lines ("SIGINT received: shutting down", "shutdown complete") were JSON
  // among the progress lines, which already say it; its warnings (a second Ctrl-C) stay.
  if (quiet) base.level = 'warn';
  return base.child({ component: 'demo' }, { level: quiet ? 'error' : base.level });
}
