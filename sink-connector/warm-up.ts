/**
 * While the consumer joins its group: compile the topics' latest schemas (decode.ts, warm) and
 * open the lanes' destination connections, so that the first batches wait for neither. Nothing
 * here fails the sink: what is not done ahead is done by the first batches.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import type { RecordDecoder } from './decode.ts';

/** `tables`: the table topics the consumer is about to read for the first time. */
export function warmUp(deps: { decoder: RecordDecoder; pool: pg.Pool; concurrency: number; log: Logger }, tables: string[]): void {
  const { decoder, pool, log } = deps;
  decoder.warm(tables).then(
    (ready) => log.debug({ topics: ready }, 'schemas compiled ahead of the first records'),
    (err: unknown) => log.debug({ err }, 'schema warm-up failed: schemas are fetched with the first records'),
  );
  const open = Math.max(0, deps.concurrency - pool.totalCount);
  for (let i = 0; i < open; i++) {
    pool.connect().then(
      (client) => client.release(),
      (err: unknown) => log.debug({ err: (err as Error).message }, 'destination connection not opened ahead (the first batch opens it)'),
    );
  }
}
