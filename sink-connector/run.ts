/**
 * `shardbridge sink --config FILE`: run the sink connector until SIGINT/SIGTERM (graceful:
 * current batches finish or are left whole, the group is left; exit 130/143 as every command)
 * or a fatal error (exit 1).
 */
import type { CommandContext } from '../shared/cli/main.ts';
import { tuneHeap } from '../shared/heap.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../shared/shutdown.ts';
import { startSinkConnector } from './connector.ts';

export async function run(_opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const config = ctx.sinkConfig();
  tuneHeap(config.heapGrowingPercent);
  const sink = await startSinkConnector(config, ctx.logger);
  let stoppedBy: ShutdownSignal | null = null;
  ctx.onShutdown(async (signal) => {
    stoppedBy = signal;
    await sink.stop();
  });
  await sink.done;
  return stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] : 0;
}
