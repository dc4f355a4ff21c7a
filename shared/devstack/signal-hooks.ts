/**
 * SIGINT/SIGTERM/SIGHUP hooks of the dev stack's servers (Kafka, PostgreSQL). The servers run
 * in process groups of their own, so a terminal's Ctrl-C reaches only this process; what
 * happens next depends on who else listens:
 *  - someone else handles the signal (a graceful shutdown, shared/shutdown.ts): the hooks do
 *    nothing, so that shutdown stops the servers in its own order (connectors first), and the
 *    'exit' hooks kill whatever is left;
 *  - nobody does: every hook cleans up synchronously and the last one re-raises the signal,
 *    keeping its default outcome (death by that signal).
 * Only hooks installed here count as ours, so Kafka's and PostgreSQL's do not each defer to the
 * other (and leave the signal unhandled).
 */

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const ours = new Set<(...args: unknown[]) => void>();

/** Install `cleanup` (synchronous) as a signal hook, once per caller. */
export function onSignalUnlessHandled(cleanup: () => void): void {
  for (const sig of SIGNALS) {
    // `on`, not `once`: a second signal arriving during the cleanup must not kill us half-way.
    const hook = (): void => {
      if (process.listeners(sig).some((l) => !ours.has(l as (...args: unknown[]) => void))) return;
      cleanup();
      process.off(sig, hook);
      ours.delete(hook);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    ours.add(hook);
    process.on(sig, hook);
  }
}
