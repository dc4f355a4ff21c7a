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
import { SchemaError, ShardBridgeError, isRetriable } from '../shared/errors.ts';
import { abortable, backoffDelay, errorSummary, retry } from '../shared/retry.ts';
import { inHalves, tooBigForOneGo, TOO_BIG_RETRIES, withPooledClient } from './destination-errors.ts';
import { applyChunk, type ApplyContext, type Chunk, type ChunkOutcome } from './apply.ts';
import type { ControlKind } from './control.ts';
import type { LaneWork } from './apply-lanes.ts';
import type { LockWatch } from './lock-watch.ts';
import type { RawRecord } from './decode.ts';
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
  const said = new RetryLog();
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
      onRetry: (err, attempt, delayMs) => {
        metrics.retries.inc();
        said.log(p.log, what, err, attempt, delayMs);
        p.payload.heartbeat().catch(() => {});
      },
    },
  ).catch((err: unknown) => {
    if (p.consumer.signal.aborted) throw new Abandon('stopping');
    throw err;
  });
}

/** How often a retry that keeps failing the same way is logged at warn again (in between: debug). */
export const RETRY_WARN_EVERY_MS = 60_000;

/**
 * The retry lines of one retried step: a warning saying what failed (the destination's message
 * and SQLSTATE) and what the sink waits for, when the failure is new or changed and then once a
 * minute; the tries in between at debug (a lock held for an hour is one line a minute, not 360).
 */
export class RetryLog {
  private last: { signature: string; at: number } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  log(log: Logger, what: string, err: unknown, attempt: number, delayMs: number): void {
    const line = retryLine(what, err, delayMs);
    const signature = `${line.sqlstate ?? ''}\u0000${line.reason}`;
    const t = this.now();
    const fields = { err: log.isLevelEnabled('debug') ? err : errorSummary(err), attempt, delayMs, ...(line.sqlstate ? { sqlstate: line.sqlstate } : {}) };
    if (this.last?.signature === signature && t - this.last.at < RETRY_WARN_EVERY_MS) {
      log.debug(fields, line.text);
      return;
    }
    this.last = { signature, at: t };
    log.warn(fields, line.text);
  }
}

/** `<what> failed: <message> [SQLSTATE x]; retrying in N ms — <what it waits for>`. Pure. */
export function retryLine(what: string, err: unknown, delayMs: number): { text: string; sqlstate?: string; reason: string } {
  const sb = err instanceof ShardBridgeError ? err : undefined;
  const sqlstate = sb?.context.sqlstate === undefined || sb.context.sqlstate === null ? undefined : String(sb.context.sqlstate);
  const reason = err instanceof Error ? err.message : String(err);
  const table = sb?.context.table ? ` (table ${String(sb.context.table)})` : '';
  const text = `${what} failed: ${reason}${table}${sqlstate ? ` [SQLSTATE ${sqlstate}]` : ''}; retrying in ${delayMs} ms${sb?.remedy ? ` — ${sb.remedy}` : ''}`;
  return { text, sqlstate, reason };
}

export interface AttemptDeps {
  pool: pg.Pool;
  apply: ApplyContext;
  metrics: Pick<SinkMetrics, 'retries'>;
  lockWatch?: LockWatch | null;
  /** Whether batches of `p` went in halves before (a ceiling on their size): then a batch too big goes in halves at once. */
  halveAtOnce?: (p: Part) => boolean;
}

/**
 * Batches (by their Part: one fetched batch of a partition, and the halves it is narrowed down to)
 * whose chunk was found too big for one go: their halves go in halves at the first such failure,
 * not after three tries each (each try costs a statement_timeout).
 */
const foundTooBig = new WeakSet<Part>();

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
        if (tooBigForOneGo(err) && ++tooBig >= (foundTooBig.has(p) || deps.halveAtOnce?.(p) ? 1 : TOO_BIG_RETRIES)) {
          foundTooBig.add(p);
          throw inHalves(err as ShardBridgeError);
        }
        throw err;
      }
    },
    deps.metrics,
  );
}

/**
 * How long a partition's batch waits in its apply slot for a registry that answers nothing; then the
 * partition waits paused instead, and the slot goes to others. A registry answers in milliseconds.
 */
export const REGISTRY_HOLD_MS = 3_000;

function slowRegistry(ms: number): SchemaError {
  return new SchemaError(`the schema registry has answered nothing for ${ms / 1000} s (its requests go on)`, {
    retriable: true,
    remedy: 'is the schema registry overloaded or hung, or the network to it dropping traffic?',
  });
}

/**
 * Partitions whose records name a schema the registry cannot give now (unreachable, no answer in
 * time, 5xx): such a partition does not hold its apply slot while the registry is down (the
 * slots are few, and a table's schema change reaches every partition of its topic at once: they
 * held them all, and every other topic waited too). It is paused at its first record, and comes
 * back after a backoff to ask again. Logged once a partition (then at debug) with the registry's
 * error and the offsets that wait, and once when the registry answers again.
 */
