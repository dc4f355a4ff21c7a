/**
 * Builds the sink's per-batch machinery from its configuration: the decoder, the apply context
 * (staging and direct-COPY thresholds), the stalls and the batch processor. Construction only;
 * the runtime (connector.ts) owns the connections, consumer-runs.ts the consumer.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import type { CitusInfo } from '../shared/schema/citus-catalog.ts';
import type { RegistryClient } from '../shared/registry/registry-client.ts';
import type { ApplyContext } from './apply.ts';
import { DEFAULT_BATCH_SIZING, checkBatchSizing } from './batch-size.ts';
import type { SinkConfig } from './config.ts';
import type { DeadLetterTarget } from './dead-letter.ts';
import { RecordDecoder } from './decode.ts';
import { DirectCopyPolicy } from './direct-copy.ts';
import type { PositionTracker } from './offsets.ts';
import { BatchProcessor } from './partition-batch.ts';
import type { TargetFor } from './schema-compile.ts';
import type { SinkMetrics } from './sink-metrics.ts';
import { Stalls } from './stall.ts';
import type { LockWatch } from './lock-watch.ts';
import type { TableStates } from './table-state.ts';

export interface ProcessorThresholds {
  /** Upsert groups at least this big go through COPY staging; Infinity: never. Default 5000. */
  stagingMinRows?: number;
  /** Fresh rows go straight in by COPY from this many (with batch.directCopy); Infinity: never. Default 1000. */
  directCopyMinRows?: number;
  /** How often stalled partitions' consumer_lag is read from Kafka (tests). Default STALLED_LAG_MS. */
  stalledLagMs?: number;
}

export interface ProcessorDeps {
  config: SinkConfig;
  thresholds: ProcessorThresholds;
  pool: pg.Pool;
  citus: CitusInfo;
  states: TableStates;
  registry: RegistryClient;
  targetFor: TargetFor;
  tracker: PositionTracker;
  metrics: SinkMetrics;
  deadLetter: DeadLetterTarget | null;
  logger: Logger;
  /** A partition's log start and end offsets (Kafka's admin), asked only at gaps (offset-gaps.ts). */
  offsetRange: (topic: string, partition: number) => Promise<{ start: bigint; end: bigint }>;
  /** A topic's end offsets (one Kafka request): stalled partitions' consumer_lag follows them. Absent: refreshed at their retries only. */
  endOffsets?: (topic: string) => Promise<readonly { partition: number; end: string }[]>;
  /** A stalled partition's retry is due: the runtime resumes it. */
  onStallRetry: (topic: string, partition: number) => void;
  /** The lock watchdog (batch.lockWaitWarnMs); null: off. */
  lockWatch: LockWatch | null;
}

export function wireProcessor(d: ProcessorDeps): { decoder: RecordDecoder; stalls: Stalls; processor: BatchProcessor } {
  const { config, thresholds, pool, citus, logger: log } = d;
  const stalls = new Stalls({
    groupId: config.groupId,
    retryMs: config.stallRetryMs,
    logger: log,
    metrics: d.metrics,
    query: (sql, params) => pool.query(sql, params),
    onRetry: d.onStallRetry,
    lag: d.endOffsets && { gauge: d.metrics.lag, ends: d.endOffsets, everyMs: thresholds.stalledLagMs },
  });
  const decoder = new RecordDecoder(d.registry, d.targetFor, config.topicPrefix);
  const apply: ApplyContext = {
    groupId: config.groupId,
    states: d.states,
    truncate: config.truncate,
    autoEvolve: config.autoEvolve,
    stagingMinRows: thresholds.stagingMinRows ?? 5_000,
    // On Citus every staging step is a multi-shard statement: at 1,000 rows staging and unnest
    // measured even there (../shared/README.md), below that unnest's single statement is cheaper.
    fastStagingMinRows: thresholds.stagingMinRows ?? (citus.present ? 1_000 : 200),
    // 200 rows of a few hundred bytes: a few large rows go through staging too.
    fastStagingMinBytes: thresholds.stagingMinRows === Infinity ? Infinity : 256 * 1024,
    directCopy:
      config.batch.directCopy && thresholds.directCopyMinRows !== Infinity ? { policy: new DirectCopyPolicy(), minRows: thresholds.directCopyMinRows ?? 1_000 } : null,
    onDirectCopyConflict: (table) => d.metrics.directCopyConflicts.inc({ table }),
    redecode: (row) => {
      const decoded = decoder.decode(row.raw);
      if (decoded === null) throw new RangeError(`fast row at offset ${row.raw.offset} without a value`);
      return decoded;
    },
    logger: log,
    offsetLockWaitMs: config.batch.idleInTransactionTimeoutMs,
  };
  const sizing = checkBatchSizing({ ...DEFAULT_BATCH_SIZING, floor: Math.min(DEFAULT_BATCH_SIZING.floor, config.batch.maxRows), maxRows: config.batch.maxRows });
  const processor = new BatchProcessor({
    prefix: config.topicPrefix,
    pool,
    decoder,
    transcode: config.batch.transcode,
    binaryCopy: config.batch.binaryCopy,
    apply,
    tracker: d.tracker,
    stalls,
    metrics: d.metrics,
    targetFor: d.targetFor,
    deadLetter: d.deadLetter,
    adaptive: config.batch.adaptive,
    sizing,
    offsetRange: d.offsetRange,
    logger: log,
    lockWatch: d.lockWatch,
    registryUrl: config.schemaRegistry.url,
  });
  return { decoder, stalls, processor };
}
