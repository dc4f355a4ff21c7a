/**
 * `shardbridge sink --config FILE`: run the sink connector until SIGINT/SIGTERM (graceful:
 * current batches finish or are left whole, the group is left) or a fatal error (exit 1).
 */
import type { CommandContext } from '../shared/cli/main.ts';
import { startSinkConnector } from './connector.ts';

export async function run(_opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const config = ctx.sinkConfig();
  const sink = await startSinkConnector(config, ctx.logger);
  ctx.onShutdown(() => sink.stop());
  await sink.done;
  return 0;
}