export class RegistryWaits {
  private readonly waiting = new Map<string, { since: number; attempts: number }>();

  constructor(
    private readonly metrics: Pick<SinkMetrics, 'retries' | 'registryWaiting'>,
    /** The registry's URL without credentials, and the schema ids records name that are not known yet: for the log line. */
    private readonly describe: { registry: string; missing(raws: readonly RawRecord[]): number[]; answeredAt(): number },
    /** How long a batch waits for the registry in its slot before its partition waits paused instead. */
    private readonly holdMs = REGISTRY_HOLD_MS,
    private readonly backoff: { initialMs: number; maxMs: number } = { initialMs: 250, maxMs: 10_000 },
  ) {}

  /**
   * `prepare` (the schemas `raws` name, fetched when new). Rejects with Abandon when the registry
   * cannot give them now (the partition then waits paused) or the consumer stops (a SIGTERM ends
   * the wait at once); a refusal (unknown id, credentials) is rethrown for the caller to stall on.
   */
  async fetch(p: Part, raws: readonly RawRecord[], prepare: () => Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    // Held while the registry answers something (many new ids take many requests: a flood of
    // unknown ids is hundreds of 404s); left when it answered nothing for holdMs. The requests
    // go on then (the registry client shares them): the next try takes what they got.
    const held = new Promise<never>((_, reject) => {
      const check = () => {
        if (Date.now() - this.describe.answeredAt() < this.holdMs) timer = setTimeout(check, this.holdMs);
        else reject(slowRegistry(this.holdMs));
      };
      timer = setTimeout(check, this.holdMs);
    });
    try {
      await abortable(Promise.race([prepare(), held]), p.consumer.signal);
    } catch (err) {
      if (p.consumer.signal.aborted) throw new Abandon('stopping');
      if (!isRetriable(err)) throw err;
      if (usable(p)) this.wait(p, raws, err);
      throw new Abandon('waiting for the schema registry');
    } finally {
      clearTimeout(timer);
    }
    this.answered(p);
  }

  /** The registry did not give `p` its schemas for the records from `from` on: pause it, and resume it after a backoff. */
  private wait(p: Part, raws: readonly RawRecord[], err: unknown): void {
    const from = raws[0].offset;
    const key = `${p.topic}\0${p.partition}`;
    let w = this.waiting.get(key);
    const first = !w;
    if (!w) {
      w = { since: Date.now(), attempts: 0 };
      this.waiting.set(key, w);
      this.metrics.registryWaiting.set(this.waiting.size);
    }
    w.attempts++;
    this.metrics.retries.inc();
    const delayMs = backoffDelay(w.attempts, this.backoff);
    const fields = { err: p.log.isLevelEnabled('debug') ? err : errorSummary(err), offset: from, attempt: w.attempts, delayMs };
    if (first) {
      const ids = this.describe.missing(raws);
      p.log.warn(
        { ...fields, registry: this.describe.registry, schemaIds: ids, lastOffset: raws[raws.length - 1].offset },
        `the schema registry at ${this.describe.registry} cannot give schema ${ids.length === 1 ? 'id' : 'ids'} ${ids.join(', ')} of ${p.topic}[${p.partition}] from offset ${from}: ` +
          'the partition waits there (nothing skipped or set aside), asking again with backoff; the other partitions go on',
      );
    } else p.log.debug(fields, 'schema registry still failing: the partition waits');
    p.consumer.seek(p.topic, p.partition, BigInt(from));
    const resume = p.payload.pause();
    setTimeout(() => {
      try {
        resume();
      } catch (e) {
        p.log.debug({ err: e }, 'resuming after a registry wait failed (rebalanced or stopped)');
      }
    }, delayMs).unref();
  }

  /** The partition's schemas came: logged when it waited for them. */
  private answered(p: Part): void {
    const key = `${p.topic}\0${p.partition}`;
    const w = this.waiting.get(key);
    if (!w) return;
    this.waiting.delete(key);
    this.metrics.registryWaiting.set(this.waiting.size);
    p.log.info({ waitedMs: Date.now() - w.since, attempts: w.attempts }, `the schema registry answered again: ${p.topic}[${p.partition}] goes on`);
  }

  /** After a group join: partitions this process no longer owns wait here no more. */
  keepOnly(assignment: Record<string, number[]>): void {
    const owned = new Set(Object.entries(assignment).flatMap(([topic, partitions]) => partitions.map((n) => `${topic}\0${n}`)));
    for (const key of this.waiting.keys()) if (!owned.has(key)) this.waiting.delete(key);
    this.metrics.registryWaiting.set(this.waiting.size);
  }
}
