/**
 * Snapshots completing in the destination, checked every `controlPollMs`: a snapshot is
 * complete once the stored offsets reach the end offsets its completion marker carries
 * (control.ts). Said in the log as they complete, and shown by `snapshot_complete`.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { completeSnapshots, snapshotStatuses } from './control.ts';
import { withPooledClient } from './destination-errors.ts';
import type { SinkMetrics } from './sink-metrics.ts';

/** Tables named in the line of snapshots completing together. */
const SNAPSHOTS_NAMED = 10;

export function checkSnapshots(pool: pg.Pool, groupId: string, log: Logger, gauge: SinkMetrics['snapshot']): Promise<void> {
  return withPooledClient(pool, async (client) => {
    const done = await completeSnapshots(client, groupId);
    // Thousands of small tables complete within seconds: a line per check at info, each table at debug.
    const each = done.length === 1 ? 'info' : 'debug';
    for (const d of done) log[each]({ topic: d.topic, table: d.table }, 'snapshot complete in the destination: applied up to the completion marker');
    if (done.length > 1) {
      const tables = done.map((d) => d.table);
      log.info(
        { count: done.length, tables: tables.length <= SNAPSHOTS_NAMED ? tables : [...tables.slice(0, SNAPSHOTS_NAMED), '…'] },
        `snapshots of ${done.length} tables complete in the destination: applied up to their completion markers`,
      );
    }
    for (const s of await snapshotStatuses(client)) gauge.set({ topic: s.topic, table: s.table }, s.state === 'complete' ? 1 : 0);
  });
}
