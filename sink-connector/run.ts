/**
 * `shardbridge sink --config FILE`: run the sink connector until SIGINT/SIGTERM (graceful:
 * current batches finish or are left whole, the group is left; exit 130/143 as every command)
 * or a fatal error (exit 1).
 */
import type { CommandContext } from '../shared/cli/main.ts';
import { tuneHeap } from '../shared/heap.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../shared/shutdown.ts';
import { startSinkConnector, type SinkConnector } from './connector.ts';

export async function run(_opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const config = ctx.sinkConfig();
  tuneHeap(config.heapGrowingPercent);
  // Registered before start-up, which retries for as long as the destination or Kafka is down:
  // the abort ends those retries, and start-up rejects once what it opened is closed.
  const stop = new AbortController();
  let stoppedBy: ShutdownSignal | null = null;
  let starting: Promise<SinkConnector> | undefined;
  const unregister = ctx.onShutdown(async (signal) => {
    stoppedBy = signal;
    stop.abort(new Error(`${signal} received`));
    await starting?.then((sink) => sink.stop(), () => {});
  });
  try {
    starting = startSinkConnector(config, ctx.logger, { signal: stop.signal });
    await (await starting).done;
  } catch (err) {
    if (stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy];
    throw err;
  } finally {
    unregister();
  }
  return stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] : 0;
}
