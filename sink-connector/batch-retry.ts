/**
 * A partition's batch work retried while the batch is still wanted: a transient failure
 * (destination or registry unreachable, a deadlock) is retried with backoff for as long as
 * it lasts, and the work is left (Abandon) once the batch went stale (rebalance, seek), its
 * lane moved on, or the consumer stops. The apply itself goes in halves when it looks too big
 * for one transaction (destination-errors.ts).
 */
import type pg from 'pg';
import type { EachBatchPayload } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import type { ShardBridgeError } from '../shared/errors.ts';
import { retry } from '../shared/retry.ts';
import { inHalves, tooBigForOneGo, TOO_BIG_RETRIES, withPooledClient } from './destination-errors.ts';
import { applyChunk, type ApplyContext, type Chunk, type ChunkOutcome } from './apply.ts';
import type { ControlKind } from './control.ts';
import type { LaneWork } from './apply-lanes.ts';
import type { LockWatch } from './lock-watch.ts';
import type { SinkMetrics } from './sink-metrics.ts';

/** What the batch handler may do to the consumer that delivered the batch. */
export interface ConsumerControl {
  seek(topic: string, partition: number, offset: bigint): void;
  pause(topic: string, partition: number): void;
  /** Kafka group offset commit, for monitoring only (errors are the callee's to log). */
  commit(topic: string, partition: number, next: bigint): void;
  /** Aborted when this consumer stops: retries end, the batch is left unresolved. */
  signal: AbortSignal;
}

/** Thrown inside a retried attempt to leave the batch: rebalanced, seeked, or stopping. */
export class Abandon extends Error {}

export function isAbandon(err: unknown): boolean {
  return err instanceof Abandon;
}

/** One topic-partition's batch as the processor works on it. */
export interface Part {
  topic: string;
  partition: number;
  control: ControlKind | null;
  log: Logger;
  payload: EachBatchPayload;
  consumer: ConsumerControl;
  lane: LaneWork;
}

/** Whether the batch is still wanted: its lane current, the consumer running and not stopping, the batch not stale. */
export function usable(p: Part): boolean {
  return p.lane.current() && p.payload.isRunning() && !p.payload.isStale() && !p.consumer.signal.aborted;
}

/** Retry `fn` forever while its failures are transient; leave (Abandon) when the batch went stale or we stop. */
export function transient<T>(p: Part, what: string, fn: () => Promise<T>, metrics: Pick<SinkMetrics, 'retries'>): Promise<T> {
  return retry(
    async () => {
      if (!usable(p)) throw new Abandon('batch abandoned');
      return fn();
    },
    {
      what,
      retries: Infinity,
      initialMs: 250,
      maxMs: 10_000,
      signal: p.consumer.signal,
      logger: p.log,
      onRetry: () => {
        metrics.retries.inc();
        p.payload.heartbeat().catch(() => {});
      },
    },
  ).catch((err: unknown) => {
    if (p.consumer.signal.aborted) throw new Abandon('stopping');
    throw err;
  });
}

export interface AttemptDeps {
  pool: pg.Pool;
  apply: ApplyContext;
  metrics: Pick<SinkMetrics, 'retries'>;
  lockWatch?: LockWatch | null;
}

/** One apply, retried with backoff while the failure is transient; in halves when it looks too big (destination-errors.ts). */
export function attemptApply(p: Part, chunk: Chunk, deps: AttemptDeps, gapFrom?: bigint): Promise<ChunkOutcome> {
  let tooBig = 0;
  return transient(
    p,
    `apply ${p.topic}[${p.partition}] ${chunk.firstOffset}..${chunk.nextOffset - 1n}`,
    async () => {
      try {
        const watch = deps.lockWatch;
        return await withPooledClient(deps.pool, (client) =>
          watch ? watch.during(client, chunk, () => applyChunk(client, chunk, deps.apply, gapFrom)) : applyChunk(client, chunk, deps.apply, gapFrom),
        );
      } catch (err) {
        if (tooBigForOneGo(err) && ++tooBig >= TOO_BIG_RETRIES) throw inHalves(err as ShardBridgeError);
        throw err;
      }
    },
    deps.metrics,
  );
}
