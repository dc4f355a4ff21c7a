/**
 * `shardbridge source`: runs the source connector until SIGINT/SIGTERM (or, in snapshot mode
 * initial_only, until the snapshot is done). A source that cannot be reached yet is waited for
 * (as Kafka is). Exit codes: 0 done, 1 failure (also the source refusing the connection for
 * good: password, role, database), 2 a start-up check failed, 130/143 stopped by a signal.
 */
import type { CommandContext } from '../shared/cli/main.ts';
import { ShardBridgeError } from '../shared/errors.ts';
import { redactUrl } from '../shared/logger.ts';
import { sourceHeapGrowingPercent, tuneHeap } from '../shared/heap.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../shared/shutdown.ts';
import { startSourceConnector, type SourceConnector } from './connector.ts';

export { startSourceConnector } from './connector.ts';
export type { SourceConnector, StartOptions } from './connector.ts';

export async function run(_opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const config = ctx.sourceConfig();
  tuneHeap(config.heapGrowingPercent ?? 0);
  const logger = ctx.logger;
  // Unset, the factor depends on how many tables the source has to register and snapshot.
  const onTables = (count: number) => {
    const growing = sourceHeapGrowingPercent(config.heapGrowingPercent, count);
    if (config.heapGrowingPercent !== undefined || growing === 0) return;
    tuneHeap(growing);
    logger.info({ tables: count, heapGrowingPercent: growing }, `${count} tables: the heap is held to twice its live data (heapGrowingPercent ${growing}; set it to choose)`);
  };
  // Registered before start-up, which waits for as long as the source cannot be reached: the
  // abort ends that wait, as a stop ends the connector's retries of Kafka.
  const stop = new AbortController();
  let stoppedBy: ShutdownSignal | null = null;
  let starting: Promise<SourceConnector> | undefined;
  const unregister = ctx.onShutdown(async (signal) => {
    stoppedBy = signal;
    stop.abort(new Error(`${signal} received`));
    await starting?.then((c) => c.stop(), () => {});
  });
  try {
    let connector: SourceConnector;
    try {
      connector = await (starting = startSourceConnector(config, logger, { onTables, signal: stop.signal }));
    } catch (err) {
      if (stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy];
      if (err instanceof ShardBridgeError && err.context.phase === 'startup') {
        ctx.err(redactUrl(`shardbridge source: ${err.describe()}`) + '\n');
        // A start-up check that refused (wal_level, privileges, the publication): 2, a
        // configuration error. A source that refused the connection for good (a wrong password,
        // no such role or database; the driver's error kept as cause): 1, a failure, as every
        // command and the sink say it. One that cannot be reached yet is waited for.
        return err.cause === undefined ? 2 : 1;
      }
      throw err;
    }
    try {
      await connector.done;
    } catch (err) {
      logger.error({ err }, 'source connector failed');
      throw err;
    }
  } finally {
    unregister();
  }
  return stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] : 0;
}
